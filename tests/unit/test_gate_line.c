/*
 * test_gate_line.c: the stats endpoint's request-line check.  Every
 * well-formed line must pass (or libmicrohttpd never sees real clients),
 * every malformed one must be refused (or it gets silence instead of a
 * 400), and a line still arriving must wait, whatever the split.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gate_line.h"

struct line_case {
	const char *text;
	size_t len; /* the text may hold NUL bytes */
	int verdict;
};

#define LINE(text, verdict)                     \
	{                                       \
		text, sizeof(text) - 1, verdict \
	}

static const struct line_case cases[] = {
	LINE("GET /stats HTTP/1.1\r\nHost: x\r\n\r\n", GATE_VALID),
	LINE("GET / HTTP/1.0\n\n", GATE_VALID),
	LINE("HEAD /metrics HTTP/1.1\r\n", GATE_VALID),
	LINE("\r\nGET /healthz HTTP/1.1\r\n", GATE_VALID),
	LINE("POST /stats HTTP/1.1\r\n", GATE_VALID), /* 405 is MHD's job */
	LINE("M-SEARCH * HTTP/1.1\r\n", GATE_VALID),
	LINE("GET http://127.0.0.1:9120/metrics HTTP/1.1\r\n", GATE_VALID),
	/* a method of GATE_METHOD_MAX characters, then one too long */
	LINE("MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM / HTTP/1.1\r\n", GATE_VALID),
	LINE("MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM / HTTP/1.1\r\n", GATE_BAD),
	LINE("MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM", GATE_BAD),
	LINE("GET /stats?x=1&y=%20 HTTP/1.1\r\n", GATE_VALID),
	LINE("GARBAGE\r\n\r\n", GATE_BAD),
	LINE("GET\r\n\r\n", GATE_BAD),
	LINE("GET /\r\n", GATE_BAD),
	LINE("GET  / HTTP/1.1\r\n", GATE_BAD),
	LINE("GET / HTTP/1.1 x\r\n", GATE_BAD),
	LINE("GET / HTTP/11\r\n", GATE_BAD),
	LINE("GET / FTP/1.1\r\n", GATE_BAD),
	LINE("GE(T / HTTP/1.1\r\n", GATE_BAD),
	LINE("\x00\x01\x02\xff\r\n\r\n", GATE_BAD),
	LINE(" GET / HTTP/1.1\r\n", GATE_BAD),
	LINE("GET /a\x7f HTTP/1.1\r\n", GATE_BAD),
	LINE("GET", GATE_MORE),
	LINE("GET /st", GATE_MORE),
	LINE("GET /stats HTTP/1.", GATE_MORE),
	LINE("", GATE_MORE),
	LINE("\r\n", GATE_MORE),
};

/* Every case of a table through the function it is for. */
static void
run_table(const struct line_case *t, size_t n,
    int (*judge)(const char *, size_t), const char *what)
{
	size_t i;

	for (i = 0; i < n; i++) {
		int got = judge(t[i].text, t[i].len);

		if (got != t[i].verdict)
			fail_msg("%s %zu: got %d, want %d", what, i, got,
			    t[i].verdict);
	}
}

static void
test_request_line_verdicts(void **state)
{
	(void)state;
	run_table(cases, sizeof(cases) / sizeof(cases[0]), gate_check, "case");
}

/* Every proper prefix of a valid line waits for more; never refused. */
static void
test_request_line_prefixes_wait(void **state)
{
	const char *line = "GET /metrics HTTP/1.1\r\n";
	size_t n, end = strlen("GET /metrics HTTP/1.1\r");

	(void)state;
	for (n = 0; n < end; n++)
		assert_int_equal(gate_check(line, n), GATE_MORE);
	assert_int_equal(gate_check(line, end + 1), GATE_VALID);
}

/* A line that never ends is refused at the limit, not buffered forever. */
static void
test_endless_line_refused_at_limit(void **state)
{
	char *buf = malloc(GATE_LINE_MAX);

	(void)state;
	assert_non_null(buf);
	memset(buf, 'a', GATE_LINE_MAX);
	memcpy(buf, "GET /", 5);
	assert_int_equal(gate_check(buf, GATE_LINE_MAX - 1), GATE_MORE);
	assert_int_equal(gate_check(buf, GATE_LINE_MAX), GATE_LONG);
	free(buf);
}

/* A method that never ends is malformed (400), not a long target (414):
 * it was a 414 once the line limit ran out. */
static void
test_long_method(void **state)
{
	char *buf = malloc(10000);

	(void)state;
	assert_non_null(buf);
	memset(buf, 'G', 10000);
	assert_int_equal(gate_check(buf, GATE_METHOD_MAX), GATE_MORE);
	assert_int_equal(gate_check(buf, 10000), GATE_BAD);
	assert_int_equal(gate_head(buf, 10000), GATE_BAD);
	free(buf);
}

static const struct line_case heads[] = {
	LINE("GET /stats HTTP/1.1\r\nHost: x\r\n\r\n", GATE_VALID),
	LINE("GET / HTTP/1.0\n\n", GATE_VALID),
	LINE("GET / HTTP/1.0\r\n\r\n", GATE_VALID),
	LINE("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", GATE_VALID),
	LINE("GET / HTTP/1.1\r\nA: b\nC: d\n\r\nbody", GATE_VALID),
	LINE("POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\n", GATE_VALID),
	/* the line alone, or a head still coming, is not enough */
	LINE("GET /stats HTTP/1.1\r\n", GATE_MORE),
	LINE("GET /stats HTTP/1.1\r\nHost: x\r\n", GATE_MORE),
	LINE("GET /stats HTTP/1.1\r\nHost: x\r\n\r", GATE_MORE),
	LINE("GET /stats HTTP/1.1\r\nHost: x\r\r", GATE_MORE),
	LINE("\r\n\r\n", GATE_MORE),
	/* the line is judged first */
	LINE("GARBAGE\r\n\r\n", GATE_BAD),
	LINE("GET / HTTP/1.1 x\r\nHost: x\r\n\r\n", GATE_BAD),
};

/* A head is complete only at its empty line, whatever comes before. */
static void
test_head_complete_only_at_empty_line(void **state)
{
	(void)state;
	run_table(heads, sizeof(heads) / sizeof(heads[0]), gate_head, "head");
}

/* Every proper prefix of a complete head waits for more. */
static void
test_head_prefixes_wait(void **state)
{
	const char *head = "\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n"
	                   "Accept: */*\r\n\r\n";
	size_t n, len = strlen(head);

	(void)state;
	for (n = 0; n < len; n++)
		assert_int_equal(gate_head(head, n), GATE_MORE);
	assert_int_equal(gate_head(head, len), GATE_VALID);
}

/* A request line over the limit is a 414 even when the buffer around it
 * is larger and holds its end; a head over its limit is a 431. */
static void
test_over_limit_is_414_or_431(void **state)
{
	size_t n = GATE_HEAD_MAX + 100;
	char *buf = malloc(n);

	(void)state;
	assert_non_null(buf);
	memset(buf, 'a', n);
	memcpy(buf, "GET /", 5);
	memcpy(buf + GATE_LINE_MAX + 10, " HTTP/1.1\r\n\r\n", 13);
	assert_int_equal(gate_head(buf, GATE_LINE_MAX + 23), GATE_LONG);

	memcpy(buf, "GET / HTTP/1.1\r\n", 16);
	memset(buf + 16, 'a', n - 16);
	buf[GATE_HEAD_MAX - 5] = '\n'; /* one long header line */
	memcpy(buf + GATE_HEAD_MAX - 4, "\r\n", 2);
	assert_int_equal(gate_head(buf, GATE_HEAD_MAX - 2), GATE_VALID);
	buf[GATE_HEAD_MAX - 4] = 'a';
	buf[GATE_HEAD_MAX - 3] = 'a';
	assert_int_equal(gate_head(buf, GATE_HEAD_MAX - 1), GATE_MORE);
	assert_int_equal(gate_head(buf, GATE_HEAD_MAX), GATE_HUGE);
	buf[GATE_HEAD_MAX + 10] = '\n';
	buf[GATE_HEAD_MAX + 11] = '\n';
	assert_int_equal(gate_head(buf, n), GATE_HUGE);
	free(buf);
}

static const struct line_case tls[] = {
	LINE("\x16\x03\x01\x00\x02\x01\x00", GATE_VALID),
	LINE("\x16\x03\x03\x00\x02\x01\x00extra", GATE_VALID),
	LINE("", GATE_MORE),
	LINE("\x16", GATE_MORE),
	LINE("\x16\x03\x01\x00", GATE_MORE),
	LINE("\x16\x03\x01\x00\x02\x01", GATE_MORE),
	LINE("\x16\x03\x01\x40\x00\x01", GATE_MORE), /* 16 KiB coming */
	/* plain HTTP, an alert, SSLv2, a zero or oversized record */
	LINE("GET / HTTP/1.1\r\n\r\n", GATE_BAD),
	LINE("\x15\x03\x01\x00\x02\x02\x28", GATE_BAD),
	LINE("\x80\x2e\x01\x00\x02", GATE_BAD),
	LINE("\x16\x02", GATE_BAD),
	LINE("\x16\x03\x01\x00\x00", GATE_BAD),
	LINE("\x16\x03\x01\x40\x01", GATE_BAD),
};

/* Over HTTPS the gate waits for the first record, the ClientHello. */
static void
test_tls_table(void **state)
{
	(void)state;
	run_table(tls, sizeof(tls) / sizeof(tls[0]), gate_tls, "tls");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_line_verdicts),
		cmocka_unit_test(test_request_line_prefixes_wait),
		cmocka_unit_test(test_endless_line_refused_at_limit),
		cmocka_unit_test(test_long_method),
		cmocka_unit_test(test_head_complete_only_at_empty_line),
		cmocka_unit_test(test_head_prefixes_wait),
		cmocka_unit_test(test_over_limit_is_414_or_431),
		cmocka_unit_test(test_tls_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
