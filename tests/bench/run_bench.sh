#!/usr/bin/env bash
# run_bench.sh: `make bench`.  Starts upperd (2 workers) and the reference
# server upper-ref (2 processes: a bare epoll echo that ASCII-uppercases) on
# free loopback ports, runs issue 4's scenarios against both, alternating
# ref, upperd, ref, upperd (best of BENCH_REPS runs each), then upperd-only
# checks: worker balance (2 and 4 workers), /metrics scraped at 100 Hz, and
# memory per idle connection.  Server CPU time comes from /proc (utime +
# stime of the server's processes) before and after each run: on a small
# machine the load generator competes with the server, so CPU per request
# is the steadier comparison.  Prints a table (tests/bench/report.py) and
# writes a JSON summary to ${BENCH_OUT:-/tmp/upperd-bench.json}.
#
#   BIN=bin tests/bench/run_bench.sh      full run, under 5 minutes
#   BENCH_QUICK=1 ...                     under 1 minute
#
# Everything listens on 127.0.0.1 only; every process started here is
# stopped by pid on exit.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../bin}
OUT=${BENCH_OUT:-/tmp/upperd-bench.json}
PY=${PYTHON:-python3}
QUICK=${BENCH_QUICK:-0}

if [ "$QUICK" = 1 ]; then
	WARM=0.3 DUR=1 REPS=${BENCH_REPS:-1}
	BULK=128M MIXED=32M IDLE_D=10000 IDLE_MEM=5000
else
	WARM=0.5 DUR=3 REPS=${BENCH_REPS:-3}
	BULK=1G MIXED=256M IDLE_D=10000 IDLE_MEM=50000
fi

for b in upperd upper-ref upper-bench upper upperd-scrape; do
	[ -x "$BIN/$b" ] || { echo "run_bench: $BIN/$b missing" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/upperd-bench.XXXXXX)
REC=$WORK/records.jsonl
PIDS=()
PIN=
# Run copies: a rebuild during the run must not change what is measured.
mkdir "$WORK/bin"
for b in upperd upper-ref upper-bench upper upperd-scrape; do
	cp "$BIN/$b" "$WORK/bin/$b" || exit 1
done
if [ -x "$BIN/upcase-speed" ]; then
	cp "$BIN/upcase-speed" "$WORK/bin/" || exit 1
fi
BIN=$WORK/bin

. "$HERE/lib.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

# Servers can use every fd the hard limit allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
FDMAX=$(ulimit -n)
CLK=$(getconf CLK_TCK)

# "pid state ppid utime stime" for every process (comm stripped: it may
# hold spaces).
proc_table() {
	cat /proc/[0-9]*/stat 2>/dev/null |
	    awk '{ pid = $1; sub(/^.*\) /, ""); print pid, $1, $2, $12, $13 }'
}
children_of() {
	proc_table | awk -v r="$1" '$3 == r { print $1 }'
}
# CPU seconds of a server: the process and its direct children.
tree_cpu() {
	proc_table | awk -v r="$1" -v hz="$CLK" \
	    '$1 == r || $3 == r { t += $4 + $5 } END { printf "%.2f", t / hz }'
}
# Resident kB of a server's children (the workers): total and anonymous.
workers_rss() {
	local p rss=0 anon=0 a b
	for p in $(children_of "$1"); do
		a=$(awk '/^VmRSS/ { print $2 }' "/proc/$p/status" 2>/dev/null)
		b=$(awk '/^RssAnon/ { print $2 }' "/proc/$p/status" 2>/dev/null)
		rss=$((rss + ${a:-0}))
		anon=$((anon + ${b:-0}))
	done
	echo "$rss $anon"
}

stats_json() {
	curl -sf --max-time 2 "http://127.0.0.1:$1/stats"
}
# Connections accepted so far, per worker slot, as a JSON list.
accepted() {
	stats_json "$1" | "$PY" -c 'import json, sys
d = json.load(sys.stdin)
print(json.dumps([w["tcp_connections_accepted"] for w in d["workers"]]))' \
	    2>/dev/null || echo null
}
active_conns() {
	stats_json "$1" | "$PY" -c 'import json, sys
print(json.load(sys.stdin)["totals"]["tcp_connections_active"])' \
	    2>/dev/null || echo 0
}

# start_upperd NAME WORKERS [OPTIONS...]: sets NAME_PID NAME_PORT
# NAME_STATS.
start_upperd() {
	local name=$1 workers=$2 port stats pid i
	shift 2
	port=$(free_port)
	stats=$(free_port)
	"$BIN/upperd" --workers "$workers" --tcp "127.0.0.1:$port" \
	    --udp "127.0.0.1:$port" --stats "127.0.0.1:$stats" \
	    --log-level warn --idle-timeout 0 --max-conns 60000 \
	    --drain-timeout 2 "$@" >>"$WORK/$name.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	for i in $(seq 100); do
		curl -sf --max-time 1 "http://127.0.0.1:$stats/healthz" \
		    >/dev/null 2>&1 && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if ! curl -sf --max-time 1 "http://127.0.0.1:$stats/healthz" \
	    >/dev/null 2>&1; then
		echo "run_bench: upperd ($name) did not become healthy:" >&2
		tail -5 "$WORK/$name.log" >&2
		exit 1
	fi
	printf -v "${name}_PID" %s "$pid"
	printf -v "${name}_PORT" %s "$port"
	printf -v "${name}_STATS" %s "$stats"
}

# start_ref NAME: sets NAME_PID NAME_PORT (no stats: NAME_STATS empty).
start_ref() {
	local name=$1 port pid
	port=$(free_port)
	"$BIN/upper-ref" --procs 2 --tcp "127.0.0.1:$port" \
	    --udp "127.0.0.1:$port" >>"$WORK/$name.log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	printf -v "${name}_PID" %s "$pid"
	printf -v "${name}_PORT" %s "$port"
	printf -v "${name}_STATS" %s ""
	serves "$port" 50 && return 0
	echo "run_bench: upper-ref did not start" >&2
	exit 1
}

# Scenario name -> upper-bench arguments (the port is added per server).
scenario_args() {
	case $1 in
	a | a2 | a_noscrape | a_scrape | idle_without)
		echo --mode rr --conns 50 --depth 1 ;;
	b) echo --mode rr --conns 50 --depth 16 ;;
	c | c2) echo --mode rr --conns 1 --depth 1 ;;
	d) echo --mode idle --idle "$IDLE_D" --conns 50 --depth 1 --procs 2 ;;
	e) echo --mode udp --sockets 4 --depth 32 ;;
	f) echo --mode bulk --bytes "$BULK" --text ascii --duration 60 ;;
	g) echo --mode bulk --bytes "$MIXED" --text mixed --duration 60 ;;
	churn) echo --mode churn --requests 1000 --conns 10 --duration 30 ;;
	esac
}

# The listener's accept queue is empty: every connection the load
# generator holds has been accepted by the server, so the measured part
# starts with none still queued (a slow acceptor would be measured twice).
settle() {
	local i q
	for i in $(seq 100); do
		q=$(ss -Hltn "sport = :$1" 2>/dev/null | awk '{ print $2; exit }')
		[ "${q:-0}" = 0 ] && return 0
		sleep 0.1
	done
}

# bench_held PORT ARGS...: run upper-bench with --hold; once it is
# connected and the server has accepted everything, call the function in
# $ON_SETTLED, then let the bench start.  Sets RC, SETUP_S.
bench_held() {
	local port=$1 bp i t0 t1
	shift
	t0=$(date +%s.%N)
	# Emptied here, not by the child's redirection: the child may open
	# them after the first look for "ready:" below.
	: >"$WORK/run.out"
	: >"$WORK/run.err"
	${PIN:+taskset -c "$PIN"} "$BIN/upper-bench" --port "$port" "$@" \
	    --hold 120 >"$WORK/run.out" 2>"$WORK/run.err" &
	bp=$!
	PIDS+=("$bp")
	for i in $(seq 1200); do
		grep -q 'ready:' "$WORK/run.err" && break
		alive "$bp" || break
		sleep 0.05
	done
	settle "$port"
	t1=$(date +%s.%N)
	SETUP_S=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")
	$ON_SETTLED
	kill -USR1 "$bp" 2>/dev/null
	wait "$bp"
	RC=$?
	forget_pid "$bp"
	cat "$WORK/run.err" >>"$WORK/bench.err"
}

# run_one SCENARIO SERVER REP [extra bench args...]: one measured run,
# appended to the records with the server's CPU seconds (counted from the
# start of the measured part: connection setup is not in it).
run_one() {
	local sc=$1 srv=$2 rep=$3 port stats="" acc0=null acc1=null json
	shift 3
	case $srv in
	ref) SRV_PID=$REF_PID port=$REF_PORT ;;
	upperd) SRV_PID=$U2_PID port=$U2_PORT stats=$U2_STATS ;;
	upperd4) SRV_PID=$U4_PID port=$U4_PORT stats=$U4_STATS ;;
	upperd1) SRV_PID=$U1_PID port=$U1_PORT stats=$U1_STATS ;;
	upperdn) SRV_PID=$UN_PID port=$UN_PORT stats=$UN_STATS ;;
	upperd_idle) SRV_PID=$UI_PID port=$UI_PORT stats=$UI_STATS ;;
	esac
	[ -n "$stats" ] && acc0=$(accepted "$stats")
	FDS0=$(child_fds "$SRV_PID")
	ON_SETTLED=mark_cpu
	# (c) measures one request's path.  Left to the scheduler its
	# latency is bimodal (16 or 45 us for the same server, as client and
	# server land on one CPU or two), so both are pinned: (c) sharing CPU
	# 0, where the server's own cost is most of the round trip; (c2) on
	# CPUs of their own, as a remote client sees it, where the cross-CPU
	# wakeup of this virtual machine (about 50 us, itself bimodal from run
	# to run) is most of it.  (a2) is (a) with the same split: the load
	# generator on CPU 0, every server process on the last CPU, so both
	# servers get exactly one CPU whatever the scheduler would do.
	PIN=
	case $sc in
	c) PIN=0 && pin_tree "$SRV_PID" 0 ;;
	c2 | a2) PIN=0 && pin_tree "$SRV_PID" $(($(nproc) - 1)) ;;
	esac
	# shellcheck disable=SC2046
	bench_held "$port" --warmup "$WARM" --duration "$DUR" \
	    $(scenario_args "$sc") "$@"
	[ -n "$PIN" ] && pin_tree "$SRV_PID" "0-$(($(nproc) - 1))"
	PIN=
	CPU1=$(tree_cpu "$SRV_PID")
	[ -n "$stats" ] && acc1=$(accepted "$stats")
	json=$(grep '^{' "$WORK/run.out" | tail -1)
	case $json in "{"*) ;; *) json=null ;; esac
	echo "{\"kind\":\"run\",\"scenario\":\"$sc\",\"server\":\"$srv\"," \
	    "\"rep\":$rep,\"cpu_s\":$(awk "BEGIN{print $CPU1 - $CPU0}")," \
	    "\"rc\":$RC,\"setup_s\":$SETUP_S,\"accepted_before\":$acc0," \
	    "\"accepted_after\":$acc1,\"fds_before\":$FDS0," \
	    "\"fds_during\":$FDS1,\"bench\":$json}" >>"$REC"
	printf '  %-12s %-11s rep %d: setup %5.2fs %s\n' "$sc" "$srv" "$rep" \
	    "$SETUP_S" "$(head -1 "$WORK/run.out" | cut -c1-90)"
}
mark_cpu() {
	CPU0=$(tree_cpu "$SRV_PID")
	FDS1=$(child_fds "$SRV_PID")
}
# Open fds of each child of a server, as a JSON list: minus the count
# before the run, the connections each worker (or ref process) holds.
child_fds() {
	local p out=""
	for p in $(children_of "$1"); do
		out="$out${out:+,}$(ls "/proc/$p/fd" 2>/dev/null | wc -l)"
	done
	echo "[$out]"
}
pin_tree() {
	local p
	for p in "$1" $(children_of "$1"); do
		taskset -a -p -c "$2" "$p" >/dev/null 2>&1
	done
}

# --- the comparison: alternating ref and upperd --------------------------
T0=$(date +%s)
echo "upperd benchmark: quick=$QUICK reps=$REPS warmup=${WARM}s" \
    "duration=${DUR}s fd limit $FDMAX, $(nproc) CPUs"
# BENCH_REF_VS_REF=1: a second upper-ref stands in for upperd, to see the
# noise of this machine (every ratio should be 1.0); upperd-only parts are
# skipped.
SELF=${BENCH_REF_VS_REF:-0}
start_ref REF
if [ "$SELF" = 1 ]; then
	start_ref U2
	echo "ref vs ref: the upperd column is a second upper-ref"
else
	start_upperd U2 2
fi
echo "{\"kind\":\"meta\",\"quick\":$QUICK,\"reps\":$REPS,\"warmup\":$WARM," \
    "\"duration\":$DUR,\"fd_limit\":$FDMAX,\"cpus\":$(nproc)," \
    "\"ref_vs_ref\":$SELF,\"bulk\":\"$BULK\",\"mixed\":\"$MIXED\"," \
    "\"idle_d\":$IDLE_D,\"loadavg_start\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" \
    >>"$REC"

for sc in a a2 b c c2 d e f g; do
	# a bulk run is short and bimodal (about 1,300 or 2,300 MB/s, for
	# either server, pinned to CPUs or not): two more of those
	nrep=$REPS
	case $sc in f | g) nrep=$((REPS + 2)) ;; esac
	for rep in $(seq "$nrep"); do
		# (g): upper-ref only does ASCII; upperd runs in unicode mode
		rargs=() uargs=()
		if [ "$sc" = g ]; then
			rargs=(--case ascii)
			[ "$SELF" = 1 ] && uargs=(--case ascii)
		fi
		run_one "$sc" ref "$rep" "${rargs[@]}"
		run_one "$sc" upperd "$rep" "${uargs[@]}"
	done
done
if [ "$SELF" = 1 ]; then
	echo
	"$PY" "$HERE/report.py" "$REC" "$OUT"
	exit 0
fi

# --- (a) and (b) on other configurations, beside the same ref:
# --workers 1 is the split the reference usually falls into (EPOLLEXCLUSIVE
# piles connections on one process), so the two engines are compared
# without the distribution in the way; --sched-policy normal shows what
# SCHED_BATCH is worth ---------------------------------------------------
echo "other configurations: (a) and (b) on upperd --workers 1 and" \
    "--sched-policy normal, beside the same ref"
start_upperd U1 1
start_upperd UN 2 --sched-policy normal
# informational rows: one run each (time budget)
for rep in 1; do
	for sc in a b; do
		run_one "$sc" ref "$((rep + 100))"
		run_one "$sc" upperd1 "$rep"
		run_one "$sc" upperdn "$rep"
	done
done
stop_pid "$UN_PID"
stop_pid "$U1_PID"

# --- /metrics scraped at 100 Hz during (a), alternating with a plain (a) ---
echo "scrape: (a) on upperd with and without /metrics at 100 Hz"
for rep in $(seq "$REPS"); do
	run_one a_noscrape upperd "$rep"
	"$BIN/upperd-scrape" 127.0.0.1 "$U2_STATS" /metrics 100 \
	    >"$WORK/scrape.out" 2>&1 &
	SCRAPER=$!
	PIDS+=("$SCRAPER")
	sleep 0.2
	run_one a_scrape upperd "$rep"
	stop_pid "$SCRAPER"
	echo "{\"kind\":\"scrape\",\"rep\":$rep,\"result\":$(tail -1 \
	    "$WORK/scrape.out" | grep '^{' || echo null)}" >>"$REC"
done

# --- worker balance over short connections: 2 and 4 workers --------------
echo "balance: 1000 short connections"
run_one churn upperd 1
stop_pid "$REF_PID"
start_upperd U4 4
run_one churn upperd4 1
stop_pid "$U4_PID"

# --- memory per idle connection, and (a) with them held -------------------
# Each worker must hold its share within the fd limit: cap the count.
IDLE_ASKED=$IDLE_MEM
cap=$(( (FDMAX - 200) * 2 * 9 / 10 ))
[ "$IDLE_MEM" -gt "$cap" ] && IDLE_MEM=$cap
stop_pid "$U2_PID"
start_upperd UI 2
echo "idle memory: $IDLE_MEM idle connections on a fresh upperd"
run_one idle_without upperd_idle 1
read -r rss0 anon0 <<<"$(workers_rss "$UI_PID")"
# Measured once every idle connection is accepted, before the work starts
# (memory on the first round only: later rounds reuse what it allocated).
HELD= rss1= anon1=
measure_idle() {
	local i
	for i in $(seq 100); do
		[ "$(active_conns "$IDLE_STATS")" -ge $((IDLE_MEM + 50)) ] &&
		    break
		sleep 0.1
	done
	if [ -z "$HELD" ]; then
		HELD=$(active_conns "$IDLE_STATS")
		read -r rss1 anon1 <<<"$(workers_rss "$SRV_PID")"
	fi
	mark_cpu
}
procs=$(( IDLE_MEM / (FDMAX - 200) + 2 ))
IDLE_STATS=$UI_STATS
for rep in $(seq "$REPS"); do
	[ "$rep" -gt 1 ] && run_one idle_without upperd_idle "$rep"
	SRV_PID=$UI_PID
	ON_SETTLED=measure_idle
	# shellcheck disable=SC2046
	bench_held "$UI_PORT" $(scenario_args a) --mode idle \
	    --idle "$IDLE_MEM" --procs "$procs" --warmup "$WARM" \
	    --duration "$DUR"
	CPU1=$(tree_cpu "$UI_PID")
	json=$(grep '^{' "$WORK/run.out" || echo null)
	echo "{\"kind\":\"run\",\"scenario\":\"idle_with\"," \
	    "\"server\":\"upperd_idle\",\"rep\":$rep," \
	    "\"cpu_s\":$(awk "BEGIN{print $CPU1 - $CPU0}"),\"rc\":$RC," \
	    "\"setup_s\":$SETUP_S,\"bench\":$json}" >>"$REC"
	printf '  %-12s %-11s rep %d: setup %5.2fs %s\n' idle_with \
	    upperd_idle "$rep" "$SETUP_S" \
	    "$(head -1 "$WORK/run.out" | cut -c1-90)"
done
echo "{\"kind\":\"idle_mem\",\"target\":$IDLE_MEM,\"asked\":$IDLE_ASKED," \
    "\"fd_limit\":$FDMAX,\"held\":$HELD," \
    "\"rss_before_kb\":$rss0,\"rss_after_kb\":$rss1," \
    "\"anon_before_kb\":$anon0,\"anon_after_kb\":$anon1}" >>"$REC"
stop_pid "$UI_PID"

# --- the asked count, when the fd limit capped it: on as many workers as
# the limit needs, memory only (a one-second run keeps 50 clients busy) ---
if [ "$IDLE_ASKED" -gt "$IDLE_MEM" ]; then
	nw=$(( IDLE_ASKED / ((FDMAX - 200) * 9 / 10) + 1 ))
	IDLE_MEM=$IDLE_ASKED
	start_upperd UW "$nw"
	echo "idle memory: $IDLE_MEM idle connections on $nw workers"
	read -r rss0 anon0 <<<"$(workers_rss "$UW_PID")"
	HELD= rss1= anon1=
	SRV_PID=$UW_PID IDLE_STATS=$UW_STATS ON_SETTLED=measure_idle
	# shellcheck disable=SC2046
	bench_held "$UW_PORT" $(scenario_args a) --mode idle \
	    --idle "$IDLE_MEM" --procs $(( IDLE_MEM / (FDMAX - 200) + 2 )) \
	    --warmup 0 --duration 1
	echo "{\"kind\":\"idle_mem_all\",\"target\":$IDLE_MEM," \
	    "\"workers\":$nw,\"held\":${HELD:-0},\"rc\":$RC," \
	    "\"setup_s\":$SETUP_S,\"rss_before_kb\":$rss0," \
	    "\"rss_after_kb\":${rss1:-0},\"anon_before_kb\":$anon0," \
	    "\"anon_after_kb\":${anon1:-0}}" >>"$REC"
	stop_pid "$UW_PID"
fi

echo "elapsed: $(( $(date +%s) - T0 )) s; load average now" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
if [ -s "$WORK/bench.err" ] && grep -qv 'ready:' "$WORK/bench.err"; then
	echo "load generator complaints:"
	grep -v 'ready:' "$WORK/bench.err" | sort | uniq -c | head -20
fi
for f in U2 U4 UI UW; do
	if [ -s "$WORK/$f.log" ]; then
		echo "upperd ($f) log, last lines:"
		tail -5 "$WORK/$f.log"
	fi
done
echo
"$PY" "$HERE/report.py" "$REC" "$OUT"
# The transform alone, one core (issue 4: ASCII >= 4 GB/s).
if [ -x "$BIN/upcase-speed" ]; then
	echo
	echo "transform alone, one core, 64 KiB chunks (MB/s = 10^6 bytes/s):"
	"$BIN/upcase-speed"
fi
