/*
 * fuzz_gate.c: libFuzzer harness for the stats endpoint's request gate
 * (gate_line.c) and the routing that follows it (http_route.c).
 *
 * The input is what a client sent.  Besides "no crash, no overread", it
 * checks what gate.c relies on when it peeks again each time a segment
 * comes: a verdict on a prefix of the bytes is either GATE_MORE or the
 * verdict on the whole, so no split of the same request changes its
 * fate; a head found whole has a valid request line.  A request that
 * passes is then cut into method and target the way libmicrohttpd does,
 * its path taken (the absolute form's too) and routed; the route must be
 * the one its path and method name.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gate_line.h"
#include "http_route.h"

static void
fz_fail(const char *what, size_t k, int a, int b)
{
	fprintf(stderr, "%s: at %zu bytes verdict %d, whole %d\n", what, k, a,
	    b);
	abort();
}

/* Prefix verdicts: every cut of a short input, a spread of cuts of a
 * long one. */
static void
fz_prefixes(const char *buf, size_t n, int whole)
{
	size_t k, step = n <= 1024 ? 1 : n / 512;
	int v;

	for (k = 0; k < n; k += step) {
		v = gate_head(buf, k);
		if (v != GATE_MORE && v != whole)
			fz_fail("gate_head prefix", k, v, whole);
	}
}

/* One space-ended word from *i, NUL-terminated into a fresh string. */
static char *
fz_word(const char *buf, size_t n, size_t *i)
{
	size_t start = *i;
	char *w;

	while (*i < n && buf[*i] != ' ')
		(*i)++;
	if ((w = malloc(*i - start + 1)) == NULL)
		abort();
	memcpy(w, buf + start, *i - start);
	w[*i - start] = '\0';
	if (*i < n)
		(*i)++;
	return w;
}

/* The oracle for the absolute form: after "http://" or "https://" (any
 * case) and the authority, the path from its '/'; "/" when there is none;
 * any other target is its own path. */
static const char *
fz_path(const char *t)
{
	static const char *const schemes[] = { "http://", "https://" };
	size_t i, k, n;

	for (i = 0; i < 2; i++) {
		n = strlen(schemes[i]);
		for (k = 0; k < n; k++) {
			char c = t[k] >= 'A' && t[k] <= 'Z' ? t[k] + 32 : t[k];

			if (c != schemes[i][k])
				break;
		}
		if (k == n) {
			t += n;
			while (*t != '\0' && *t != '/')
				t++;
			return *t == '/' ? t : "/";
		}
	}
	return t;
}

/* A request the gate passed: route its method and target. */
static void
fz_route(const char *buf, size_t n)
{
	static const char *const paths[] = { "/stats", "/metrics", "/healthz",
		"/" };
	size_t i = 0, p;
	char *method, *target;
	const char *path;
	enum http_route r, want = HTTP_ROUTE_NOT_FOUND;

	while (i < n && (buf[i] == '\r' || buf[i] == '\n'))
		i++;
	method = fz_word(buf, n, &i);
	target = fz_word(buf, n, &i);
	path = http_route_path(target);
	if (strcmp(path, fz_path(target)) != 0)
		fz_fail("http_route_path", strlen(target), 0, 0);
	r = http_route(method, path);
	for (p = 0; p < sizeof(paths) / sizeof(paths[0]); p++)
		if (strcmp(path, paths[p]) == 0)
			want = (enum http_route)p;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		want = HTTP_ROUTE_METHOD;
	if (r != want)
		fz_fail("http_route", strlen(target), (int)r, (int)want);
	free(method);
	free(target);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact copy on the heap: a read past n is an ASan report. */
	char *buf = malloc(size ? size : 1);
	int head, line;

	if (buf == NULL)
		abort();
	memcpy(buf, data, size);
	head = gate_head(buf, size);
	if (head < GATE_VALID || head > GATE_HUGE)
		fz_fail("gate_head range", size, head, head);
	line = gate_check(buf, size);
	if (line < GATE_VALID || line > GATE_LONG)
		fz_fail("gate_check range", size, line, line);
	if (head == GATE_VALID && line != GATE_VALID)
		fz_fail("valid head, bad line", size, line, head);
	fz_prefixes(buf, size, head);
	if (head == GATE_VALID)
		fz_route(buf, size);
	free(buf);
	return 0;
}
