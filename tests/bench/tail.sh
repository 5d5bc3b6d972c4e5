#!/usr/bin/env bash
# tail.sh: `make bench-tail`, the (a) tail-latency experiments of issue 15:
# 50 connections at depth 1 (peer-rr) against upper-ref, upper-ref-uring
# and upperd on both engines, each with its default scheduling policy
# (auto), with --sched-policy normal, and with one worker, alternating
# servers, TAIL_REPS rounds.  Prints req/s, p50 and p99 per server and
# round, and the median of the rounds.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../bin}
PY=${PYTHON:-python3}
REPS=${TAIL_REPS:-3}
DUR=${TAIL_DUR:-3}
. "$HERE/lib.sh"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done' EXIT
trap 'exit 130' INT TERM

# start NAME ARGS...: a server on a free port; sets PORT_NAME
start() {
	local name=$1 port
	shift
	port=$(free_port)
	case $name in
	ref*) exec_bin=upper-ref ;;
	ru*) exec_bin=upper-ref-uring ;;
	*) exec_bin=upperd ;;
	esac
	if [ "$exec_bin" = upperd ]; then
		"$BIN/upperd" --tcp "127.0.0.1:$port" --udp off --stats off \
		    --log-level warn "$@" >/dev/null 2>&1 &
	else
		"$BIN/$exec_bin" --procs 2 --tcp "127.0.0.1:$port" --udp off \
		    >/dev/null 2>&1 &
	fi
	PIDS+=("$!")
	printf -v "PORT_$name" %s "$port"
	for i in $(seq 100); do
		"$BIN/peer-rr" -p "$port" -c 1 -w 0 -t 0.01 >/dev/null 2>&1 &&
		    return 0
		sleep 0.1
	done
	echo "tail: $name did not start" >&2
	exit 1
}

start ref
start ru
start ep_auto --io-engine epoll --workers 2
start ur_auto --io-engine io_uring --workers 2
start ep_normal --io-engine epoll --workers 2 --sched-policy normal
start ur_normal --io-engine io_uring --workers 2 --sched-policy normal
start ep_w1 --io-engine epoll --workers 1
start ur_w1 --io-engine io_uring --workers 1
NAMES="ref ru ep_auto ur_auto ep_normal ur_normal ep_w1 ur_w1"
echo "tail: (a) 50 conns depth 1, ${DUR}s x $REPS rounds; load average" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
OUT=$(mktemp /tmp/upperd-tail.XXXXXX)
for r in $(seq "$REPS"); do
	for n in $NAMES; do
		p=PORT_$n
		j=$("$BIN/peer-rr" -p "${!p}" -c 50 -d 1 -w 0.5 -t "$DUR")
		echo "$n $j" >>"$OUT"
		printf '  round %d %-10s %s\n' "$r" "$n" "$j"
	done
done
"$PY" - "$OUT" <<'PYEOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    n, j = line.split(" ", 1)
    rows.setdefault(n, []).append(json.loads(j))
label = {"ref": "upper-ref", "ru": "upper-ref-uring",
         "ep_auto": "upperd epoll", "ur_auto": "upperd io_uring",
         "ep_normal": "epoll, sched normal", "ur_normal": "io_uring, sched normal",
         "ep_w1": "epoll, 1 worker", "ur_w1": "io_uring, 1 worker"}
ref = statistics.median(x["rps"] for x in rows["ref"])
print("%-24s %10s %7s %8s %8s" % ("median of rounds", "req/s", "vs ref",
                                  "p50 us", "p99 us"))
for n, xs in rows.items():
    rps = statistics.median(x["rps"] for x in xs)
    print("%-24s %10.0f %7.2f %8.0f %8.0f" % (
        label[n], rps, rps / ref, statistics.median(x["p50_us"] for x in xs),
        statistics.median(x["p99_us"] for x in xs)))
PYEOF
rm -f "$OUT"
