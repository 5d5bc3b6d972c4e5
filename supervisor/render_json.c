/*
 * render_json.c: the /stats document, built with jansson from a snapshot
 * and nothing else.  It owns the document's shape and key order: the
 * SPEC's keys first, in the SPEC's order, then what mirrors /metrics
 * (process, scrape time), with the long workers array last so a human
 * reading `curl /stats` sees the summary first.
 *
 * Counter keys come only from ctr_meta, in CTR_COUNTERS order.  Integers
 * are JSON integers; times and CPU are reals printed with 15 significant
 * digits, so 0.37 reads "0.37" and not "0.37000000000000000".  The text is
 * indented by two: the document is for people and scripts, and /metrics is
 * the compact machine path.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "render.h"

#define JSON_FLAGS \
	(JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

static const char *const state_names[] = SNAP_STATE_NAMES;
static const char *const reason_names[] = SNAP_REASON_NAMES;
static const char *const sup_state_names[] = SNAP_SUP_STATE_NAMES;
static const double hist_bounds[CTR_HIST_NBOUNDS] = CTR_HIST_BOUNDS;

/* Sums over every slot, for "totals". */
struct totals {
	uint64_t v[CTR_COUNT];
	struct ctr_hist hist;
	double cpu_seconds;
	uint64_t rss_bytes;
};

/* jansson's integers are signed; a counter past INT64_MAX would take
 * centuries, but clamping beats an implementation-defined conversion. */
static json_t *
jint(uint64_t v)
{
	return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
}

/* json_real() refuses NaN and infinities; null says "unknown" instead. */
static json_t *
jreal(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

/* Setting a NULL value fails, so callers can OR the results together and
 * check an allocation failure once. */
static int
rjson_put(json_t *o, const char *key, json_t *v)
{
	return json_object_set_new(o, key, v);
}

static const char *
rjson_state_name(enum snap_state st)
{
	if ((size_t)st >= sizeof(state_names) / sizeof(state_names[0]))
		return "unknown";
	return state_names[st];
}

/*
 * The le spelling of client_golang ("0.005", "1", "10"), the same as
 * render_prom.c's fmt_num, so a bucket key here is the le label there;
 * the unit test holds the two together.  Integral values first: the
 * shortest %g of 10 is "1e+01".
 */
static void
rjson_fmt_bound(char dst[32], double v)
{
	int prec;

	if (v == trunc(v) && fabs(v) < 9007199254740992.0) {
		snprintf(dst, 32, "%.0f", v);
		return;
	}
	for (prec = 1; prec < 17; prec++) {
		snprintf(dst, 32, "%.*g", prec, v);
		if (strtod(dst, NULL) == v)
			return;
	}
	snprintf(dst, 32, "%.17g", v);
}

/* Cumulative buckets like Prometheus's; +Inf and count are both the sum of
 * the buckets, so they agree even when the snapshot caught an observation
 * half-written. */
static json_t *
rjson_histogram(const struct ctr_hist *h)
{
	json_t *o = json_object(), *buckets = json_object();
	char key[32];
	uint64_t cum = 0;
	int err = 0, k;

	if (o == NULL || buckets == NULL) {
		json_decref(o);
		json_decref(buckets);
		return NULL;
	}
	for (k = 0; k < CTR_HIST_NBUCKETS; k++) {
		cum += h->bucket[k];
		if (k < CTR_HIST_NBOUNDS)
			rjson_fmt_bound(key, hist_bounds[k]);
		else
			snprintf(key, sizeof(key), "+Inf");
		err |= rjson_put(buckets, key, jint(cum));
	}
	err |= rjson_put(o, "buckets", buckets);
	err |= rjson_put(o, "sum", jreal((double)h->sum_ns / 1e9));
	err |= rjson_put(o, "count", jint(cum));
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Every counter of v as a key of o, named by ctr_meta only. */
static int
rjson_put_counters(json_t *o, const uint64_t v[CTR_COUNT])
{
	int err = 0;
	size_t c;

	for (c = 0; c < CTR_COUNT; c++)
		err |= rjson_put(o, ctr_meta[c].name, jint(v[c]));
	return err;
}

static json_t *
rjson_reasons(const struct snap_worker *w)
{
	json_t *o = json_object();
	int err = 0, r;

	if (o == NULL)
		return NULL;
	for (r = 0; r < SNAP_NREASONS; r++)
		err |= rjson_put(o, reason_names[r],
		    jint(w->restarts_by_reason[r]));
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* last_exit is a fixed array filled by snprintf; strnlen guards against a
 * writer that ever forgets the NUL. */
static json_t *
rjson_last_exit(const struct snap_worker *w)
{
	size_t n = strnlen(w->last_exit, sizeof(w->last_exit));

	return n == 0 ? json_null() : json_stringn(w->last_exit, n);
}

static json_t *
rjson_worker(const struct snap_worker *w)
{
	json_t *o = json_object();
	int err = 0;

	if (o == NULL)
		return NULL;
	err |= rjson_put(o, "slot", json_integer(w->slot));
	err |= rjson_put(o, "pid",
	    w->pid > 0 ? json_integer(w->pid) : json_null());
	err |= rjson_put(o, "state", json_string(rjson_state_name(w->state)));
	err |= rjson_put(o, "restarts", jint(snap_restarts(w)));
	err |= rjson_put(o, "started_at",
	    w->started_at > 0 ? jreal(w->started_at) : json_null());
	err |= rjson_put(o, "restarts_by_reason", rjson_reasons(w));
	err |= rjson_put(o, "last_exit", rjson_last_exit(w));
	err |= rjson_put_counters(o, w->v);
	err |= rjson_put(o, "cpu_seconds", jreal(w->cpu_seconds));
	err |= rjson_put(o, "resident_memory_bytes", jint(w->rss_bytes));
	err |= rjson_put(o, "tcp_connection_duration_seconds",
	    rjson_histogram(&w->hist));
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static void
rjson_sum_slots(const struct snapshot *s, struct totals *t)
{
	size_t i;
	int k;

	memset(t, 0, sizeof(*t));
	for (i = 0; i < s->nworkers; i++) {
		const struct snap_worker *w = &s->workers[i];

		for (k = 0; k < CTR_COUNT; k++)
			t->v[k] += w->v[k];
		for (k = 0; k < CTR_HIST_NBUCKETS; k++)
			t->hist.bucket[k] += w->hist.bucket[k];
		t->hist.count += w->hist.count;
		t->hist.sum_ns += w->hist.sum_ns;
		t->cpu_seconds += w->cpu_seconds;
		t->rss_bytes += w->rss_bytes;
	}
}

static json_t *
rjson_totals(const struct snapshot *s)
{
	struct totals t;
	json_t *o = json_object();
	int err = 0;

	if (o == NULL)
		return NULL;
	rjson_sum_slots(s, &t);
	err |= rjson_put_counters(o, t.v);
	err |= rjson_put(o, "cpu_seconds", jreal(t.cpu_seconds));
	err |= rjson_put(o, "resident_memory_bytes", jint(t.rss_bytes));
	err |= rjson_put(o, "tcp_connection_duration_seconds",
	    rjson_histogram(&t.hist));
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *
rjson_workers(const struct snapshot *s)
{
	json_t *a = json_array();
	size_t i;

	if (a == NULL)
		return NULL;
	for (i = 0; i < s->nworkers; i++)
		if (json_array_append_new(a, rjson_worker(&s->workers[i])) ==
		    -1) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *
rjson_process(const struct snap_process *p)
{
	json_t *o = json_object();
	int err = 0;

	if (o == NULL)
		return NULL;
	err |= rjson_put(o, "cpu_seconds", jreal(p->cpu_seconds));
	err |= rjson_put(o, "resident_memory_bytes", jint(p->rss_bytes));
	err |= rjson_put(o, "virtual_memory_bytes", jint(p->vsize_bytes));
	err |= rjson_put(o, "open_fds", jint(p->open_fds));
	err |= rjson_put(o, "max_fds", jint(p->max_fds));
	err |= rjson_put(o, "start_time_seconds", jreal(p->start_time));
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Binary upgrades (USR2) by result; a failed one left the old binary
 * serving. */
static json_t *
rjson_upgrades(const struct snapshot *s)
{
	json_t *o = json_object();

	if (o == NULL || rjson_put(o, "ok", jint(s->upgrades_ok)) ||
	    rjson_put(o, "failed", jint(s->upgrades_failed))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/*
 * Uptime is a difference of two epoch doubles, whose last bits are noise:
 * rounded to the millisecond it prints as "12.5", not "12.5000002384186".
 * start_time_seconds (not in the SPEC's example) lets the status page turn
 * a worker's started_at into an uptime on the server's clock.
 */
static json_t *
rjson_document(const struct snapshot *s)
{
	json_t *o = json_object();
	double up = s->now - s->start_time;
	uint64_t restarts = 0;
	size_t i;
	int err = 0;

	if (o == NULL)
		return NULL;
	for (i = 0; i < s->nworkers; i++)
		restarts += snap_restarts(&s->workers[i]);
	up = up > 0 ? round(up * 1000) / 1000 : 0;
	err |= rjson_put(o, "version",
	    json_string(s->version ? s->version : ""));
	err |= rjson_put(o, "pid", json_integer(s->pid));
	err |= rjson_put(o, "state",
	    json_string((size_t)s->state <
	                sizeof(sup_state_names) / sizeof(sup_state_names[0]) ?
	            sup_state_names[s->state] :
	            "unknown"));
	err |= rjson_put(o, "uptime_seconds", jreal(up));
	err |= rjson_put(o, "start_time_seconds", jreal(s->start_time));
	err |= rjson_put(o, "workers_configured",
	    json_integer(s->workers_configured));
	err |= rjson_put(o, "workers_running",
	    json_integer(s->workers_running));
	err |= rjson_put(o, "worker_restarts", jint(restarts));
	err |= rjson_put(o, "upgrades", rjson_upgrades(s));
	err |= rjson_put(o, "totals", rjson_totals(s));
	err |= rjson_put(o, "process", rjson_process(&s->proc));
	err |= rjson_put(o, "scrape_duration_seconds",
	    jreal(s->last_scrape_seconds));
	err |= rjson_put(o, "workers", rjson_workers(s));
	if (err) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* A growable buffer for json_dump_callback: one pass, plain malloc (the
 * caller frees with free() whatever allocator jansson was given). */
struct out {
	char *p;
	size_t len, cap;
};

static int
rjson_append(const char *data, size_t n, void *arg)
{
	struct out *o = arg;
	size_t cap = o->cap ? o->cap : 16384;
	char *p;

	if (o->len + n + 2 > o->cap) {
		while (o->len + n + 2 > cap)
			cap *= 2;
		if ((p = realloc(o->p, cap)) == NULL)
			return -1;
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, data, n);
	o->len += n;
	return 0;
}

/* The /stats body; see render.h.  It ends in a newline, for curl. */
char *
render_json(const struct snapshot *s, size_t *len)
{
	struct out out = { 0 };
	json_t *doc = rjson_document(s);
	int rc;

	if (doc == NULL)
		return NULL;
	rc = json_dump_callback(doc, rjson_append, &out, JSON_FLAGS);
	json_decref(doc);
	if (rc == -1 || out.p == NULL) {
		free(out.p);
		return NULL;
	}
	/* rjson_append() always leaves room for these two bytes. */
	out.p[out.len++] = '\n';
	out.p[out.len] = '\0';
	*len = out.len;
	return out.p;
}
