# lib.sh: what run_bench.sh and profile.sh share; sourced, needs $PY
# and $BIN.

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
