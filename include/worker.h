/*
 * worker.h: the one call that crosses from the supervisor into a freshly
 * forked worker.  Everything a worker needs is inherited: the parsed config,
 * the counter table, the service sockets and the log fd.
 */
#ifndef UPPERD_WORKER_H
#define UPPERD_WORKER_H

#include <sys/types.h>

#include "config.h"
#include "counters.h"

struct wrk_args {
	const struct cfg *cfg;
	struct ctr_table *tab;
	unsigned cell; /* this process's counter cell */
	unsigned slot; /* worker index: what the logs and metrics call it */
	pid_t parent;  /* the supervisor, to detect having been orphaned */
	int tcp_fd[CFG_MAX_ADDRS]; /* shared listeners, one per address */
	unsigned ntcp;             /* 0 when TCP is off */
	int udp_fd[CFG_MAX_ADDRS]; /* shared UDP sockets */
	unsigned nudp;
};

/* Run a worker until it is told to stop; returns its exit status (0 clean,
 * 2 startup error never respawned, 1 runtime failure).  Called in the child
 * right after fork; never returns into supervisor code. */
int wrk_main(const struct wrk_args *a);

#endif
