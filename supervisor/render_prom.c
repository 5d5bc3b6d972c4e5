/*
 * render_prom.c: the /metrics document, Prometheus text exposition 0.0.4,
 * rendered from a snapshot and nothing else.  It owns the metric names that
 * are not counters (restarts, up, histogram, process_*) and the order of
 * the families; counter names and HELP texts come only from ctr_meta.
 *
 * Every family is written whole, HELP and TYPE first, before the next one
 * starts: Prometheus and promtool reject a family that reappears.  Every
 * label set is written even when its value is 0, so a series exists from
 * the first scrape and rate() never starts from a missing point.
 *
 * The output goes into one buffer grown by doubling.  There is no fixed
 * size to truncate at: with 1024 slots the text is a few megabytes.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"

/* Enough for 3 slots without growing; 1024 slots double a few times. */
#define BUF_INITIAL 16384

struct buf {
	char *p;
	size_t len; /* bytes written, not counting the NUL */
	size_t cap;
	bool failed; /* an allocation failed: the document is lost */
};

static const char *const reason_names[] = SNAP_REASON_NAMES;
static const double hist_bounds[CTR_HIST_NBOUNDS] = CTR_HIST_BOUNDS;

/* Make room for need more bytes plus the NUL; false once anything failed,
 * so later writes are no-ops and the caller sees one failure at the end. */
static bool
reserve(struct buf *b, size_t need)
{
	size_t cap = b->cap ? b->cap : BUF_INITIAL;
	char *p;

	if (b->failed)
		return false;
	if (b->len + need < b->cap)
		return true;
	while (b->len + need >= cap)
		cap *= 2;
	if ((p = realloc(b->p, cap)) == NULL) {
		b->failed = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void bprintf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!reserve(b, 128))
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if ((size_t)n >= b->cap - b->len) {
		/* Rare: a line longer than the slack; grow and redo it. */
		if (!reserve(b, (size_t)n + 1))
			return;
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

/* Append n bytes as they are: the common case, with no format to parse. */
static void
bput(struct buf *b, const char *p, size_t n)
{
	if (!reserve(b, n + 1))
		return;
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

/* Append s, writing each byte found in special as a backslash escape
 * (newline as \n), copying the runs between them whole. */
static void
bput_escaped(struct buf *b, const char *s, const char *special)
{
	size_t run;

	for (;;) {
		run = strcspn(s, special);
		bput(b, s, run);
		s += run;
		if (*s == '\0')
			return;
		bput(b, *s == '\n' ? "\\n" : "\\", *s == '\n' ? 2 : 1);
		if (*s != '\n')
			bput(b, s, 1);
		s++;
	}
}

/*
 * A double the way client_golang writes one (strconv 'g', shortest
 * representation that reads back exactly), except that integral values
 * below 2^53 never take an exponent: "1763700000", not "1.7637e+09".
 * This is also the spelling of the le labels: "0.005" ... "1" ... "10".
 */
static const char *
prom_fmt_num(char dst[32], double v)
{
	int prec;

	if (isnan(v))
		return "NaN";
	if (isinf(v))
		return v > 0 ? "+Inf" : "-Inf";
	if (v == trunc(v) && fabs(v) < 9007199254740992.0) {
		snprintf(dst, 32, "%.0f", v);
		return dst;
	}
	for (prec = 1; prec < 17; prec++) {
		snprintf(dst, 32, "%.*g", prec, v);
		if (strtod(dst, NULL) == v)
			return dst;
	}
	snprintf(dst, 32, "%.17g", v);
	return dst;
}

/*
 * # HELP and # TYPE of one family named prefix+name+suffix, so generated
 * names need no temporary string.  HELP escapes backslash and newline.
 */
static void
prom_family(struct buf *b, const char *prefix, const char *name,
    const char *suffix, const char *type, const char *help)
{
	bprintf(b, "# HELP %s%s%s ", prefix, name, suffix);
	bput_escaped(b, help, "\\\n");
	bprintf(b, "\n# TYPE %s%s%s %s\n", prefix, name, suffix, type);
}

/* Only the version label comes from outside the snapshot's numbers, but
 * escaping it costs nothing and keeps the document parseable. */
static void
prom_label_value(struct buf *b, const char *v)
{
	bput_escaped(b, v, "\\\"\n");
}

static void
gauge_u64(struct buf *b, const char *name, const char *help, uint64_t v)
{
	prom_family(b, "", name, "", "gauge", help);
	bprintf(b, "%s %" PRIu64 "\n", name, v);
}

static void
prom_single_num(struct buf *b, const char *name, const char *type,
    const char *help, double v)
{
	char num[32];

	prom_family(b, "", name, "", type, help);
	bprintf(b, "%s %s\n", name, prom_fmt_num(num, v));
}

/* The supervisor-level families: what is configured and what serves. */
static void
prom_supervisor_families(struct buf *b, const struct snapshot *s)
{
	size_t i;

	prom_family(b, "", "upperd_build_info", "", "gauge",
	    "A metric with a constant '1' value labeled by the version "
	    "upperd was built from.");
	bprintf(b, "upperd_build_info{version=\"");
	prom_label_value(b, s->version ? s->version : "");
	bprintf(b, "\"} 1\n");
	prom_single_num(b, "upperd_start_time_seconds", "gauge",
	    "Start time of the supervisor since unix epoch in seconds.",
	    s->start_time);
	gauge_u64(b, "upperd_workers_configured",
	    "Worker processes configured (--workers, TTIN, TTOU).",
	    s->workers_configured);
	gauge_u64(b, "upperd_workers_running",
	    "Worker slots whose process is running.", s->workers_running);
	prom_family(b, "", "upperd_upgrades_total", "", "counter",
	    "Binary upgrades (USR2) by result; after a failed one the old "
	    "binary serves on.");
	bprintf(b, "upperd_upgrades_total{result=\"ok\"} %" PRIu64 "\n",
	    s->upgrades_ok);
	bprintf(b, "upperd_upgrades_total{result=\"failed\"} %" PRIu64 "\n",
	    s->upgrades_failed);

	/* up means "a process of this slot is serving": starting, draining,
	 * backoff and stopped are all 0, so sum() equals workers_running. */
	prom_family(b, "", "upperd_worker_up", "", "gauge",
	    "1 when the slot's worker is running and serving, else 0.");
	for (i = 0; i < s->nworkers; i++)
		bprintf(b, "upperd_worker_up{worker=\"%u\"} %d\n",
		    s->workers[i].slot, s->workers[i].state == SNAP_RUNNING);

	prom_family(b, "", "upperd_worker_restarts_total", "", "counter",
	    "Workers replaced in this slot, by reason.");
	for (i = 0; i < s->nworkers; i++) {
		const struct snap_worker *w = &s->workers[i];
		int r;

		for (r = 0; r < SNAP_NREASONS; r++)
			bprintf(b,
			    "upperd_worker_restarts_total{worker=\"%u\","
			    "reason=\"%s\"} %" PRIu64 "\n",
			    w->slot, reason_names[r], w->restarts_by_reason[r]);
	}
}

/* The generated families: one per entry of CTR_COUNTERS, in its order. */
static void
prom_counter_families(struct buf *b, const struct snapshot *s)
{
	size_t c, i;

	for (c = 0; c < CTR_COUNT; c++) {
		const struct ctr_meta *m = &ctr_meta[c];
		bool counter = m->kind == CTR_KIND_COUNTER;
		const char *sfx = counter ? "_total" : "";

		prom_family(b, "upperd_", m->name, sfx,
		    counter ? "counter" : "gauge", m->help);
		for (i = 0; i < s->nworkers; i++)
			bprintf(b, "upperd_%s%s{worker=\"%u\"} %" PRIu64 "\n",
			    m->name, sfx, s->workers[i].slot,
			    s->workers[i].v[c]);
	}
}

#define HIST "upperd_tcp_connection_duration_seconds"

/*
 * Buckets are stored per bucket and exposed cumulatively.  The +Inf bucket
 * and _count are both the sum of the buckets rather than hist.count: a
 * snapshot taken while a worker observes may see the two out of step, and
 * Prometheus expects them equal.
 */
static void
prom_histogram(struct buf *b, const struct snapshot *s)
{
	char store[CTR_HIST_NBOUNDS][32], num[32];
	const char *le[CTR_HIST_NBUCKETS];
	size_t i;
	int k;

	for (k = 0; k < CTR_HIST_NBOUNDS; k++)
		le[k] = prom_fmt_num(store[k], hist_bounds[k]);
	le[CTR_HIST_NBOUNDS] = "+Inf";
	prom_family(b, "", HIST, "", "histogram",
	    "Duration of finished TCP connections in seconds.");
	for (i = 0; i < s->nworkers; i++) {
		const struct snap_worker *w = &s->workers[i];
		uint64_t cum = 0;

		for (k = 0; k < CTR_HIST_NBUCKETS; k++) {
			cum += w->hist.bucket[k];
			bprintf(b,
			    HIST "_bucket{worker=\"%u\",le=\"%s\"} %" PRIu64
			         "\n",
			    w->slot, le[k], cum);
		}
		bprintf(b, HIST "_sum{worker=\"%u\"} %s\n", w->slot,
		    prom_fmt_num(num, (double)w->hist.sum_ns / 1e9));
		bprintf(b, HIST "_count{worker=\"%u\"} %" PRIu64 "\n", w->slot,
		    cum);
	}
}

/* What each slot's processes cost, and how long the last render took. */
static void
prom_resource_families(struct buf *b, const struct snapshot *s)
{
	char num[32];
	size_t i;

	prom_family(b, "", "upperd_worker_cpu_seconds_total", "", "counter",
	    "User and system CPU time spent by every process this slot ever "
	    "had, in seconds.");
	for (i = 0; i < s->nworkers; i++)
		bprintf(b,
		    "upperd_worker_cpu_seconds_total{worker=\"%u\"} "
		    "%s\n",
		    s->workers[i].slot,
		    prom_fmt_num(num, s->workers[i].cpu_seconds));
	prom_family(b, "", "upperd_worker_resident_memory_bytes", "", "gauge",
	    "Resident memory size of the slot's live processes in bytes.");
	for (i = 0; i < s->nworkers; i++)
		bprintf(b,
		    "upperd_worker_resident_memory_bytes{worker=\"%u\"} "
		    "%" PRIu64 "\n",
		    s->workers[i].slot, s->workers[i].rss_bytes);
	prom_single_num(b, "upperd_scrape_duration_seconds", "gauge",
	    "Time the previous /stats or /metrics render took in seconds.",
	    s->last_scrape_seconds);
}

/* The supervisor's own process_* metrics, with the HELP texts of the
 * Prometheus client libraries so dashboards built for them just work. */
static void
prom_process_families(struct buf *b, const struct snap_process *p)
{
	prom_single_num(b, "process_cpu_seconds_total", "counter",
	    "Total user and system CPU time spent in seconds.", p->cpu_seconds);
	gauge_u64(b, "process_resident_memory_bytes",
	    "Resident memory size in bytes.", p->rss_bytes);
	gauge_u64(b, "process_virtual_memory_bytes",
	    "Virtual memory size in bytes.", p->vsize_bytes);
	gauge_u64(b, "process_open_fds", "Number of open file descriptors.",
	    p->open_fds);
	gauge_u64(b, "process_max_fds",
	    "Maximum number of open file descriptors.", p->max_fds);
	prom_single_num(b, "process_start_time_seconds", "gauge",
	    "Start time of the process since unix epoch in seconds.",
	    p->start_time);
}

/* The /metrics body; see render.h. */
char *
render_prom(const struct snapshot *s, size_t *len)
{
	struct buf b = { 0 };

	prom_supervisor_families(&b, s);
	prom_counter_families(&b, s);
	prom_histogram(&b, s);
	prom_resource_families(&b, s);
	prom_process_families(&b, &s->proc);
	if (b.failed || !reserve(&b, 1)) {
		free(b.p);
		return NULL;
	}
	b.p[b.len] = '\0';
	*len = b.len;
	return b.p;
}
