/*
 * test_config.c: upperd's settings (supervisor/config.c): defaults, every
 * option's valid and invalid values through cfg_set, "--opt value",
 * "--opt=value", short options and the file; precedence (defaults, file,
 * command line); the file syntax; command-line errors; reloads (repeated
 * cfg_load); and the shape of every error message: one line, naming the
 * option or file:line.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

#define MAX_ARGS 32

/* Paths of the temporary files a test made; removed after each test. */
static char tmp_paths[16][64];
static int ntmp;

/* cfg_load on "upperd" plus the NULL-terminated arguments. */
static int
load(struct cfg *c, enum cfg_action *act, char *err, size_t errlen, ...)
{
	char *argv[MAX_ARGS + 1];
	int argc = 0;
	va_list ap;
	char *a;

	argv[argc++] = "upperd";
	va_start(ap, errlen);
	while ((a = va_arg(ap, char *)) != NULL && argc < MAX_ARGS)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	return cfg_load(c, argc, argv, act, err, errlen);
}

/* A temporary file holding text (n bytes, may contain NULs); its path. */
static const char *
write_file_n(const char *text, size_t n)
{
	char *path;
	int fd;

	assert_true(ntmp < (int)(sizeof(tmp_paths) / sizeof(tmp_paths[0])));
	path = tmp_paths[ntmp++];

	snprintf(path, sizeof(tmp_paths[0]), "/tmp/test_config.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	close(fd);
	return path;
}

static const char *
write_file(const char *text)
{
	return write_file_n(text, strlen(text));
}

static int
cleanup(void **state)
{
	(void)state;
	while (ntmp > 0)
		unlink(tmp_paths[--ntmp]);
	return 0;
}

/* Every error is one line with something in it. */
static void
assert_one_line(const char *err)
{
	assert_true(err[0] != '\0');
	assert_null(strchr(err, '\n'));
	assert_null(strchr(err, '\r'));
}

static void
assert_contains(const char *hay, const char *needle)
{
	if (strstr(hay, needle) == NULL)
		fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

static unsigned
online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > CFG_MAX_WORKERS ? CFG_MAX_WORKERS : (unsigned)n;
}

/* A --tcp/--udp list as text, "a,b" or "off", into a static buffer. */
static const char *
addrs(const char (*list)[CFG_ADDR_MAX], unsigned n)
{
	static char buf[4][CFG_MAX_ADDRS * CFG_ADDR_MAX];
	static unsigned k;
	char *b = buf[k++ % 4];

	cfg_addrs_text(list, n, b, sizeof(buf[0]));
	return b;
}

#define TCP(c) addrs((c).tcp, (c).ntcp)
#define UDP(c) addrs((c).udp, (c).nudp)

static void
assert_cfg_equal(const struct cfg *a, const struct cfg *b)
{
	assert_string_equal(a->config, b->config);
	assert_int_equal(a->workers, b->workers);
	assert_string_equal(TCP(*a), TCP(*b));
	assert_string_equal(UDP(*a), UDP(*b));
	assert_string_equal(a->stats, b->stats);
	assert_int_equal(a->max_conns, b->max_conns);
	assert_int_equal(a->idle_timeout, b->idle_timeout);
	assert_int_equal(a->drain_timeout, b->drain_timeout);
	assert_int_equal(a->heartbeat_timeout, b->heartbeat_timeout);
	assert_int_equal(a->max_requests, b->max_requests);
	assert_int_equal(a->case_mode, b->case_mode);
	assert_int_equal(a->log_level, b->log_level);
	assert_int_equal(a->sched_policy, b->sched_policy);
	assert_string_equal(a->log_file, b->log_file);
	assert_string_equal(a->pid_file, b->pid_file);
	assert_string_equal(a->user, b->user);
}

static void
test_defaults(void **state)
{
	struct cfg c;

	(void)state;
	memset(&c, 0xa5, sizeof(c));
	cfg_defaults(&c);
	assert_string_equal(c.config, "");
	assert_int_equal(c.workers, online_cpus());
	assert_string_equal(TCP(c), "0.0.0.0:12000");
	assert_string_equal(UDP(c), "0.0.0.0:12000");
	assert_string_equal(c.stats, "127.0.0.1:9120");
	assert_int_equal(c.max_conns, 10000);
	assert_int_equal(c.idle_timeout, 300);
	assert_int_equal(c.drain_timeout, 30);
	assert_int_equal(c.heartbeat_timeout, 10);
	assert_int_equal(c.max_requests, 0);
	assert_int_equal(c.case_mode, UPC_UNICODE);
	assert_int_equal(c.log_level, LOG_LEVEL_INFO);
	assert_int_equal(c.sched_policy, CFG_SCHED_AUTO);
	assert_string_equal(c.log_file, "");
	assert_string_equal(c.pid_file, "");
	assert_string_equal(c.user, "");
}

/* No arguments at all: exactly the defaults, and a run. */
static void
test_load_no_args(void **state)
{
	struct cfg c, d;
	enum cfg_action act = CFG_HELP;
	char err[CFG_ERR_MAX];

	(void)state;
	assert_int_equal(load(&c, &act, err, sizeof(err), NULL), 0);
	assert_int_equal(act, CFG_RUN);
	cfg_defaults(&d);
	assert_cfg_equal(&c, &d);
}

/* The value a setting ended up with, as text, whatever its field type. */
static void
field_text(const struct cfg *c, const char *key, char *buf, size_t len)
{
	static const char *const cases[] = { "unicode", "ascii" };
	static const char *const levels[] = { "error", "warn", "info",
		"debug" };
	static const char *const scheds[] = { "auto", "batch", "normal" };

	if (strcmp(key, "workers") == 0)
		snprintf(buf, len, "%u", c->workers);
	else if (strcmp(key, "max-conns") == 0)
		snprintf(buf, len, "%u", c->max_conns);
	else if (strcmp(key, "idle-timeout") == 0)
		snprintf(buf, len, "%u", c->idle_timeout);
	else if (strcmp(key, "drain-timeout") == 0)
		snprintf(buf, len, "%u", c->drain_timeout);
	else if (strcmp(key, "heartbeat-timeout") == 0)
		snprintf(buf, len, "%u", c->heartbeat_timeout);
	else if (strcmp(key, "max-requests") == 0)
		snprintf(buf, len, "%lu", c->max_requests);
	else if (strcmp(key, "case") == 0)
		snprintf(buf, len, "%s", cases[c->case_mode]);
	else if (strcmp(key, "log-level") == 0)
		snprintf(buf, len, "%s", levels[c->log_level]);
	else if (strcmp(key, "sched-policy") == 0)
		snprintf(buf, len, "%s", scheds[c->sched_policy]);
	else if (strcmp(key, "tcp") == 0)
		snprintf(buf, len, "%s", TCP(*c));
	else if (strcmp(key, "udp") == 0)
		snprintf(buf, len, "%s", UDP(*c));
	else if (strcmp(key, "stats") == 0)
		snprintf(buf, len, "%s", c->stats);
	else if (strcmp(key, "log-file") == 0)
		snprintf(buf, len, "%s", c->log_file);
	else if (strcmp(key, "pid-file") == 0)
		snprintf(buf, len, "%s", c->pid_file);
	else if (strcmp(key, "user") == 0)
		snprintf(buf, len, "%s", c->user);
	else if (strcmp(key, "config") == 0)
		snprintf(buf, len, "%s", c->config);
	else
		fail_msg("no field for %s", key);
}

/* Valid values; want is the stored value as text (NULL: same as value). */
static const struct {
	const char *key, *value, *want;
} valid[] = {
	{ "workers", "1", NULL },
	{ "workers", "1024", NULL },
	{ "workers", "007", "7" },
	{ "tcp", "127.0.0.1:0", NULL },
	{ "tcp", "0.0.0.0:65535", NULL },
	{ "tcp", "[::]:12000", NULL },
	{ "tcp", "[::1]:1", NULL },
	{ "tcp", "*:80", NULL },
	{ "tcp", "off", NULL },
	{ "udp", "[::ffff:127.0.0.1]:9", NULL },
	{ "udp", "off", NULL },
	{ "tcp", "127.0.0.1:1,[::1]:1", NULL },
	{ "tcp", "127.0.0.1:1, [::1]:1 ,*:2", "127.0.0.1:1,[::1]:1,*:2" },
	{ "udp", "off,off", "off" },
	{ "stats", "10.1.2.3:9120", NULL },
	{ "stats", "off", NULL },
	{ "max-conns", "1", NULL },
	{ "max-conns", "1000000", NULL },
	{ "idle-timeout", "0", NULL },
	{ "idle-timeout", "86400", NULL },
	{ "drain-timeout", "0", NULL },
	{ "drain-timeout", "86400", NULL },
	{ "heartbeat-timeout", "1", NULL },
	{ "heartbeat-timeout", "3600", NULL },
	{ "max-requests", "0", NULL },
	{ "max-requests", "1000000", NULL },
	{ "max-requests", "144115188075855871", NULL },
	{ "case", "unicode", NULL },
	{ "case", "ascii", NULL },
	{ "log-level", "error", NULL },
	{ "log-level", "warn", NULL },
	{ "log-level", "info", NULL },
	{ "log-level", "debug", NULL },
	{ "sched-policy", "auto", NULL },
	{ "sched-policy", "batch", NULL },
	{ "sched-policy", "normal", NULL },
	{ "log-file", "/var/log/upperd.log", NULL },
	{ "log-file", "", NULL },
	{ "pid-file", "/run/upperd.pid", NULL },
	{ "user", "nobody", NULL },
	{ "config", "/etc/upperd.conf", NULL },
};

/* Every valid value, through cfg_set. */
static void
test_set_valid(void **state)
{
	char err[CFG_ERR_MAX], got[CFG_PATH_MAX];
	struct cfg c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		cfg_defaults(&c);
		if (cfg_set(&c, valid[i].key, valid[i].value, err,
		        sizeof(err)) != 0)
			fail_msg("%s=%s: %s", valid[i].key, valid[i].value,
			    err);
		field_text(&c, valid[i].key, got, sizeof(got));
		assert_string_equal(got,
		    valid[i].want ? valid[i].want : valid[i].value);
	}
}

/* Every valid value as "--key value", "--key=value" and a file line. */
static void
test_load_valid_three_ways(void **state)
{
	char err[CFG_ERR_MAX], opt[64], eq[CFG_PATH_MAX], line[CFG_PATH_MAX];
	char got[CFG_PATH_MAX];
	enum cfg_action act;
	const char *want;
	struct cfg c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		if (strcmp(valid[i].key, "config") == 0)
			continue; /* a path to read, tested on its own */
		want = valid[i].want ? valid[i].want : valid[i].value;
		snprintf(opt, sizeof(opt), "--%s", valid[i].key);
		assert_int_equal(load(&c, &act, err, sizeof(err), opt,
		                     valid[i].value, NULL),
		    0);
		field_text(&c, valid[i].key, got, sizeof(got));
		assert_string_equal(got, want);

		snprintf(eq, sizeof(eq), "--%s=%s", valid[i].key,
		    valid[i].value);
		assert_int_equal(load(&c, &act, err, sizeof(err), eq, NULL), 0);
		field_text(&c, valid[i].key, got, sizeof(got));
		assert_string_equal(got, want);

		snprintf(line, sizeof(line), "%s = %s\n", valid[i].key,
		    valid[i].value);
		assert_int_equal(load(&c, &act, err, sizeof(err), "-c",
		                     write_file(line), NULL),
		    0);
		field_text(&c, valid[i].key, got, sizeof(got));
		assert_string_equal(got, want);
		cleanup(NULL);
	}
}

/* Invalid values and a piece of the expected explanation. */
static const struct {
	const char *key, *value, *why;
} invalid[] = {
	{ "workers", "", "expected an integer from 1 to 1024" },
	{ "workers", "0", "expected an integer from 1 to 1024" },
	{ "workers", "1025", "expected an integer from 1 to 1024" },
	{ "workers", "abc", "expected an integer from 1 to 1024" },
	{ "workers", "-1", "expected an integer" },
	{ "workers", "+1", "expected an integer" },
	{ "workers", " 1", "expected an integer" },
	{ "workers", "1 ", "expected an integer" },
	{ "workers", "1.5", "expected an integer" },
	{ "workers", "0x10", "expected an integer" },
	{ "workers", "4294967297", "expected an integer" },
	{ "workers", "99999999999999999999999", "expected an integer" },
	{ "max-conns", "0", "from 1 to 1000000" },
	{ "max-conns", "1000001", "from 1 to 1000000" },
	{ "max-conns", "1e3", "from 1 to 1000000" },
	{ "idle-timeout", "-0", "from 0 to 86400" },
	{ "idle-timeout", "86401", "from 0 to 86400" },
	{ "drain-timeout", "86401", "from 0 to 86400" },
	{ "drain-timeout", "30s", "from 0 to 86400" },
	{ "heartbeat-timeout", "0", "from 1 to 3600" },
	{ "heartbeat-timeout", "3601", "from 1 to 3600" },
	{ "max-requests", "-1", "from 0 to 144115188075855871" },
	{ "max-requests", "144115188075855872", "from 0 to" },
	{ "max-requests", "18446744073709551616", "from 0 to" },
	{ "max-requests", "", "from 0 to" },
	{ "case", "UNICODE", "expected unicode or ascii" },
	{ "case", "utf8", "expected unicode or ascii" },
	{ "case", "", "expected unicode or ascii" },
	{ "log-level", "warning", "expected error, warn, info or debug" },
	{ "log-level", "INFO", "expected error, warn, info or debug" },
	{ "sched-policy", "other", "expected auto, batch or normal" },
	{ "sched-policy", "", "expected auto, batch or normal" },
	{ "tcp", "", "expected off, IPV4:PORT or [IPV6]:PORT" },
	{ "tcp", "12000", "expected off, IPV4:PORT or [IPV6]:PORT" },
	{ "tcp", "OFF", "expected off, IPV4:PORT or [IPV6]:PORT" },
	{ "tcp", "localhost:80", "\"localhost\" is not a numeric IPv4" },
	{ "tcp", "1.2.3.256:80", "not a numeric IPv4 address" },
	{ "tcp", ":80", "not a numeric IPv4 address" },
	{ "tcp", "1.2.3.4:65536", "port must be an integer from 0 to 65535" },
	{ "tcp", "1.2.3.4:", "port must be an integer from 0 to 65535" },
	{ "tcp", "1.2.3.4:-1", "port must be an integer" },
	{ "tcp", "1.2.3.4:+1", "port must be an integer" },
	{ "tcp", "1.2.3.4:80x", "port must be an integer" },
	{ "tcp", "1.2.3.4:80,", "expected off, IPV4:PORT or [IPV6]:PORT" },
	{ "tcp", ",1.2.3.4:80", "expected off, IPV4:PORT or [IPV6]:PORT" },
	{ "tcp", "off,1.2.3.4:80", "off cannot be combined with an address" },
	{ "udp", "1.2.3.4:80,off", "off cannot be combined with an address" },
	{ "tcp", "1.2.3.4:80,1.2.3.4:80", "an address is listed twice" },
	{ "tcp", "1.2.3.4:80,1.2.3.4:8x", "port must be an integer" },
	{ "udp", "::1:80", "an IPv6 address needs brackets" },
	{ "udp", "[::1]80", "expected off, IPV4:PORT or [IPV6]:PORT" },
	{ "udp", "[::1", "expected off, IPV4:PORT or [IPV6]:PORT" },
	{ "udp", "[zz]:1", "not a numeric IPv6 address" },
	{ "udp", "[1.2.3.4]:1", "not a numeric IPv6 address" },
	{ "stats", "[fe80::1%eth0]:80", "not a numeric IPv6 address" },
	{ "config", "", "expected a file name" },
	{ "user",
	    "a-user-name-that-is-far-too-long-to-fit-in-the-sixty-four-"
	    "byte-field",
	    "too long (at most 63 bytes)" },
};

/*
 * Every invalid value, through cfg_set and cfg_load: -1, the cfg left as
 * it was, one line naming the option and quoting the value.
 */
static void
test_invalid_values(void **state)
{
	char err[CFG_ERR_MAX], err2[CFG_ERR_MAX], want[CFG_ERR_MAX];
	char eq[CFG_PATH_MAX];
	struct cfg c, d;
	enum cfg_action act;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		cfg_defaults(&c);
		d = c;
		if (cfg_set(&c, invalid[i].key, invalid[i].value, err,
		        sizeof(err)) != -1)
			fail_msg("%s=\"%s\" accepted", invalid[i].key,
			    invalid[i].value);
		assert_cfg_equal(&c, &d);
		assert_one_line(err);
		snprintf(want, sizeof(want),
		    "invalid value \"%s\" for --%s: ", invalid[i].value,
		    invalid[i].key);
		if (strlen(invalid[i].value) <= 64)
			assert_contains(err, want);
		assert_contains(err, invalid[i].why);

		snprintf(eq, sizeof(eq), "--%s=%s", invalid[i].key,
		    invalid[i].value);
		assert_int_equal(load(&c, &act, err2, sizeof(err2), eq, NULL),
		    -1);
		assert_string_equal(err2, err);
	}
}

/* The exact wording the brief and the operator see. */
static void
test_error_wording(void **state)
{
	char err[CFG_ERR_MAX];
	struct cfg c;
	enum cfg_action act;

	(void)state;
	assert_int_equal(load(&c, &act, err, sizeof(err), "--workers", "abc",
	                     NULL),
	    -1);
	assert_string_equal(err,
	    "invalid value \"abc\" for --workers: "
	    "expected an integer from 1 to 1024");
	assert_int_equal(load(&c, &act, err, sizeof(err), "-w", "0", NULL), -1);
	assert_string_equal(err,
	    "invalid value \"0\" for --workers: "
	    "expected an integer from 1 to 1024");
	assert_int_equal(load(&c, &act, err, sizeof(err), "-t", "x:1", NULL),
	    -1);
	assert_string_equal(err,
	    "invalid value \"x:1\" for --tcp: \"x\" is "
	    "not a numeric IPv4 address (host names are not resolved)");
	assert_int_equal(cfg_set(&c, "wokers", "3", err, sizeof(err)), -1);
	assert_string_equal(err, "unknown key \"wokers\"");
}

/* Control bytes, quotes and long values never break the one line. */
static void
test_error_escaping(void **state)
{
	char err[CFG_ERR_MAX], big[600];
	struct cfg c;

	(void)state;
	cfg_defaults(&c);
	assert_int_equal(cfg_set(&c, "workers", "1\n2", err, sizeof(err)), -1);
	assert_one_line(err);
	assert_contains(err, "\"1\\x0a2\"");
	assert_int_equal(cfg_set(&c, "case", "a\"b\\", err, sizeof(err)), -1);
	assert_contains(err, "\"a\\x22b\\x5c\"");
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(cfg_set(&c, "workers", big, err, sizeof(err)), -1);
	assert_one_line(err);
	assert_contains(err, "x...\" for --workers: expected an integer");
	assert_int_equal(cfg_set(&c, "log-file", big, err, sizeof(err)), 0);
}

/* Too-long paths are refused, not truncated. */
static void
test_long_paths(void **state)
{
	char err[CFG_ERR_MAX], path[CFG_PATH_MAX + 1];
	struct cfg c;

	(void)state;
	cfg_defaults(&c);
	memset(path, 'p', CFG_PATH_MAX - 1);
	path[CFG_PATH_MAX - 1] = '\0';
	assert_int_equal(cfg_set(&c, "pid-file", path, err, sizeof(err)), 0);
	assert_int_equal(strlen(c.pid_file), CFG_PATH_MAX - 1);
	path[CFG_PATH_MAX - 1] = 'p';
	path[CFG_PATH_MAX] = '\0';
	assert_int_equal(cfg_set(&c, "log-file", path, err, sizeof(err)), -1);
	assert_one_line(err);
	assert_contains(err, "for --log-file: too long (at most 1023 bytes)");
	assert_string_equal(c.log_file, "");
}

/* A small or empty error buffer is never overrun. */
static void
test_small_err_buffer(void **state)
{
	char err[8];
	struct cfg c;

	(void)state;
	cfg_defaults(&c);
	memset(err, 'z', sizeof(err));
	assert_int_equal(cfg_set(&c, "workers", "x", err, sizeof(err)), -1);
	assert_string_equal(err, "invalid");
	assert_int_equal(cfg_set(&c, "workers", "x", NULL, 0), -1);
	assert_int_equal(cfg_set(&c, "case", "x", err, 1), -1);
	assert_string_equal(err, "");
}

/* Short options, with separate and attached values. */
static void
test_short_options(void **state)
{
	char err[CFG_ERR_MAX];
	enum cfg_action act;
	struct cfg c;
	const char *f = write_file("log-level = debug\n");

	(void)state;
	assert_int_equal(load(&c, &act, err, sizeof(err), "-w", "3", "-t",
	                     "127.0.0.1:1", "-u", "off", "-s", "[::1]:2", "-c",
	                     f, NULL),
	    0);
	assert_int_equal(act, CFG_RUN);
	assert_int_equal(c.workers, 3);
	assert_string_equal(TCP(c), "127.0.0.1:1");
	assert_string_equal(UDP(c), "off");
	assert_string_equal(c.stats, "[::1]:2");
	assert_string_equal(c.config, f);
	assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(load(&c, &act, err, sizeof(err), "-w5", "-uoff", NULL),
	    0);
	assert_int_equal(c.workers, 5);
	assert_string_equal(UDP(c), "off");
}

/* GNU long-option abbreviations work when unique, as operators expect. */
static void
test_abbreviations(void **state)
{
	char err[CFG_ERR_MAX];
	enum cfg_action act;
	struct cfg c;

	(void)state;
	assert_int_equal(load(&c, &act, err, sizeof(err), "--work", "4",
	                     "--max-c=7", NULL),
	    0);
	assert_int_equal(c.workers, 4);
	assert_int_equal(c.max_conns, 7);
	assert_int_equal(load(&c, &act, err, sizeof(err), "--max", "5", NULL),
	    -1);
	assert_one_line(err);
	assert_string_equal(err,
	    "ambiguous option --max: could be "
	    "--max-conns --max-requests");
}

/* Defaults, then the file, then the command line, wherever -c sits. */
static void
test_precedence(void **state)
{
	char err[CFG_ERR_MAX];
	enum cfg_action act;
	struct cfg c;
	const char *f = write_file("workers = 5\ntcp = 127.0.0.1:7000\n"
	                           "idle-timeout = 9\n");

	(void)state;
	assert_int_equal(load(&c, &act, err, sizeof(err), "-w", "7", "--config",
	                     f, "--idle-timeout=11", NULL),
	    0);
	assert_int_equal(c.workers, 7);                /* command line wins */
	assert_int_equal(c.idle_timeout, 11);          /* even after -c */
	assert_string_equal(TCP(c), "127.0.0.1:7000"); /* file over default */
	assert_int_equal(c.max_conns, 10000);          /* default kept */
	assert_int_equal(load(&c, &act, err, sizeof(err), "-c", f, NULL), 0);
	assert_int_equal(c.workers, 5);
	assert_int_equal(load(&c, &act, err, sizeof(err), "-c", f, "-w", "2",
	                     "-w", "3", NULL),
	    0);
	assert_int_equal(c.workers, 3); /* last of a repeated option */
}

/* Comments, blank lines, quotes, blanks, CRLF and a byte order mark. */
static void
test_file_syntax(void **state)
{
	char err[CFG_ERR_MAX];
	enum cfg_action act;
	struct cfg c;
	const char *f = write_file(
	    "\xef\xbb\xbf# upperd settings\n"
	    "\n"
	    "   \t\n"
	    "  # indented comment = not a setting\n"
	    "workers=3   # trailing comment\n"
	    "tcp = \"127.0.0.1:5000\"   # quoted\n"
	    "log-file = \"/tmp/a #1.log\"\n"
	    "pid-file = /tmp/x#y\n"
	    "\tlog-level\t=\tdebug\t\n"
	    "case = ascii\r\n"
	    "user =\n"
	    "stats = \" off\" # kept verbatim: invalid\n");

	(void)state;
	assert_int_equal(load(&c, &act, err, sizeof(err), "-c", f, NULL), -1);
	assert_contains(err, ":12: invalid value \" off\" for stats:");
	f = write_file("\xef\xbb\xbf# upperd settings\n"
	               "\n"
	               "workers=3   # trailing comment\n"
	               "tcp = \"127.0.0.1:5000\"   # quoted\n"
	               "log-file = \"/tmp/a #1.log\"\n"
	               "pid-file = /tmp/x#y\n"
	               "\tlog-level\t=\tdebug\t\n"
	               "case = ascii\r\n"
	               "user = # nobody\n"
	               "udp = off");
	assert_int_equal(load(&c, &act, err, sizeof(err), "-c", f, NULL), 0);
	assert_int_equal(c.workers, 3);
	assert_string_equal(TCP(c), "127.0.0.1:5000");
	assert_string_equal(c.log_file, "/tmp/a #1.log");
	assert_string_equal(c.pid_file, "/tmp/x#y");
	assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(c.case_mode, UPC_ASCII);
	assert_string_equal(c.user, "");
	assert_string_equal(UDP(c), "off"); /* last line without newline */
}

/* One bad file line and the exact "path:line: problem" it gives. */
static void
check_file_error(const char *text, const char *problem)
{
	char err[CFG_ERR_MAX], want[CFG_ERR_MAX];
	const char *f = write_file(text);
	struct cfg c, d;

	cfg_defaults(&c);
	d = c;
	assert_int_equal(cfg_parse_file(&c, f, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:%s", f, problem);
	assert_string_equal(err, want);
	assert_cfg_equal(&c, &d); /* all or nothing */
	cleanup(NULL);
}

static void
test_file_errors(void **state)
{
	(void)state;
	check_file_error("# c\nworkers = 2\nwokers = 3\n",
	    "3: unknown key \"wokers\"");
	check_file_error("\nworkers = abc\n",
	    "2: invalid value \"abc\" for "
	    "workers: expected an integer from 1 to 1024");
	check_file_error("config = /etc/other.conf\n",
	    "1: \"config\" cannot "
	    "be set in a config file, only with -c on the command line");
	check_file_error("workers 3\n", "1: expected \"key = value\"");
	check_file_error(" = 3\n", "1: missing key before \"=\"");
	check_file_error("log-file = \"/tmp/x\n",
	    "1: unterminated quoted value");
	check_file_error("log-file = \"/tmp/x\" y\n",
	    "1: unexpected text after the closing quote");
	check_file_error("--workers = 3\n", "1: unknown key \"--workers\"");
	check_file_error("help = yes\n", "1: unknown key \"help\"");
	check_file_error("workers = 2 3\n",
	    "1: invalid value \"2 3\" for "
	    "workers: expected an integer from 1 to 1024");
}

static void
test_file_nul_byte(void **state)
{
	char err[CFG_ERR_MAX], want[CFG_ERR_MAX];
	struct cfg c;
	const char *f = write_file_n("workers = 2\nuser = a\0b\n", 22);

	(void)state;
	cfg_defaults(&c);
	assert_int_equal(cfg_parse_file(&c, f, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2: NUL byte in line", f);
	assert_string_equal(err, want);
}

/* Missing or unreadable files name the path and the reason. */
static void
test_file_missing(void **state)
{
	char err[CFG_ERR_MAX], want[CFG_ERR_MAX];
	enum cfg_action act;
	struct cfg c;

	(void)state;
	assert_int_equal(load(&c, &act, err, sizeof(err), "-c",
	                     "/nonexistent/upperd.conf", NULL),
	    -1);
	snprintf(want, sizeof(want),
	    "cannot read config file "
	    "/nonexistent/upperd.conf: %s",
	    strerror(ENOENT));
	assert_string_equal(err, want);
	assert_int_equal(load(&c, &act, err, sizeof(err), "-c", "/tmp", NULL),
	    -1);
	snprintf(want, sizeof(want), "cannot read config file /tmp: %s",
	    strerror(EISDIR));
	assert_string_equal(err, want);
	assert_int_equal(load(&c, &act, err, sizeof(err), "--config", "", NULL),
	    -1);
	assert_string_equal(err,
	    "invalid value \"\" for --config: expected "
	    "a file name");
}

/* Command-line syntax errors: one line each, naming what was typed. */
static void
test_command_line_errors(void **state)
{
	static const struct {
		const char *a, *b, *err;
	} cases[] = {
		{ "--foo", NULL, "unknown option --foo" },
		{ "--foo=bar", NULL, "unknown option --foo" },
		{ "-x", NULL, "unknown option -x" },
		{ "-w", NULL, "option -w requires a value" },
		{ "--workers", NULL, "option --workers requires a value" },
		{ "--max-conns", NULL, "option --max-conns requires a value" },
		{ "--help=1", NULL, "option --help does not take a value" },
		{ "--version=x", NULL,
		    "option --version does not take a value" },
		{ "extra", NULL, "unexpected argument \"extra\"" },
		{ "-w", "2", NULL },
		{ "--", "x", "unexpected argument \"x\"" },
		{ "-", NULL, "unexpected argument \"-\"" },
		{ "-\x01", NULL, "unknown option -\\x01" },
	};
	char err[CFG_ERR_MAX];
	enum cfg_action act;
	struct cfg c;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = load(&c, &act, err, sizeof(err), cases[i].a, cases[i].b,
		    NULL);

		if (cases[i].err == NULL) {
			assert_int_equal(r, 0);
			continue;
		}
		assert_int_equal(r, -1);
		assert_one_line(err);
		assert_string_equal(err, cases[i].err);
	}
	/* An operand stops option parsing; it is an error wherever it is. */
	assert_int_equal(load(&c, &act, err, sizeof(err), "-w", "2", "extra",
	                     "-w", "3", NULL),
	    -1);
	assert_string_equal(err, "unexpected argument \"extra\"");
}

/*
 * Several addresses: the option or key repeated adds, a list adds each
 * item, and a new source (file over defaults, command line over file)
 * replaces the whole list; off only alone.
 */
static void
test_addr_lists(void **state)
{
	char err[CFG_ERR_MAX], many[20 * 16];
	enum cfg_action act;
	struct cfg c;
	const char *f = write_file("tcp = 127.0.0.1:1\ntcp = 127.0.0.1:2, "
	                           "[::1]:2\nudp = off\n");
	size_t o = 0;
	int i;

	(void)state;
	assert_int_equal(load(&c, &act, err, sizeof(err), "-c", f, NULL), 0);
	assert_string_equal(TCP(c), "127.0.0.1:1,127.0.0.1:2,[::1]:2");
	assert_int_equal(c.ntcp, 3);
	assert_int_equal(c.nudp, 0);
	assert_int_equal(load(&c, &act, err, sizeof(err), "-c", f, "-t",
	                     "127.0.0.1:9", "--udp", "127.0.0.1:8", "-u",
	                     "[::1]:8", NULL),
	    0);
	assert_string_equal(TCP(c), "127.0.0.1:9"); /* replaced, not added */
	assert_string_equal(UDP(c), "127.0.0.1:8,[::1]:8"); /* off replaced */
	assert_int_equal(load(&c, &act, err, sizeof(err), "-t", "off", "-t",
	                     "127.0.0.1:9", NULL),
	    -1);
	assert_string_equal(err,
	    "invalid value \"127.0.0.1:9\" for --tcp: "
	    "off cannot be combined with an address");
	assert_int_equal(load(&c, &act, err, sizeof(err), "-u", "127.0.0.1:9",
	                     "-u", "off", NULL),
	    -1);
	assert_contains(err, "off cannot be combined with an address");
	f = write_file("tcp = 127.0.0.1:1\ntcp = off\n");
	assert_int_equal(load(&c, &act, err, sizeof(err), "-c", f, NULL), -1);
	assert_contains(err, ":2: invalid value \"off\" for tcp: off cannot");
	for (i = 0; i <= CFG_MAX_ADDRS; i++)
		o += (size_t)snprintf(many + o, sizeof(many) - o,
		    "%s1.2.3.4:%d", i ? "," : "", i + 1);
	assert_int_equal(load(&c, &act, err, sizeof(err), "-t", many, NULL),
	    -1);
	assert_contains(err, "at most 16 addresses");
	many[strlen(many) - strlen(",1.2.3.4:17")] = '\0';
	assert_int_equal(load(&c, &act, err, sizeof(err), "-t", many, NULL), 0);
	assert_int_equal(c.ntcp, CFG_MAX_ADDRS);
}

/* --check-config loads everything as a start would, and says so. */
static void
test_check_config(void **state)
{
	char err[CFG_ERR_MAX];
	enum cfg_action act;
	struct cfg c;
	const char *f = write_file("workers = 3\n");

	(void)state;
	assert_int_equal(load(&c, &act, err, sizeof(err), "--check-config",
	                     "-c", f, "-t", "127.0.0.1:1", NULL),
	    0);
	assert_int_equal(act, CFG_CHECK);
	assert_int_equal(c.workers, 3);
	assert_string_equal(TCP(c), "127.0.0.1:1");
	assert_int_equal(load(&c, &act, err, sizeof(err), "-c", f,
	                     "--check-config", "-w", "0", NULL),
	    -1);
	assert_contains(err, "invalid value \"0\" for --workers");
	assert_int_equal(load(&c, &act, err, sizeof(err), "--check-config=1",
	                     NULL),
	    -1);
	assert_string_equal(err, "option --check-config does not take a value");
}

/* -h and -V win over later arguments and never need valid settings. */
static void
test_help_version(void **state)
{
	char err[CFG_ERR_MAX];
	enum cfg_action act;
	struct cfg c, d;

	(void)state;
	cfg_defaults(&c);
	c.workers = 77;
	d = c;
	assert_int_equal(load(&c, &act, err, sizeof(err), "-h", NULL), 0);
	assert_int_equal(act, CFG_HELP);
	assert_int_equal(load(&c, &act, err, sizeof(err), "--help", NULL), 0);
	assert_int_equal(act, CFG_HELP);
	assert_int_equal(load(&c, &act, err, sizeof(err), "-V", NULL), 0);
	assert_int_equal(act, CFG_VERSION);
	assert_int_equal(load(&c, &act, err, sizeof(err), "--version", NULL),
	    0);
	assert_int_equal(act, CFG_VERSION);
	assert_int_equal(load(&c, &act, err, sizeof(err), "-w", "abc", "-c",
	                     "/nonexistent", "-h", NULL),
	    0);
	assert_int_equal(act, CFG_HELP);
	assert_int_equal(load(&c, &act, err, sizeof(err), "-hV", NULL), 0);
	assert_int_equal(act, CFG_HELP);
	assert_int_equal(load(&c, &act, err, sizeof(err), "--bogus", "-h",
	                     NULL),
	    -1);
	assert_cfg_equal(&c, &d); /* help or error: nothing applied */
}

/*
 * A reload runs cfg_load again on the same argv: same result, argv not
 * reordered, and the file re-read (so an edit shows up).
 */
static void
test_repeated_load(void **state)
{
	char err[CFG_ERR_MAX], *argv[12], *copy[12];
	enum cfg_action act;
	struct cfg a, b;
	const char *f = write_file("workers = 6\ncase = ascii\n");
	FILE *fp;
	int i, argc = 0;

	(void)state;
	argv[argc++] = "upperd";
	argv[argc++] = "-c";
	argv[argc++] = (char *)f;
	argv[argc++] = "--tcp=127.0.0.1:4000";
	argv[argc++] = "-u";
	argv[argc++] = "off";
	argv[argc] = NULL;
	memcpy(copy, argv, sizeof(argv));
	assert_int_equal(cfg_load(&a, argc, argv, &act, err, sizeof(err)), 0);
	for (i = 0; i < 3; i++) {
		assert_int_equal(cfg_load(&b, argc, argv, &act, err,
		                     sizeof(err)),
		    0);
		assert_cfg_equal(&a, &b);
		assert_memory_equal(argv, copy, sizeof(argv[0]) * argc);
	}
	assert_int_equal(a.workers, 6);
	assert_string_equal(a.tcp, "127.0.0.1:4000");

	fp = fopen(f, "w");
	assert_non_null(fp);
	fputs("workers = 2\n", fp);
	fclose(fp);
	assert_int_equal(cfg_load(&b, argc, argv, &act, err, sizeof(err)), 0);
	assert_int_equal(b.workers, 2);
	assert_int_equal(b.case_mode, UPC_UNICODE); /* removed: default */
}

/* A reload that fails (bad file, bad option) keeps the running settings. */
static void
test_failed_load_keeps_settings(void **state)
{
	char err[CFG_ERR_MAX];
	enum cfg_action act;
	struct cfg c, d;
	const char *f = write_file("workers = 4\nidle-timeout = 5\n"
	                           "max-conns = zero\n");

	(void)state;
	assert_int_equal(load(&c, &act, err, sizeof(err), "-w", "9", NULL), 0);
	d = c;
	assert_int_equal(load(&c, &act, err, sizeof(err), "-c", f, NULL), -1);
	assert_contains(err, ":3: invalid value \"zero\" for max-conns:");
	assert_cfg_equal(&c, &d);
	assert_int_equal(load(&c, &act, err, sizeof(err), "-w", "2", "-t",
	                     "bad", NULL),
	    -1);
	assert_cfg_equal(&c, &d);
}

/* --help names every option and its default, in 80 columns. */
static void
test_usage(void **state)
{
	static const char *const names[] = { "-c, --config", "-w, --workers",
		"-t, --tcp", "-u, --udp", "-s, --stats", "--max-conns",
		"--idle-timeout", "--drain-timeout", "--heartbeat-timeout",
		"--max-requests", "--case", "--sched-policy", "--log-level",
		"--log-file", "--pid-file", "--user", "-h, --help",
		"-V, --version", "0.0.0.0:12000", "127.0.0.1:9120",
		"online CPUs", "10000", "300", "(default: 30)", "(default: 10)",
		"unicode", "info", "(default: auto)" };
	const char *p = cfg_usage, *nl;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_contains(cfg_usage, names[i]);
	for (; (nl = strchr(p, '\n')) != NULL; p = nl + 1)
		if (nl - p > 79)
			fail_msg("usage line too long: %.*s", (int)(nl - p), p);
	assert_string_equal(p, ""); /* ends with a newline */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_load_no_args),
		cmocka_unit_test(test_set_valid),
		cmocka_unit_test_teardown(test_load_valid_three_ways, cleanup),
		cmocka_unit_test(test_invalid_values),
		cmocka_unit_test(test_error_wording),
		cmocka_unit_test(test_error_escaping),
		cmocka_unit_test(test_long_paths),
		cmocka_unit_test(test_small_err_buffer),
		cmocka_unit_test_teardown(test_short_options, cleanup),
		cmocka_unit_test(test_abbreviations),
		cmocka_unit_test_teardown(test_precedence, cleanup),
		cmocka_unit_test_teardown(test_file_syntax, cleanup),
		cmocka_unit_test_teardown(test_file_errors, cleanup),
		cmocka_unit_test_teardown(test_file_nul_byte, cleanup),
		cmocka_unit_test(test_file_missing),
		cmocka_unit_test(test_command_line_errors),
		cmocka_unit_test(test_help_version),
		cmocka_unit_test_teardown(test_addr_lists, cleanup),
		cmocka_unit_test_teardown(test_check_config, cleanup),
		cmocka_unit_test_teardown(test_repeated_load, cleanup),
		cmocka_unit_test_teardown(test_failed_load_keeps_settings,
		    cleanup),
		cmocka_unit_test(test_usage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
