/*
 * proc.c: upper-bench's client processes.  --procs forks that many, each
 * with its share of the connections (so the per-process fd limit is no
 * ceiling); they connect, report at a barrier (a struct ub_ready up their
 * pipe), wait there for --hold, start together when the parent closes the
 * go pipe, and send their struct ub_result up the same pipe.  The parent
 * adds the results.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

/* All of n bytes through a pipe, written (out) or read: 0, or -1 when
 * the other end is gone. */
static int
ub_proc_io(int fd, char *b, size_t n, int out)
{
	ssize_t r;

	while (n > 0) {
		r = out ? write(fd, b, n) : read(fd, b, n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

/* A child's report to the parent: 0, or -1 when the parent is gone. */
int
ub_proc_write_all(int fd, const void *p, size_t n)
{
	return ub_proc_io(fd, (char *)(uintptr_t)p, n, 1);
}

static int
ub_proc_read_all(int fd, void *p, size_t n)
{
	return ub_proc_io(fd, p, n, 0);
}

static void
ub_proc_merge(struct ub_result *t, const struct ub_result *r)
{
	unsigned i;

	t->requests += r->requests;
	t->bytes_tx += r->bytes_tx;
	t->bytes_rx += r->bytes_rx;
	t->errors += r->errors;
	t->lost += r->lost;
	t->late += r->late;
	t->reordered += r->reordered;
	t->stalled += r->stalled;
	t->connected += r->connected;
	t->connect_failures += r->connect_failures;
	t->idle_held += r->idle_held;
	t->idle_closed += r->idle_closed;
	t->nlat += r->nlat;
	if (r->max_ns > t->max_ns)
		t->max_ns = r->max_ns;
	if (r->elapsed_ns > t->elapsed_ns)
		t->elapsed_ns = r->elapsed_ns;
	for (i = 0; i < UB_HIST_N; i++)
		t->hist[i] += r->hist[i];
}

/* Between the barrier and the start: --hold keeps every connection open
 * and quiet until SIGUSR1 or the time is up (a script measures memory). */
static void
ub_proc_hold(const struct ub_opts *o, const struct ub_result *t)
{
	struct timespec ts;
	sigset_t set;

	fprintf(stderr,
	    "upper-bench: ready: %llu connections open, %llu "
	    "failed\n",
	    (unsigned long long)t->connected,
	    (unsigned long long)t->connect_failures);
	if (o->hold <= 0)
		return;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	ts.tv_sec = (time_t)o->hold;
	ts.tv_nsec = (long)((o->hold - (double)ts.tv_sec) * 1e9);
	while (sigtimedwait(&set, NULL, &ts) == -1 && errno == EINTR)
		;
}

static void
ub_proc_fork_all(const struct ub_opts *o, pid_t *pids, int *outs, int go[2])
{
	int i, p[2];

	for (i = 0; i < o->procs; i++) {
		if (pipe2(p, O_CLOEXEC) == -1)
			ub_die("pipe: %s", strerror(errno));
		if ((pids[i] = fork()) == -1)
			ub_die("fork: %s", strerror(errno));
		if (pids[i] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(go[1]);
			close(p[0]);
			_exit(ub_loop_child(o, i, go[0], p[1]));
		}
		close(p[1]);
		outs[i] = p[0];
	}
	close(go[0]);
}

/* The whole run: fork the clients, hold them at the barrier, start them,
 * add their results into t; 1 when a client died, else 0. */
int
ub_proc_run(const struct ub_opts *o, struct ub_result *t)
{
	pid_t pids[UB_MAX_PROCS];
	int outs[UB_MAX_PROCS], go[2], i, st, rc = 0;
	struct ub_result *r = ub_calloc(1, sizeof(*r));
	struct ub_ready ready;

	if (pipe2(go, O_CLOEXEC) == -1)
		ub_die("pipe: %s", strerror(errno));
	ub_proc_fork_all(o, pids, outs, go);
	for (i = 0; i < o->procs; i++) {
		if (ub_proc_read_all(outs[i], &ready, sizeof(ready)) == -1)
			ub_die("client process %d failed to start", i);
		t->connected += ready.connected;
		t->connect_failures += ready.failures;
	}
	ub_proc_hold(o, t);
	memset(t, 0, sizeof(*t));
	close(go[1]); /* EOF on the go pipe: every child starts now */
	for (i = 0; i < o->procs; i++) {
		if (ub_proc_read_all(outs[i], r, sizeof(*r)) == -1) {
			fprintf(stderr,
			    "upper-bench: client process %d "
			    "died\n",
			    i);
			rc = 1;
		} else
			ub_proc_merge(t, r);
		close(outs[i]);
		waitpid(pids[i], &st, 0);
	}
	free(r);
	return rc;
}
