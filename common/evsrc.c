/*
 * evsrc.c: signalfd + timerfd + epoll, the start of the supervisor's loop
 * and of every worker's.
 */
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>

#include "evsrc.h"

int
evsrc_watch(int ep, int fd, uint64_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };

	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

int
evsrc_open(struct evsrc *e, const sigset_t *set, long tick_ns)
{
	struct itimerspec its = { .it_interval = { 0, tick_ns },
		.it_value = { 0, tick_ns } };

	e->ep = e->sig_fd = e->tick_fd = -1;
	if (sigprocmask(SIG_BLOCK, set, NULL) == -1 ||
	    (e->sig_fd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1 ||
	    (e->tick_fd = timerfd_create(CLOCK_MONOTONIC,
	         TFD_NONBLOCK | TFD_CLOEXEC)) == -1 ||
	    timerfd_settime(e->tick_fd, 0, &its, NULL) == -1 ||
	    (e->ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		return -1;
	if (evsrc_watch(e->ep, e->sig_fd, EVSRC_SIGNAL) == -1 ||
	    evsrc_watch(e->ep, e->tick_fd, EVSRC_TICK) == -1)
		return -1;
	return 0;
}
