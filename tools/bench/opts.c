/*
 * opts.c: upper-bench's command line.  One table lists every option: its
 * name, its argument and help for the usage, the struct ub_opts field it
 * sets and how its value is read and bounded; getopt_long's table and the
 * usage are made from it.  The scenarios --mode picks are ub_modes[]:
 * a new scenario adds its line there.  A bad value is one line on stderr
 * and exit 2.
 */
#include <getopt.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

const struct ub_mode *const ub_modes[] = { &ub_mode_rr, &ub_mode_udp,
	&ub_mode_bulk, &ub_mode_idle, &ub_mode_churn, NULL };

/* How an option's argument is read, and the type of its field. */
enum ub_opt_type {
	UB_OPT_INT,    /* int, a number within [min, max] */
	UB_OPT_LONG,   /* long, likewise */
	UB_OPT_DOUBLE, /* double, likewise */
	UB_OPT_STR,    /* const char *, as given */
	UB_OPT_BYTES,  /* uint64_t, a count with a K M G suffix */
	UB_OPT_PICK,   /* int, the index of the argument in names */
	UB_OPT_CASE,   /* enum upc_mode, by name */
	UB_OPT_MODE    /* const struct ub_mode *, from ub_modes[] */
};

struct ub_opt {
	const char *name; /* without the leading "--" */
	const char *arg;  /* the argument in the usage; NULL: not listed */
	const char *help;
	enum ub_opt_type type;
	size_t off; /* of the field in struct ub_opts */
	double min, max;
	const char *const *names;
};

#define UB_OFF(f) offsetof(struct ub_opts, f)

static const char *const ub_opt_texts[] = { "ascii", "mixed", NULL };
static const char *const ub_opt_cases[] = { "unicode", "ascii", NULL };

static const struct ub_opt ub_opt_table[] = {
	{ "mode", NULL, NULL, UB_OPT_MODE, UB_OFF(mode), 0, 0, NULL },
	{ "host", "H", "server (numeric, default 127.0.0.1)", UB_OPT_STR,
	    UB_OFF(host), 0, 0, NULL },
	{ "port", "P", "TCP port (default 12000)", UB_OPT_INT, UB_OFF(port), 1,
	    65535, NULL },
	{ "udp-port", "P", "UDP port (default: --port)", UB_OPT_INT,
	    UB_OFF(udp_port), 1, 65535, NULL },
	{ "conns", "C",
	    "TCP connections doing work (rr/idle 50, bulk 1, churn 10)",
	    UB_OPT_INT, UB_OFF(conns), 0, 1e7, NULL },
	{ "depth", "D", "requests in flight per connection or socket",
	    UB_OPT_INT, UB_OFF(depth), 1, UB_MAX_DEPTH, NULL },
	{ "size", "B", "bytes per request (default 64)", UB_OPT_INT,
	    UB_OFF(size), 1, UB_MAX_SIZE, NULL },
	{ "duration", "S", "measured seconds (bulk/churn: time limit)",
	    UB_OPT_DOUBLE, UB_OFF(duration), 0.01, 3600, NULL },
	{ "warmup", "S", "unmeasured seconds first (rr/udp/idle)",
	    UB_OPT_DOUBLE, UB_OFF(warmup), 0, 3600, NULL },
	{ "grace", "S", "wait for replies after the end (default 2)",
	    UB_OPT_DOUBLE, UB_OFF(grace), 0, 60, NULL },
	{ "sockets", "K", "UDP sockets (default 4)", UB_OPT_INT,
	    UB_OFF(sockets), 1, 1024, NULL },
	{ "udp-timeout", "S", "give a datagram up after S (default 0.2)",
	    UB_OPT_DOUBLE, UB_OFF(udp_timeout), 0.001, 60, NULL },
	{ "bytes", "N", "bulk bytes in all, suffix K M G (default 1G)",
	    UB_OPT_BYTES, UB_OFF(bytes), 0, 0, NULL },
	{ "text", "ascii|mixed", "bulk text (mixed-script UTF-8)", UB_OPT_PICK,
	    UB_OFF(mixed), 0, 0, ub_opt_texts },
	{ "case", "unicode|ascii", "server's mode, for the expected reply",
	    UB_OPT_CASE, UB_OFF(upc), 0, 0, ub_opt_cases },
	{ "idle", "N", "idle connections held (idle mode, 10000)", UB_OPT_INT,
	    UB_OFF(idle), 0, 1e7, NULL },
	{ "requests", "N", "short connections in all (churn, 1000)",
	    UB_OPT_LONG, UB_OFF(requests), 1, 1e9, NULL },
	{ "procs", "K", "client processes (default 1)", UB_OPT_INT,
	    UB_OFF(procs), 1, UB_MAX_PROCS, NULL },
	{ "connect-timeout", "S", "limit of the connect phase (default 30)",
	    UB_OPT_DOUBLE, UB_OFF(connect_timeout), 0.1, 3600, NULL },
	{ "hold", "S", "after connecting, wait S or for SIGUSR1", UB_OPT_DOUBLE,
	    UB_OFF(hold), 0, 3600, NULL },
};

#define UB_OPT_N (sizeof(ub_opt_table) / sizeof(ub_opt_table[0]))
#define UB_OPT_HELP 1000 /* getopt_long's value for --help */

static void
ub_opt_usage(FILE *f)
{
	char lhs[64];
	size_t i;

	fputs("usage: upper-bench [--mode ", f);
	for (i = 0; ub_modes[i] != NULL; i++)
		fprintf(f, "%s%s", i ? "|" : "", ub_modes[i]->name);
	fputs("] [options]\n", f);
	for (i = 0; i < UB_OPT_N; i++) {
		if (ub_opt_table[i].arg == NULL)
			continue;
		snprintf(lhs, sizeof(lhs), "--%s %s", ub_opt_table[i].name,
		    ub_opt_table[i].arg);
		fprintf(f, "  %-15s  %s\n", lhs, ub_opt_table[i].help);
	}
}

static void __attribute__((noreturn))
ub_opt_bad(const struct ub_opt *d, const char *s)
{
	fprintf(stderr, "upper-bench: bad --%s '%s'\n", d->name, s);
	exit(2);
}

static double
ub_opt_num(const struct ub_opt *d, const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (*s == '\0' || *end != '\0' || !(v >= d->min && v <= d->max))
		ub_opt_bad(d, s);
	return v;
}

/* A byte count: a number, then K, M or G (powers of 1024), then an
 * optional "i", "B" or "iB". */
static uint64_t
ub_opt_bytes(const struct ub_opt *d, const char *s)
{
	static const char units[] = "kmg";
	char *end;
	double v = strtod(s, &end), mul = 1;
	const char *u = *end ? strchr(units, *end | 0x20) : NULL;

	if (u != NULL) {
		mul = (double)(1ULL << (10 * (u - units + 1)));
		end++;
	}
	if (*end == 'i' || *end == 'B')
		end += *end == 'i' && end[1] == 'B' ? 2 : 1;
	if (*s == '\0' || *end != '\0' || !(v * mul >= 1) || v * mul > 1e15)
		ub_opt_bad(d, s);
	return (uint64_t)(v * mul);
}

static int
ub_opt_pick(const struct ub_opt *d, const char *s)
{
	int i;

	for (i = 0; d->names[i] != NULL; i++)
		if (strcmp(s, d->names[i]) == 0)
			return i;
	ub_opt_bad(d, s);
}

static const struct ub_mode *
ub_opt_mode(const struct ub_opt *d, const char *s)
{
	int i;

	for (i = 0; ub_modes[i] != NULL; i++)
		if (strcmp(s, ub_modes[i]->name) == 0)
			return ub_modes[i];
	ub_opt_bad(d, s);
}

/* Store the value of option d, read from its argument a. */
static void
ub_opt_set(struct ub_opts *o, const struct ub_opt *d, const char *a)
{
	char *p = (char *)o + d->off;

	switch (d->type) {
	case UB_OPT_INT:
		*(int *)p = (int)ub_opt_num(d, a);
		break;
	case UB_OPT_LONG:
		*(long *)p = (long)ub_opt_num(d, a);
		break;
	case UB_OPT_DOUBLE:
		*(double *)p = ub_opt_num(d, a);
		break;
	case UB_OPT_STR:
		*(const char **)p = a;
		break;
	case UB_OPT_BYTES:
		*(uint64_t *)p = ub_opt_bytes(d, a);
		break;
	case UB_OPT_PICK:
		*(int *)p = ub_opt_pick(d, a);
		break;
	case UB_OPT_CASE:
		*(enum upc_mode *)p = ub_opt_pick(d, a) ? UPC_ASCII :
		                                          UPC_UNICODE;
		break;
	case UB_OPT_MODE:
		*(const struct ub_mode **)p = ub_opt_mode(d, a);
		break;
	}
}

/* Defaults that depend on the mode; -1 marks "not given". */
static void
ub_opt_defaults(struct ub_opts *o)
{
	int timed = o->mode->timed;

	if (o->conns < 0)
		o->conns = o->mode->conns;
	if (o->udp_port < 0)
		o->udp_port = o->port;
	if (o->duration < 0)
		o->duration = timed ? 60 : 10;
	if (o->warmup < 0 || timed)
		o->warmup = timed ? 0 : 1;
	if (o->mode->check != NULL)
		o->mode->check(o);
}

/* getopt_long's table, made from ub_opt_table: an option's value is its
 * index there. */
static const struct option *
ub_opt_longopts(void)
{
	static struct option l[UB_OPT_N + 2];
	size_t i;

	for (i = 0; i < UB_OPT_N; i++)
		l[i] = (struct option){ ub_opt_table[i].name, required_argument,
			NULL, (int)i };
	l[i] = (struct option){ "help", no_argument, NULL, UB_OPT_HELP };
	return l;
}

/* Fill o from the command line, or exit: 0 after --help, 2 on a bad
 * option, value or combination. */
void
ub_opt_parse(struct ub_opts *o, int argc, char **argv)
{
	const struct option *l = ub_opt_longopts();
	int c;

	*o = (struct ub_opts){ .mode = ub_modes[0],
		.host = "127.0.0.1",
		.port = 12000,
		.udp_port = -1,
		.conns = -1,
		.depth = 1,
		.size = 64,
		.sockets = 4,
		.idle = 10000,
		.procs = 1,
		.requests = 1000,
		.duration = -1,
		.warmup = -1,
		.grace = 2,
		.connect_timeout = 30,
		.udp_timeout = 0.2,
		.bytes = 1ULL << 30,
		.upc = UPC_UNICODE };
	while ((c = getopt_long(argc, argv, "", l, NULL)) != -1) {
		if (c == UB_OPT_HELP) {
			ub_opt_usage(stdout);
			exit(0);
		}
		if (c < 0 || (size_t)c >= UB_OPT_N) {
			ub_opt_usage(stderr);
			exit(2);
		}
		ub_opt_set(o, &ub_opt_table[c], optarg);
	}
	if (optind != argc) {
		ub_opt_usage(stderr);
		exit(2);
	}
	ub_opt_defaults(o);
}
