/*
 * evsrc.h: the two event sources every upperd process's loop starts from.
 * The signals a process handles are blocked and read from a signalfd, so
 * no handler ever runs in the middle of a fork, a render or a write; a
 * periodic timerfd drives its housekeeping.  Both sit in a new epoll set,
 * tagged in data.u64, beside whatever else the loop watches.
 */
#ifndef UPPERD_EVSRC_H
#define UPPERD_EVSRC_H

#include <signal.h>
#include <stdint.h>

#define EVSRC_SIGNAL 1 /* epoll data.u64 of the signalfd */
#define EVSRC_TICK 2   /* and of the timerfd; callers tag from 3 on */

struct evsrc {
	int ep, sig_fd, tick_fd;
};

/* Block set, open the signalfd, a timerfd firing every tick_ns and the
 * epoll set holding both (all non-blocking, close-on-exec).  -1 with
 * errno set on failure: the caller reports it and exits. */
int evsrc_open(struct evsrc *e, const sigset_t *set, long tick_ns);
/* Watch fd for input in epoll set ep, tagged tag; epoll_ctl's result. */
int evsrc_watch(int ep, int fd, uint64_t tag);

#endif
