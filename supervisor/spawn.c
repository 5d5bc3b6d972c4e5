/*
 * spawn.c: the worker lifecycle, everything that forks, signals or reaps a
 * worker.  Policy lives here: respawn with backoff after a crash, never
 * after exit status 2, replace a hung worker at once, start a replacement
 * before stopping the old worker on reload and recycle (so the shared
 * listener always has a waiter), and SIGKILL whatever outlives its drain.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backoff.h"
#include "log.h"
#include "net.h"
#include "sup.h"
#include "upgrade.h"
#include "worker.h"

#define NS 1000000000ULL

static const char *const sup_reason_names[] = SNAP_REASON_NAMES;

/* A forked worker must not hold the supervisor's HTTP client sockets (or
 * anything else it opened): close everything but what it keeps. */
static int
spawn_cmp_fd(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* The fds a worker keeps: its sockets and the log. */
#define SPAWN_KEEP_MAX (2 * CFG_MAX_ADDRS + 1)

/* A forked worker must not hold the supervisor's HTTP client sockets (or
 * anything else it opened): close everything but what it keeps. */
static void
spawn_close_except(int *sorted, int n)
{
	int i, next = 3;

	qsort(sorted, (size_t)n, sizeof(int), spawn_cmp_fd);
	for (i = 0; i < n; i++) {
		if (sorted[i] < next)
			continue;
		if (sorted[i] > next)
			close_range((unsigned)next, (unsigned)sorted[i] - 1, 0);
		next = sorted[i] + 1;
	}
	close_range((unsigned)next, ~0U, 0);
}

static int
sup_cell_alloc(struct sup *s)
{
	int i;

	for (i = 0; i < CTR_MAX_CELLS; i++)
		if (s->proc[i].pid == 0 && !s->tab->cell[i].in_use)
			return i;
	return -1;
}

/* The child's side of fork: a clean signal state, only the fds a worker
 * keeps, and death with the supervisor. */
static void __attribute__((noreturn))
sup_child(struct sup *s, unsigned slot, int cell)
{
	struct wrk_args a = { &s->cfg, s->tab, (unsigned)cell, slot, s->pid,
		{ 0 }, s->ntcp, { 0 }, s->nudp };
	int keep[SPAWN_KEEP_MAX], n = 0;
	unsigned i;
	sigset_t none;

	memcpy(a.tcp_fd, s->tcp_fd, sizeof(a.tcp_fd));
	memcpy(a.udp_fd, s->udp_fd, sizeof(a.udp_fd));
	for (i = 0; i < s->ntcp; i++)
		keep[n++] = s->tcp_fd[i];
	for (i = 0; i < s->nudp; i++)
		keep[n++] = s->udp_fd[i];
	keep[n++] = log_fd();
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	spawn_close_except(keep, n);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != s->pid)
		_exit(1);
	_exit(wrk_main(&a));
}

/* Fork a worker for slot; returns its cell, or -1 (logged). */
static int
sup_spawn(struct sup *s, unsigned slot)
{
	struct ctr_cell *c;
	pid_t pid;
	int cell;

	if ((cell = sup_cell_alloc(s)) == -1) {
		log_warnx("no free counter cell for worker %u", slot);
		return -1;
	}
	c = &s->tab->cell[cell];
	memset(c, 0, sizeof(*c));
	c->slot = slot;
	c->heartbeat_ns = ctr_clock_ns();
	c->in_use = 1;
	if ((unsigned)cell >= s->tab->ncells_hwm)
		__atomic_store_n(&s->tab->ncells_hwm, (unsigned)cell + 1,
		    __ATOMIC_RELEASE);
	if ((pid = fork()) == -1) {
		log_warn("fork worker %u", slot);
		c->in_use = 0;
		return -1;
	}
	if (pid == 0)
		sup_child(s, slot, cell);
	c->pid = pid;
	s->proc[cell] = (struct sup_proc){ .pid = pid,
		.slot = slot,
		.started_ns = ctr_clock_ns(),
		.started_at = sup_epoch() };
	log_debug("worker %u started, pid %d", slot, (int)pid);
	return cell;
}

/* Tell a process to stop gracefully; SIGKILL follows past the drain. */
static void
sup_stop_proc(struct sup *s, int cell, enum sup_stop why)
{
	struct sup_proc *p = &s->proc[cell];

	if (p->pid == 0 || p->stop != SUP_STOP_NONE)
		return;
	p->stop = why;
	p->kill_at_ns = ctr_clock_ns() + (s->cfg.drain_timeout + 2ULL) * NS;
	if (kill(p->pid, SIGTERM) == -1)
		log_warn("kill worker %u pid %d", p->slot, (int)p->pid);
}

static void
sup_kill_proc(struct sup *s, int cell, enum sup_stop why)
{
	struct sup_proc *p = &s->proc[cell];

	if (p->pid == 0)
		return;
	p->stop = why;
	p->kill_at_ns = 0;
	(void)kill(p->pid, SIGKILL);
}

static void
sup_slot_reset(struct sup_slot *sl)
{
	memset(sl, 0, sizeof(*sl));
	sl->active = sl->next = -1;
}

void
sup_start_workers(struct sup *s)
{
	unsigned i;

	for (i = 0; i < CFG_MAX_WORKERS; i++)
		sup_slot_reset(&s->slot[i]);
	s->configured = s->cfg.workers;
	s->nslots = s->configured;
	for (i = 0; i < s->configured; i++) {
		s->slot[i].used = 1;
		s->slot[i].active = sup_spawn(s, i);
	}
}

unsigned
sup_live_procs(const struct sup *s)
{
	unsigned i, n = 0, hwm = s->tab->ncells_hwm;

	for (i = 0; i < hwm; i++)
		n += s->proc[i].pid != 0;
	return n;
}

static int
sup_proc_ready(const struct sup *s, int cell)
{
	return cell >= 0 &&
	    __atomic_load_n(&s->tab->cell[cell].ready, __ATOMIC_ACQUIRE);
}

/* The cell of the process that stands for slot i: its active worker, else
 * one still draining (a retired slot, or one whose worker is stopping), else
 * -1. */
int
sup_slot_proc(const struct sup *s, unsigned i)
{
	unsigned c, hwm = s->tab->ncells_hwm;

	if (s->slot[i].active >= 0)
		return s->slot[i].active;
	for (c = 0; c < hwm; c++)
		if (s->proc[c].pid && s->proc[c].slot == i)
			return (int)c;
	return -1;
}

/* Derived, never stored, so it cannot disagree with the process table. */
enum snap_state
sup_slot_state(const struct sup *s, unsigned i)
{
	const struct sup_slot *sl = &s->slot[i];

	if (sl->active >= 0) {
		if (s->proc[sl->active].stop != SUP_STOP_NONE)
			return SNAP_DRAINING;
		return sup_proc_ready(s, sl->active) ? SNAP_RUNNING :
		                                       SNAP_STARTING;
	}
	if (!sl->retired && !sl->failed && s->mode == SUP_RUNNING)
		return SNAP_BACKOFF;
	return sup_slot_proc(s, i) >= 0 ? SNAP_DRAINING : SNAP_STOPPED;
}

static void
sup_describe_exit(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "exit %d", WEXITSTATUS(status));
}

/*
 * A worker the supervisor did not ask to stop has died: count the crash
 * and schedule the respawn.  A serving worker that reports a startup
 * error (exit 2) is not respawned: that would only repeat it.  A
 * replacement (reload, recycle) that does is tried again with the same
 * backoff, as the old worker still holds the slot: giving up would leave
 * a reload half done for good, or a recycling worker that takes no new
 * clients waiting for a successor forever.
 */
static void
sup_on_crash(struct sup_slot *sl, const struct sup_proc *p, int status,
    int was_next)
{
	double uptime = (double)(ctr_clock_ns() - p->started_ns) / 1e9;

	if (WIFEXITED(status) && WEXITSTATUS(status) == 2 && !was_next) {
		sl->failed = 1;
		log_error("worker %u pid %d exited with status 2 (startup "
		          "error), not respawned",
		    p->slot, (int)p->pid);
		return;
	}
	sl->restarts[SNAP_CRASH]++;
	sl->backoff_s = backoff_next(sl->backoff_s, uptime);
	sl->respawn_at_ns = ctr_clock_ns() + sl->backoff_s * NS;
	if (was_next)
		sl->next_pending = 1;
	log_warnx("worker %u %spid %d %s %s after %.1fs, %s in %us", p->slot,
	    was_next ? "replacement " : "", (int)p->pid,
	    WIFSIGNALED(status) ? "killed by" : "exited with", sl->last_exit,
	    uptime, was_next ? "the old worker serves on, retry" : "respawn",
	    sl->backoff_s);
}

/*
 * A reaped process gives its cell back: its counters and CPU time fold into
 * the slot's base (so nothing the slot counted is lost or counted twice)
 * and the slot's pointers move on (a dying active process hands the slot to
 * its starting replacement).  Then the cause decides what follows: a stop
 * the supervisor asked for, or any death while stopping, is logged and
 * ends there; a crash of the serving process whose replacement is already
 * forked counts as a crash but needs no respawn; any other crash of an
 * active or starting process goes to the backoff policy.
 */
static void
sup_on_exit(struct sup *s, int cell, int status, const struct rusage *ru)
{
	struct sup_proc p = s->proc[cell];
	struct sup_slot *sl = &s->slot[p.slot];
	int was_active = sl->active == cell, was_next = sl->next == cell;

	ctr_fold(sl->base_v, &sl->base_hist, &s->tab->cell[cell]);
	sl->base_cpu += (double)ru->ru_utime.tv_sec +
	    ru->ru_utime.tv_usec / 1e6 + (double)ru->ru_stime.tv_sec +
	    ru->ru_stime.tv_usec / 1e6;
	memset(&s->tab->cell[cell], 0, sizeof(s->tab->cell[cell]));
	memset(&s->proc[cell], 0, sizeof(s->proc[cell]));
	sup_describe_exit(status, sl->last_exit, sizeof(sl->last_exit));
	if (was_next)
		sl->next = -1;
	if (was_active) {
		/* A replacement already starting takes over the slot. */
		sl->active = sl->next;
		sl->next = -1;
		was_next = 0;
	}
	if (p.stop == SUP_STOP_SUPERSEDED) {
		/* stopped on purpose by a later reload: not a crash */
		log_info("worker %u replacement pid %d superseded before it "
		         "served",
		    p.slot, (int)p.pid);
		return;
	}
	if (p.stop != SUP_STOP_NONE) {
		log_info("worker %u pid %d stopped (%s)", p.slot, (int)p.pid,
		    sl->last_exit);
		return;
	}
	if (s->mode != SUP_RUNNING) {
		log_info("worker %u pid %d ended (%s)", p.slot, (int)p.pid,
		    sl->last_exit);
		return;
	}
	if (was_active && sl->active >= 0) {
		/* its replacement, already forked, holds the slot: nothing
		 * to respawn, so no backoff either */
		sl->restarts[SNAP_CRASH]++;
		log_warnx("worker %u pid %d %s %s; replacement pid %d takes "
		          "over",
		    p.slot, (int)p.pid,
		    WIFSIGNALED(status) ? "killed by" : "exited with",
		    sl->last_exit, (int)s->proc[sl->active].pid);
	} else if (was_active || was_next)
		sup_on_crash(sl, &p, status, was_next);
}

static int
sup_find_cell(const struct sup *s, pid_t pid)
{
	unsigned i, hwm = s->tab->ncells_hwm;

	for (i = 0; i < hwm; i++)
		if (s->proc[i].pid == pid)
			return (int)i;
	return -1;
}

/* SIGCHLD coalesces: reap until nothing is left. */
void
sup_reap(struct sup *s)
{
	struct rusage ru;
	pid_t pid;
	int status, cell;

	while ((pid = wait4(-1, &status, WNOHANG, &ru)) > 0) {
		if ((cell = sup_find_cell(s, pid)) >= 0)
			sup_on_exit(s, cell, status, &ru);
		else
			upg_reaped(s, pid, status);
	}
}

/* Heartbeat stale: say what the worker was doing, kill it and start the
 * replacement at once (a hang is not a crash loop: the timeout itself
 * spaces the spawns). */
static void
sup_check_hung(struct sup *s, unsigned i, uint64_t now)
{
	struct sup_slot *sl = &s->slot[i];
	const struct ctr_cell *c = &s->tab->cell[sl->active];
	uint64_t hb = __atomic_load_n(&c->heartbeat_ns, __ATOMIC_RELAXED);
	uint64_t act = __atomic_load_n(&c->activity_ns, __ATOMIC_RELAXED);
	int cell = sl->active;
	char last[32] = "never";

	if (now < hb || now - hb < (uint64_t)s->cfg.heartbeat_timeout * NS)
		return;
	if (act)
		snprintf(last, sizeof(last), "%.1fs ago",
		    (double)(now - act) / 1e9);
	log_warnx("worker %u pid %d hung: no heartbeat for %.1fs while "
	          "%s, %llu connections open, last client i/o %s; killing it",
	    i, (int)s->proc[cell].pid, (double)(now - hb) / 1e9,
	    c->ready ? "serving" : "starting",
	    (unsigned long long)ctr_get(&c->v[CTR_tcp_connections_active]),
	    last);
	sup_kill_proc(s, cell, SUP_STOP_HUNG);
	sl->restarts[SNAP_HUNG]++;
	sl->active = sup_spawn(s, i);
	if (sl->active == -1)
		sl->respawn_at_ns = now + NS;
}

/* A replacement (reload, recycle) that never starts serving would block
 * its slot's swap for good: past the heartbeat timeout it is killed as
 * hung and asked for again a second later; the old worker serves on. */
static void
sup_check_next(struct sup *s, unsigned i, uint64_t now)
{
	struct sup_slot *sl = &s->slot[i];
	const struct sup_proc *p = &s->proc[sl->next];

	if (sup_proc_ready(s, sl->next) || now < p->started_ns ||
	    now - p->started_ns < (uint64_t)s->cfg.heartbeat_timeout * NS)
		return;
	log_warnx("worker %u replacement pid %d not serving after %.1fs, "
	          "killing it",
	    i, (int)p->pid, (double)(now - p->started_ns) / 1e9);
	sup_kill_proc(s, sl->next, SUP_STOP_HUNG);
	sl->restarts[SNAP_HUNG]++;
	sl->next = -1;
	sl->next_pending = 1;
	sl->respawn_at_ns = now + NS;
}

/* A replacement asked for by reload or recycle: fork it now, swap it in
 * once it serves (sup_check_swap). */
static void
sup_begin_replace(struct sup *s, unsigned i, enum snap_reason why)
{
	struct sup_slot *sl = &s->slot[i];

	sl->next_reason = why;
	sl->next_pending = 0;
	if ((sl->next = sup_spawn(s, i)) == -1) {
		sl->next_pending = 1;
		sl->respawn_at_ns = ctr_clock_ns() + NS;
	}
}

static void
sup_check_swap(struct sup *s, unsigned i)
{
	struct sup_slot *sl = &s->slot[i];
	enum sup_stop why;

	if (sl->next < 0 || !sup_proc_ready(s, sl->next))
		return;
	why = sl->next_reason == SNAP_RELOAD ? SUP_STOP_RELOAD :
	                                       SUP_STOP_RECYCLE;
	if (sl->active >= 0) {
		log_info("worker %u pid %d replaced by pid %d (%s), draining",
		    i, (int)s->proc[sl->active].pid, (int)s->proc[sl->next].pid,
		    sup_reason_names[sl->next_reason]);
		sup_stop_proc(s, sl->active, why);
	}
	sl->restarts[sl->next_reason]++;
	sl->active = sl->next;
	sl->next = -1;
}

static void
sup_tick_slot(struct sup *s, unsigned i, uint64_t now)
{
	struct sup_slot *sl = &s->slot[i];

	if (sl->retired || sl->failed)
		return;
	if (sl->active >= 0) {
		sup_check_hung(s, i, now);
		if (sl->active >= 0 && sl->next < 0 && !sl->next_pending &&
		    s->tab->cell[sl->active].recycle) {
			log_info("worker %u pid %d reached --max-requests, "
			         "recycling",
			    i, (int)s->proc[sl->active].pid);
			sup_begin_replace(s, i, SNAP_RECYCLE);
		}
		if (sl->next >= 0)
			sup_check_next(s, i, now);
		if (sl->next_pending && now >= sl->respawn_at_ns)
			sup_begin_replace(s, i, sl->next_reason);
		sup_check_swap(s, i);
	} else if (now >= sl->respawn_at_ns) {
		sl->next_pending = 0;
		if ((sl->active = sup_spawn(s, i)) == -1)
			sl->respawn_at_ns = now + NS;
	}
}

static void
sup_kill_overdue(struct sup *s, uint64_t now)
{
	unsigned i, hwm = s->tab->ncells_hwm;
	struct sup_proc *p;

	for (i = 0; i < hwm; i++) {
		p = &s->proc[i];
		if (p->pid && p->kill_at_ns && now >= p->kill_at_ns) {
			log_warnx("worker %u pid %d outlived its drain, "
			          "killing it",
			    p->slot, (int)p->pid);
			sup_kill_proc(s, (int)i, p->stop);
		}
	}
}

static const char *
sup_stats_scheme(const struct sup *s)
{
	return s->cfg.stats_tls_cert[0] != '\0' ? "https://" : "http://";
}

/* Log the ready line once every configured worker serves, and after a
 * reload once every replacement does.  /healthz calls it too, so at start
 * no client sees 200 before the line is written (during a reload the old
 * workers serve, and /healthz says 200 throughout). */
/* The local names of fds, space-separated, or "off" when n is 0. */
static void
sup_names(const int *fds, unsigned n, char *buf, size_t len)
{
	size_t o = 0;
	unsigned i;

	snprintf(buf, len, "off");
	for (i = 0; i < n && o + 1 < len; i++) {
		if (i > 0)
			buf[o++] = ' ';
		net_local_name(fds[i], buf + o, len - o);
		o += strlen(buf + o);
	}
}

void
sup_announce(struct sup *s)
{
	char tcp[400], udp[400], stats[80] = "off";
	unsigned i;

	if (s->announced || s->mode != SUP_RUNNING)
		return;
	for (i = 0; i < s->configured; i++)
		if (sup_slot_state(s, i) != SNAP_RUNNING ||
		    s->slot[i].next >= 0 || s->slot[i].next_pending)
			return;
	s->announced = 1;
	ntf_ready(s);
	sup_names(s->tcp_fd, s->ntcp, tcp, sizeof(tcp));
	sup_names(s->udp_fd, s->nudp, udp, sizeof(udp));
	if (s->stats_fd != -1)
		net_local_name(s->stats_fd, stats, sizeof(stats));
	log_info("upperd %s ready: %u worker%s, tcp %s, udp %s, stats %s%s%s",
	    UPPERD_VERSION, s->configured, s->configured == 1 ? "" : "s", tcp,
	    udp, s->stats_fd == -1 ? "" : sup_stats_scheme(s), stats,
	    s->stats_fd != -1 ? "/" : "");
}

void
sup_tick(struct sup *s)
{
	uint64_t now = ctr_clock_ns();
	unsigned i;

	sup_kill_overdue(s, now);
	if (s->mode == SUP_RUNNING && s->lame_until_ns &&
	    now >= s->lame_until_ns)
		sup_shutdown(s, 0);
	if (s->mode != SUP_RUNNING)
		return;
	for (i = 0; i < s->nslots; i++)
		sup_tick_slot(s, i, now);
	sup_announce(s);
}

static void
sup_retire(struct sup *s, unsigned i)
{
	struct sup_slot *sl = &s->slot[i];

	sl->retired = 1;
	sl->next_pending = 0;
	if (sl->active >= 0)
		sup_stop_proc(s, sl->active, SUP_STOP_RETIRE);
	if (sl->next >= 0)
		sup_stop_proc(s, sl->next, SUP_STOP_RETIRE);
	sl->active = sl->next = -1;
}

/* Bring slot i (new, retired or failed) into service. */
static void
sup_enlist(struct sup *s, unsigned i)
{
	struct sup_slot *sl = &s->slot[i];

	sl->used = 1;
	sl->retired = sl->failed = 0;
	sl->backoff_s = 0;
	sl->respawn_at_ns = 0;
	if (i >= s->nslots)
		s->nslots = i + 1;
}

/* Listening addresses, the user and the pid file are fixed at start. */
static void
sup_keep_fixed(const struct cfg *old, struct cfg *nc)
{
	char tcp[CFG_MAX_ADDRS * CFG_ADDR_MAX], udp[sizeof(tcp)];
	char ntcp[sizeof(tcp)], nudp[sizeof(tcp)];

	cfg_addrs_text(old->tcp, old->ntcp, tcp, sizeof(tcp));
	cfg_addrs_text(old->udp, old->nudp, udp, sizeof(udp));
	cfg_addrs_text(nc->tcp, nc->ntcp, ntcp, sizeof(ntcp));
	cfg_addrs_text(nc->udp, nc->nudp, nudp, sizeof(nudp));
	if (strcmp(tcp, ntcp) || strcmp(udp, nudp) ||
	    strcmp(old->stats, nc->stats))
		log_warnx("reload: listening addresses cannot change without "
		          "a restart, keeping tcp %s udp %s stats %s",
		    tcp, udp, old->stats);
	memcpy(nc->tcp, old->tcp, sizeof(nc->tcp));
	memcpy(nc->udp, old->udp, sizeof(nc->udp));
	nc->ntcp = old->ntcp;
	nc->nudp = old->nudp;
	memcpy(nc->stats, old->stats, sizeof(nc->stats));
	memcpy(nc->user, old->user, sizeof(nc->user));
	memcpy(nc->pid_file, old->pid_file, sizeof(nc->pid_file));
}

static void
sup_reload_slot(struct sup *s, unsigned i)
{
	struct sup_slot *sl = &s->slot[i];

	if (sl->active < 0 || sl->retired || sl->failed) {
		/* Nothing serving to replace: start fresh on the next tick. */
		sup_enlist(s, i);
		return;
	}
	if (sl->next >= 0) {
		/* Forked with the previous configuration: start over.  It may
		 * have accepted connections already (it serves before the
		 * supervisor sees it ready), so it drains like any old one;
		 * a KILL here reset them. */
		sup_stop_proc(s, sl->next, SUP_STOP_SUPERSEDED);
		sl->next = -1;
	}
	sup_begin_replace(s, i, SNAP_RELOAD);
}

/* A log file named, renamed or dropped by the new configuration; one that
 * cannot be opened keeps the old destination. */
static void
sup_reload_log(const struct cfg *old, struct cfg *nc)
{
	if (strcmp(nc->log_file, old->log_file) == 0)
		return;
	if (nc->log_file[0] == '\0') {
		log_info("reload: no log file configured, logging to stderr");
		log_to_stderr();
	} else if (log_open(nc->log_file) == -1) {
		log_warn("reload: cannot open log file %s, keeping %s",
		    nc->log_file, old->log_file[0] ? old->log_file : "stderr");
		memcpy(nc->log_file, old->log_file, sizeof(nc->log_file));
	}
}

/*
 * --sched-policy for the supervisor: SCHED_BATCH unless "normal", so a
 * scrape or a supervisor tick does not cut into a worker's batch (its own
 * latency does not matter to anyone).  Workers inherit it across fork and
 * then set their own (worker.c, wrk_sched).
 */
void
sup_apply_sched(const struct cfg *c)
{
	struct sched_param sp = { .sched_priority = 0 };
	int policy = c->sched_policy == CFG_SCHED_NORMAL ? SCHED_OTHER :
	                                                   SCHED_BATCH;

	if (sched_getscheduler(0) != policy &&
	    sched_setscheduler(0, policy, &sp) == -1)
		log_warn("sched_setscheduler %s",
		    policy == SCHED_BATCH ? "SCHED_BATCH" : "SCHED_OTHER");
}

/* HUP: an invalid file changes nothing; a valid one replaces every worker
 * gracefully and may change their number. */
void
sup_reload(struct sup *s)
{
	char err[CFG_ERR_MAX];
	enum cfg_action action;
	struct cfg nc;
	unsigned i;

	if (s->mode != SUP_RUNNING || s->lame_until_ns) {
		/* a stop has begun: said, not swallowed */
		log_info("reload: stopping, HUP ignored");
		return;
	}
	if (cfg_load(&nc, s->argc, s->argv, &action, err, sizeof(err)) == -1) {
		log_error("reload failed, keeping the running configuration: "
		          "%s",
		    err);
		return;
	}
	/* the stats endpoint's TLS pair and users: all or nothing too */
	if (s->mhd != NULL && sup_http_load(s, &nc, err, sizeof(err)) == -1) {
		log_error("reload failed, keeping the running configuration: "
		          "%s",
		    err);
		return;
	}
	sup_keep_fixed(&s->cfg, &nc);
	sup_reload_log(&s->cfg, &nc);
	s->cfg = nc;
	log_setlevel(nc.log_level);
	sup_apply_sched(&nc);
	ntf_reloading();
	log_info("reloading: replacing workers, %u configured", nc.workers);
	for (i = nc.workers; i < s->configured; i++)
		sup_retire(s, i);
	for (i = 0; i < nc.workers; i++)
		sup_reload_slot(s, i);
	s->configured = nc.workers;
	s->announced = 0;
}

/* After a binary upgrade: every serving worker still runs the old binary,
 * so each is replaced as on a reload (the new one first, then the old one
 * drains); slots in backoff, failed or retired spawn from the new binary
 * when their turn comes, with their backoff kept. */
void
sup_replace_workers(struct sup *s)
{
	unsigned i;

	for (i = 0; i < s->configured; i++)
		if (s->slot[i].active >= 0 && !s->slot[i].retired &&
		    !s->slot[i].failed)
			sup_reload_slot(s, i);
	s->announced = 0;
}

/* TTIN/TTOU: one worker more or fewer, never below one. */
void
sup_scale(struct sup *s, int delta)
{
	unsigned i;

	if (s->mode != SUP_RUNNING)
		return;
	if (delta > 0 && s->configured < CFG_MAX_WORKERS) {
		i = s->configured++;
		sup_enlist(s, i);
		log_info("scaling up to %u workers", s->configured);
	} else if (delta < 0 && s->configured > 1) {
		i = --s->configured;
		sup_retire(s, i);
		log_info("scaling down to %u worker%s, retiring worker %u",
		    s->configured, s->configured == 1 ? "" : "s", i);
	} else {
		/* a refused request is said, not swallowed */
		log_warnx("%s ignored: already at %u worker%s (the %s)",
		    delta > 0 ? "TTIN" : "TTOU", s->configured,
		    s->configured == 1 ? "" : "s",
		    delta > 0 ? "most there can be" : "fewest there can be");
	}
}

/*
 * TERM/INT with --shutdown-delay: the lame duck.  Everything keeps serving
 * and accepting; only /healthz says 503, so that load balancers and
 * Kubernetes take the instance out before it stops accepting.  sup_tick
 * starts the drain when the delay is over; a second TERM/INT starts it at
 * once (an operator who insists), QUIT ends everything at once.
 */
static int
sup_lame_duck(struct sup *s)
{
	if (s->lame_until_ns == 0) {
		s->lame_until_ns = ctr_clock_ns() + s->cfg.shutdown_delay * NS;
		log_info("shutting down: lame duck for %us, then draining",
		    s->cfg.shutdown_delay);
		return 1;
	}
	if (ctr_clock_ns() < s->lame_until_ns)
		log_info("second stop signal: lame duck cut short");
	return 0;
}

/* TERM/INT drain (workers finish their connections up to the drain
 * timeout), QUIT kills at once.  The supervisor closes its copies of the
 * service sockets so that, once the workers close theirs, new clients are
 * refused instead of queueing on a listener nobody serves. */
void
sup_shutdown(struct sup *s, int immediate)
{
	unsigned i, hwm = s->tab->ncells_hwm;

	if (immediate) {
		s->mode = SUP_QUITTING;
		log_info("quit: stopping every worker now");
	} else if (s->mode == SUP_RUNNING) {
		if (s->cfg.shutdown_delay && sup_lame_duck(s))
			return;
		s->mode = SUP_STOPPING;
		log_info("shutting down: draining workers for up to %us",
		    s->cfg.drain_timeout);
	} else
		return;
	for (i = 0; i < s->ntcp; i++)
		close(s->tcp_fd[i]);
	for (i = 0; i < s->nudp; i++)
		close(s->udp_fd[i]);
	s->ntcp = s->nudp = 0;
	for (i = 0; i < hwm; i++) {
		if (immediate)
			sup_kill_proc(s, (int)i, SUP_STOP_SHUTDOWN);
		else
			sup_stop_proc(s, (int)i, SUP_STOP_SHUTDOWN);
	}
}

void
sup_forward(struct sup *s, int signo)
{
	unsigned i, hwm = s->tab->ncells_hwm;

	for (i = 0; i < hwm; i++)
		if (s->proc[i].pid)
			(void)kill(s->proc[i].pid, signo);
}
