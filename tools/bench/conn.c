/*
 * conn.c: the life of one upper-bench TCP connection, whatever its kind:
 * the non-blocking connect and its completion, the epoll interest, recv()
 * with the reply check, the end of a stream at EOF, and a connection the
 * server broke.  What the connection does in between is its kind's
 * (struct ub_kind, one per scenario file).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bench.h"

/* Set the epoll interest of a connection (added on first use). */
void
ub_conn_watch(struct ub_ctx *x, struct ub_conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (events == c->events)
		return;
	if (epoll_ctl(x->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd,
	        &ev) == -1)
		ub_die("epoll_ctl: %s", strerror(errno));
	c->events = events;
}

/* Close a connection in any state; its slot may be reused (churn). */
void
ub_conn_close(struct ub_ctx *x, struct ub_conn *c)
{
	if (c->state == UB_ST_CONNECTING)
		x->connecting--;
	close(c->fd); /* also leaves the epoll set */
	c->fd = -1;
	c->state = UB_ST_FREE;
	c->events = 0;
}

/* Many idle connections need many source addresses: the 4-tuple must be
 * unique and one address has under 30 000 ephemeral ports. */
static int
ub_conn_bind_source(int fd, uint32_t gidx)
{
	struct sockaddr_in src = { .sin_family = AF_INET };
	int on = 1;

	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof(on));
	src.sin_addr.s_addr = htonl(0x7f000002 + gidx % 250);
	return bind(fd, (struct sockaddr *)&src, sizeof(src));
}

/* Count a failed connect; the first of the run is shown. */
void
ub_conn_failed(struct ub_ctx *x, int err)
{
	x->res->connect_failures++;
	if (!x->complained++)
		fprintf(stderr, "upper-bench: connect: %s\n", strerror(err));
}

/* Start a non-blocking connect; completion arrives as EPOLLOUT. */
int
ub_conn_connect(struct ub_ctx *x, struct ub_conn *c)
{
	int on = 1;

	c->fd = socket(x->dst.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		ub_conn_failed(x, errno);
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	c->state = UB_ST_CONNECTING;
	c->events = 0;
	x->connecting++;
	if ((x->spread && ub_conn_bind_source(c->fd, c->gidx) == -1) ||
	    (connect(c->fd, (struct sockaddr *)&x->dst, x->dstlen) == -1 &&
	        errno != EINPROGRESS)) {
		ub_conn_failed(x, errno);
		ub_conn_close(x, c);
		return -1;
	}
	ub_conn_watch(x, c, EPOLLOUT);
	return 0;
}

/* The open hook of the TCP kinds: a failure is already counted. */
void
ub_conn_open(struct ub_ctx *x, struct ub_conn *c)
{
	(void)ub_conn_connect(x, c);
}

/* A connect in progress reported EPOLLOUT: done, or failed. */
void
ub_conn_connected(struct ub_ctx *x, struct ub_conn *c)
{
	socklen_t len = sizeof(int);
	int err = 0;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		ub_conn_failed(x, err);
		ub_conn_close(x, c);
		if (c->kind->connect_failed != NULL)
			c->kind->connect_failed(x, c);
		return;
	}
	x->connecting--;
	c->state = UB_ST_OPEN;
	x->res->connected++;
	c->kind->connected(x, c);
}

/* The server broke a connection we still expected something from. */
void
ub_conn_lost(struct ub_ctx *x, struct ub_conn *c)
{
	uint64_t pending = c->sent_req - c->done_req;

	x->res->errors += pending ? pending : 1;
	x->inflight -= pending;
	if (c->kind->stream)
		x->streams--;
	if (!x->complained++)
		fprintf(stderr,
		    "upper-bench: connection %u closed by the "
		    "server with %llu requests pending\n",
		    c->gidx, (unsigned long long)pending);
	ub_conn_close(x, c);
}

/* send() for the TCP kinds, counted: 1 when bytes went, 0 when the
 * socket buffer is full (EAGAIN), -1 when the connection is lost (then
 * closed and counted). */
int
ub_conn_send(struct ub_ctx *x, struct ub_conn *c, const uint8_t *p, size_t n)
{
	ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);

	if (w == -1 && errno == EAGAIN)
		return 0;
	if (w == -1) {
		ub_conn_lost(x, c);
		return -1;
	}
	c->spos += (uint64_t)w;
	x->res->bytes_tx += (uint64_t)w;
	return 1;
}

/* recv() for every TCP kind: -1 when there is nothing (or the connection
 * was dropped, then with the connection closed), else the byte count;
 * a reply may not run past limit, the bytes asked for so far. */
ssize_t
ub_conn_recv(struct ub_ctx *x, struct ub_conn *c, uint64_t limit)
{
	ssize_t n;

	n = recv(c->fd, x->rbuf, UB_RBUF, 0);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return -1;
	if (n == -1 || (n == 0 && !c->kind->stream)) {
		ub_conn_lost(x, c);
		return -1;
	}
	if (c->rpos + (uint64_t)n > limit) {
		x->res->errors++;
		if (!x->complained++)
			fprintf(stderr,
			    "upper-bench: connection %u: more "
			    "reply bytes than expected\n",
			    c->gidx);
		c->sent_req = c->done_req; /* already counted */
		ub_conn_lost(x, c);
		return -1;
	}
	ub_stream_verify(x, c, x->rbuf, (size_t)n);
	return n;
}

/* The connected hook of kinds that send when started and until then
 * only wait for the server (rr, bulk). */
void
ub_conn_connected_in(struct ub_ctx *x, struct ub_conn *c)
{
	ub_conn_watch(x, c, EPOLLIN);
}

/* The event hook's core for kinds that send and read at once (rr, bulk):
 * what is pending goes out on EPOLLOUT, then the reply is read, unless
 * sending lost the connection. */
void
ub_conn_duplex(struct ub_ctx *x, struct ub_conn *c, uint32_t ev,
    void (*send)(struct ub_ctx *, struct ub_conn *),
    void (*read)(struct ub_ctx *, struct ub_conn *))
{
	if (ev & EPOLLOUT)
		send(x, c);
	if (c->state == UB_ST_OPEN && (ev & ~(uint32_t)EPOLLOUT))
		read(x, c);
}

/* The account hook of stream kinds: a stream still open is unfinished. */
void
ub_conn_stream_account(struct ub_ctx *x, struct ub_conn *c)
{
	(void)c;
	x->res->stalled++;
}

/* The busy hook of stream kinds: streams still running. */
int
ub_conn_streams_busy(const struct ub_ctx *x)
{
	return x->streams > 0;
}

/* Bulk and churn both end at EOF, which must come right after the last
 * expected byte. */
void
ub_conn_stream_read(struct ub_ctx *x, struct ub_conn *c)
{
	ssize_t n = ub_conn_recv(x, c, c->recv_total);
	int64_t now;
	int ok;

	if (n > 0) {
		c->rpos += (uint64_t)n;
		x->res->bytes_rx += (uint64_t)n;
		return;
	}
	if (n != 0)
		return;
	now = ub_now();
	ok = c->rpos == c->recv_total;
	if (!ok) {
		x->res->errors++;
		if (!x->complained++)
			fprintf(stderr,
			    "upper-bench: connection %u: EOF after "
			    "%llu of %llu reply bytes\n",
			    c->gidx, (unsigned long long)c->rpos,
			    (unsigned long long)c->recv_total);
	}
	if (now - x->t_start > x->res->elapsed_ns)
		x->res->elapsed_ns = now - x->t_start;
	ub_conn_close(x, c);
	x->streams--;
	if (c->kind->finished != NULL)
		c->kind->finished(x, c, now, ok);
}
