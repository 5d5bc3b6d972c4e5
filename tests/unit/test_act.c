/*
 * test_act.c: act_classify (supervisor/act_classify.c), which service each
 * socket that systemd passed serves: names, types, families, listening,
 * the one stats socket and the per-kind limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "activation.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const struct {
	struct act_sock s;
	enum act_kind want;
	const char *why; /* part of the reason, for ACT_BAD */
} one[] = {
	{ { "tcp", SOCK_STREAM, AF_INET, 1 }, ACT_TCP, NULL },
	{ { "udp", SOCK_DGRAM, AF_INET6, 0 }, ACT_UDP, NULL },
	{ { "stats", SOCK_STREAM, AF_INET6, 1 }, ACT_STATS, NULL },
	{ { NULL, SOCK_STREAM, AF_INET6, 1 }, ACT_TCP, NULL },
	{ { "", SOCK_DGRAM, AF_INET, 0 }, ACT_UDP, NULL },
	{ { "web", SOCK_STREAM, AF_INET, 1 }, ACT_TCP, NULL },
	{ { "Stats", SOCK_DGRAM, AF_INET, 0 }, ACT_UDP, NULL },
	{ { "tcp", SOCK_DGRAM, AF_INET, 0 }, ACT_BAD, "named tcp" },
	{ { "stats", SOCK_DGRAM, AF_INET, 0 }, ACT_BAD, "named stats" },
	{ { "udp", SOCK_STREAM, AF_INET, 1 }, ACT_BAD, "named udp" },
	{ { "tcp", SOCK_STREAM, AF_INET, 0 }, ACT_BAD, "not listening" },
	{ { NULL, SOCK_STREAM, AF_UNIX, 1 }, ACT_BAD, "IPv4 or IPv6" },
	{ { "udp", SOCK_DGRAM, AF_UNSPEC, 0 }, ACT_BAD, "IPv4 or IPv6" },
	{ { NULL, SOCK_SEQPACKET, AF_INET, 1 }, ACT_BAD, "neither" },
	{ { NULL, -1, AF_INET, 0 }, ACT_BAD, "neither" },
};

static void
test_one_socket(void **state)
{
	enum act_kind k;
	const char *why;
	size_t i;

	(void)state;
	for (i = 0; i < NELEM(one); i++) {
		act_classify(&one[i].s, 1, &k, &why);
		if (k != one[i].want)
			fail_msg("case %zu: kind %d, want %d", i, k,
			    one[i].want);
		if (one[i].why == NULL) {
			assert_null(why);
			continue;
		}
		assert_non_null(why);
		if (strstr(why, one[i].why) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, why,
			    one[i].why);
	}
}

/* One stats socket; at most CFG_MAX_ADDRS of TCP (and of UDP); a bad
 * socket takes no room. */
static void
test_limits(void **state)
{
	struct act_sock in[2 * CFG_MAX_ADDRS + 4];
	enum act_kind k[NELEM(in)];
	const char *why[NELEM(in)];
	unsigned i, n = 0;

	(void)state;
	in[n++] = (struct act_sock){ "stats", SOCK_STREAM, AF_INET, 1 };
	in[n++] = (struct act_sock){ "tcp", SOCK_STREAM, AF_UNIX, 1 };
	for (i = 0; i < CFG_MAX_ADDRS + 1; i++)
		in[n++] = (struct act_sock){ NULL, SOCK_STREAM, AF_INET, 1 };
	in[n++] = (struct act_sock){ "stats", SOCK_STREAM, AF_INET6, 1 };
	in[n++] = (struct act_sock){ "udp", SOCK_DGRAM, AF_INET, 0 };
	act_classify(in, n, k, why);
	assert_int_equal(k[0], ACT_STATS);
	assert_int_equal(k[1], ACT_BAD);
	for (i = 2; i < 2 + CFG_MAX_ADDRS; i++)
		assert_int_equal(k[i], ACT_TCP);
	assert_int_equal(k[i], ACT_BAD);
	assert_non_null(strstr(why[i], "more sockets"));
	assert_int_equal(k[n - 2], ACT_BAD);
	assert_string_equal(why[n - 2], "a second stats socket");
	assert_int_equal(k[n - 1], ACT_UDP);
	assert_null(why[n - 1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_socket),
		cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
