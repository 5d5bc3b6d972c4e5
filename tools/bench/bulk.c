/*
 * bulk.c: the bulk scenario: --bytes of text (ASCII words, or mixed-script
 * UTF-8 with --text mixed) streamed over --conns connections and read back
 * concurrently; each connection half-closes after its share and must get
 * exactly the uppercase of it before EOF.  It ends when every stream is
 * done (--duration is only its limit) and reports input MB/s.
 */
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "bench.h"

static void
ub_bulk_send(struct ub_ctx *x, struct ub_conn *c)
{
	uint64_t left = c->send_total - c->spos;
	size_t off = (size_t)(c->spos % x->in_period);

	if (ub_conn_send(x, c, x->in + off,
	        left < UB_CHUNK ? (size_t)left : UB_CHUNK) <= 0)
		return;
	if (c->spos == c->send_total) {
		shutdown(c->fd, SHUT_WR);
		ub_conn_watch(x, c, EPOLLIN);
	}
}

static void
ub_bulk_event(struct ub_ctx *x, struct ub_conn *c, uint32_t ev)
{
	ub_conn_duplex(x, c, ev, ub_bulk_send, ub_conn_stream_read);
}

static void
ub_bulk_start(struct ub_ctx *x, struct ub_conn *c, int64_t now)
{
	(void)now;
	x->streams++;
	ub_conn_watch(x, c, EPOLLIN | EPOLLOUT);
}

/* A connection's share: whole blocks, then the tail of the text that
 * ends on a character boundary. */
static void
ub_bulk_plan(struct ub_ctx *x, struct ub_conn *c)
{
	uint64_t q = x->o->bytes / (uint64_t)x->o->conns / UB_BLOCK;

	c->send_total = q * UB_BLOCK + x->bulk_tail_in;
	c->recv_total = q * x->exp_period + x->bulk_tail_exp;
}

static void
ub_bulk_check(const struct ub_opts *o)
{
	if (o->conns < 1) {
		fprintf(stderr, "upper-bench: bulk needs --conns >= 1\n");
		exit(2);
	}
}

static const struct ub_kind ub_kind_bulk = {
	.open = ub_conn_open,
	.connected = ub_conn_connected_in,
	.start = ub_bulk_start,
	.event = ub_bulk_event,
	.account = ub_conn_stream_account,
	.busy = ub_conn_streams_busy,
	.plan = ub_bulk_plan,
	.stream = 1,
};

const struct ub_mode ub_mode_bulk = {
	.name = "bulk",
	.work = &ub_kind_bulk,
	.conns = 1,
	.timed = 1,
	.bytes_line = 1,
	.prepare = ub_stream_bulk,
	.check = ub_bulk_check,
};
