/*
 * http_gate.c: the stats endpoint's doorman.  libmicrohttpd 0.9.75 drops
 * some malformed requests without a word (a request line like "GARBAGE"
 * is closed silently, binary junk is held until the timeout), while the
 * contract wants a 4xx for every malformed request.  So the supervisor
 * accepts stats connections itself, peeks at the request line, answers
 * 400 to one that is not "METHOD TARGET HTTP/x.y" (or 414 past the limit),
 * and hands the valid ones to libmicrohttpd with MHD_add_connection().
 * A connection that sends no complete line within GATE_TIMEOUT_S gets a 408.
 */
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_line.h"
#include "log.h"
#include "sup.h"

#define GATE_MAX 64          /* connections waiting for a request line */
#define GATE_TIMEOUT_S 10

struct gate_conn {
	int fd;                  /* -1: free */
	uint64_t deadline_ns;
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

static struct gate_conn gates[GATE_MAX];
/* Out of fds: the listener stays readable, so it leaves the epoll set
 * until the next tick instead of waking the loop in a spin; warned once
 * until an accept succeeds again. */
static int gate_paused, gate_warned;

static const char gate_400[] = "HTTP/1.1 400 Bad Request\r\n"
    "Content-Type: text/plain\r\nContent-Length: 12\r\n"
    "Connection: close\r\n\r\nbad request\n";
static const char gate_414[] = "HTTP/1.1 414 URI Too Long\r\n"
    "Content-Type: text/plain\r\nContent-Length: 17\r\n"
    "Connection: close\r\n\r\nrequest too long\n";

static const char gate_408[] = "HTTP/1.1 408 Request Timeout\r\n"
    "Content-Type: text/plain\r\nContent-Length: 16\r\n"
    "Connection: close\r\n\r\nrequest timeout\n";
static const char gate_503[] = "HTTP/1.1 503 Service Unavailable\r\n"
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
gate_drop(struct sup *s, struct gate_conn *g, const char *reply,
    size_t len)
{
	if (reply != NULL)
		(void)!send(g->fd, reply, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	epoll_ctl(s->ev.ep, EPOLL_CTL_DEL, g->fd, NULL);
	gate_close(g->fd);
	g->fd = -1;
}

/* A free entry; when all are taken, the slowest waiter is dropped: a
 * client that sends its request line at once is never the oldest, so a
 * flood of idle connections cannot lock operators out of /stats. */
static struct gate_conn *
gate_slot(struct sup *s)
{
	struct gate_conn *oldest = &gates[0];
	int i;

	for (i = 0; i < GATE_MAX; i++) {
		if (gates[i].fd == -1)
			return &gates[i];
		if (gates[i].deadline_ns < oldest->deadline_ns)
			oldest = &gates[i];
	}
	gate_drop(s, oldest, gate_503, sizeof(gate_503) - 1);
	return oldest;
}

void
gate_init(void)
{
	int i;

	for (i = 0; i < GATE_MAX; i++)
		gates[i].fd = -1;
}

static void
gate_pause(struct sup *s)
{
	if (!gate_warned)
		log_warn("accept4 stats, retrying every tick");
	gate_warned = 1;
	if (epoll_ctl(s->ev.ep, EPOLL_CTL_DEL, s->stats_fd, NULL) == 0)
		gate_paused = 1;
}

/* The stats listener is readable: take every waiting connection.  Its
 * sockets are edge-triggered: a request still arriving stays unread (it
 * is only peeked, for libmicrohttpd to read), so level-triggered epoll
 * would report it ready again at once until the deadline, a busy loop. */
void
gate_accept(struct sup *s)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET };
	struct gate_conn *g;
	int fd;

	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		fd = accept4(s->stats_fd, (struct sockaddr *)&ss, &sl,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				gate_pause(s);
			else if (errno != EAGAIN && errno != EINTR &&
			    errno != ECONNABORTED)
				log_warn("accept4 stats");
			return;
		}
		gate_warned = 0;
		g = gate_slot(s);
		*g = (struct gate_conn){ .fd = fd, .addr = ss, .addrlen = sl,
			.deadline_ns = ctr_clock_ns() + GATE_TIMEOUT_S *
			    1000000000ULL };
		ev.data.ptr = g;
		if (epoll_ctl(s->ev.ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
			close(fd);
			g->fd = -1;
		}
	}
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

void
gate_event(struct sup *s, void *ptr)
{
	struct gate_conn *g = ptr;
	char buf[GATE_LINE_MAX];
	ssize_t n;

	n = recv(g->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		gate_drop(s, g, NULL, 0);
		return;
	}
	switch (gate_check(buf, (size_t)n)) {
	case GATE_MORE:
		/* The next segment or the client's FIN is the next edge. */
		if (gate_peer_closed(g->fd))
			gate_drop(s, g, NULL, 0);
		return;
	case GATE_BAD:
		gate_drop(s, g, gate_400, sizeof(gate_400) - 1);
		return;
	case GATE_LONG:
		gate_drop(s, g, gate_414, sizeof(gate_414) - 1);
		return;
	}
	epoll_ctl(s->ev.ep, EPOLL_CTL_DEL, g->fd, NULL);
	if (MHD_add_connection(s->mhd, g->fd, (struct sockaddr *)&g->addr,
	    g->addrlen) == MHD_NO)
		log_debug("http: connection not taken by the server");
	g->fd = -1; /* libmicrohttpd owns (and closes) it now */
}

/* Called on every supervisor tick: expire silent connections, and put
 * back a listener paused for want of fds. */
void
gate_expire(struct sup *s)
{
	uint64_t now = ctr_clock_ns();
	int i;

	for (i = 0; i < GATE_MAX; i++)
		if (gates[i].fd != -1 && now >= gates[i].deadline_ns)
			gate_drop(s, &gates[i], gate_408, sizeof(gate_408) - 1);
	if (gate_paused && evsrc_watch(s->ev.ep, s->stats_fd,
	    SUP_EV_STATS) == 0)
		gate_paused = 0;
}
