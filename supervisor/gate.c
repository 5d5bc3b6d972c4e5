/*
 * gate.c: the stats endpoint's doorman.  libmicrohttpd 0.9.75 drops
 * some malformed requests without a word (a request line like "GARBAGE"
 * is closed silently, binary junk is held until the timeout), while the
 * contract wants a 4xx for every malformed request.  So the supervisor
 * accepts stats connections itself, peeks at the request line, answers
 * 400 to one that is not "METHOD TARGET HTTP/x.y" (or 414 past the limit),
 * and hands the valid ones to libmicrohttpd with MHD_add_connection() once
 * their whole head is there (431 past GATE_HEAD_MAX).  libmicrohttpd then
 * only ever holds requests it answers at once: its timeout is an idle
 * one, so clients trickling header lines used to fill its connection
 * limit and lock every scrape out.  A connection whose head is not
 * complete within GATE_TIMEOUT_S of its accept gets a 408.
 *
 * A new connection is looked at as soon as it is accepted: its request is
 * usually there already, and it goes on without holding a slot.  Only the
 * slow ones wait in the table, and when it is full of clients that have
 * not waited long, the rest stay in the kernel's backlog.
 */
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gate_line.h"
#include "log.h"
#include "sup.h"

#define GATE_MAX 64 /* connections waiting for their head */
#define GATE_TIMEOUT_S 10
#define GATE_EVICT_NS 1000000000ULL /* a waiter this old may be evicted */
#define GATE_BATCH 32  /* accepts per wakeup: libmicrohttpd runs between */
#define GATE_GONE (-1) /* verdict: the client closed or failed */

struct gate_conn {
	int fd; /* -1: free */
	uint64_t accepted_ns;
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

static struct gate_conn gates[GATE_MAX];
/* The listener is out of the epoll set: out of fds (it stays readable,
 * and would wake the loop in a spin) or no slot to give.  It comes back
 * on the next tick or when a slot frees.  Out of fds is warned once until
 * an accept succeeds again. */
static int gate_paused, gate_warned;

static const char gate_400[] =
    "HTTP/1.1 400 Bad Request\r\n"
    "Content-Type: text/plain\r\nContent-Length: 12\r\n"
    "Connection: close\r\n\r\nbad request\n";
static const char gate_408[] =
    "HTTP/1.1 408 Request Timeout\r\n"
    "Content-Type: text/plain\r\nContent-Length: 16\r\n"
    "Connection: close\r\n\r\nrequest timeout\n";
static const char gate_414[] =
    "HTTP/1.1 414 URI Too Long\r\n"
    "Content-Type: text/plain\r\nContent-Length: 17\r\n"
    "Connection: close\r\n\r\nrequest too long\n";
static const char gate_431[] =
    "HTTP/1.1 431 Request Header Fields Too Large\r\n"
    "Content-Type: text/plain\r\nContent-Length: 18\r\n"
    "Connection: close\r\n\r\nheaders too large\n";
static const char gate_503[] =
    "HTTP/1.1 503 Service Unavailable\r\n"
    "Content-Type: text/plain\r\nContent-Length: 12\r\n"
    "Connection: close\r\n\r\nserver busy\n";

/* The request was only peeked at, and close() with unread bytes sends a
 * reset, which destroys a reply the client has not read yet (curl: "Recv
 * failure").  So discard what is queued, bounded (a client still sending
 * after that gets its reset), and end with a FIN. */
static void
gate_close(int fd)
{
	char buf[4096];
	int i;

	for (i = 0; i < 16; i++)
		if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0)
			break;
	shutdown(fd, SHUT_WR);
	close(fd);
}

static void
gate_reply(int fd, const char *reply, size_t len)
{
	(void)!send(fd, reply, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	gate_close(fd);
}

static void
gate_resume(struct sup *s)
{
	if (gate_paused &&
	    evsrc_watch(s->ev.ep, s->stats_fd, SUP_EV_STATS) == 0)
		gate_paused = 0;
}

static void
gate_pause(struct sup *s)
{
	if (epoll_ctl(s->ev.ep, EPOLL_CTL_DEL, s->stats_fd, NULL) == 0)
		gate_paused = 1;
}

/* Take a waiter out of the table (its fd is closed or handed on). */
static void
gate_free(struct sup *s, struct gate_conn *g)
{
	g->fd = -1;
	gate_resume(s);
}

static void
gate_drop(struct sup *s, struct gate_conn *g, const char *reply, size_t len)
{
	epoll_ctl(s->ev.ep, EPOLL_CTL_DEL, g->fd, NULL);
	if (reply != NULL)
		gate_reply(g->fd, reply, len);
	else
		gate_close(g->fd);
	gate_free(s, g);
}

/* A slot for the next connection: a free one, else the oldest waiter if
 * it has waited over GATE_EVICT_NS (a client that sends its request at
 * once never does, so a flood of idle connections cannot lock operators
 * out of /stats), else none: then a burst of good clients waits in the
 * backlog instead of evicting each other. */
static struct gate_conn *
gate_slot(uint64_t now)
{
	struct gate_conn *oldest = &gates[0];
	int i;

	for (i = 0; i < GATE_MAX; i++) {
		if (gates[i].fd == -1)
			return &gates[i];
		if (gates[i].accepted_ns < oldest->accepted_ns)
			oldest = &gates[i];
	}
	return now - oldest->accepted_ns >= GATE_EVICT_NS ? oldest : NULL;
}

void
gate_init(void)
{
	int i;

	for (i = 0; i < GATE_MAX; i++)
		gates[i].fd = -1;
}

/* Has the client shut down its side?  Then a request still incomplete
 * never will be; the epoll event's flags do not reach gate_event. */
static int
gate_peer_closed(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) == 1 &&
	    (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* What the client has sent so far, peeked at: a gate_verdict, or
 * GATE_GONE. */
static int
gate_look(int fd)
{
	char buf[GATE_HEAD_MAX];
	ssize_t n;
	int v;

	n = recv(fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return gate_peer_closed(fd) ? GATE_GONE : GATE_MORE;
	if (n <= 0)
		return GATE_GONE;
	v = gate_head(buf, (size_t)n);
	/* The next segment or the client's FIN is the next edge. */
	if (v == GATE_MORE && gate_peer_closed(fd))
		return GATE_GONE;
	return v;
}

/* Hand a complete request to libmicrohttpd, which owns (and closes) the
 * socket from then on, even one it refuses (at its connection limit, say):
 * a copy of the fd lets that client hear a 503 instead of a reset. */
static void
gate_pass(struct sup *s, struct gate_conn *g)
{
	int keep = fcntl(g->fd, F_DUPFD_CLOEXEC, 0);

	if (MHD_add_connection(s->mhd, g->fd, (struct sockaddr *)&g->addr,
	        g->addrlen) == MHD_YES) {
		if (keep != -1)
			close(keep);
		return;
	}
	log_debug("http: connection not taken by the server");
	if (keep != -1)
		gate_reply(keep, gate_503, sizeof(gate_503) - 1);
}

/* Act on a verdict other than GATE_MORE; the fd is no longer ours. */
static void
gate_settle(struct sup *s, struct gate_conn *g, int verdict)
{
	switch (verdict) {
	case GATE_BAD:
		gate_reply(g->fd, gate_400, sizeof(gate_400) - 1);
		return;
	case GATE_LONG:
		gate_reply(g->fd, gate_414, sizeof(gate_414) - 1);
		return;
	case GATE_HUGE:
		gate_reply(g->fd, gate_431, sizeof(gate_431) - 1);
		return;
	case GATE_GONE:
		gate_close(g->fd);
		return;
	}
	gate_pass(s, g);
}

/* Seat a connection whose request is still coming, evicting the waiter
 * in slot g if there is one.  Its socket is edge-triggered: a request
 * still arriving stays unread (libmicrohttpd reads it), so level-triggered
 * epoll would report it ready at once again until the deadline, a busy
 * loop. */
static void
gate_seat(struct sup *s, struct gate_conn *g, const struct gate_conn *c)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET };

	if (g->fd != -1)
		gate_drop(s, g, gate_503, sizeof(gate_503) - 1);
	*g = *c;
	ev.data.ptr = g;
	if (epoll_ctl(s->ev.ep, EPOLL_CTL_ADD, g->fd, &ev) == -1) {
		gate_close(g->fd);
		g->fd = -1;
	}
}

/* The next connection in the backlog, or -1 (then the caller stops). */
static int
gate_take(struct sup *s, struct gate_conn *c)
{
	c->addrlen = sizeof(c->addr);
	c->fd = accept4(s->stats_fd, (struct sockaddr *)&c->addr, &c->addrlen,
	    SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c->fd != -1) {
		gate_warned = 0;
		c->accepted_ns = ctr_clock_ns();
		return 0;
	}
	if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
	    errno == ENOMEM) {
		if (!gate_warned)
			log_warn("accept4 stats, retrying every tick");
		gate_warned = 1;
		gate_pause(s);
	} else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
		log_warn("accept4 stats");
	return -1;
}

/* The stats listener is readable: take waiting connections while there
 * is a slot for one that might need it, a batch at a time so that
 * libmicrohttpd answers the ones handed over in between. */
void
gate_accept(struct sup *s)
{
	struct gate_conn c, *g;
	int i, v;

	for (i = 0; i < GATE_BATCH; i++) {
		if ((g = gate_slot(ctr_clock_ns())) == NULL) {
			gate_pause(s);
			return;
		}
		if (gate_take(s, &c) == -1)
			return;
		if ((v = gate_look(c.fd)) == GATE_MORE)
			gate_seat(s, g, &c);
		else
			gate_settle(s, &c, v);
	}
}

void
gate_event(struct sup *s, void *ptr)
{
	struct gate_conn *g = ptr;
	int v;

	if ((v = gate_look(g->fd)) == GATE_MORE)
		return;
	epoll_ctl(s->ev.ep, EPOLL_CTL_DEL, g->fd, NULL);
	gate_settle(s, g, v);
	gate_free(s, g);
}

/* Called on every supervisor tick: expire silent connections, and put
 * back a paused listener. */
void
gate_expire(struct sup *s)
{
	uint64_t now = ctr_clock_ns();
	int i;

	for (i = 0; i < GATE_MAX; i++)
		if (gates[i].fd != -1 &&
		    now - gates[i].accepted_ns >=
		        GATE_TIMEOUT_S * 1000000000ULL)
			gate_drop(s, &gates[i], gate_408, sizeof(gate_408) - 1);
	gate_resume(s);
}
