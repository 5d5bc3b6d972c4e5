/*
 * loop.c: the supervisor's single-threaded event loop.  One epoll watches
 * a signalfd (every signal the supervisor handles is blocked and read
 * here, so no handler ever runs in the middle of a fork or a render), a
 * 100 ms timerfd that drives the lifecycle checks, and libmicrohttpd's own
 * epoll fd.  No threads exist, so fork() stays safe at any moment.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sup.h"

#define SUP_TICK_NS 100000000L
#define SUP_EV_SIGNAL 1
#define SUP_EV_TICK 2
#define SUP_EV_HTTP 3
#define SUP_EV_STATS 4

double
sup_epoch(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
sup_watch(int ep, int fd, uint64_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };

	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static void
sup_open_fds(struct sup *s)
{
	struct itimerspec its = {
		.it_interval = { 0, SUP_TICK_NS }, .it_value = { 0, SUP_TICK_NS }
	};
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTTIN);
	sigaddset(&set, SIGTTOU);
	sigaddset(&set, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
		fatal("sigprocmask");
	if ((s->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) == -1)
		fatal("signalfd");
	s->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (s->tick_fd == -1 || timerfd_settime(s->tick_fd, 0, &its, NULL) == -1)
		fatal("timerfd");
	if ((s->ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1");
	if (sup_watch(s->ep, s->sig_fd, SUP_EV_SIGNAL) == -1 ||
	    sup_watch(s->ep, s->tick_fd, SUP_EV_TICK) == -1)
		fatal("epoll_ctl");
}

/* Must run before the first fork so children start from a known mask. */
void
sup_signals_init(struct sup *s)
{
	signal(SIGPIPE, SIG_IGN);
	sup_open_fds(s);
}

static void
sup_reopen_log(struct sup *s)
{
	if (s->cfg.log_file[0] == '\0')
		return;
	if (log_open(s->cfg.log_file) == -1)
		log_warn("reopen log file %s", s->cfg.log_file);
	else
		log_info("log file %s reopened", s->cfg.log_file);
}

static void
sup_on_signal(struct sup *s, int signo)
{
	switch (signo) {
	case SIGCHLD:
		sup_reap(s);
		break;
	case SIGTERM:
	case SIGINT:
		sup_shutdown(s, 0);
		break;
	case SIGQUIT:
		sup_shutdown(s, 1);
		break;
	case SIGHUP:
		sup_reload(s);
		break;
	case SIGTTIN:
		sup_scale(s, 1);
		break;
	case SIGTTOU:
		sup_scale(s, -1);
		break;
	case SIGUSR1:
		sup_reopen_log(s);
		sup_forward(s, SIGUSR1);
		break;
	}
}

static void
sup_read_signals(struct sup *s)
{
	struct signalfd_siginfo si;

	while (read(s->sig_fd, &si, sizeof(si)) == sizeof(si))
		sup_on_signal(s, (int)si.ssi_signo);
}

static void
sup_read_tick(struct sup *s)
{
	uint64_t n;

	if (read(s->tick_fd, &n, sizeof(n)) != sizeof(n))
		return;
	sup_tick(s);
	if (s->mhd != NULL)
		gate_expire(s);
}

/* Runs until every worker is gone after TERM, INT or QUIT; returns the
 * supervisor's exit status. */
int
sup_loop(struct sup *s)
{
	struct epoll_event ev[16];
	int i, n;

	if (s->mhd != NULL && (sup_watch(s->ep, sup_http_fd(s), SUP_EV_HTTP) ||
	    sup_watch(s->ep, s->stats_fd, SUP_EV_STATS)))
		fatal("epoll_ctl http");
	while (s->mode == SUP_RUNNING || sup_live_procs(s) > 0) {
		n = epoll_wait(s->ep, ev, 16, sup_http_timeout_ms(s));
		if (n == -1 && errno != EINTR)
			fatal("epoll_wait");
		for (i = 0; i < n; i++) {
			if (ev[i].data.u64 == SUP_EV_SIGNAL)
				sup_read_signals(s);
			else if (ev[i].data.u64 == SUP_EV_TICK)
				sup_read_tick(s);
			else if (ev[i].data.u64 == SUP_EV_STATS)
				gate_accept(s);
			else if (ev[i].data.u64 != SUP_EV_HTTP)
				gate_event(s, ev[i].data.ptr);
		}
		sup_http_run(s);
	}
	return 0;
}
