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
#include <time.h>
#include <unistd.h>

#include "evsrc.h"
#include "log.h"
#include "sup.h"

#define SUP_TICK_NS 100000000L

/* Must run before the first fork so children start from a known mask. */
void
sup_signals_init(struct sup *s)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTTIN);
	sigaddset(&set, SIGTTOU);
	sigaddset(&set, SIGUSR1);
	if (evsrc_open(&s->ev, &set, SUP_TICK_NS) == -1)
		fatal("signalfd, timerfd and epoll for the event loop");
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

	while (read(s->ev.sig_fd, &si, sizeof(si)) == sizeof(si))
		sup_on_signal(s, (int)si.ssi_signo);
}

static void
sup_read_tick(struct sup *s)
{
	uint64_t n;

	if (read(s->ev.tick_fd, &n, sizeof(n)) != sizeof(n))
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

	if (s->mhd != NULL &&
	    (evsrc_watch(s->ev.ep, sup_http_fd(s), SUP_EV_HTTP) ||
	        evsrc_watch(s->ev.ep, s->stats_fd, SUP_EV_STATS)))
		fatal("epoll_ctl http");
	while (s->mode == SUP_RUNNING || sup_live_procs(s) > 0) {
		n = epoll_wait(s->ev.ep, ev, 16, sup_http_timeout_ms(s));
		if (n == -1 && errno != EINTR)
			fatal("epoll_wait");
		for (i = 0; i < n; i++) {
			if (ev[i].data.u64 == EVSRC_SIGNAL)
				sup_read_signals(s);
			else if (ev[i].data.u64 == EVSRC_TICK)
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
