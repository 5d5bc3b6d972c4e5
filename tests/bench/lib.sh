# lib.sh: what the bench scripts share; sourced, needs $PY and $BIN, and
# for stop_pid and cleanup the array PIDS of the pids started and $WORK.

# A port free for both TCP and UDP on 127.0.0.1, below the ephemeral range.
free_port() {
	"$PY" - <<'EOF'
import random, socket
for _ in range(200):
    p = random.randint(20000, 32000)
    try:
        t = socket.socket(); t.bind(("127.0.0.1", p))
        u = socket.socket(type=socket.SOCK_DGRAM); u.bind(("127.0.0.1", p))
        t.close(); u.close(); print(p); break
    except OSError:
        pass
EOF
}

# serves PORT TRIES: true once the server on PORT answers PING (its
# workers serve), polled every 0.1 s at most TRIES times.
serves() {
	local i
	for i in $(seq "$2"); do
		[ "$("$BIN/upper" --port "$1" ping 2>/dev/null)" = PING ] &&
		    return 0
		sleep 0.1
	done
	return 1
}

# A zombie is not alive: it only waits for our wait.
alive() {
	local st
	st=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ]
}
forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}
# Stop what we started by pid: TERM, then KILL after 5 s.
stop_pid() {
	local pid=$1 i
	if kill -TERM "$pid" 2>/dev/null; then
		for i in $(seq 50); do
			alive "$pid" || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	forget_pid "$pid"
	return 0
}
# The EXIT trap: every pid in PIDS stopped, last started first, then $WORK
# removed (kept with BENCH_KEEP set).
cleanup() {
	local i
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${PIDS[i]}"
	done
	[ -n "${BENCH_KEEP:-}" ] && { echo "kept $WORK"; return; }
	rm -rf "$WORK"
}
