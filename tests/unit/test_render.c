/*
 * test_render.c: the /stats and /metrics renderers against golden output,
 * plus the facts a golden file cannot hold by itself: totals are the sum
 * of the slots, every Prometheus family has HELP and TYPE once and is not
 * interleaved, promtool has nothing to say, and 1024 slots fit.
 *
 * Golden files live in tests/unit/golden/, found from the current
 * directory (the repo root, as `make unit` runs it) or $UPPERD_SRCDIR.
 * After an intended change to the output, regenerate them with
 *
 *	UPPERD_UPDATE_GOLDEN=1 ./bin/test_render
 *
 * and read the diff (git diff tests/unit/golden) before committing it:
 * the golden files are the reviewed contract, not a cache.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "render.h"

#define PROMTOOL "/usr/bin/promtool"
#define BIG_SLOTS 1024

static const char *const state_names[] = SNAP_STATE_NAMES;
static const char *const reason_names[] = SNAP_REASON_NAMES;

/*
 * The fixed snapshot: slot 0 running and never restarted (last_exit
 * null), slot 1 running again after a SIGKILL and a reload, slot 2
 * removed by TTOU (stopped, no pid, counters kept).
 */
static struct snap_worker fixture_workers[3];

static void
fixture(struct snapshot *s)
{
	struct snap_worker *w = fixture_workers;
	size_t c;

	memset(s, 0, sizeof(*s));
	memset(fixture_workers, 0, sizeof(fixture_workers));
	s->version = "0.1.0";
	s->pid = 4242;
	s->now = 1763700012.75;
	s->start_time = 1763700000.25;
	s->workers_configured = 2;
	s->workers_running = 2;
	s->last_scrape_seconds = 0.000125;
	s->upgrades_ok = 2;
	s->upgrades_failed = 1;
	s->proc = (struct snap_process){ .cpu_seconds = 0.37,
		.rss_bytes = 5242880,
		.vsize_bytes = 23068672,
		.open_fds = 9,
		.max_fds = 1024,
		.start_time = 1763700000.25 };
	s->nworkers = 3;
	s->workers = w;

	w[0] = (struct snap_worker){ .slot = 0,
		.pid = 4243,
		.state = SNAP_RUNNING,
		.started_at = 1763700000.5,
		.cpu_seconds = 1.25,
		.rss_bytes = 3145728 };
	w[1] = (struct snap_worker){ .slot = 1,
		.pid = 4301,
		.state = SNAP_RUNNING,
		.started_at = 1763700009.125,
		.restarts_by_reason = { [SNAP_CRASH] = 1, [SNAP_RELOAD] = 2 },
		.cpu_seconds = 0.5,
		.rss_bytes = 2097152 };
	snprintf(w[1].last_exit, sizeof(w[1].last_exit), "signal 9");
	w[2] = (struct snap_worker){ .slot = 2,
		.pid = 0,
		.state = SNAP_STOPPED,
		.started_at = 0,
		.restarts_by_reason = { [SNAP_HUNG] = 1, [SNAP_RECYCLE] = 1 },
		.cpu_seconds = 3,
		.rss_bytes = 0 };
	snprintf(w[2].last_exit, sizeof(w[2].last_exit), "exit 0");

	/* Distinct values per slot and counter, so a swapped column shows. */
	for (c = 0; c < CTR_COUNT; c++) {
		w[0].v[c] = 1000 + c;
		w[1].v[c] = 20000 + 7 * c;
		w[2].v[c] = ctr_meta[c].kind == CTR_KIND_GAUGE ? 0 : 300 + c;
	}
	w[0].hist = (struct ctr_hist){ .bucket = { 5, 3, 0, 0, 2, 0, 0, 1, 0, 0,
		                           0, 1 },
		.count = 12,
		.sum_ns = 63123456789ULL };
	w[1].hist = (struct ctr_hist){ .bucket = { [0] = 7, [8] = 2 },
		.count = 9,
		.sum_ns = 4500000000ULL };
	w[2].hist = (struct ctr_hist){ .bucket = { [3] = 4 },
		.count = 4,
		.sum_ns = 160000000ULL };
}

/* 1024 slots with every state and large counter values. */
static struct snap_worker *
fixture_big(struct snapshot *s)
{
	struct snap_worker *w = calloc(BIG_SLOTS, sizeof(*w));
	size_t i, c;

	assert_non_null(w);
	fixture(s);
	s->workers = w;
	s->nworkers = BIG_SLOTS;
	s->workers_configured = BIG_SLOTS;
	s->workers_running = 0;
	for (i = 0; i < BIG_SLOTS; i++) {
		w[i].slot = (unsigned)i;
		w[i].state = (enum snap_state)(i % 5);
		w[i].pid = w[i].state == SNAP_STOPPED ? 0 : (pid_t)(10000 + i);
		w[i].started_at = w[i].pid ? 1763700000.5 + (double)i : 0;
		w[i].restarts_by_reason[i % SNAP_NREASONS] = i;
		if (i % 3)
			snprintf(w[i].last_exit, sizeof(w[i].last_exit),
			    i % 2 ? "signal %zu" : "exit %zu", i % 16);
		for (c = 0; c < CTR_COUNT; c++)
			w[i].v[c] = (UINT64_C(1) << 40) + i * 1000 + c;
		w[i].hist.bucket[i % CTR_HIST_NBUCKETS] = i;
		w[i].hist.count = i;
		w[i].hist.sum_ns = i * 1000000000ULL;
		w[i].cpu_seconds = (double)i / 100;
		w[i].rss_bytes = 1048576 + i;
		s->workers_running += w[i].state == SNAP_RUNNING;
	}
	return w;
}

/* ---- helpers ------------------------------------------------------- */

static char *
src_path(const char *rel)
{
	const char *dir = getenv("UPPERD_SRCDIR");
	char *p;

	if (dir == NULL || *dir == '\0')
		dir = ".";
	assert_true(asprintf(&p, "%s/%s", dir, rel) > 0);
	return p;
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p = NULL;
	size_t cap = 0, n;

	*len = 0;
	if (f == NULL)
		return NULL;
	for (;;) {
		if (*len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 65536;
			p = realloc(p, cap);
			assert_non_null(p);
		}
		n = fread(p + *len, 1, cap - *len - 1, f);
		*len += n;
		if (n == 0)
			break;
	}
	fclose(f);
	p[*len] = '\0';
	return p;
}

static void
spew(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (f == NULL)
		fail_msg("cannot write %s: %s", path, strerror(errno));
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* A temporary file holding data; the caller unlinks and frees. */
static char *
temp_file(const char *data, size_t len)
{
	const char *tmp = getenv("TMPDIR");
	char *path;
	int fd;

	assert_true(asprintf(&path, "%s/upperd-render-XXXXXX",
	                tmp && *tmp ? tmp : "/tmp") > 0);
	fd = mkstemp(path);
	if (fd == -1)
		fail_msg("mkstemp %s: %s", path, strerror(errno));
	close(fd);
	spew(path, data, len);
	return path;
}

/* Run argv with stdin from in_path (or /dev/null) and stdout+stderr into
 * a malloc'd string; returns the exit status, -1 when it did not exit. */
static int
run(char *const argv[], const char *in_path, char **out)
{
	int pfd[2], st, in;
	size_t len = 0, cap = 4096;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid != -1);
	if (pid == 0) {
		in = open(in_path ? in_path : "/dev/null", O_RDONLY);
		if (in == -1 || dup2(in, 0) == -1 || dup2(pfd[1], 1) == -1 ||
		    dup2(pfd[1], 2) == -1)
			_exit(126);
		close(pfd[0]);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	*out = malloc(cap);
	assert_non_null(*out);
	while ((n = read(pfd[0], *out + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (cap - len < 2) {
			*out = realloc(*out, cap *= 2);
			assert_non_null(*out);
		}
	}
	(*out)[len] = '\0';
	close(pfd[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/*
 * Compare got with the golden file rel.  On a mismatch the actual output
 * is kept in a temporary file and `diff -u` is shown, so the failure says
 * what changed and how to accept it.
 */
static void
golden(const char *rel, const char *got, size_t len)
{
	char *path = src_path(rel), *want, *actual, *diff;
	const char *upd = getenv("UPPERD_UPDATE_GOLDEN");
	size_t wlen;

	if (upd != NULL && strcmp(upd, "1") == 0) {
		spew(path, got, len);
		print_message("updated %s: review it before committing\n",
		    path);
		free(path);
		return;
	}
	want = slurp(path, &wlen);
	if (want == NULL)
		fail_msg("cannot read %s: %s (run from the repo root, set "
		         "UPPERD_SRCDIR, or create it with "
		         "UPPERD_UPDATE_GOLDEN=1)",
		    path, strerror(errno));
	if (wlen != len || memcmp(want, got, len) != 0) {
		actual = temp_file(got, len);
		char *argv[] = { "/usr/bin/diff", "-u", path, actual, NULL };

		run(argv, NULL, &diff);
		print_error(
		    "%s differs from the rendered output:\n%s\n"
		    "actual output kept in %s; if the change is intended, "
		    "rerun with UPPERD_UPDATE_GOLDEN=1 and review the diff\n",
		    path, diff, actual);
		free(diff);
		free(actual);
		free(want);
		free(path);
		fail();
	}
	free(want);
	free(path);
}

/* promtool's verdict: it must exit 0 and print nothing (no lint). */
static void
promtool_clean(const char *text, size_t len)
{
	char *argv[] = { PROMTOOL, "check", "metrics", NULL };
	char *in, *out;
	int rc;

	/* make test installs it (prometheus, the Makefile's DEB_TEST): a
	 * missing promtool is a failure, never a silent pass */
	if (access(PROMTOOL, X_OK) != 0)
		fail_msg("%s missing: install the Debian package prometheus "
		         "(make test does)",
		    PROMTOOL);
	in = temp_file(text, len);
	rc = run(argv, in, &out);
	unlink(in);
	free(in);
	if (rc != 0 || out[0] != '\0')
		fail_msg("promtool check metrics: exit %d, said:\n%s", rc, out);
	free(out);
}

static json_t *
parse(const char *text)
{
	json_error_t e;
	json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, &e);

	if (doc == NULL)
		fail_msg("JSON line %d: %s", e.line, e.text);
	return doc;
}

static json_int_t
int_at(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v))
		fail_msg("\"%s\" is not an integer", key);
	return json_integer_value(v);
}

/* ---- JSON ------------------------------------------------------------ */

static void
test_json_golden(void **state)
{
	struct snapshot s;
	size_t len;
	char *out;

	(void)state;
	fixture(&s);
	out = render_json(&s, &len);
	assert_non_null(out);
	assert_int_equal(strlen(out), len);
	golden("tests/unit/golden/stats.json", out, len);
	free(out);
}

/* A histogram object: cumulative buckets, +Inf == count. */
static void
check_hist(json_t *h)
{
	json_t *b = json_object_get(h, "buckets"), *v;
	json_int_t prev = 0;
	const char *k;

	assert_true(json_is_object(b));
	assert_int_equal(json_object_size(b), CTR_HIST_NBUCKETS);
	json_object_foreach(b, k, v)
	{
		assert_true(json_is_integer(v));
		assert_true(json_integer_value(v) >= prev);
		prev = json_integer_value(v);
	}
	assert_int_equal(prev, int_at(b, "+Inf"));
	assert_int_equal(prev, int_at(h, "count"));
	assert_true(json_is_number(json_object_get(h, "sum")));
}

static void
check_worker(json_t *w, size_t nth)
{
	json_t *pid = json_object_get(w, "pid"), *rbr, *le, *v;
	const char *state = json_string_value(json_object_get(w, "state"));
	json_int_t sum = 0;
	const char *k;
	char again[32];
	int n, i, known = 0;

	assert_int_equal(int_at(w, "slot"), nth);
	assert_true(json_is_null(pid) || json_integer_value(pid) > 0);
	assert_non_null(state);
	for (i = 0; i < 5; i++)
		known |= strcmp(state, state_names[i]) == 0;
	assert_true(known);
	rbr = json_object_get(w, "restarts_by_reason");
	assert_int_equal(json_object_size(rbr), SNAP_NREASONS);
	for (i = 0; i < SNAP_NREASONS; i++)
		sum += int_at(rbr, reason_names[i]);
	assert_int_equal(sum, int_at(w, "restarts"));
	/* exactly "signal N" or "exit N", or null */
	le = json_object_get(w, "last_exit");
	if (!json_is_null(le)) {
		assert_true(json_is_string(le));
		k = json_string_value(le);
		if (sscanf(k, "signal %d", &n) == 1)
			snprintf(again, sizeof(again), "signal %d", n);
		else if (sscanf(k, "exit %d", &n) == 1)
			snprintf(again, sizeof(again), "exit %d", n);
		else
			fail_msg("last_exit \"%s\"", k);
		assert_string_equal(k, again);
	}
	v = json_object_get(w, "started_at");
	assert_true(json_is_null(v) || json_is_real(v));
	check_hist(json_object_get(w, "tcp_connection_duration_seconds"));
}

/* totals[k] == sum of workers[*][k] for every counter and the extras. */
static void
check_totals(json_t *doc)
{
	json_t *tot = json_object_get(doc, "totals");
	json_t *ws = json_object_get(doc, "workers"), *w, *th;
	json_int_t sum, restarts = 0;
	size_t c, i;

	assert_true(json_is_object(tot));
	for (c = 0; c < CTR_COUNT; c++) {
		sum = 0;
		json_array_foreach(ws, i, w) sum += int_at(w, ctr_meta[c].name);
		assert_int_equal(sum, int_at(tot, ctr_meta[c].name));
	}
	sum = 0;
	json_array_foreach(ws, i, w)
	{
		restarts += int_at(w, "restarts");
		sum += int_at(json_object_get(w,
		                  "tcp_connection_duration_seconds"),
		    "count");
	}
	assert_int_equal(restarts, int_at(doc, "worker_restarts"));
	th = json_object_get(tot, "tcp_connection_duration_seconds");
	check_hist(th);
	assert_int_equal(sum, int_at(th, "count"));
}

static void
check_document(json_t *doc, size_t nworkers)
{
	json_t *ws = json_object_get(doc, "workers"), *w;
	size_t i;

	assert_string_equal(json_string_value(json_object_get(doc, "version")),
	    "0.1.0");
	assert_true(json_is_number(json_object_get(doc, "uptime_seconds")));
	assert_true(json_is_object(json_object_get(doc, "process")));
	assert_true(json_is_array(ws));
	assert_int_equal(json_array_size(ws), nworkers);
	json_array_foreach(ws, i, w) check_worker(w, i);
	check_totals(doc);
}

static void
test_json_slots_totals_and_nulls(void **state)
{
	struct snapshot s;
	json_t *doc, *ws, *pid;
	size_t len;
	char *out;

	(void)state;
	fixture(&s);
	out = render_json(&s, &len);
	assert_non_null(out);
	doc = parse(out);
	check_document(doc, 3);
	assert_int_equal(int_at(doc, "worker_restarts"), 5);
	assert_true(
	    json_real_value(json_object_get(doc, "uptime_seconds")) == 12.5);
	ws = json_object_get(doc, "workers");
	/* pid null iff no process; last_exit null iff nothing ever ended */
	pid = json_object_get(json_array_get(ws, 2), "pid");
	assert_true(json_is_null(pid));
	assert_int_equal(int_at(json_array_get(ws, 0), "pid"), 4243);
	assert_true(
	    json_is_null(json_object_get(json_array_get(ws, 0), "last_exit")));
	assert_string_equal(json_string_value(
	                        json_object_get(json_array_get(ws, 1),
	                            "last_exit")),
	    "signal 9");
	assert_true(
	    json_is_null(json_object_get(json_array_get(ws, 2), "started_at")));
	assert_string_equal(json_string_value(
	                        json_object_get(json_array_get(ws, 2),
	                            "state")),
	    "stopped");
	json_decref(doc);
	free(out);
}

/* NaN or infinite doubles become null (jansson cannot write them), and
 * a counter past INT64_MAX is clamped, not wrapped negative. */
static void
test_json_nan_null_and_counter_clamped(void **state)
{
	struct snapshot s;
	json_t *doc, *w;
	size_t len;
	char *out;

	(void)state;
	fixture(&s);
	fixture_workers[0].cpu_seconds = NAN;
	s.proc.start_time = INFINITY;
	fixture_workers[0].v[CTR_tcp_bytes_sent] = UINT64_MAX;
	out = render_json(&s, &len);
	assert_non_null(out);
	doc = parse(out);
	w = json_array_get(json_object_get(doc, "workers"), 0);
	assert_true(json_is_null(json_object_get(w, "cpu_seconds")));
	assert_int_equal(int_at(w, "tcp_bytes_sent"), INT64_MAX);
	assert_true(
	    json_is_null(json_object_get(json_object_get(doc, "process"),
	        "start_time_seconds")));
	json_decref(doc);
	free(out);
}

/* ---- Prometheus ------------------------------------------------------ */

static void
test_prom_golden(void **state)
{
	struct snapshot s;
	size_t len;
	char *out;

	(void)state;
	fixture(&s);
	out = render_prom(&s, &len);
	assert_non_null(out);
	assert_int_equal(strlen(out), len);
	golden("tests/unit/golden/metrics.prom", out, len);
	free(out);
}

/* ---- status page ----------------------------------------------------- */

static void
test_html_golden(void **state)
{
	struct snapshot s;
	size_t len;
	char *out;

	(void)state;
	fixture(&s);
	out = render_html(&s, &len);
	assert_non_null(out);
	assert_int_equal(strlen(out), len);
	golden("tests/unit/golden/status.html", out, len);
	free(out);
}

/* A text browser sees every slot's row with its pid and state. */
static void
test_html_row_per_slot_with_pid_and_state(void **state)
{
	struct snapshot s;
	char want[96];
	size_t i, len;
	char *out;

	(void)state;
	fixture(&s);
	out = render_html(&s, &len);
	assert_non_null(out);
	for (i = 0; i < s.nworkers; i++) {
		snprintf(want, sizeof(want),
		    "<tr data-slot=\"%u\" class=\"%s\">", s.workers[i].slot,
		    state_names[s.workers[i].state]);
		assert_non_null(strstr(out, want));
		if (s.workers[i].pid) {
			snprintf(want, sizeof(want),
			    "<td class=\"pid\">%d</td>", (int)s.workers[i].pid);
			assert_non_null(strstr(out, want));
		}
	}
	assert_null(strstr(out, "http://"));
	assert_null(strstr(out, "https://"));
	free(out);
}

#define MAX_FAMILIES 64

struct families {
	char name[MAX_FAMILIES][128];
	char type[MAX_FAMILIES][16];
	size_t n;
	size_t samples;
};

static bool
has_suffix(const char *s, size_t n, const char *sfx)
{
	size_t k = strlen(sfx);

	return n >= k && memcmp(s + n - k, sfx, k) == 0;
}

/*
 * Walk the exposition: every sample must belong to the family whose HELP
 * and TYPE came last (so families are not interleaved), no family may be
 * announced twice, and HELP must be followed by its TYPE.
 */
static void
check_families(const char *text, struct families *f)
{
	const char *line = text, *nl;
	char name[128], type[16];
	size_t i, n;

	memset(f, 0, sizeof(*f));
	for (; *line != '\0'; line = nl + 1) {
		nl = strchr(line, '\n');
		assert_non_null(nl);
		if (strncmp(line, "# HELP ", 7) == 0) {
			assert_int_equal(sscanf(line, "# HELP %127s", name), 1);
			for (i = 0; i < f->n; i++)
				if (strcmp(f->name[i], name) == 0)
					fail_msg("family %s announced twice",
					    name);
			assert_true(f->n < MAX_FAMILIES);
			line = nl + 1;
			nl = strchr(line, '\n');
			assert_non_null(nl);
			if (sscanf(line, "# TYPE %127s %15s", f->name[f->n],
			        type) != 2 ||
			    strcmp(f->name[f->n], name) != 0)
				fail_msg("HELP %s not followed by its TYPE",
				    name);
			snprintf(f->type[f->n++], 16, "%s", type);
			continue;
		}
		assert_true(line[0] != '#');
		assert_true(f->n > 0);
		n = strcspn(line, "{ ");
		if (strcmp(f->type[f->n - 1], "histogram") == 0) {
			if (has_suffix(line, n, "_bucket"))
				n -= 7;
			else if (has_suffix(line, n, "_count"))
				n -= 6;
			else if (has_suffix(line, n, "_sum"))
				n -= 4;
		}
		if (strlen(f->name[f->n - 1]) != n ||
		    strncmp(line, f->name[f->n - 1], n) != 0)
			fail_msg("sample outside its family %s: %.*s",
			    f->name[f->n - 1], (int)(nl - line), line);
		f->samples++;
	}
}

static bool
has_family(const struct families *f, const char *name, const char *type)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		if (strcmp(f->name[i], name) == 0)
			return strcmp(f->type[i], type) == 0;
	return false;
}

static void
test_prom_families(void **state)
{
	static const char *const fixed[][2] = {
		{ "upperd_worker_restarts_total", "counter" },
		{ "upperd_worker_up", "gauge" },
		{ "upperd_workers_configured", "gauge" },
		{ "upperd_workers_running", "gauge" },
		{ "upperd_build_info", "gauge" },
		{ "upperd_start_time_seconds", "gauge" },
		{ "upperd_upgrades_total", "counter" },
		{ "upperd_worker_cpu_seconds_total", "counter" },
		{ "upperd_worker_resident_memory_bytes", "gauge" },
		{ "upperd_tcp_connection_duration_seconds", "histogram" },
		{ "upperd_scrape_duration_seconds", "gauge" },
		{ "process_cpu_seconds_total", "counter" },
		{ "process_resident_memory_bytes", "gauge" },
		{ "process_virtual_memory_bytes", "gauge" },
		{ "process_open_fds", "gauge" },
		{ "process_max_fds", "gauge" },
		{ "process_start_time_seconds", "gauge" },
	};
	struct families f;
	struct snapshot s;
	char name[128];
	size_t len, i;
	char *out;

	(void)state;
	fixture(&s);
	out = render_prom(&s, &len);
	assert_non_null(out);
	check_families(out, &f);
	for (i = 0; i < CTR_COUNT; i++) {
		bool gauge = ctr_meta[i].kind == CTR_KIND_GAUGE;

		snprintf(name, sizeof(name), "upperd_%s%s", ctr_meta[i].name,
		    gauge ? "" : "_total");
		if (!has_family(&f, name, gauge ? "gauge" : "counter"))
			fail_msg("family %s missing or mistyped", name);
	}
	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (!has_family(&f, fixed[i][0], fixed[i][1]))
			fail_msg("family %s missing or mistyped", fixed[i][0]);
	assert_int_equal(f.n, CTR_COUNT + sizeof(fixed) / sizeof(fixed[0]));
	/* every (worker, reason) pair from the start, zeros included */
	assert_non_null(strstr(out,
	    "upperd_worker_restarts_total{worker=\"0\","
	    "reason=\"hung\"} 0\n"));
	assert_non_null(strstr(out, "upperd_worker_up{worker=\"2\"} 0\n"));
	free(out);
}

/* The JSON bucket keys are exactly the le labels of /metrics. */
static void
test_bucket_keys_match_le(void **state)
{
	struct snapshot s;
	json_t *doc, *b, *v;
	size_t jl, pl;
	char *js, *pm, want[128];
	const char *k;

	(void)state;
	fixture(&s);
	js = render_json(&s, &jl);
	pm = render_prom(&s, &pl);
	assert_non_null(js);
	assert_non_null(pm);
	doc = parse(js);
	b = json_object_get(json_object_get(json_array_get(json_object_get(doc,
	                                                       "workers"),
	                                        0),
	                        "tcp_connection_duration_seconds"),
	    "buckets");
	json_object_foreach(b, k, v)
	{
		snprintf(want, sizeof(want),
		    "{worker=\"0\",le=\"%s\"} %" JSON_INTEGER_FORMAT "\n", k,
		    json_integer_value(v));
		if (strstr(pm, want) == NULL)
			fail_msg("no bucket %s in /metrics", want);
	}
	json_decref(doc);
	free(js);
	free(pm);
}

static void
test_prom_passes_promtool_check(void **state)
{
	struct snapshot s;
	size_t len;
	char *out;

	(void)state;
	fixture(&s);
	out = render_prom(&s, &len);
	assert_non_null(out);
	promtool_clean(out, len);
	free(out);
}

/* Before the first spawn there may be no slot at all. */
static void
test_renders_with_no_worker_slot(void **state)
{
	struct snapshot s;
	struct families f;
	size_t len;
	char *out;
	json_t *doc;

	(void)state;
	fixture(&s);
	s.nworkers = 0;
	s.workers = NULL;
	s.workers_running = 0;
	out = render_prom(&s, &len);
	assert_non_null(out);
	check_families(out, &f);
	promtool_clean(out, len);
	free(out);
	out = render_json(&s, &len);
	assert_non_null(out);
	doc = parse(out);
	check_document(doc, 0);
	json_decref(doc);
	free(out);
}

/* ---- scale ----------------------------------------------------------- */

static size_t
count_prefix(const char *text, const char *prefix)
{
	size_t n = 0, k = strlen(prefix);
	const char *p;

	for (p = text; p != NULL && *p != '\0'; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		n += strncmp(p, prefix, k) == 0;
	}
	return n;
}

static void
test_1024_slots_render_whole(void **state)
{
	struct snap_worker *w;
	struct snapshot s;
	struct families f;
	size_t len, per_slot;
	char *out, *last, want[128];
	json_t *doc;

	(void)state;
	w = fixture_big(&s);
	snprintf(want, sizeof(want),
	    "upperd_tcp_bytes_sent_total{worker="
	    "\"1023\"} %" PRIu64 "\n",
	    w[1023].v[CTR_tcp_bytes_sent]);

	out = render_prom(&s, &len);
	assert_non_null(out);
	assert_int_equal(strlen(out), len);
	check_families(out, &f);
	/* counters + restarts + up + histogram + cpu + rss, per slot */
	per_slot = CTR_COUNT + SNAP_NREASONS + 1 + (CTR_HIST_NBUCKETS + 2) + 2;
	/* + supervisor gauges, scrape duration, process_*, upgrades */
	assert_int_equal(f.samples, per_slot * BIG_SLOTS + 4 + 1 + 6 + 2);
	assert_int_equal(count_prefix(out, "upperd_udp_errors_total{"),
	    BIG_SLOTS);
	assert_non_null(strstr(out, want));
	last = strrchr(out, '\n');
	assert_true(last != NULL && last[1] == '\0');
	assert_non_null(strstr(out, "\nprocess_start_time_seconds "));
	promtool_clean(out, len);
	free(out);

	out = render_json(&s, &len);
	assert_non_null(out);
	assert_int_equal(strlen(out), len);
	doc = parse(out);
	check_document(doc, BIG_SLOTS);
	json_decref(doc);
	free(out);
	free(w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_golden),
		cmocka_unit_test(test_json_slots_totals_and_nulls),
		cmocka_unit_test(test_json_nan_null_and_counter_clamped),
		cmocka_unit_test(test_prom_golden),
		cmocka_unit_test(test_prom_families),
		cmocka_unit_test(test_bucket_keys_match_le),
		cmocka_unit_test(test_prom_passes_promtool_check),
		cmocka_unit_test(test_renders_with_no_worker_slot),
		cmocka_unit_test(test_1024_slots_render_whole),
		cmocka_unit_test(test_html_golden),
		cmocka_unit_test(test_html_row_per_slot_with_pid_and_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
