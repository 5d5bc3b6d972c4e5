/*
 * worker.c: a worker process's event loop.  Its engine (engine.h: epoll
 * or io_uring) watches the shared listeners, the shared UDP sockets (one
 * of each per --tcp, --udp address), a signalfd (TERM drains, QUIT
 * exits, USR1 reopens the log) and a timerfd whose ticks write the
 * heartbeat the supervisor checks, expire idle connections and end a
 * drain on time.  Connections themselves live in tcp.c, datagrams in
 * udp.c.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "evsrc.h"
#include "log.h"
#include "proctitle.h"
#include "worker.h"
#include "wrk.h"

#define WRK_TICK_NS 250000000L
#define WRK_STALE_NS 1000000000ULL /* four missed ticks */
#define WRK_RELISTEN_MS 2          /* re-check of a worker that stepped back */
/* --sched-policy auto: SCHED_BATCH from this much work per tick (clients
 * with input, UDP reads that found several datagrams), SCHED_OTHER again
 * at or below WRK_SCHED_IDLE. */
#define WRK_SCHED_BUSY 4
#define WRK_SCHED_IDLE 1

/* A heartbeat written after our clock read is fresh, not 584 years old. */
static int
wrk_stale(const struct wrk *w, uint64_t heartbeat_ns)
{
	return heartbeat_ns < w->now_ns &&
	    w->now_ns - heartbeat_ns > WRK_STALE_NS;
}

/*
 * Even load without a lock: a worker accepts only while its load is no
 * more than the mean of the serving workers' plus a little slack (nginx's
 * accept_disabled, computed from real numbers).  Load is open connections
 * plus connections accepted lately, so long-lived and short connections
 * both spread evenly.  Workers that are draining, recycling or silent (a
 * stale heartbeat: stopped or hung) do not count, or a frozen worker would
 * hold the mean down and stall the others; a recycling worker accepts
 * only while no other worker serves.  The least-loaded worker always
 * qualifies, so the listener is never left without a taker for longer than
 * the WRK_RELISTEN_MS poll of the workers that stepped back.
 */
int
wrk_may_accept(struct wrk *w)
{
	uint32_t i,
	    hwm = __atomic_load_n(&w->tab->ncells_hwm, __ATOMIC_ACQUIRE);
	uint64_t total = 0, n = 0, mine, mean;
	const struct ctr_cell *c;

	for (i = 0; i < hwm; i++) {
		c = &w->tab->cell[i];
		if (!__atomic_load_n(&c->in_use, __ATOMIC_RELAXED) ||
		    !__atomic_load_n(&c->ready, __ATOMIC_RELAXED) ||
		    __atomic_load_n(&c->draining, __ATOMIC_RELAXED) ||
		    __atomic_load_n(&c->recycle, __ATOMIC_RELAXED) ||
		    wrk_stale(w, ctr_get(&c->heartbeat_ns)))
			continue;
		total += ctr_get(&c->v[CTR_tcp_connections_active]) +
		    ctr_get(&c->recent);
		n++;
	}
	if (w->recycling) /* not counted above: accept only if nobody else */
		return n == 0;
	if (n <= 1)
		return 1;
	mine = ctr_get(&w->cell->v[CTR_tcp_connections_active]) +
	    ctr_get(&w->cell->recent);
	mean = total / n;
	return mine <= mean + 1 + mean / 16;
}

/* Watch every listener, or none: the balancing above is per worker, not
 * per address. */
void
wrk_listen(struct wrk *w, int on)
{
	if (w->nlfd == 0 || w->listening == on)
		return;
	if (w->eng->listen(w, on) == -1)
		log_warn("%s: listener", w->eng->name);
	w->listening = on;
	__atomic_store_n(&w->cell->listening, (uint32_t)on, __ATOMIC_RELAXED);
}

/* Counted for --max-requests: past the jittered limit, ask the
 * supervisor to swap this worker out; it sends TERM once the replacement
 * serves.  Until then new connections go to other workers if any serve
 * (wrk_may_accept), else still to this one, and datagrams are answered:
 * a replacement that cannot start (it is retried with backoff) must not
 * leave the service with nobody accepting. */
void
wrk_served(struct wrk *w, uint64_t n)
{
	uint64_t v = ctr_get(&w->cell->served) + n;

	ctr_set(&w->cell->served, v);
	if (w->recycle_at == 0 || v < w->recycle_at || w->recycling)
		return;
	w->recycling = 1;
	__atomic_store_n(&w->cell->recycle, 1, __ATOMIC_RELAXED);
}

/* What ps shows for this worker (proctitle.h); top's name tells the
 * workers from the supervisor too. */
static void
wrk_title(unsigned slot, int draining)
{
	char comm[16];

	snprintf(comm, sizeof(comm), "upperd-w%u", slot);
	ptl_set(comm, "upperd: worker %u%s", slot,
	    draining ? " (draining)" : "");
}

/* TERM: stop taking new work, keep serving open connections until they
 * close or the drain timeout passes. */
static void
wrk_drain(struct wrk *w)
{
	unsigned i;

	if (w->draining)
		return;
	/*
	 * The engine watches the open sockets, not our fds, and the
	 * supervisor and the other workers keep both open: closing our fds
	 * alone would leave them watched.  So the engine lets go first
	 * (wrk_listen does the listener's), then they are closed.
	 */
	wrk_listen(w, 0);
	if (w->nufd > 0)
		w->eng->udp_close(w);
	for (i = 0; i < w->nufd; i++)
		close(w->ufd[i]);
	for (i = 0; i < w->nlfd; i++) {
		tcp_take_pending(w, i);
		close(w->lfd[i]);
	}
	w->nlfd = w->nufd = 0;
	w->draining = 1;
	wrk_title(w->slot, 1);
	w->drain_deadline_ns = w->now_ns +
	    (uint64_t)w->cfg->drain_timeout * 1000000000ULL;
	__atomic_store_n(&w->cell->draining, 1, __ATOMIC_RELAXED);
	log_debug("draining %u connections", w->nconns);
}

/* The signalfd is readable: QUIT sets w->quit, which ends the loop. */
void
wrk_signal(struct wrk *w)
{
	struct signalfd_siginfo si;

	while (!w->quit && read(w->ev.sig_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGQUIT)
			w->quit = 1;
		if (si.ssi_signo == SIGTERM)
			wrk_drain(w);
		else if (si.ssi_signo == SIGUSR1 && w->cfg->log_file[0] &&
		    log_open(w->cfg->log_file) == -1)
			log_warn("reopen %s", w->cfg->log_file);
	}
}

static void
wrk_set_batch(struct wrk *w, int batch)
{
	struct sched_param sp = { .sched_priority = 0 };

	if (sched_setscheduler(0, batch ? SCHED_BATCH : SCHED_OTHER, &sp) ==
	    -1) {
		/* once: a sandbox that forbids it forbids it every tick */
		log_warn("sched_setscheduler, keeping the current policy");
		w->sched_fixed = 1;
		return;
	}
	w->batch = batch;
}

/*
 * A SCHED_BATCH process that wakes does not preempt the running one.
 * When the CPUs are all busy (more workers than cores, or clients and
 * other work on the same machine), a client's request then no longer
 * throws the worker onto the CPU for that one request and back: the
 * worker runs when the CPU frees or at the next scheduler tick and finds
 * every request that arrived meanwhile.  Measured on 2 cores with 50
 * local clients: 1.5x the requests per second of SCHED_OTHER and under
 * half its median latency.  It only pays when there is work to collect:
 * a worker serving one client waits for the CPU and finds one request
 * (1 us more per round trip on a shared CPU).  So under "auto" a worker
 * batches while several clients keep it busy and goes back to SCHED_OTHER
 * when one or none do.  On idle CPUs both policies run a woken worker at
 * once.
 */
static void
wrk_sched(struct wrk *w)
{
	enum cfg_sched p = w->cfg->sched_policy;
	int want = w->batch;

	if (p == CFG_SCHED_AUTO && w->tick_work >= WRK_SCHED_BUSY)
		want = 1;
	else if (p == CFG_SCHED_AUTO && w->tick_work <= WRK_SCHED_IDLE)
		want = 0;
	w->tick_work = 0;
	if (want != w->batch && !w->sched_fixed)
		wrk_set_batch(w, want);
}

static void
wrk_on_tick(struct wrk *w, pid_t parent)
{
	uint64_t n;

	(void)!read(w->ev.tick_fd, &n, sizeof(n));
	w->tick_seq++;
	wrk_sched(w);
	__atomic_store_n(&w->cell->heartbeat_ns, w->now_ns, __ATOMIC_RELAXED);
	ctr_set(&w->cell->recent, ctr_get(&w->cell->recent) / 2);
	if (w->cfg->idle_timeout)
		tcp_expire_idle(w);
	if (getppid() != parent)
		wrk_drain(w); /* orphaned despite PDEATHSIG: stop serving */
}

/*
 * Signals a worker ignores: a terminal's ^C or ^Z reaches the whole
 * process group, and only the supervisor acts on INT, HUP, TTIN, TTOU
 * (and USR2); the others have no meaning in upperd, and their default
 * action would end or stop the worker.  TERM, QUIT and USR1 are read
 * from the signalfd.
 */
static const int wrk_ignored[] = { SIGPIPE, SIGINT, SIGHUP, SIGTTIN, SIGTTOU,
	SIGTSTP, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR,
	SIGSTKFLT, SIGURG, SIGXCPU, SIGXFSZ };

static void
wrk_ignore_signals(void)
{
	size_t i;
	int rt;

	for (i = 0; i < sizeof(wrk_ignored) / sizeof(wrk_ignored[0]); i++)
		signal(wrk_ignored[i], SIG_IGN);
	for (rt = SIGRTMIN; rt <= SIGRTMAX; rt++)
		signal(rt, SIG_IGN);
}

static int
wrk_setup(struct wrk *w)
{
	sigset_t set;

	wrk_ignore_signals();
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGUSR1);
	if (evsrc_open(&w->ev, &set, WRK_TICK_NS) == -1 || eng_open(w) == -1)
		return -1;
	w->inbuf = malloc(WRK_INBUF);
	w->outbuf = malloc(WRK_OUTBUF);
	if (w->inbuf == NULL || w->outbuf == NULL ||
	    (w->nufd > 0 && udp_init(w) == -1))
		return -1;
	wrk_listen(w, 1);
	return 0;
}

/* The engine's wait timeout: a worker that stepped back from the listener
 * checks often whether to take it again, or when its accept pause ends. */
static int
wrk_timeout(const struct wrk *w)
{
	if (w->listening || w->nlfd == 0)
		return -1;
	if (w->now_ns < w->accept_resume_ns)
		return (
		    int)((w->accept_resume_ns - w->now_ns + 999999) / 1000000);
	return WRK_RELISTEN_MS;
}

static void
wrk_loop(struct wrk *w, pid_t parent)
{
	while (!w->quit) {
		w->tick = 0;
		if (w->eng->wait(w, wrk_timeout(w)) == -1) {
			log_warn("%s: wait", w->eng->name);
			break;
		}
		/*
		 * Only after every other event of the batch: the tick closes
		 * idle connections, and an event later in the batch may be
		 * for one of them, by then closed and its struct reused (it
		 * was closed twice).  Its input also means it is not idle.
		 * Nothing else closes a connection in mid-batch: an event
		 * closes only its own, QUIT stops the batch before
		 * tcp_close_all, and the drain deadline is checked below.
		 */
		if (w->tick && !w->quit)
			wrk_on_tick(w, parent);
		if (w->draining &&
		    (w->nconns == 0 || w->now_ns >= w->drain_deadline_ns))
			break;
		if (!w->draining && !w->listening &&
		    w->now_ns >= w->accept_resume_ns && wrk_may_accept(w))
			wrk_listen(w, 1);
	}
}

int
wrk_main(const struct wrk_args *a)
{
	static struct wrk w;
	char name[32];

	snprintf(name, sizeof(name), "worker %u", a->slot);
	log_procname(name);
	wrk_title(a->slot, 0);
	w.cfg = a->cfg;
	w.tab = a->tab;
	w.cell = &a->tab->cell[a->cell];
	w.slot = a->slot;
	memcpy(w.lfd, a->tcp_fd, sizeof(w.lfd));
	w.nlfd = a->ntcp;
	memcpy(w.ufd, a->udp_fd, sizeof(w.ufd));
	w.nufd = a->nudp;
	w.now_ns = ctr_clock_ns();
	if (a->cfg->max_requests) {
		srandom((unsigned)getpid() ^ (unsigned)w.now_ns);
		w.recycle_at = a->cfg->max_requests +
		    (uint64_t)random() % (a->cfg->max_requests / 10 + 1);
	}
	/* the policy is inherited from the supervisor (sup_apply_sched) */
	w.batch = sched_getscheduler(0) == SCHED_BATCH;
	if (a->cfg->sched_policy == CFG_SCHED_AUTO && w.batch)
		wrk_set_batch(&w, 0);
	if (wrk_setup(&w) == -1) {
		log_warn("worker setup");
		return 2;
	}
	__atomic_store_n(&w.cell->heartbeat_ns, w.now_ns, __ATOMIC_RELAXED);
	__atomic_store_n(&w.cell->ready, 1, __ATOMIC_RELEASE);
	wrk_loop(&w, a->parent);
	tcp_close_all(&w);
	return 0;
}
