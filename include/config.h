/*
 * config.h: upperd's settings, from defaults, then the --config file, then
 * the command line (which always wins, on start and on every reload).
 * The supervisor parses; workers inherit the parsed struct across fork.
 */
#ifndef UPPERD_CONFIG_H
#define UPPERD_CONFIG_H

#include <stddef.h>

#include "log.h"
#include "upcase.h"

/* The version this binary was built as, stamped by make VERSION=...
 * into supervisor/version.c alone, so a restamp relinks one object. */
extern const char upperd_version[];
#define UPPERD_VERSION upperd_version

#define CFG_MAX_WORKERS 1024
#define CFG_ADDR_MAX 128
#define CFG_MAX_ADDRS 16 /* per kind: --tcp, --udp */
#define CFG_PATH_MAX 1024
#define CFG_ERR_MAX 256

/* Scheduling policy: auto (workers SCHED_BATCH while they have several
 * clients' work to batch, else SCHED_OTHER), batch (always SCHED_BATCH:
 * no wakeup preemption) or normal (SCHED_OTHER). */
enum cfg_sched { CFG_SCHED_AUTO, CFG_SCHED_BATCH, CFG_SCHED_NORMAL };

/* What a worker waits for events with (workers/engine.h). */
enum cfg_engine { CFG_ENGINE_EPOLL, CFG_ENGINE_URING };

struct cfg {
	char config[CFG_PATH_MAX]; /* "" = none */
	unsigned workers;
	char tcp[CFG_MAX_ADDRS][CFG_ADDR_MAX]; /* each gets its own socket */
	unsigned ntcp;                         /* 0: off */
	char udp[CFG_MAX_ADDRS][CFG_ADDR_MAX];
	unsigned nudp;
	char stats[CFG_ADDR_MAX]; /* "off" disables */
	unsigned max_conns;
	unsigned idle_timeout;      /* seconds, 0 = never */
	unsigned drain_timeout;     /* seconds */
	unsigned shutdown_delay;    /* seconds of lame duck before a drain */
	unsigned heartbeat_timeout; /* seconds */
	unsigned long max_requests; /* 0 = never */
	enum upc_mode case_mode;
	enum cfg_sched sched_policy;
	enum cfg_engine io_engine;
	enum log_level log_level;
	char log_file[CFG_PATH_MAX]; /* "" = stderr */
	char pid_file[CFG_PATH_MAX];
	char user[64];
	/* The next --tcp/--udp value starts its list afresh instead of
	 * adding to it: set by cfg_defaults and again before the command
	 * line, so each source replaces the lists it names (config.c). */
	unsigned char tcp_fresh, udp_fresh;
	/* the stats endpoint speaks HTTPS with these (PEM), both or none */
	char stats_tls_cert[CFG_PATH_MAX];
	char stats_tls_key[CFG_PATH_MAX];
	char stats_auth[CFG_PATH_MAX]; /* users file for Basic auth; "" none */
};

/* What the command line asked for besides settings; CFG_CHECK
 * (--check-config) comes with the settings fully loaded. */
enum cfg_action { CFG_RUN, CFG_HELP, CFG_VERSION, CFG_CHECK };

/* Fill c with the built-in defaults. */
void cfg_defaults(struct cfg *c);

/*
 * Build the effective settings: defaults, then the config file named on the
 * command line (if any), then the command line.  On error returns -1 with a
 * one-line message in err; *action tells help/version apart from a run.
 */
int cfg_load(struct cfg *c, int argc, char **argv, enum cfg_action *action,
    char *err, size_t errlen);

/* Apply one "key = value" setting (long option name as key); -1 + err. */
int cfg_set(struct cfg *c, const char *key, const char *value, char *err,
    size_t errlen);

/* Parse a config file's text into c; -1 + err naming file and line. */
int cfg_parse_file(struct cfg *c, const char *path, char *err, size_t errlen);

/* Write a --tcp/--udp list as the user would ("a,b", or "off" when n is 0)
 * into buf; for log lines and tests. */
void cfg_addrs_text(const char (*list)[CFG_ADDR_MAX], unsigned n, char *buf,
    size_t len);

/* The --help text. */
extern const char cfg_usage[];

#endif
