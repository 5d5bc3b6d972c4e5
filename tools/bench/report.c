/*
 * report.c: upper-bench's output, one human line and then one JSON line
 * (tests/bench/run_bench.sh keeps the JSON line, report.py reads it; the
 * field names and formats are that contract).
 */
#include "bench.h"

/* The figures both lines print. */
struct ub_report {
	double secs, rps, mbs, p50, p90, p99, p999, max;
	int conns;
};

static void
ub_report_figures(const struct ub_opts *o, const struct ub_result *t,
    struct ub_report *f)
{
	f->secs = (double)t->elapsed_ns / 1e9;
	f->p50 = ub_hist_quantile(t, 0.5);
	f->p90 = ub_hist_quantile(t, 0.9);
	f->p99 = ub_hist_quantile(t, 0.99);
	f->p999 = ub_hist_quantile(t, 0.999);
	f->max = (double)t->max_ns / 1000.0;
	f->conns = o->mode->sockets ? o->sockets : o->conns;
	if (f->secs <= 0)
		f->secs = 1e-9;
	f->rps = (double)t->requests / f->secs;
	/* bulk: input bytes per second; else measured replies' bytes */
	f->mbs = (o->mode->bytes_line ? (double)t->bytes_tx :
	                                (double)t->requests * o->size) /
	    f->secs / 1e6;
}

static void
ub_report_human(const struct ub_opts *o, const struct ub_result *t,
    const struct ub_report *f)
{
	if (o->mode->bytes_line)
		printf("%s: %llu bytes of %s text over %d conns in %.2f s: "
		       "%.1f MB/s; errors %llu connect_failures %llu",
		    o->mode->name, (unsigned long long)t->bytes_tx,
		    o->mixed ? "mixed-script" : "ascii", f->conns, f->secs,
		    f->mbs, (unsigned long long)t->errors,
		    (unsigned long long)t->connect_failures);
	else
		printf("%s: %d %s depth %d size %d, %.2f s: %.0f req/s "
		       "%.1f MB/s; latency us p50 %.1f p90 %.1f p99 %.1f "
		       "p99.9 %.1f max %.1f; errors %llu lost %llu late %llu "
		       "reordered %llu connect_failures %llu",
		    o->mode->name, f->conns,
		    o->mode->sockets ? "sockets" : "conns", o->depth, o->size,
		    f->secs, f->rps, f->mbs, f->p50, f->p90, f->p99, f->p999,
		    f->max, (unsigned long long)t->errors,
		    (unsigned long long)t->lost, (unsigned long long)t->late,
		    (unsigned long long)t->reordered,
		    (unsigned long long)t->connect_failures);
	if (o->mode->holds_idle)
		printf("; idle held %llu of %d",
		    (unsigned long long)t->idle_held, o->idle);
}

static void
ub_report_json(const struct ub_opts *o, const struct ub_result *t,
    const struct ub_report *f)
{
	printf("\n{\"mode\":\"%s\",\"conns\":%d,\"depth\":%d,\"size\":%d,"
	       "\"procs\":%d,\"idle\":%d,\"duration_s\":%.3f,"
	       "\"requests\":%llu,\"rps\":%.1f,\"mb_per_s\":%.2f,"
	       "\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,"
	       "\"p999_us\":%.2f,\"max_us\":%.2f,\"errors\":%llu,"
	       "\"lost\":%llu,\"late\":%llu,\"reordered\":%llu,"
	       "\"stalled\":%llu,\"connect_failures\":%llu,"
	       "\"idle_held\":%llu,\"bytes_sent\":%llu,"
	       "\"bytes_received\":%llu}\n",
	    o->mode->name, f->conns, o->depth, o->size, o->procs,
	    o->mode->holds_idle ? o->idle : 0, f->secs,
	    (unsigned long long)t->requests, f->rps, f->mbs, f->p50, f->p90,
	    f->p99, f->p999, f->max, (unsigned long long)t->errors,
	    (unsigned long long)t->lost, (unsigned long long)t->late,
	    (unsigned long long)t->reordered, (unsigned long long)t->stalled,
	    (unsigned long long)t->connect_failures,
	    (unsigned long long)t->idle_held, (unsigned long long)t->bytes_tx,
	    (unsigned long long)t->bytes_rx);
}

/* Print the merged result of a run on stdout. */
void
ub_report_print(const struct ub_opts *o, const struct ub_result *t)
{
	struct ub_report f;

	ub_report_figures(o, t, &f);
	ub_report_human(o, t, &f);
	ub_report_json(o, t, &f);
	fflush(stdout);
}
