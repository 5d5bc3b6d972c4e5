/*
 * loop.c: the supervisor's single-threaded event loop.  One epoll watches
 * a signalfd (every signal the supervisor handles is blocked and read
 * here, so no handler ever runs in the middle of a fork or a render), a
 * 100 ms timerfd that drives the lifecycle checks, and libmicrohttpd's own
 * epoll fd.  No threads exist, so fork() stays safe at any moment.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "evsrc.h"
#include "log.h"
#include "sup.h"
#include "upgrade.h"

#define SUP_TICK_NS 100000000L

static void
sup_sig_reap(struct sup *s, int signo)
{
	(void)signo;
	sup_reap(s);
}

static void
sup_sig_stop(struct sup *s, int signo)
{
	ntf_stopping();
	sup_shutdown(s, signo == SIGQUIT);
}

static void
sup_sig_reload(struct sup *s, int signo)
{
	(void)signo;
	sup_reload(s);
}

static void
sup_sig_scale(struct sup *s, int signo)
{
	sup_scale(s, signo == SIGTTIN ? 1 : -1);
}

static void
sup_sig_reopen(struct sup *s, int signo)
{
	if (s->cfg.log_file[0] != '\0') {
		if (log_open(s->cfg.log_file) == -1)
			log_warn("reopen log file %s", s->cfg.log_file);
		else
			log_info("log file %s reopened", s->cfg.log_file);
	}
	sup_forward(s, signo);
}

static void
sup_sig_upgrade(struct sup *s, int signo)
{
	(void)signo;
	upg_start(s);
}

/* A signal with no meaning here: noted once at debug, then ignored, so
 * that a stray kill (ALRM, WINCH, ...) neither ends nor disturbs the
 * supervisor, whose default action for most of them is to die. */
static void
sup_sig_ignore(struct sup *s, int signo)
{
	static uint64_t seen[2]; /* one bit per signal number, up to 127 */

	(void)s;
	if (signo <= 0 || signo >= 128 ||
	    (seen[signo / 64] & 1ULL << signo % 64) != 0)
		return;
	seen[signo / 64] |= 1ULL << signo % 64;
	log_debug("signal %d (%s) has no meaning here, ignored", signo,
	    sigabbrev_np(signo) != NULL ? sigabbrev_np(signo) : "?");
}

/*
 * Every signal the supervisor reads from its signalfd, and what it does.
 * The ones with a meaning are the SPEC's signal table; the rest would
 * kill (or stop) the process by default, and are taken in only to be
 * ignored.  Real-time signals are ignored as well (sup_signals_init).
 * Giving a signal a meaning is changing its line.
 */
static const struct sup_sigact {
	int signo;
	void (*fn)(struct sup *, int);
} sup_sigacts[] = {
	{ SIGCHLD, sup_sig_reap },
	{ SIGTERM, sup_sig_stop },
	{ SIGINT, sup_sig_stop },
	{ SIGQUIT, sup_sig_stop },
	{ SIGHUP, sup_sig_reload },
	{ SIGTTIN, sup_sig_scale },
	{ SIGTTOU, sup_sig_scale },
	{ SIGUSR1, sup_sig_reopen },
	{ SIGUSR2, sup_sig_upgrade },
	{ SIGALRM, sup_sig_ignore },
	{ SIGVTALRM, sup_sig_ignore },
	{ SIGPROF, sup_sig_ignore },
	{ SIGWINCH, sup_sig_ignore },
	{ SIGPIPE, sup_sig_ignore },
	{ SIGIO, sup_sig_ignore },
	{ SIGPWR, sup_sig_ignore },
	{ SIGSTKFLT, sup_sig_ignore },
	{ SIGURG, sup_sig_ignore },
	{ SIGXCPU, sup_sig_ignore },
	{ SIGXFSZ, sup_sig_ignore },
	{ SIGTSTP, sup_sig_ignore },
};

#define SUP_NSIGACTS (sizeof(sup_sigacts) / sizeof(sup_sigacts[0]))

/* Must run before the first fork so children start from a known mask. */
void
sup_signals_init(struct sup *s)
{
	sigset_t set;
	size_t i;
	int rt;

	sigemptyset(&set);
	for (i = 0; i < SUP_NSIGACTS; i++)
		sigaddset(&set, sup_sigacts[i].signo);
	for (rt = SIGRTMIN; rt <= SIGRTMAX; rt++)
		sigaddset(&set, rt);
	if (evsrc_open(&s->ev, &set, SUP_TICK_NS) == -1)
		fatal("signalfd, timerfd and epoll for the event loop");
}

static void
sup_on_signal(struct sup *s, int signo)
{
	size_t i;

	/* HUP, TERM, INT and USR2 wait while an upgrade is being tried */
	if (upg_queue(s, signo))
		return;
	for (i = 0; i < SUP_NSIGACTS; i++)
		if (sup_sigacts[i].signo == signo) {
			sup_sigacts[i].fn(s, signo);
			return;
		}
	sup_sig_ignore(s, signo);
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
	upg_tick(s);
	ntf_tick(s);
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
			else if (ev[i].data.u64 == SUP_EV_UPGRADE)
				upg_on_pipe(s);
			else if (ev[i].data.u64 != SUP_EV_HTTP)
				gate_event(s, ev[i].data.ptr);
		}
		sup_http_run(s);
	}
	return 0;
}
