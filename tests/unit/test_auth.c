/*
 * test_auth.c: the stats endpoint's users file and credential check
 * (supervisor/auth.c).  Hashes are made at test time by libxcrypt, one per
 * method SPEC names; every malformed file must be refused with a message
 * naming it, and only a user's own password may pass.
 */
#include <crypt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"

static char dir[] = "/tmp/upperd-test-auth-XXXXXX";

/* A crypt(3) hash of pw, by the method prefix names. */
static const char *
hash(const char *pw, const char *prefix, unsigned long cost)
{
	static char out[4][CRYPT_OUTPUT_SIZE];
	static int next;
	const char *setting = crypt_gensalt(prefix, cost, NULL, 0);
	const char *h;

	assert_non_null(setting);
	h = crypt(pw, setting);
	assert_non_null(h);
	assert_true(h[0] != '*');
	next = (next + 1) % 4;
	snprintf(out[next], sizeof(out[next]), "%s", h);
	return out[next];
}

/* Write text to a file of the test's directory; its path. */
static const char *
file_with(const char *name, const char *text)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/* auth_check, waiting out its hashing budget (half of every second,
 * auth.c): under valgrind a hash takes long enough to spend it.  A
 * password refused unchecked (AUTH_BUSY) is checked once it refills. */
static enum auth_verdict
check(struct auth *a, const char *name, const char *pass)
{
	enum auth_verdict v;
	int i;

	for (i = 0; i < 3000; i++) {
		if ((v = auth_check(a, name, pass)) != AUTH_BUSY)
			return v;
		usleep(10000); /* the budget's refill, not a readiness wait */
	}
	fail_msg("auth_check busy for 30 s");
	return AUTH_BUSY;
}

static int
setup(void **state)
{
	(void)state;
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
test_every_method_checks(void **state)
{
	char text[1024], err[256];
	struct auth *a;

	(void)state;
	snprintf(text, sizeof(text),
	    "# users\n\nalice:%s\n  bob:%s  \r\ncarol:%s\ndave:%s\n",
	    hash("pa:ss", "$6$", 0), hash("b", "$2b$", 4), hash("c", "$y$", 0),
	    hash("d", "$2y$", 4));
	a = auth_load(file_with("users", text), err, sizeof(err));
	assert_non_null(a);
	assert_int_equal(check(a, "alice", "pa:ss"), AUTH_OK);
	assert_int_equal(check(a, "alice", "pa:ss"), AUTH_OK); /* cached */
	assert_int_equal(check(a, "bob", "b"), AUTH_OK);
	assert_int_equal(check(a, "carol", "c"), AUTH_OK);
	assert_int_equal(check(a, "dave", "d"), AUTH_OK);
	assert_int_equal(check(a, "alice", "pa"), AUTH_NO);
	assert_int_equal(check(a, "alice", ""), AUTH_NO);
	assert_int_equal(check(a, "bob", "c"), AUTH_NO);
	assert_int_equal(check(a, "eve", "b"), AUTH_NO);
	assert_int_equal(check(a, "", ""), AUTH_NO);
	assert_int_equal(check(a, "alic", "pa:ss"), AUTH_NO);
	assert_int_equal(check(a, "alicea", "pa:ss"), AUTH_NO);
	auth_free(a);
}

static void
test_bad_files_refused(void **state)
{
	char md5[256], setting[128], err[256];
	const char *cases[] = {
		"alice\n",
		":$6$abc$def\n",
		"",
		"# only a comment\n\n",
		"alice:abJnggxhB/yWI\n", /* DES */
		md5,
		setting,
		"alice:$6$\n",
		"alice:$7$xyz\n",
	};
	size_t i;

	(void)state;
	snprintf(md5, sizeof(md5), "alice:%s\n", hash("x", "$1$", 0));
	snprintf(setting, sizeof(setting), "alice:%s\n",
	    crypt_gensalt("$6$", 0, NULL, 0));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *path = file_with("bad", cases[i]);

		err[0] = '\0';
		if (auth_load(path, err, sizeof(err)) != NULL)
			fail_msg("case %zu accepted", i);
		if (strstr(err, path) == NULL)
			fail_msg("case %zu: \"%s\" does not name the file", i,
			    err);
	}
	assert_null(auth_load("/nonexistent/users", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/users"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_method_checks),
		cmocka_unit_test(test_bad_files_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
