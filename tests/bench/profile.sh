#!/usr/bin/env bash
# profile.sh: `make profile`.  Where the time goes in the scenarios of
# `make bench` that upperd misses: (a) 50 connections at depth 1, (b) at
# depth 16, and (f) bulk over one connection.  Each runs against the
# reference server (upper-ref) and then upperd, as in run_bench.sh, while
# perf samples the whole machine (cpu-clock: this virtual machine has no
# hardware counters).  Prints for each run how the two CPUs were shared
# between the load generator, the server, idle time and the rest, and the
# server's samples split between kernel and user space, its hottest
# user-space functions and its hottest functions overall.  In this virtual machine a sample taken while
# interrupts are off lands on the instruction that turns them back on, so
# _raw_spin_unlock_irqrestore and handle_softirqs stand for the network
# stack's work around them.
#
#   BIN=bin tests/bench/profile.sh     about a minute
#
# Everything listens on 127.0.0.1 only; the servers started here are
# stopped by pid on exit.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../../bin}
PY=${PYTHON:-python3}
DUR=${PROFILE_DURATION:-3}
TOP=${PROFILE_TOP:-10}

command -v perf >/dev/null || { echo "profile: perf missing" >&2; exit 1; }
for b in upperd upper-ref upper-bench upper; do
	[ -x "$BIN/$b" ] || { echo "profile: $BIN/$b missing" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/upperd-profile.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$HERE/lib.sh"

wait_ping() {
	serves "$1" 100 && return 0
	echo "profile: server on port $1 did not start" >&2
	exit 1
}

REF_PORT=$(free_port)
"$BIN/upper-ref" --procs 2 --tcp "127.0.0.1:$REF_PORT" \
    --udp "127.0.0.1:$REF_PORT" >>"$WORK/ref.log" 2>&1 &
PIDS+=($!)
U_PORT=$(free_port)
# PROFILE_ENGINE: upperd's --io-engine (make profile runs both)
"$BIN/upperd" --workers 2 --tcp "127.0.0.1:$U_PORT" --udp off --stats off \
    --log-level warn --idle-timeout 0 --io-engine "${PROFILE_ENGINE:-epoll}" \
    >>"$WORK/upperd.log" 2>&1 &
PIDS+=($!)
wait_ping "$REF_PORT"
wait_ping "$U_PORT"

scenario_args() {
	case $1 in
	a) echo --mode rr --conns 50 --depth 1 --warmup 0 --duration "$DUR" ;;
	b) echo --mode rr --conns 50 --depth 16 --warmup 0 --duration "$DUR" ;;
	f) echo --mode bulk --bytes 4G --text ascii --duration 60 ;;
	esac
}

# Share of all samples per program (the server: a comma-separated list of
# its comm names): the two CPUs are 100 %.
shares() {
	perf report -i "$1" --sort comm --stdio -q 2>/dev/null |
	    awk -v srv="$2" '
	    BEGIN { n = split(srv, l, ","); for (j = 1; j <= n; j++) mine[l[j]] }
	    { p = $1; sub(/%/, "", p); c = $2 }
	    c in mine { s += p; next }
	    c == "upper-bench" { b += p; next }
	    c == "swapper" { i += p; next }
	    { o += p }
	    END { printf "  CPU time: load generator %.1f %%, server %.1f %%, " \
	        "idle %.1f %%, other %.1f %%  (of both CPUs)\n", b, s, i, o }'
}

profile() {
	local sc=$1 name=$2 port=$3 comm=$4 data="$WORK/$1.$2.data"
	echo
	echo "($sc) $name"
	# shellcheck disable=SC2046
	perf record -q -a -e cpu-clock -o "$data" -- "$BIN/upper-bench" \
	    --port "$port" $(scenario_args "$sc") >"$WORK/run.out" \
	    2>"$WORK/run.err" || { cat "$WORK/run.err" >&2; return; }
	echo "  $(head -1 "$WORK/run.out" | cut -c1-110)"
	shares "$data" "$comm"
	perf report -i "$data" --comm "$comm" --sort sym --stdio -q \
	    --percentage relative 2>/dev/null | awk 'NF {
		p = $1; sub(/%/, "", p)
		if ($2 == "[k]") k += p; else u += p }
	    END { printf "  server: kernel %.1f %%, user space %.1f %% " \
		"of its samples\n", k, u }'
	echo "  server's user-space functions:"
	perf report -i "$data" --comm "$comm" --sort sym --stdio -q \
	    --percentage relative 2>/dev/null | awk '$2 == "[.]"' |
	    head -5 | sed 's/^/   /'
	echo "  server's hottest functions (% of the server's samples):"
	perf report -i "$data" --comm "$comm" --sort dso,sym --stdio -q \
	    --percentage relative 2>/dev/null | awk 'NF' | head -"$TOP" |
	    sed 's/^/   /'
}

echo "perf profile: (a), (b), (f) against the reference and upperd" \
    "(--io-engine ${PROFILE_ENGINE:-epoll})" \
    "(2 processes each), ${DUR}s each; $(nproc) CPUs"
for sc in a b f; do
	profile "$sc" reference "$REF_PORT" upper-ref
	# the workers name themselves upperd-wN (comm)
	profile "$sc" upperd "$U_PORT" upperd,upperd-w0,upperd-w1
done
