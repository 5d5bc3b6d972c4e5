/*
 * rr.c: the request/response scenario: --conns TCP connections, each with
 * --depth requests of --size bytes in flight (depth 1 is ping-pong, more
 * is pipelining: a reply completing request k issues request k + depth).
 * A request's latency runs from its issue to the last byte of its reply.
 * The idle scenario (idle.c) does its work with this kind too.
 */
#include <sys/epoll.h>

#include "bench.h"

/* Send what was issued and is not sent yet; the rest waits for EPOLLOUT. */
static void
ub_rr_flush(struct ub_ctx *x, struct ub_conn *c)
{
	uint64_t end = c->sent_req * (uint64_t)x->o->size;
	size_t off, len;
	int r;

	while (c->spos < end) {
		off = (size_t)(c->spos % x->in_period);
		len = x->in_len - off;
		if (len > end - c->spos)
			len = (size_t)(end - c->spos);
		if ((r = ub_conn_send(x, c, x->in + off, len)) == 0)
			ub_conn_watch(x, c, EPOLLIN | EPOLLOUT);
		if (r <= 0)
			return;
	}
	ub_conn_watch(x, c, EPOLLIN);
}

static void
ub_rr_issue(struct ub_ctx *x, struct ub_conn *c, uint64_t n, int64_t now)
{
	uint64_t i;

	for (i = 0; i < n; i++)
		c->ts[(c->sent_req + i) % (uint64_t)x->o->depth] = now;
	c->sent_req += n;
	x->inflight += n;
	ub_rr_flush(x, c);
}

static void
ub_rr_read(struct ub_ctx *x, struct ub_conn *c)
{
	uint64_t size = (uint64_t)x->o->size, done, k;
	struct ub_result *r = x->res;
	int64_t now;
	ssize_t n;

	if ((n = ub_conn_recv(x, c, c->spos)) <= 0)
		return;
	now = ub_now();
	c->rpos += (uint64_t)n;
	r->bytes_rx += (uint64_t)n;
	done = c->rpos / size;
	for (k = c->done_req; k < done && ub_in_window(x, now); k++) {
		ub_hist_record(r, now - c->ts[k % (uint64_t)x->o->depth]);
		r->requests++;
	}
	k = done - c->done_req;
	c->done_req = done;
	x->inflight -= k;
	if (x->running && k > 0)
		ub_rr_issue(x, c, k, now);
}

static void
ub_rr_event(struct ub_ctx *x, struct ub_conn *c, uint32_t ev)
{
	ub_conn_duplex(x, c, ev, ub_rr_flush, ub_rr_read);
}

static void
ub_rr_start(struct ub_ctx *x, struct ub_conn *c, int64_t now)
{
	ub_rr_issue(x, c, (uint64_t)x->o->depth, now);
}

static void
ub_rr_account(struct ub_ctx *x, struct ub_conn *c)
{
	x->res->stalled += c->sent_req - c->done_req;
}

static int
ub_rr_busy(const struct ub_ctx *x)
{
	return x->inflight > 0;
}

const struct ub_kind ub_kind_rr = {
	.open = ub_conn_open,
	.connected = ub_conn_connected_in,
	.start = ub_rr_start,
	.event = ub_rr_event,
	.account = ub_rr_account,
	.busy = ub_rr_busy,
};

const struct ub_mode ub_mode_rr = {
	.name = "rr",
	.work = &ub_kind_rr,
	.conns = 50,
	.prepare = ub_stream_rr,
};
