#!/usr/bin/env bash
# engine_ab.sh: side-by-side CPU per request of engine builds (the README's
# "io_uring engine tuned" figures).  Starts upper-ref, upperd --io-engine
# epoll and one upperd --io-engine io_uring per NAME=BINARY in $URINGS, all
# at once on loopback, then runs peer-rr (rows a: 50 connections depth 1,
# b: depth 16) or upper-bench (f: 1 GB bulk) against each in turn, the
# order rotated every round, and prints one line per run: round, row,
# server, the server's CPU ticks (utime+stime of it and its workers, from
# /proc) and context switches over the run, and the load generator's JSON.
# engine_ab_report.py turns that into ratios.  Every process stopped by pid.
#
#   URINGS="old=/tmp/upperd-old new=bin/upperd" tests/bench/engine_ab.sh 5 3
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../bin}
ROUNDS=${1:-4} DUR=${2:-3}
ROWS=${ROWS:-"a b"}
URINGS=${URINGS:-"io_uring=$BIN/upperd"}
PIDS=()
declare -A P PORT

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	sleep 0.5
	for p in "${PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kids() {
	awk -v r="$1" '{ pid = $1; sub(/^.*\) /, "");
	    if (pid == r || $2 == r) print pid }' /proc/[0-9]*/stat 2>/dev/null
}
tree_cpu() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v r="$1" '{ pid = $1;
	    sub(/^.*\) /, ""); if (pid == r || $2 == r) t += $12 + $13 }
	    END { print t + 0 }'
}
tree_cs() {
	local t=0 k
	for k in $(kids "$1"); do
		t=$((t + $(awk '/ctxt_switches/ { s += $2 } END { print s + 0 }' \
		    "/proc/$k/status" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
start() {
	local n=$1
	shift
	"$@" >"$WORK/$n.log" 2>&1 &
	P[$n]=$!
	PIDS+=("$!")
}

WORK=$(mktemp -d /tmp/upperd-ab.XXXXXX)
port=$((21000 + RANDOM % 9000))
i=0
PORT[ref]=$port
start ref "$BIN/upper-ref" --procs 2 --tcp "127.0.0.1:$port" --udp off
NAMES="ref epoll"
for nb in "epoll=$BIN/upperd" $URINGS; do
	i=$((i + 1))
	n=${nb%%=*} b=${nb#*=} eng=io_uring
	[ "$n" = epoll ] && eng=epoll || NAMES="$NAMES $n"
	PORT[$n]=$((port + i))
	start "$n" "$b" --workers 2 --io-engine "$eng" \
	    --tcp "127.0.0.1:$((port + i))" --udp off \
	    --stats "127.0.0.1:$((port + 100 + i))" --log-level warn \
	    --idle-timeout 0
done
for n in $NAMES; do
	for k in $(seq 50); do
		"$BIN/peer-rr" -p "${PORT[$n]}" -r 'ping\n' -c 1 -w 0 -t 0.01 \
		    >/dev/null 2>&1 && break
		sleep 0.1
	done
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
read -ra arr <<<"$NAMES"
N=${#arr[@]}
for r in $(seq "$ROUNDS"); do
	for row in $ROWS; do
		case $row in a) c=50 d=1 ;; b) c=50 d=16 ;; esac
		for k in $(seq 0 $((N - 1))); do
			n=${arr[$(((k + r) % N))]}
			c0=$(tree_cpu "${P[$n]}") s0=$(tree_cs "${P[$n]}")
			if [ "$row" = f ]; then
				out=$("$BIN/upper-bench" --port "${PORT[$n]}" \
				    --mode bulk --bytes 1G --text ascii \
				    --duration 60 --case ascii 2>/dev/null |
				    grep '^{' | tail -1)
			else
				out=$("$BIN/peer-rr" -p "${PORT[$n]}" \
				    -r 'ping\n' -c "$c" -d "$d" -w 0.2 -t "$DUR")
			fi
			c1=$(tree_cpu "${P[$n]}") s1=$(tree_cs "${P[$n]}")
			echo "R $r $row $n $((c1 - c0)) $((s1 - s0)) $out"
		done
	done
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$WORK"
