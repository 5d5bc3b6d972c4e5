/*
 * loop.c: one client process of upper-bench, from its connect phase to its
 * result: open every connection, wait at the barrier, start the clock,
 * run the epoll loop until the end (and the grace period), then count
 * what never came back.  Each step calls the hooks of the connections'
 * kinds; nothing here knows one scenario from another.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench.h"

static void
ub_loop_event(struct ub_ctx *x, struct ub_conn *c, uint32_t ev)
{
	if (c->state == UB_ST_CONNECTING) {
		ub_conn_connected(x, c);
		return;
	}
	if (c->state != UB_ST_OPEN)
		return;
	c->kind->event(x, c, ev);
}

/* Timed work between events (UDP expiry and top-up). */
static void
ub_loop_tick(struct ub_ctx *x, int64_t now)
{
	const struct ub_kind *k = x->o->mode->work;
	int i;

	if (k->tick == NULL)
		return;
	for (i = 0; i < x->nconns; i++)
		k->tick(x, &x->conns[i], now);
}

/* Run events until `until`, or sooner once stop_idle and nothing is
 * pending; wakes at least every 10 ms for the tick. */
static void
ub_loop_run(struct ub_ctx *x, int64_t until, int stop_idle)
{
	const struct ub_kind *k = x->o->mode->work;
	struct epoll_event evs[UB_EVENTS];
	int64_t now, ms;
	int i, n;

	while ((now = ub_now()) < until) {
		if (stop_idle && !k->busy(x))
			return;
		ms = (until - now + 999999) / 1000000;
		n = epoll_wait(x->ep, evs, UB_EVENTS, ms > 10 ? 10 : (int)ms);
		if (n == -1 && errno != EINTR)
			ub_die("epoll_wait: %s", strerror(errno));
		for (i = 0; i < n; i++)
			ub_loop_event(x, evs[i].data.ptr, evs[i].events);
		ub_loop_tick(x, ub_now());
	}
}

/* Open every connection before the clock starts (a kind without an open
 * hook opens its own as it goes); connects that do not finish by the
 * deadline count failed. */
static void
ub_loop_connect_all(struct ub_ctx *x)
{
	int64_t deadline = ub_now() +
	    (int64_t)(x->o->connect_timeout * UB_NSEC);
	struct epoll_event evs[UB_EVENTS];
	int next = 0, i, n;

	if (x->o->mode->work->open == NULL)
		return;
	while ((next < x->nconns || x->connecting > 0) && ub_now() < deadline) {
		while (next < x->nconns && x->connecting < UB_CONNECT_WINDOW) {
			struct ub_conn *c = &x->conns[next++];

			c->kind->open(x, c);
		}
		n = epoll_wait(x->ep, evs, UB_EVENTS, 100);
		for (i = 0; i < n; i++)
			ub_loop_event(x, evs[i].data.ptr, evs[i].events);
	}
	for (i = 0; i < x->nconns; i++)
		if (x->conns[i].state == UB_ST_CONNECTING) {
			ub_conn_failed(x, ETIMEDOUT);
			ub_conn_close(x, &x->conns[i]);
		}
	x->res->connect_failures += (uint64_t)(x->nconns - next);
}

/* The clock starts: give every open connection its first work (and every
 * one of a kind that opens its own). */
static void
ub_loop_go(struct ub_ctx *x)
{
	const struct ub_opts *o = x->o;
	int64_t now = ub_now();
	int i;

	x->t_start = now;
	x->t_warm = now + (int64_t)(o->warmup * UB_NSEC);
	x->t_end = x->t_warm + (int64_t)(o->duration * UB_NSEC);
	x->running = 1;
	for (i = 0; i < x->nconns; i++) {
		struct ub_conn *c = &x->conns[i];

		if (c->kind->open != NULL && c->state != UB_ST_OPEN)
			continue;
		if (c->kind->start != NULL)
			c->kind->start(x, c, now);
	}
}

/* After the grace period: what never came back. */
static void
ub_loop_account_end(struct ub_ctx *x)
{
	struct ub_result *r = x->res;
	struct ub_conn *c;
	int i;

	for (i = 0; i < x->nconns; i++) {
		c = &x->conns[i];
		if (c->state == UB_ST_CONNECTING) {
			r->stalled++; /* churn: a connect that never ended */
			continue;
		}
		if (c->state == UB_ST_OPEN)
			c->kind->account(x, c);
	}
	r->errors += r->stalled;
	if (r->stalled)
		fprintf(stderr,
		    "upper-bench: %llu requests or streams "
		    "unanswered at the end\n",
		    (unsigned long long)r->stalled);
	if (!x->o->mode->timed)
		r->elapsed_ns = x->t_end - x->t_warm;
	else if (x->streams > 0) /* unfinished: it took all the time */
		r->elapsed_ns = ub_now() - x->t_start;
}

/* A child: connect, report at the barrier, run when the parent closes
 * the go pipe, send the result. */
int
ub_loop_child(const struct ub_opts *o, int proc, int go, int out)
{
	struct ub_ctx *x = ub_calloc(1, sizeof(*x));
	struct ub_ready ready;
	char b;

	x->o = o;
	x->proc = proc;
	x->res = ub_calloc(1, sizeof(*x->res));
	x->rbuf = ub_calloc(UB_RBUF + UB_UDP_BATCH * (UB_MAX_SIZE + 1), 1);
	if ((x->ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		ub_die("epoll_create1: %s", strerror(errno));
	ub_plan_resolve(x);
	o->mode->prepare(x);
	ub_plan_layout(x);
	ub_loop_connect_all(x);
	ready.connected = x->res->connected;
	ready.failures = x->res->connect_failures;
	if (ub_proc_write_all(out, &ready, sizeof(ready)) == -1)
		return 1;
	while (read(go, &b, 1) == -1 && errno == EINTR)
		;
	ub_loop_go(x);
	/* bulk and churn end when done; --duration is only their limit */
	ub_loop_run(x, x->t_end, o->mode->timed);
	x->running = 0;
	if (!o->mode->timed)
		ub_loop_run(x, ub_now() + (int64_t)(o->grace * UB_NSEC), 1);
	ub_loop_account_end(x);
	return ub_proc_write_all(out, x->res, sizeof(*x->res)) == -1 ? 1 : 0;
}
