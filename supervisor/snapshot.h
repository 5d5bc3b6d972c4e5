/*
 * snapshot.h: a frozen copy of everything /stats and /metrics show.  The
 * supervisor fills it (snapshot.c: relaxed loads from the counter table,
 * /proc for CPU and memory); the renderers read only this, so they are pure
 * functions tested with golden output.
 */
#ifndef UPPERD_SNAPSHOT_H
#define UPPERD_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "counters.h"

enum snap_state {
	SNAP_STARTING,
	SNAP_RUNNING,
	SNAP_DRAINING,
	SNAP_BACKOFF,
	SNAP_STOPPED
};
#define SNAP_STATE_NAMES                                                \
	{                                                               \
		"starting", "running", "draining", "backoff", "stopped" \
	}

/* The supervisor as a whole (/stats "state"): a graceful stop is first
 * a lame duck (--shutdown-delay), then a drain. */
enum snap_sup_state { SNAP_SUP_RUNNING, SNAP_SUP_LAME_DUCK, SNAP_SUP_DRAINING };
#define SNAP_SUP_STATE_NAMES                       \
	{                                          \
		"running", "lame_duck", "draining" \
	}

enum snap_reason {
	SNAP_CRASH,
	SNAP_HUNG,
	SNAP_RECYCLE,
	SNAP_RELOAD,
	SNAP_NREASONS
};
#define SNAP_REASON_NAMES                            \
	{                                            \
		"crash", "hung", "recycle", "reload" \
	}

struct snap_worker {
	unsigned slot;
	pid_t pid; /* 0 when no process serves the slot */
	enum snap_state state;
	double started_at; /* epoch seconds of the current pid; 0 none */
	uint64_t restarts_by_reason[SNAP_NREASONS];
	char last_exit[24]; /* "signal N", "exit N", or "" for null */
	uint64_t v[CTR_COUNT];
	struct ctr_hist hist;
	double cpu_seconds; /* every process the slot ever had */
	uint64_t rss_bytes; /* live processes of the slot */
};

struct snap_process {
	double cpu_seconds;
	uint64_t rss_bytes;
	uint64_t vsize_bytes;
	uint64_t open_fds;
	uint64_t max_fds;
	double start_time; /* epoch seconds */
};

struct snapshot {
	const char *version;
	pid_t pid;
	enum snap_sup_state state;
	double now;        /* epoch seconds when taken */
	double start_time; /* epoch seconds the supervisor started */
	unsigned workers_configured;
	unsigned workers_running;
	double last_scrape_seconds; /* time the previous render took */
	uint64_t upgrades_ok;       /* binary upgrades (USR2) done */
	uint64_t upgrades_failed;   /* and refused, the old binary serving on */
	struct snap_process proc;
	size_t nworkers; /* slots ever used: configured or stopped */
	struct snap_worker *workers;
};

/* restarts of one slot: the sum over reasons. */
static inline uint64_t
snap_restarts(const struct snap_worker *w)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < SNAP_NREASONS; i++)
		n += w->restarts_by_reason[i];
	return n;
}

#endif
