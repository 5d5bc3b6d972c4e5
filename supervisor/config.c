/*
 * config.c: upperd's settings (include/config.h).  Owns the one table of
 * settings, the built-in defaults, the validation of every value, the
 * --config file format and the command line.  Precedence is defaults, then
 * the file, then the command line, on start and again on every SIGHUP
 * reload.  Nothing here prints: every error is one line in the caller's
 * buffer, naming the option (or file:line) and what was expected.
 *
 * Default worker count: when --workers is given neither in the file nor on
 * the command line, it is the number of online CPUs (sysconf, as SPEC says;
 * not the affinity mask), clamped to 1..CFG_MAX_WORKERS.  It is recomputed
 * at each cfg_load, so a reload after CPU hot-plug follows the new count.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "net.h"
#include "numparse.h"

/* How a setting's text is checked and stored. */
enum cfg_kind {
	CFG_KIND_UINT,   /* unsigned field, integer in [min, max] */
	CFG_KIND_ULONG,  /* unsigned long field, integer in [min, max] */
	CFG_KIND_ADDR,   /* "off", IPV4:PORT or [IPV6]:PORT */
	CFG_KIND_ADDRS,  /* a list of ADDR, or "off" alone (--tcp, --udp) */
	CFG_KIND_STR,    /* a path or name; min is the shortest length */
	CFG_KIND_CASE,   /* enum upc_mode */
	CFG_KIND_LEVEL,  /* enum log_level */
	CFG_KIND_SCHED,  /* enum cfg_sched */
	CFG_KIND_ENGINE, /* enum cfg_engine */
};

/* One setting: its long option name (= file key), short option, storage. */
struct cfg_opt {
	const char *name;
	int short_opt; /* 0: long option only */
	enum cfg_kind kind;
	size_t off;  /* offsetof(struct cfg, field) */
	size_t size; /* CFG_KIND_STR: the field's size, with the NUL */
	unsigned long min;
	unsigned long max;
};

/*
 * Cap on --max-requests so that adding the random 0-10% extra per worker
 * cannot overflow, even computed as n * 110 / 100.
 */
#define CFG_MAX_REQUESTS_MAX (ULONG_MAX / 128)

#define CFG_NUM(f) offsetof(struct cfg, f), 0
#define CFG_STR(f) offsetof(struct cfg, f), sizeof(((struct cfg *)0)->f)

/* The only list of settings: getopt's table and cfg_set both use it. */
static const struct cfg_opt cfg_opts[] = {
	{ "config", 'c', CFG_KIND_STR, CFG_STR(config), 1, 0 },
	{ "workers", 'w', CFG_KIND_UINT, CFG_NUM(workers), 1, CFG_MAX_WORKERS },
	{ "tcp", 't', CFG_KIND_ADDRS, CFG_NUM(tcp), 0, 0 },
	{ "udp", 'u', CFG_KIND_ADDRS, CFG_NUM(udp), 0, 0 },
	{ "stats", 's', CFG_KIND_ADDR, CFG_STR(stats), 0, 0 },
	{ "max-conns", 0, CFG_KIND_UINT, CFG_NUM(max_conns), 1, 1000000 },
	{ "idle-timeout", 0, CFG_KIND_UINT, CFG_NUM(idle_timeout), 0, 86400 },
	{ "drain-timeout", 0, CFG_KIND_UINT, CFG_NUM(drain_timeout), 0, 86400 },
	{ "shutdown-delay", 0, CFG_KIND_UINT, CFG_NUM(shutdown_delay), 0,
	    86400 },
	{ "heartbeat-timeout", 0, CFG_KIND_UINT, CFG_NUM(heartbeat_timeout), 1,
	    3600 },
	{ "max-requests", 0, CFG_KIND_ULONG, CFG_NUM(max_requests), 0,
	    CFG_MAX_REQUESTS_MAX },
	{ "case", 0, CFG_KIND_CASE, CFG_NUM(case_mode), 0, 0 },
	{ "sched-policy", 0, CFG_KIND_SCHED, CFG_NUM(sched_policy), 0, 0 },
	{ "io-engine", 0, CFG_KIND_ENGINE, CFG_NUM(io_engine), 0, 0 },
	{ "log-level", 0, CFG_KIND_LEVEL, CFG_NUM(log_level), 0, 0 },
	{ "log-file", 0, CFG_KIND_STR, CFG_STR(log_file), 0, 0 },
	{ "pid-file", 0, CFG_KIND_STR, CFG_STR(pid_file), 0, 0 },
	{ "user", 0, CFG_KIND_STR, CFG_STR(user), 0, 0 },
	{ "stats-tls-cert", 0, CFG_KIND_STR, CFG_STR(stats_tls_cert), 0, 0 },
	{ "stats-tls-key", 0, CFG_KIND_STR, CFG_STR(stats_tls_key), 0, 0 },
	{ "stats-auth", 0, CFG_KIND_STR, CFG_STR(stats_auth), 0, 0 },
};

#define CFG_NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define CFG_NOPTS CFG_NELEM(cfg_opts)
/* getopt_long's value for cfg_opts[i] given in its long form. */
#define CFG_LONG_VAL(i) (256 + (int)(i))
/* getopt_long's value for --check-config, an action and not a setting. */
#define CFG_CHECK_VAL 255
/* '+': stop at the first operand, never permute the caller's argv (it is
 * parsed again on every reload); ':': report a missing value as ':'. */
#define CFG_OPTSTRING "+:c:w:t:u:s:hV"
/* Input bytes of a user's text quoted in an error, so the line stays short. */
#define CFG_QUOTE_MAX 64
/* Room for n input bytes escaped by cfg_printable: 4 each, "...", NUL. */
#define CFG_SHOWN(n) ((n)*4 + 4)
/* Scratch room for a message before it is cut to the caller's errlen. */
#define CFG_MSG_MAX 1024

static const char *const cfg_case_names[] = {
	[UPC_UNICODE] = "unicode",
	[UPC_ASCII] = "ascii",
};
static const char *const cfg_sched_names[] = {
	[CFG_SCHED_AUTO] = "auto",
	[CFG_SCHED_BATCH] = "batch",
	[CFG_SCHED_NORMAL] = "normal",
};
static const char *const cfg_engine_names[] = {
	[CFG_ENGINE_EPOLL] = "epoll",
	[CFG_ENGINE_URING] = "io_uring",
};
static const char *const cfg_level_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

const char cfg_usage[] =
    "Usage: upperd [OPTION]...\n"
    "Serve the uppercase of what clients send, over TCP and UDP, from "
    "pre-forked\n"
    "worker processes; the supervisor serves their counters over HTTP.\n"
    "\n"
    "  -c, --config FILE          read settings from FILE: \"key = value\" "
    "lines,\n"
    "                             long option names as keys, # comments;\n"
    "                             re-read on SIGHUP; the command line "
    "overrides\n"
    "                             it (default: none)\n"
    "  -w, --workers N            worker processes, 1-1024\n"
    "                             (default: the number of online CPUs)\n"
    "  -t, --tcp ADDR:PORT        TCP listen address; [IPV6]:PORT for IPv6;"
    "\n"
    "                             repeat it or give a comma-separated list "
    "for\n"
    "                             several (up to 16); off disables TCP\n"
    "                             (default: 0.0.0.0:12000)\n"
    "  -u, --udp ADDR:PORT        UDP address, repeatable like --tcp; off "
    "disables\n"
    "                             UDP (default: 0.0.0.0:12000)\n"
    "  -s, --stats ADDR:PORT      HTTP /stats, /metrics, /healthz and /;\n"
    "                             off disables it (default: 127.0.0.1:9120)\n"
    "      --max-conns N          concurrent TCP connections per worker, "
    "1-1000000;\n"
    "                             more are closed at once (default: 10000)\n"
    "      --idle-timeout S       close a TCP connection silent for S "
    "seconds,\n"
    "                             0-86400; 0 = never (default: 300)\n"
    "      --drain-timeout S      seconds a stopping worker may keep "
    "serving its\n"
    "                             open connections, 0-86400 (default: 30)\n"
    "      --shutdown-delay S     on TERM/INT, keep accepting S seconds with\n"
    "                             /healthz already 503 (lame duck), then\n"
    "                             drain; 0-86400 (default: 0)\n"
    "      --heartbeat-timeout S  replace a worker whose event loop has not "
    "ticked\n"
    "                             for S seconds, 1-3600 (default: 10)\n"
    "      --max-requests N       recycle a worker after N TCP connections "
    "+ UDP\n"
    "                             datagrams, plus 0-10% at random; 0 = never\n"
    "                             (default: 0)\n"
    "      --case MODE            unicode: full Unicode uppercase of valid "
    "UTF-8;\n"
    "                             ascii: only a-z (default: unicode)\n"
    "      --sched-policy POLICY  batch: SCHED_BATCH, a woken process does "
    "not\n"
    "                             preempt, so a busy CPU hands workers "
    "batches;\n"
    "                             normal: SCHED_OTHER; auto: workers batch "
    "while\n"
    "                             they serve several clients (default: auto)"
    "\n"
    "      --io-engine ENGINE     epoll or io_uring: what workers wait for "
    "events\n"
    "                             with; io_uring falls back to epoll where "
    "the\n"
    "                             kernel refuses it (default: epoll)\n"
    "      --log-level LEVEL      error, warn, info or debug (default: info)\n"
    "      --log-file FILE        append logs to FILE, reopened on SIGUSR1;\n"
    "                             empty = standard error (default: standard "
    "error)\n"
    "      --pid-file FILE        write the supervisor's pid to FILE, "
    "removed on\n"
    "                             exit (default: none)\n"
    "      --user NAME            drop privileges to NAME after binding\n"
    "                             (default: none)\n"
    "      --check-config         read the options and the config file as a "
    "start\n"
    "                             would, bind nothing, report and exit\n"
    "      --stats-tls-cert FILE  serve the stats endpoint over HTTPS only, "
    "with\n"
    "                             this PEM certificate (chain); re-read on "
    "SIGHUP\n"
    "      --stats-tls-key FILE   its PEM private key; both or neither\n"
    "      --stats-auth FILE      require HTTP Basic credentials on every "
    "path\n"
    "                             but /healthz: \"user:hash\" lines, "
    "crypt(3)\n"
    "                             bcrypt, yescrypt or SHA-512 hashes; re-read "
    "on\n"
    "                             SIGHUP (default: none)\n"
    "  -h, --help                 print this help and exit\n"
    "  -V, --version              print the version and exit\n"
    "\n"
    "ADDR is numeric: IPV4 (* = 0.0.0.0) or [IPV6] in brackets; PORT is "
    "0-65535.\n"
    "Signals: TERM, INT graceful stop; QUIT immediate stop; HUP re-read the\n"
    "config file and replace every worker gracefully; TTIN, TTOU one worker\n"
    "more, one fewer; USR1 reopen the log file; USR2 upgrade to the\n"
    "executable now at upperd's path, keeping connections and counters.\n"
    "Exit status: 0 success, 1 runtime error, 2 usage or configuration "
    "error.\n";

/*
 * Exists so the built-in defaults live in one place; every load starts
 * from them, so a setting removed from the file reverts on reload.
 */
void
cfg_defaults(struct cfg *c)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	memset(c, 0, sizeof(*c));
	if (ncpu < 1)
		ncpu = 1;
	if (ncpu > CFG_MAX_WORKERS)
		ncpu = CFG_MAX_WORKERS;
	c->workers = (unsigned)ncpu;
	strcpy(c->tcp[0], "0.0.0.0:12000");
	strcpy(c->udp[0], "0.0.0.0:12000");
	c->ntcp = c->nudp = 1;
	c->tcp_fresh = c->udp_fresh = 1;
	strcpy(c->stats, "127.0.0.1:9120");
	c->max_conns = 10000;
	c->idle_timeout = 300;
	c->drain_timeout = 30;
	c->shutdown_delay = 0;
	c->heartbeat_timeout = 10;
	c->max_requests = 0;
	c->case_mode = UPC_UNICODE;
	c->sched_policy = CFG_SCHED_AUTO;
	c->log_level = LOG_LEVEL_INFO;
}

/*
 * Copy at most max bytes of s into buf, escaping control bytes, quotes and
 * backslashes, so a user's text in an error message keeps it one line.
 */
static void
cfg_printable(char *buf, size_t len, const char *s, size_t max)
{
	size_t o = 0, i;

	if (len == 0)
		return;
	for (i = 0; s[i] != '\0' && i < max; i++) {
		unsigned char ch = (unsigned char)s[i];
		bool esc = ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\';

		if (o + (esc ? 4 : 1) + 4 > len) /* keep room for "..." */
			break;
		if (esc)
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", ch);
		else
			buf[o++] = (char)ch;
	}
	if (s[i] != '\0' && o + 4 <= len) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
}

/* isspace() without the locale: the file format must not depend on it. */
static bool
cfg_is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' ||
	    ch == '\v' || ch == '\f';
}

static char *
cfg_skip_space(char *p)
{
	while (cfg_is_blank(*p))
		p++;
	return p;
}

/* Cut trailing blanks, including the newline and a DOS '\r'. */
static void
cfg_trim_end(char *p)
{
	size_t n = strlen(p);

	while (n > 0 && cfg_is_blank(p[n - 1]))
		p[--n] = '\0';
}

/* Store an integer setting, or explain the accepted range in why. */
static int
cfg_apply_int(struct cfg *c, const struct cfg_opt *o, const char *v, char *why,
    size_t whylen)
{
	unsigned long n;

	if (num_parse_ulong(v, o->min, o->max, &n) == -1) {
		snprintf(why, whylen, "expected an integer from %lu to %lu",
		    o->min, o->max);
		return -1;
	}
	if (o->kind == CFG_KIND_UINT)
		*(unsigned *)(void *)((char *)c + o->off) = (unsigned)n;
	else
		*(unsigned long *)(void *)((char *)c + o->off) = n;
	return 0;
}

/* Split "[V6]:PORT" or "V4:PORT" as net_parse_addr() will; -1 + why. */
static int
cfg_split_addr(const char *s, char *host, size_t hostlen, int *af,
    const char **port, char *why, size_t whylen)
{
	if (net_split_addr(s, host, hostlen, af, port) == -1) {
		snprintf(why, whylen, "expected off, IPV4:PORT or [IPV6]:PORT");
		return -1;
	}
	if (*af == AF_INET && strchr(host, ':') != NULL) {
		snprintf(why, whylen,
		    "an IPv6 address needs brackets, as in [::]:12000");
		return -1;
	}
	return 0;
}

/*
 * Check an address the way net_parse_addr() will read it when binding, so
 * a typo is a config error (exit 2, and a reload keeps the old settings)
 * rather than a bind failure.  Host names are not resolved on purpose: a
 * listening address must not depend on DNS at start.
 */
static int
cfg_check_addr(const char *v, char *why, size_t whylen)
{
	char host[CFG_ADDR_MAX], shown[CFG_SHOWN(CFG_QUOTE_MAX)];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *port;
	unsigned long n;
	int af;

	if (strcmp(v, "off") == 0)
		return 0;
	if (cfg_split_addr(v, host, sizeof(host), &af, &port, why, whylen) ==
	    -1)
		return -1;
	if (!(af == AF_INET && strcmp(host, "*") == 0) &&
	    inet_pton(af, host, bin) != 1) {
		cfg_printable(shown, sizeof(shown), host, CFG_QUOTE_MAX);
		snprintf(why, whylen, "\"%s\" is not a numeric %s address%s",
		    shown, af == AF_INET ? "IPv4" : "IPv6",
		    af == AF_INET ? " (host names are not resolved)" : "");
		return -1;
	}
	if (num_parse_ulong(port, 0, 65535, &n) == -1) {
		snprintf(why, whylen,
		    "the port must be an integer from 0 to 65535");
		return -1;
	}
	return 0;
}

/* The list, its length and its "fresh" mark that o (--tcp, --udp) names. */
static void
cfg_list_of(struct cfg *c, const struct cfg_opt *o, char (**list)[CFG_ADDR_MAX],
    unsigned **n, unsigned char **fresh)
{
	int udp = o->off == offsetof(struct cfg, udp);

	*list = udp ? c->udp : c->tcp;
	*n = udp ? &c->nudp : &c->ntcp;
	*fresh = udp ? &c->udp_fresh : &c->tcp_fresh;
}

/* Add one item of a --tcp/--udp value to list[0..*k); *off tracks an
 * "off" from the same source, which no address may join.  -1 + why. */
static int
cfg_add_item(char (*list)[CFG_ADDR_MAX], unsigned *k, bool *off,
    const char *item, char *why, size_t whylen)
{
	unsigned i;

	if (strcmp(item, "off") == 0 ? *k > 0 : *off) {
		snprintf(why, whylen, "off cannot be combined with an address");
		return -1;
	}
	if (strcmp(item, "off") == 0) {
		*off = true;
		return 0;
	}
	if (strlen(item) >= CFG_ADDR_MAX) {
		snprintf(why, whylen, "an address is at most %d bytes",
		    CFG_ADDR_MAX - 1);
		return -1;
	}
	if (cfg_check_addr(item, why, whylen) == -1)
		return -1;
	for (i = 0; i < *k; i++)
		if (strcmp(list[i], item) == 0) {
			snprintf(why, whylen, "an address is listed twice");
			return -1;
		}
	if (*k == CFG_MAX_ADDRS) {
		snprintf(why, whylen, "at most %d addresses", CFG_MAX_ADDRS);
		return -1;
	}
	strcpy(list[(*k)++], item);
	return 0;
}

/*
 * --tcp/--udp: a comma-separated list, blanks around items ignored.  The
 * option repeated adds to the list; the first value from a new source
 * (the file over the defaults, the command line over the file) replaces
 * it.  All or nothing, like every setting.
 */
static int
cfg_apply_addrs(struct cfg *c, const struct cfg_opt *o, const char *v,
    char *why, size_t whylen)
{
	char tmp[CFG_MAX_ADDRS][CFG_ADDR_MAX], item[CFG_ADDR_MAX + 1];
	char(*list)[CFG_ADDR_MAX];
	unsigned *n, k;
	unsigned char *fresh;
	const char *p = v;
	size_t len;
	bool off;

	cfg_list_of(c, o, &list, &n, &fresh);
	k = *fresh ? 0 : *n;
	off = !*fresh && *n == 0;
	memcpy(tmp, list, sizeof(tmp));
	for (;;) {
		while (cfg_is_blank(*p))
			p++;
		len = strcspn(p, ",");
		snprintf(item, sizeof(item), "%.*s", (int)len, p);
		cfg_trim_end(item);
		if (cfg_add_item(tmp, &k, &off, item, why, whylen) == -1)
			return -1;
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	memcpy(list, tmp, sizeof(tmp));
	*n = k;
	*fresh = 0;
	return 0;
}

void
cfg_addrs_text(const char (*list)[CFG_ADDR_MAX], unsigned n, char *buf,
    size_t len)
{
	size_t o = 0;
	unsigned i;

	snprintf(buf, len, "off");
	for (i = 0; i < n && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "",
		    list[i]);
}

/* Store a string setting if it fits and is long enough; -1 + why. */
static int
cfg_apply_str(struct cfg *c, const struct cfg_opt *o, const char *v, char *why,
    size_t whylen)
{
	size_t n = strlen(v);

	if (n < o->min) {
		snprintf(why, whylen, "expected a file name");
		return -1;
	}
	if (n >= o->size) {
		snprintf(why, whylen, "too long (at most %zu bytes)",
		    o->size - 1);
		return -1;
	}
	memcpy((char *)c + o->off, v, n + 1);
	return 0;
}

/* Index of v in names, or -1 with the choices spelled out in why. */
static int
cfg_choice(const char *v, const char *const *names, size_t n, char *why,
    size_t whylen)
{
	size_t i, o;

	for (i = 0; i < n; i++)
		if (strcmp(v, names[i]) == 0)
			return (int)i;
	o = (size_t)snprintf(why, whylen, "expected");
	for (i = 0; i < n && o < whylen; i++)
		o += (size_t)snprintf(why + o, whylen - o, "%s%s",
		    i == 0         ? " " :
		        i + 1 == n ? " or " :
		                     ", ",
		    names[i]);
	return -1;
}

/* The words of each choice kind, in the order of its enum. */
static const struct {
	const char *const *names;
	size_t n;
} cfg_words[] = {
	[CFG_KIND_CASE] = { cfg_case_names, CFG_NELEM(cfg_case_names) },
	[CFG_KIND_LEVEL] = { cfg_level_names, CFG_NELEM(cfg_level_names) },
	[CFG_KIND_SCHED] = { cfg_sched_names, CFG_NELEM(cfg_sched_names) },
	[CFG_KIND_ENGINE] = { cfg_engine_names, CFG_NELEM(cfg_engine_names) },
};

/* The enum fields are stored through their offset as an int index. */
_Static_assert(sizeof(enum upc_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_sched) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_engine) == sizeof(int), "enum size");

static int
cfg_apply_choice(struct cfg *c, const struct cfg_opt *o, const char *v,
    char *why, size_t whylen)
{
	int i = cfg_choice(v, cfg_words[o->kind].names, cfg_words[o->kind].n,
	    why, whylen);

	if (i < 0)
		return -1;
	memcpy((char *)c + o->off, &i, sizeof(i));
	return 0;
}

/* Validate v for o and store it in c; -1 with the expectation in why. */
static int
cfg_apply(struct cfg *c, const struct cfg_opt *o, const char *v, char *why,
    size_t whylen)
{
	switch (o->kind) {
	case CFG_KIND_UINT:
	case CFG_KIND_ULONG:
		return cfg_apply_int(c, o, v, why, whylen);
	case CFG_KIND_ADDR:
		if (cfg_check_addr(v, why, whylen) == -1)
			return -1;
		return cfg_apply_str(c, o, v, why, whylen);
	case CFG_KIND_ADDRS:
		return cfg_apply_addrs(c, o, v, why, whylen);
	case CFG_KIND_STR:
		return cfg_apply_str(c, o, v, why, whylen);
	case CFG_KIND_CASE:
	case CFG_KIND_LEVEL:
	case CFG_KIND_SCHED:
	case CFG_KIND_ENGINE:
		return cfg_apply_choice(c, o, v, why, whylen);
	}
	return -1;
}

/* The table entry for a long option name / file key, or NULL. */
static const struct cfg_opt *
cfg_find(const char *name)
{
	size_t i;

	for (i = 0; i < CFG_NOPTS; i++)
		if (strcmp(cfg_opts[i].name, name) == 0)
			return &cfg_opts[i];
	return NULL;
}

/*
 * Apply one setting, naming it in an error as the user wrote it: "--" for
 * the command line, "" for a file key.
 */
static int
cfg_set_opt(struct cfg *c, const struct cfg_opt *o, const char *value,
    const char *dashes, char *err, size_t errlen)
{
	char why[CFG_MSG_MAX], shown[CFG_SHOWN(CFG_QUOTE_MAX)];

	if (cfg_apply(c, o, value, why, sizeof(why)) == 0)
		return 0;
	cfg_printable(shown, sizeof(shown), value, CFG_QUOTE_MAX);
	snprintf(err, errlen, "invalid value \"%s\" for %s%s: %s", shown,
	    dashes, o->name, why);
	return -1;
}

/*
 * Exists so the file parser, the command line and tests share one
 * validated path into struct cfg; an error leaves c unchanged.
 */
int
cfg_set(struct cfg *c, const char *key, const char *value, char *err,
    size_t errlen)
{
	const struct cfg_opt *o = cfg_find(key);
	char shown[CFG_SHOWN(CFG_QUOTE_MAX)];

	if (o == NULL) {
		cfg_printable(shown, sizeof(shown), key, CFG_QUOTE_MAX);
		snprintf(err, errlen, "unknown key \"%s\"", shown);
		return -1;
	}
	return cfg_set_opt(c, o, value, "--", err, errlen);
}

/*
 * Find the value after '=': a double-quoted value is taken verbatim (so
 * it may hold '#' or edge blanks); an unquoted one ends at a '#' that
 * starts the value or follows a blank ("a#b" keeps its '#').
 */
static char *
cfg_line_value(char *v, const char **why)
{
	char *q;

	v = cfg_skip_space(v);
	if (*v == '"') {
		if ((q = strchr(v + 1, '"')) == NULL) {
			*why = "unterminated quoted value";
			return NULL;
		}
		*q = '\0';
		q = cfg_skip_space(q + 1);
		if (*q != '\0' && *q != '#') {
			*why = "unexpected text after the closing quote";
			return NULL;
		}
		return v + 1;
	}
	for (q = v; *q != '\0'; q++)
		if (*q == '#' && (q == v || cfg_is_blank(q[-1]))) {
			*q = '\0';
			break;
		}
	cfg_trim_end(v);
	return v;
}

/*
 * Split one line in place: 1 with key and value set, 0 for a blank or
 * comment line, -1 with why for a malformed line.
 */
static int
cfg_split_line(char *line, char **key, char **value, const char **why)
{
	char *p = cfg_skip_space(line), *eq;

	if (*p == '\0' || *p == '#')
		return 0;
	if ((eq = strchr(p, '=')) == NULL) {
		*why = "expected \"key = value\"";
		return -1;
	}
	*eq = '\0';
	cfg_trim_end(p);
	if (*p == '\0') {
		*why = "missing key before \"=\"";
		return -1;
	}
	*key = p;
	*value = cfg_line_value(eq + 1, why);
	return *value == NULL ? -1 : 1;
}

/* Prefix a line's error with "path:line: ", as compilers do. */
static int
cfg_line_error(const char *path, unsigned lineno, const char *msg, char *err,
    size_t errlen)
{
	char shown[CFG_SHOWN(CFG_QUOTE_MAX * 2)];

	cfg_printable(shown, sizeof(shown), path, CFG_QUOTE_MAX * 2);
	snprintf(err, errlen, "%s:%u: %s", shown, lineno, msg);
	return -1;
}

/* Apply one line of a file; -1 with "path:line: ..." in err. */
static int
cfg_file_line(struct cfg *c, char *line, const char *path, unsigned lineno,
    char *err, size_t errlen)
{
	char msg[CFG_MSG_MAX], shown[CFG_SHOWN(CFG_QUOTE_MAX)];
	const char *why = NULL;
	const struct cfg_opt *o;
	char *key, *value;
	int r;

	if ((r = cfg_split_line(line, &key, &value, &why)) <= 0)
		return r == 0 ? 0 :
		                cfg_line_error(path, lineno, why, err, errlen);
	if ((o = cfg_find(key)) == NULL) {
		cfg_printable(shown, sizeof(shown), key, CFG_QUOTE_MAX);
		snprintf(msg, sizeof(msg), "unknown key \"%s\"", shown);
	} else if (strcmp(key, "config") == 0) {
		snprintf(msg, sizeof(msg),
		    "\"config\" cannot be set in a "
		    "config file, only with -c on the command line");
	} else if (cfg_set_opt(c, o, value, "", msg, sizeof(msg)) == 0) {
		return 0;
	}
	return cfg_line_error(path, lineno, msg, err, errlen);
}

/* Report a file that cannot be opened or read, naming it and errno. */
static int
cfg_file_error(const char *path, int errnum, char *err, size_t errlen)
{
	char shown[CFG_SHOWN(CFG_QUOTE_MAX * 2)];

	cfg_printable(shown, sizeof(shown), path, CFG_QUOTE_MAX * 2);
	snprintf(err, errlen, "cannot read config file %s: %s", shown,
	    strerror(errnum));
	return -1;
}

/* Apply every line of an open file to c; -1 + err at the first bad one. */
static int
cfg_read_lines(struct cfg *c, FILE *f, const char *path, char *err,
    size_t errlen)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned lineno = 0;
	int r = 0;

	while (r == 0 && (n = getline(&line, &cap, f)) != -1) {
		char *p = line;

		lineno++;
		/* An editor's UTF-8 byte order mark is not part of the key. */
		if (lineno == 1 && strncmp(p, "\xef\xbb\xbf", 3) == 0)
			p += 3;
		if ((size_t)n != strlen(line))
			r = cfg_line_error(path, lineno, "NUL byte in line",
			    err, errlen);
		else
			r = cfg_file_line(c, p, path, lineno, err, errlen);
	}
	if (r == 0 && ferror(f))
		r = cfg_file_error(path, errno, err, errlen);
	free(line);
	return r;
}

/* Longest config file read: a real one is a few hundred bytes, and a
 * path naming /dev/zero or a huge file must end in an error, not in an
 * endless read. */
#define CFG_FILE_MAX (1024 * 1024)

/* Read all of f, at most CFG_FILE_MAX bytes, into a malloc'd buffer; NULL
 * with errno set (EFBIG past the limit). */
static char *
cfg_slurp(FILE *f, size_t *len)
{
	char *buf = malloc(CFG_FILE_MAX + 1);
	int e;

	if (buf == NULL)
		return NULL;
	*len = fread(buf, 1, CFG_FILE_MAX + 1, f);
	if (ferror(f) || *len > CFG_FILE_MAX) {
		e = ferror(f) ? errno : EFBIG;
		free(buf);
		errno = e;
		return NULL;
	}
	return buf;
}

/*
 * Exists for cfg_load (and tests): read the --config file into c.  The
 * file is all or nothing: on any error c is left as it was.
 */
int
cfg_parse_file(struct cfg *c, const char *path, char *err, size_t errlen)
{
	struct cfg n = *c;
	FILE *f;
	char *buf;
	size_t len;
	int r, e;

	/* "e": O_CLOEXEC, so nothing ever exec'd can inherit it. */
	if ((f = fopen(path, "re")) == NULL)
		return cfg_file_error(path, errno, err, errlen);
	buf = cfg_slurp(f, &len);
	e = errno;
	fclose(f);
	if (buf == NULL)
		return cfg_file_error(path, e, err, errlen);
	/* the lines are parsed from memory; an empty file sets nothing */
	if (len == 0)
		r = 0;
	else if ((f = fmemopen(buf, len, "r")) == NULL)
		r = cfg_file_error(path, errno, err, errlen);
	else {
		r = cfg_read_lines(&n, f, path, err, errlen);
		fclose(f);
	}
	free(buf);
	if (r == 0)
		*c = n;
	return r;
}

/* getopt_long's table, built from cfg_opts so the two cannot disagree. */
static void
cfg_longopts(struct option *lo)
{
	size_t i;

	for (i = 0; i < CFG_NOPTS; i++)
		lo[i] = (struct option){ cfg_opts[i].name, required_argument,
			NULL, CFG_LONG_VAL(i) };
	lo[i++] = (struct option){ "check-config", no_argument, NULL,
		CFG_CHECK_VAL };
	lo[i++] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[i++] = (struct option){ "version", no_argument, NULL, 'V' };
	lo[i] = (struct option){ NULL, 0, NULL, 0 };
}

/* The setting getopt_long's return value ch stands for, or NULL. */
static const struct cfg_opt *
cfg_by_val(int ch)
{
	size_t i;

	for (i = 0; i < CFG_NOPTS; i++)
		if (ch == CFG_LONG_VAL(i) ||
		    (cfg_opts[i].short_opt != 0 && ch == cfg_opts[i].short_opt))
			return &cfg_opts[i];
	return NULL;
}

/* getopt said ':': name the option that lacks its value, as typed. */
static int
cfg_missing_value(char *err, size_t errlen)
{
	const struct cfg_opt *o = cfg_by_val(optopt);

	if (o == NULL)
		snprintf(err, errlen, "an option requires a value");
	else if (optopt >= CFG_LONG_VAL(0))
		snprintf(err, errlen, "option --%s requires a value", o->name);
	else
		snprintf(err, errlen, "option -%c requires a value", optopt);
	return -1;
}

/*
 * An unknown long option, or a prefix glibc found ambiguous (it accepts
 * unique abbreviations, as GNU tools do): say which, listing candidates.
 */
static int
cfg_bad_long(const char *arg, const struct option *lo, char *err, size_t errlen)
{
	char raw[CFG_QUOTE_MAX + 2], name[CFG_SHOWN(CFG_QUOTE_MAX)];
	size_t n = strcspn(arg + 2, "="), i, o, hits = 0;

	/* Name the option without its "=value"; a long one gets "...". */
	snprintf(raw, sizeof(raw), "%.*s", (int)n, arg + 2);
	cfg_printable(name, sizeof(name), raw, CFG_QUOTE_MAX);
	for (i = 0; lo[i].name != NULL; i++)
		if (n > 0 && strncmp(lo[i].name, arg + 2, n) == 0)
			hits++;
	if (hits < 2) {
		snprintf(err, errlen, "unknown option --%s", name);
		return -1;
	}
	o = (size_t)snprintf(err, errlen, "ambiguous option --%s: could be",
	    name);
	for (i = 0; lo[i].name != NULL && o < errlen; i++)
		if (strncmp(lo[i].name, arg + 2, n) == 0)
			o += (size_t)snprintf(err + o, errlen - o, " --%s",
			    lo[i].name);
	return -1;
}

/* getopt said '?': an unknown option, or a value given to -h/-V. */
static int
cfg_bad_option(char **argv, const struct option *lo, char *err, size_t errlen)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";
	char ch[2] = { (char)optopt, '\0' }, shown[8];

	if (optopt == 'h' || optopt == 'V' || optopt == CFG_CHECK_VAL) {
		snprintf(err, errlen, "option --%s does not take a value",
		    optopt == 'h'     ? "help" :
		        optopt == 'V' ? "version" :
		                        "check-config");
		return -1;
	}
	if (optopt == 0 && strncmp(arg, "--", 2) == 0)
		return cfg_bad_long(arg, lo, err, errlen);
	cfg_printable(shown, sizeof(shown), ch, 1);
	snprintf(err, errlen, "unknown option -%s", shown);
	return -1;
}

/*
 * One getopt_long pass over argv.  The first pass (apply false) checks the
 * syntax, takes --config and stops at -h or -V; the second applies every
 * setting in order, so the last of a repeated option wins.
 */
static int
cfg_scan(struct cfg *c, int argc, char **argv, bool apply,
    enum cfg_action *action, char *err, size_t errlen)
{
	struct option lo[CFG_NOPTS + 4];
	const struct cfg_opt *o;
	char shown[CFG_SHOWN(CFG_QUOTE_MAX)];
	int ch;

	cfg_longopts(lo);
	optind = 0; /* glibc: reinitialise fully, this runs on every reload */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, CFG_OPTSTRING, lo, NULL)) != -1) {
		if (ch == 'h' || ch == 'V') {
			*action = ch == 'h' ? CFG_HELP : CFG_VERSION;
			return 0;
		}
		if (ch == CFG_CHECK_VAL) {
			*action = CFG_CHECK;
			continue;
		}
		if (ch == ':')
			return cfg_missing_value(err, errlen);
		if (ch == '?' || (o = cfg_by_val(ch)) == NULL)
			return cfg_bad_option(argv, lo, err, errlen);
		if ((apply || strcmp(o->name, "config") == 0) &&
		    cfg_set_opt(c, o, optarg, "--", err, errlen) == -1)
			return -1;
	}
	if (optind < argc) {
		cfg_printable(shown, sizeof(shown), argv[optind],
		    CFG_QUOTE_MAX);
		snprintf(err, errlen, "unexpected argument \"%s\"", shown);
		return -1;
	}
	return 0;
}

/*
 * Exists to give start-up and every SIGHUP reload the same effective
 * settings from the same argv.  All or nothing: c is written only on
 * success, so a reload with a broken file keeps the running settings.
 */
int
cfg_load(struct cfg *c, int argc, char **argv, enum cfg_action *action,
    char *err, size_t errlen)
{
	struct cfg n;

	*action = CFG_RUN;
	cfg_defaults(&n);
	if (cfg_scan(&n, argc, argv, false, action, err, errlen) == -1)
		return -1;
	if (*action == CFG_HELP || *action == CFG_VERSION)
		return 0;
	if (n.config[0] != '\0' &&
	    cfg_parse_file(&n, n.config, err, errlen) == -1)
		return -1;
	/* A --tcp or --udp on the command line replaces the file's list. */
	n.tcp_fresh = n.udp_fresh = 1;
	if (cfg_scan(&n, argc, argv, true, action, err, errlen) == -1)
		return -1;
	if ((n.stats_tls_cert[0] == '\0') != (n.stats_tls_key[0] == '\0')) {
		snprintf(err, errlen,
		    "--stats-tls-cert and --stats-tls-key go together");
		return -1;
	}
	*c = n;
	return 0;
}
