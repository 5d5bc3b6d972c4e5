/*
 * test_http_line.c: the stats endpoint's request-line check.  Every
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

#include "http_line.h"

struct line_case {
	const char *text;
	size_t len; /* the text may hold NUL bytes */
	int verdict;
};

#define LINE(text, verdict) { text, sizeof(text) - 1, verdict }

static const struct line_case cases[] = {
	LINE("GET /stats HTTP/1.1\r\nHost: x\r\n\r\n", GATE_VALID),
	LINE("GET / HTTP/1.0\n\n", GATE_VALID),
	LINE("HEAD /metrics HTTP/1.1\r\n", GATE_VALID),
	LINE("\r\nGET /healthz HTTP/1.1\r\n", GATE_VALID),
	LINE("POST /stats HTTP/1.1\r\n", GATE_VALID), /* 405 is MHD's job */
	LINE("M-SEARCH * HTTP/1.1\r\n", GATE_VALID),
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

static void
test_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = gate_check(cases[i].text, cases[i].len);

		if (got != cases[i].verdict)
			fail_msg("case %zu: got %d, want %d", i, got,
			    cases[i].verdict);
	}
}

/* Every proper prefix of a valid line waits for more; never refused. */
static void
test_prefixes_wait(void **state)
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
test_too_long(void **state)
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_prefixes_wait),
		cmocka_unit_test(test_too_long),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
