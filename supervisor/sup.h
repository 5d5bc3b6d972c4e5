/*
 * sup.h: the supervisor's private state, shared by its files (loop.c,
 * spawn.c, http.c, snapshot.c).  One struct sup exists, owned by main.c.
 *
 * Processes are indexed by their counter cell: proc[i] is the worker that
 * writes table->cell[i], pid 0 when the cell is free.  A slot (worker index)
 * points at its serving process (active) and, during a reload or recycle,
 * at the replacement that is starting (next); processes told to stop keep
 * their cell until they are reaped, when it is folded into the slot's base.
 */
#ifndef UPPERD_SUP_H
#define UPPERD_SUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "config.h"
#include "counters.h"
#include "evsrc.h"
#include "snapshot.h"

/* Why the supervisor told a process to stop (none: it died on its own). */
enum sup_stop {
	SUP_STOP_NONE,
	SUP_STOP_HUNG,
	SUP_STOP_RELOAD,
	SUP_STOP_RECYCLE,
	SUP_STOP_RETIRE,
	SUP_STOP_SHUTDOWN,
	SUP_STOP_SUPERSEDED
};

struct sup_proc {
	pid_t pid; /* 0: cell free */
	unsigned slot;
	uint64_t started_ns; /* CLOCK_MONOTONIC */
	double started_at;   /* epoch seconds, for /stats */
	enum sup_stop stop;
	uint64_t kill_at_ns; /* SIGKILL deadline once told to stop; 0 none */
};

struct sup_slot {
	int used;    /* ever configured: shown in /stats */
	int retired; /* removed by TTOU or a smaller reload */
	int failed;  /* last worker exited 2: not respawned */
	int active;  /* cell of the serving process, -1 none */
	int next;    /* cell of a starting replacement, -1 none */
	enum snap_reason next_reason;
	int next_pending;       /* a replacement is wanted but not forked */
	unsigned backoff_s;     /* delay before the latest spawn */
	uint64_t respawn_at_ns; /* when active == -1: earliest next spawn */
	uint64_t restarts[SNAP_NREASONS];
	char last_exit[24];
	/* What reaped processes left behind (counters carry on). */
	uint64_t base_v[CTR_COUNT];
	struct ctr_hist base_hist;
	double base_cpu;
};

enum sup_mode { SUP_RUNNING, SUP_STOPPING, SUP_QUITTING };

/* A binary upgrade (upgrade.c): the probe of the new executable while it
 * runs, and what carries over the execve. */
struct sup_upgrade {
	char exe[CFG_PATH_MAX]; /* the path upperd was started from */
	pid_t probe;            /* the probe while it runs, else 0 */
	int pipe_fd;            /* its handshake pipe, -1 none */
	uint64_t deadline_ns;   /* CLOCK_MONOTONIC: ready by then */
	int timed_out;          /* the probe was killed at the deadline */
	char said[128];         /* what the probe wrote on the pipe */
	struct timespec mtime;  /* the file the probe was started from: */
	dev_t dev;              /* an execve of anything else would run */
	ino_t ino;              /* an executable nobody tried */
	off_t size;
	size_t nsaid;
	unsigned queued; /* UPG_Q_* signals waiting for the upgrade */
	uint64_t ok, failed;
};

struct sup {
	struct cfg cfg;
	int argc;
	char **argv;
	pid_t pid;
	double start_time; /* epoch */
	struct ctr_table *tab;
	int tab_fd; /* the table's memfd, handed over by an upgrade */
	int tcp_fd[CFG_MAX_ADDRS]; /* one listener per --tcp address */
	unsigned ntcp;             /* 0: TCP off (or closed at stop) */
	int udp_fd[CFG_MAX_ADDRS];
	unsigned nudp;
	int stats_fd;
	struct evsrc ev;
	struct MHD_Daemon *mhd;
	enum sup_mode mode;
	uint64_t lame_until_ns; /* TERM with --shutdown-delay: drain then */
	int announced;          /* the "ready" line was logged */
	unsigned configured;    /* workers wanted now (config, TTIN/TTOU) */
	unsigned nslots;        /* slots ever used */
	double last_scrape;     /* seconds the previous render took */
	struct sup_slot slot[CFG_MAX_WORKERS];
	struct sup_proc proc[CTR_MAX_CELLS];
	struct sup_upgrade upg;
};

/* Wall-clock seconds, for what /stats shows as epoch times. */
static inline double
sup_epoch(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* loop.c */
void sup_signals_init(struct sup *s);
int sup_loop(struct sup *s);

/* spawn.c: process lifecycle */
void sup_start_workers(struct sup *s);
void sup_reap(struct sup *s);
void sup_tick(struct sup *s);
void sup_reload(struct sup *s);
void sup_replace_workers(struct sup *s);
void sup_apply_sched(const struct cfg *c);
void sup_scale(struct sup *s, int delta);
void sup_shutdown(struct sup *s, int immediate);
void sup_forward(struct sup *s, int signo);
void sup_announce(struct sup *s);
unsigned sup_live_procs(const struct sup *s);
enum snap_state sup_slot_state(const struct sup *s, unsigned i);
int sup_slot_proc(const struct sup *s, unsigned i);

/* http.c */
/* Load --stats-tls-cert/-key and --stats-auth from c (start, HUP);
 * -1 with err changes nothing. */
int sup_http_load(struct sup *s, const struct cfg *c, char *err, size_t errlen);
int sup_http_start(struct sup *s);
int sup_http_fd(struct sup *s);
void sup_http_run(struct sup *s);
int sup_http_timeout_ms(struct sup *s);
void sup_http_stop(struct sup *s);

/* epoll tags of the supervisor's loop, after evsrc.h's two */
#define SUP_EV_HTTP 3    /* libmicrohttpd's own epoll fd */
#define SUP_EV_STATS 4   /* the stats listener */
#define SUP_EV_UPGRADE 5 /* an upgrade probe's handshake pipe */

/* gate.c: request-line check in front of libmicrohttpd */
void gate_init(int tls, unsigned held_max);
void gate_accept(struct sup *s);
void gate_event(struct sup *s, void *ptr);
void gate_expire(struct sup *s);
unsigned gate_settle_waiters(struct sup *s, uint64_t since_ns);

/* notify.c: systemd's notify protocol; all do nothing without
 * NOTIFY_SOCKET.  ntf_mainpid is for whoever changes the supervisor's pid
 * (MAINPID=). */
void ntf_init(void);
void ntf_tick(struct sup *s);
void ntf_ready(struct sup *s);
void ntf_reloading(void);
void ntf_stopping(void);
void ntf_mainpid(pid_t pid);

/* snapshot.c */
int sup_snapshot(struct sup *s, struct snapshot *snap);
void sup_snapshot_free(struct snapshot *snap);

#endif
