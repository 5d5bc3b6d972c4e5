/*
 * idle.c: the idle scenario: --idle connections held open and silent
 * while --conns more do rr work.  The working connections all live in
 * client process 0, so the client side of the work is exactly rr's and
 * only the idle connections differ; they bind source addresses over
 * 127.0.0.2-251, since one address has too few ephemeral ports.
 */
#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "bench.h"

/* An idle connection should never hear from the server. */
static void
ub_idle_event(struct ub_ctx *x, struct ub_conn *c, uint32_t ev)
{
	char b[64];
	ssize_t n = recv(c->fd, b, sizeof(b), 0);

	(void)ev;
	if (n == -1 && errno == EAGAIN)
		return;
	x->res->idle_closed++;
	x->res->errors++;
	if (!x->complained++)
		fprintf(stderr, "upper-bench: idle connection %u %s\n", c->gidx,
		    n > 0 ? "got data" : "closed by the server");
	ub_conn_close(x, c);
}

static void
ub_idle_connected(struct ub_ctx *x, struct ub_conn *c)
{
	ub_conn_watch(x, c, EPOLLIN | EPOLLRDHUP);
}

static void
ub_idle_account(struct ub_ctx *x, struct ub_conn *c)
{
	(void)c;
	x->res->idle_held++;
}

const struct ub_kind ub_kind_idle = {
	.open = ub_conn_open,
	.connected = ub_idle_connected,
	.event = ub_idle_event,
	.account = ub_idle_account,
};

const struct ub_mode ub_mode_idle = {
	.name = "idle",
	.work = &ub_kind_rr,
	.conns = 50,
	.holds_idle = 1,
	.spread = 1,
	.prepare = ub_stream_rr,
};
