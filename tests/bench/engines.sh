#!/usr/bin/env bash
# engines.sh: `make bench`'s engine comparison (issue 15).  Starts, side by
# side on free loopback ports: upper-ref (bare epoll), upper-ref-uring (bare
# io_uring), upperd --io-engine epoll and upperd --io-engine io_uring, each
# with 2 processes, plus the peers memcached (-t 2) and Redis; runs every
# row against each server in turn, alternating, best of BENCH_REPS, and
# prints throughput and CPU per request as ratios to upper-ref measured in
# the same run.  Then the scaling curves (throughput and p99 against active
# connections and pipelining depth, worker memory against idle connections)
# for the references and both engines, written as data and drawn by
# gnuplot into ${BENCH_SVG:-docs}/bench-*.svg.
#
# Load: tests/bench/peer_rr (one fixed request, fixed-length reply: "ping\n"
# for the uppercase servers, memcached's "version\r\n", Redis's inline
# "PING\r\n"), so every server is measured by the same loop; UDP and bulk by
# upper-bench.  Everything on 127.0.0.1; every process stopped by pid.
#
#   BIN=bin tests/bench/engines.sh        full run, about 12 minutes
#   BENCH_QUICK=1 ...                     about 2 minutes, for debugging
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../bin}
PY=${PYTHON:-python3}
QUICK=${BENCH_QUICK:-0}
SVG=${BENCH_SVG:-$HERE/../../docs}
if [ "$QUICK" = 1 ]; then
	WARM=0.2 DUR=1 REPS=${BENCH_REPS:-1}
	CONNS="1 10 100 1000" DEPTHS="1 4 16 64" IDLES="0 2000 10000"
	BULK=128M IDLE_D=2000
else
	WARM=0.5 DUR=3 REPS=${BENCH_REPS:-2}
	CONNS="1 10 100 1000 10000" DEPTHS="1 4 16 64"
	# idle: one client address reaches one port from at most the
	# ephemeral range's ~28,000 ports
	IDLES="0 5000 10000 20000 25000" BULK=1G IDLE_D=10000
fi
for b in upperd upper-ref upper-ref-uring upper-bench peer-rr; do
	[ -x "$BIN/$b" ] || { echo "engines: $BIN/$b missing" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/upperd-engines.XXXXXX)
REC=$WORK/records.jsonl
PIDS=()
mkdir "$WORK/bin"
for b in upperd upper-ref upper-ref-uring upper-bench peer-rr; do
	cp "$BIN/$b" "$WORK/bin/" || exit 1
done
BIN=$WORK/bin

. "$HERE/lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n "$(ulimit -Hn)" 2>/dev/null
CLK=$(getconf CLK_TCK)

# CPU seconds of a server: the process (all its threads) and its children.
tree_cpu() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v r="$1" -v hz="$CLK" '
	    { pid = $1; sub(/^.*\) /, "");
	      if (pid == r || $2 == r) t += $12 + $13 }
	    END { printf "%.2f", t / hz }'
}
# Resident kB of a server's workers (its children; itself when it has
# none, as memcached and Redis).
workers_rss() {
	local p kids rss=0 a
	kids=$(awk -v r="$1" '{ pid = $1; sub(/^.*\) /, "");
	    if ($2 == r) print pid }' /proc/[0-9]*/stat 2>/dev/null)
	for p in ${kids:-$1}; do
		a=$(awk '/^VmRSS/ { print $2 }' "/proc/$p/status" 2>/dev/null)
		rss=$((rss + ${a:-0}))
	done
	echo "$rss"
}
# Open fds of a server's processes: minus the count before, the
# connections they hold.
held_socks() {
	local p n=0 kids
	kids=$(awk -v r="$1" '{ pid = $1; sub(/^.*\) /, "");
	    if ($2 == r) print pid }' /proc/[0-9]*/stat 2>/dev/null)
	for p in ${kids:-$1}; do
		n=$((n + $(ls "/proc/$p/fd" 2>/dev/null | wc -l)))
	done
	echo "$n"
}

# start NAME: sets NAME_PID, NAME_PORT
start() {
	local name=$1 port pid
	port=$(free_port)
	# exec: $! is the server itself, whose children are its workers
	case $name in
	ref) exec "$BIN/upper-ref" --procs 2 --tcp "127.0.0.1:$port" \
	    --udp "127.0.0.1:$port" ;;
	ref_uring) exec "$BIN/upper-ref-uring" --procs 2 \
	    --tcp "127.0.0.1:$port" --udp "127.0.0.1:$port" ;;
	epoll | io_uring) exec "$BIN/upperd" --workers 2 --io-engine "$name" \
	    --tcp "127.0.0.1:$port" --udp "127.0.0.1:$port" \
	    --stats "127.0.0.1:$(free_port)" --log-level warn \
	    --idle-timeout 0 --max-conns 60000 --drain-timeout 2 ;;
	memcached) exec memcached -t 2 -l 127.0.0.1 -p "$port" -U 0 -c 15000 \
	    -m 64 $([ "$(id -u)" = 0 ] && echo -u root) ;;
	redis) exec redis-server --bind 127.0.0.1 --port "$port" --save '' \
	    --appendonly no --maxclients 60000 --protected-mode no ;;
	esac >>"$WORK/$name.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	printf -v "${name}_PID" %s "$pid"
	printf -v "${name}_PORT" %s "$port"
	for i in $(seq 100); do
		"$BIN/peer-rr" -p "$port" -r "$(req "$name")" -c 1 -w 0 \
		    -t 0.01 >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "engines: $name did not start" >&2
	tail -3 "$WORK/$name.log" >&2
	exit 1
}
req() {
	case $1 in
	memcached) echo 'version\r\n' ;;
	redis) echo 'PING\r\n' ;;
	*) echo 'ping\n' ;;
	esac
}

# rr NAME ROW CONNS DEPTH IDLE: one peer-rr run, recorded with the CPU the
# server used meanwhile.
rr() {
	local name=$1 row=$2 pid port c0 c1 out
	pid=${name}_PID port=${name}_PORT
	c0=$(tree_cpu "${!pid}")
	out=$("$BIN/peer-rr" -p "${!port}" -r "$(req "$name")" -c "$3" \
	    -d "$4" -i "$5" -w "$WARM" -t "$DUR" 2>>"$WORK/rr.err")
	c1=$(tree_cpu "${!pid}")
	case $out in "{"*) ;; *) out=null ;; esac
	echo "{\"kind\":\"rr\",\"row\":\"$row\",\"server\":\"$name\"," \
	    "\"conns\":$3,\"depth\":$4,\"idle\":$5," \
	    "\"cpu_s\":$(awk "BEGIN { print $c1 - $c0 }"),\"r\":$out}" >>"$REC"
	printf '  %-6s %-10s c=%-5s d=%-3s idle=%-5s %s\n' "$row" "$name" \
	    "$3" "$4" "$5" "$out"
}
# ub NAME ROW ARGS...: one upper-bench run (UDP, bulk).
ub() {
	local name=$1 row=$2 pid port c0 c1 out
	shift 2
	pid=${name}_PID port=${name}_PORT
	c0=$(tree_cpu "${!pid}")
	out=$("$BIN/upper-bench" --port "${!port}" "$@" 2>>"$WORK/ub.err" |
	    grep '^{' | tail -1)
	c1=$(tree_cpu "${!pid}")
	case $out in "{"*) ;; *) out=null ;; esac
	echo "{\"kind\":\"ub\",\"row\":\"$row\",\"server\":\"$name\"," \
	    "\"cpu_s\":$(awk "BEGIN { print $c1 - $c0 }"),\"r\":$out}" >>"$REC"
	printf '  %-6s %-10s %s\n' "$row" "$name" "$(echo "$out" | cut -c1-100)"
}

UPPER="ref ref_uring epoll io_uring"
echo "engine bench: quick=$QUICK reps=$REPS warmup=${WARM}s" \
    "duration=${DUR}s, $(nproc) CPUs, load average" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
echo "{\"kind\":\"meta\",\"quick\":$QUICK,\"reps\":$REPS," \
    "\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"," \
    "\"date\":\"$(date -u +%FT%TZ)\"}" >>"$REC"
for s in $UPPER memcached redis; do
	start "$s"
done

echo "table rows, alternating servers"
for rep in $(seq "$REPS"); do
	for s in $UPPER memcached redis; do
		rr "$s" a 50 1 0
	done
	for s in $UPPER; do
		rr "$s" b 50 16 0
	done
	for s in $UPPER; do
		rr "$s" d 50 1 "$IDLE_D"
	done
	for s in $UPPER; do
		ub "$s" e --mode udp --sockets 4 --depth 32 --warmup "$WARM" \
		    --duration "$DUR" --case ascii
	done
	for s in $UPPER; do
		ub "$s" f --mode bulk --bytes "$BULK" --text ascii \
		    --duration 60 --case ascii
	done
done
stop_pid "$memcached_PID"
stop_pid "$redis_PID"

echo "curves: active connections (depth 1), pipelining depth (50 conns)"
for c in $CONNS; do
	for s in $UPPER; do
		rr "$s" conns "$c" 1 0
	done
done
for d in $DEPTHS; do
	for s in $UPPER; do
		rr "$s" depth 50 "$d" 0
	done
done

# Memory against idle connections: on a fresh server each, the clients
# (peer-rr, up to 15,000 connections per process) hold them while the
# workers' RSS is read.
echo "curves: worker memory against idle connections"
for s in ref epoll io_uring; do
	stop_pid "$(eval echo "\$${s}_PID")"
	start "$s"
	pid=${s}_PID port=${s}_PORT
	base=$(workers_rss "${!pid}")
	s0=$(held_socks "${!pid}")
	for n in $IDLES; do
		# upper-ref's EPOLLEXCLUSIVE piles connections on one process,
		# which spins once it reaches the fd limit: spared
		[ "$s" = ref ] && [ "$n" -gt 15000 ] && continue
		hold=()
		k=$(( (n + 14999) / 15000 ))
		for i in $(seq "$k"); do
			"$BIN/peer-rr" -p "${!port}" -r 'ping\n' -c 1 \
			    -i $((n / k)) -w 0 -t 300 >/dev/null 2>&1 &
			hold+=("$!")
			PIDS+=("$!")
		done
		for i in $(seq 120); do
			[ "$(held_socks "${!pid}")" -ge $((s0 + n)) ] && break
			sleep 0.5
		done
		rss=$(workers_rss "${!pid}")
		got=$(( $(held_socks "${!pid}") - s0 ))
		echo "{\"kind\":\"idle\",\"server\":\"$s\",\"idle\":$n," \
		    "\"held\":$got,\"rss_kb\":$rss,\"base_kb\":$base}" >>"$REC"
		printf '  idle   %-10s %6d asked, %6d held: workers %d kB\n' \
		    "$s" "$n" "$got" "$rss"
		for p in "${hold[@]}"; do
			stop_pid "$p"
		done
	done
done

"$PY" "$HERE/engines_report.py" "$REC" "$SVG"
