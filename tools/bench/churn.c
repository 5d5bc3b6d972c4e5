/*
 * churn.c: the churn scenario: --requests short connections, --conns at a
 * time; each connects, sends one --size request, half-closes and reads to
 * EOF.  Its latency is the whole connection's, from connect to EOF: what
 * connection setup costs, and (with the server's counters) how evenly the
 * workers take connections.  No connection exists before the clock starts.
 */
#include <sys/epoll.h>
#include <sys/socket.h>

#include "bench.h"

/* Reuse a connection's slot for the next short connection, if any is
 * left and the run still goes. */
static void
ub_churn_next(struct ub_ctx *x, struct ub_conn *c)
{
	while (x->running && x->churn_left > 0) {
		x->churn_left--;
		c->spos = c->rpos = c->bad_unit = 0;
		c->t0 = ub_now();
		if (ub_conn_connect(x, c) == 0) {
			x->streams++;
			return;
		}
	}
}

/* Connected: the request, whole, and the half-close. */
static void
ub_churn_connected(struct ub_ctx *x, struct ub_conn *c)
{
	ssize_t w;

	w = send(c->fd, x->in, c->send_total, MSG_NOSIGNAL);
	if (w != (ssize_t)c->send_total) {
		/* A fresh socket takes a small request whole. */
		ub_conn_lost(x, c);
		ub_churn_next(x, c);
		return;
	}
	x->res->bytes_tx += c->send_total;
	shutdown(c->fd, SHUT_WR);
	ub_conn_watch(x, c, EPOLLIN);
}

static void
ub_churn_connect_failed(struct ub_ctx *x, struct ub_conn *c)
{
	x->streams--;
	ub_churn_next(x, c);
}

static void
ub_churn_start(struct ub_ctx *x, struct ub_conn *c, int64_t now)
{
	(void)now;
	ub_churn_next(x, c);
}

static void
ub_churn_event(struct ub_ctx *x, struct ub_conn *c, uint32_t ev)
{
	(void)ev;
	ub_conn_stream_read(x, c);
}

static void
ub_churn_finished(struct ub_ctx *x, struct ub_conn *c, int64_t now, int ok)
{
	if (ok) {
		x->res->requests++;
		ub_hist_record(x->res, now - c->t0);
	}
	ub_churn_next(x, c);
}

static void
ub_churn_plan(struct ub_ctx *x, struct ub_conn *c)
{
	c->send_total = c->recv_total = (uint64_t)x->o->size;
}

/* The requests of this process, and the rr letters they are cut from. */
static void
ub_churn_prepare(struct ub_ctx *x)
{
	ub_stream_rr(x);
	x->churn_left = ub_plan_share(x->o->requests, x->proc, x->o->procs);
}

/* No open hook: churn opens its connections once the clock runs. */
static const struct ub_kind ub_kind_churn = {
	.connected = ub_churn_connected,
	.connect_failed = ub_churn_connect_failed,
	.start = ub_churn_start,
	.event = ub_churn_event,
	.finished = ub_churn_finished,
	.account = ub_conn_stream_account,
	.busy = ub_conn_streams_busy,
	.plan = ub_churn_plan,
	.stream = 1,
};

const struct ub_mode ub_mode_churn = {
	.name = "churn",
	.work = &ub_kind_churn,
	.conns = 10,
	.timed = 1,
	.spread = 1,
	.prepare = ub_churn_prepare,
};
