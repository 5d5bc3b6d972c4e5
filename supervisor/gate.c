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
 * usually there already, and it goes on without waiting.  The slow ones
 * wait, and a waiter costs its fd, a few dozen bytes and a place in a
 * list ordered by deadline (every waiter gets the same time, so the list
 * is in accept order and expiry looks only at its head), so thousands of
 * idle or trickling clients cost nothing while a scrape goes by them.
 * Waiters are bounded by the fd limit: past GATE_FD_SPARE fds from it,
 * or when accept4 finds none left, the oldest waiter is shed with a 503.
 *
 * Connections handed on are remembered too, oldest first, up to
 * libmicrohttpd's connection limit: over TLS it holds the slow clients
 * (the gate cannot read an encrypted head), and a plain client may read
 * its reply slowly, so enough of them would fill that limit and every
 * scrape would be refused.  A hand-over at the limit shuts the oldest
 * one down first (libmicrohttpd then sees its end and closes it): the
 * scrape gets in, the flood pays.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gate_line.h"
#include "log.h"
#include "sup.h"

#define GATE_TIMEOUT_S 10
#define GATE_BATCH 32  /* accepts per wakeup: libmicrohttpd runs between */
#define GATE_GONE (-1) /* verdict: the client closed or failed */
/* fds left to libmicrohttpd's connections (HTTP_CONN_LIMIT) and the rest
 * of the supervisor when waiters are bounded by the fd limit */
#define GATE_FD_SPARE 320
#define GATE_MIN_WAITERS 64
#define GATE_CHUNK 256       /* waiters allocated at a time */
#define GATE_ACCEPT_EVERY 16 /* waiter events between looks at the listener */

/* A connection waiting for its head.  Structs are never freed, only put
 * back on gate_free_list: an epoll event later in the same batch may
 * still point at one that was just shed or expired, and then finds it
 * with fd -1 (or reused by a new waiter, a harmless extra look). */
struct gate_conn {
	struct gate_conn *prev, *next;
	int fd; /* -1: free */
	uint64_t deadline_ns;
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

/* Waiter structs come GATE_CHUNK at a time and are kept for reuse. */
struct gate_chunk {
	struct gate_chunk *next;
	struct gate_conn conn[GATE_CHUNK];
};

static struct gate_chunk *gate_chunks;

/* Waiters, oldest (earliest deadline) first. */
static struct gate_conn *gate_oldest, *gate_newest, *gate_free_list;
static unsigned gate_count, gate_events;
/* The listener is out of the epoll set: out of fds (it stays readable,
 * and would wake the loop in a spin) with no waiter to shed.  It comes
 * back on the next tick or when a waiter leaves.  Out of fds is warned
 * once until an accept succeeds again. */
static int gate_paused, gate_warned;
/* The endpoint speaks HTTPS: the request is encrypted, so the gate waits
 * only for the ClientHello, and hands the handshake and the request to
 * libmicrohttpd (which times out the slow ones, HTTP_CONN_TIMEOUT_S, and
 * holds up to HTTP_TLS_CONN_LIMIT).  Idle connections and ones that
 * trickle their hello still wait here and cost a scrape nothing; one
 * that is not TLS is closed without a byte (nothing it could read). */
static int gate_tls_on;

/* A connection libmicrohttpd was handed.  It closes them without telling:
 * a record whose fd no longer names the same socket (inode) is stale, so
 * a reused fd number is never shut down. */
struct gate_held {
	int fd;
	dev_t dev;
	ino_t ino;
};
static struct gate_held *gate_held; /* hand-over order, oldest first */
static unsigned gate_nheld, gate_held_max;

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

/* Answer and close; over TLS only close: a plaintext answer is noise to
 * a TLS client (and the gate cannot speak TLS). */
static void
gate_reply(int fd, const char *reply, size_t len)
{
	if (!gate_tls_on)
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

/* Most waiters the fd limit leaves room for (it may change at run time:
 * prlimit). */
static unsigned
gate_max(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
		return UINT_MAX;
	if (rl.rlim_cur < GATE_FD_SPARE + GATE_MIN_WAITERS)
		return GATE_MIN_WAITERS;
	if (rl.rlim_cur - GATE_FD_SPARE > UINT_MAX)
		return UINT_MAX;
	return (unsigned)(rl.rlim_cur - GATE_FD_SPARE);
}

/* A struct for a new waiter, or NULL (out of memory). */
static struct gate_conn *
gate_alloc(void)
{
	struct gate_chunk *c;
	struct gate_conn *g;
	int i;

	if (gate_free_list == NULL) {
		if ((c = calloc(1, sizeof(*c))) == NULL)
			return NULL;
		c->next = gate_chunks;
		gate_chunks = c;
		for (i = 0; i < GATE_CHUNK; i++) {
			c->conn[i].fd = -1;
			c->conn[i].next = gate_free_list;
			gate_free_list = &c->conn[i];
		}
	}
	g = gate_free_list;
	gate_free_list = g->next;
	return g;
}

/* Take a waiter out of the list (its fd is closed or handed on). */
static void
gate_unlink(struct sup *s, struct gate_conn *g)
{
	epoll_ctl(s->ev.ep, EPOLL_CTL_DEL, g->fd, NULL);
	if (g->prev != NULL)
		g->prev->next = g->next;
	else
		gate_oldest = g->next;
	if (g->next != NULL)
		g->next->prev = g->prev;
	else
		gate_newest = g->prev;
	g->fd = -1;
	g->prev = NULL;
	g->next = gate_free_list;
	gate_free_list = g;
	gate_count--;
	gate_resume(s);
}

static void
gate_drop(struct sup *s, struct gate_conn *g, const char *reply, size_t len)
{
	int fd = g->fd;

	gate_unlink(s, g);
	gate_reply(fd, reply, len);
}

/* Make room by shedding the oldest waiter; 0 if there was one. */
static int
gate_shed(struct sup *s)
{
	if (gate_oldest == NULL)
		return -1;
	gate_drop(s, gate_oldest, gate_503, sizeof(gate_503) - 1);
	return 0;
}

/* Called each time libmicrohttpd starts (a failed upgrade restarts it):
 * waiters already seated stay, and go on to the new daemon. */
void
gate_init(int tls, unsigned held_max)
{
	struct gate_held *h;

	gate_tls_on = tls;
	if (held_max > gate_held_max &&
	    (h = realloc(gate_held, held_max * sizeof(*h))) != NULL) {
		gate_held = h;
		gate_held_max = held_max;
	}
}

/* Does the record still name the socket it was made for? */
static int
gate_held_live(const struct gate_held *h)
{
	struct stat st;

	return fstat(h->fd, &st) == 0 && st.st_dev == h->dev &&
	    st.st_ino == h->ino;
}

/* Forget the records of connections libmicrohttpd has closed. */
static void
gate_held_forget(void)
{
	unsigned i, n = 0;

	for (i = 0; i < gate_nheld; i++)
		if (gate_held_live(&gate_held[i]))
			gate_held[n++] = gate_held[i];
	gate_nheld = n;
}

/* Shut the oldest connection libmicrohttpd holds down, and let it see
 * the end at once (its fd is free again); 0 if there was one. */
static int
gate_held_shed(struct sup *s)
{
	gate_held_forget();
	if (gate_nheld == 0 || s->mhd == NULL)
		return -1;
	log_debug("http: the oldest connection is shed to make room");
	(void)shutdown(gate_held[0].fd, SHUT_RDWR);
	memmove(gate_held, gate_held + 1, --gate_nheld * sizeof(*gate_held));
	MHD_run(s->mhd);
	return 0;
}

/* Room for one more hand-over, within libmicrohttpd's connection limit
 * and what the fd limit leaves (as for the waiters). */
static void
gate_held_room(struct sup *s)
{
	unsigned cap = gate_max() < gate_held_max ? gate_max() : gate_held_max;

	if (gate_nheld < cap)
		return;
	gate_held_forget();
	if (gate_nheld >= cap)
		(void)gate_held_shed(s);
}

static void
gate_held_add(int fd)
{
	struct stat st;

	if (gate_nheld < gate_held_max && fstat(fd, &st) == 0)
		gate_held[gate_nheld++] = (struct gate_held){ fd, st.st_dev,
			st.st_ino };
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
	v = gate_tls_on ? gate_tls(buf, (size_t)n) : gate_head(buf, (size_t)n);
	/* The next segment or the client's FIN is the next edge. */
	if (v == GATE_MORE && gate_peer_closed(fd))
		return GATE_GONE;
	return v;
}

/* Hand a complete request to libmicrohttpd, which owns (and closes) the
 * socket from then on, even one it refuses (at its connection limit, say):
 * a copy of the fd lets that client hear a 503 instead of a reset. */
static void
gate_pass(struct sup *s, int fd, const struct sockaddr_storage *addr,
    socklen_t addrlen)
{
	int keep;

	if (s->mhd == NULL) { /* stopped for an upgrade */
		gate_close(fd);
		return;
	}
	gate_held_room(s);
	keep = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	if (MHD_add_connection(s->mhd, fd, (const struct sockaddr *)addr,
	        addrlen) == MHD_YES) {
		if (keep != -1)
			close(keep);
		gate_held_add(fd);
		return;
	}
	log_debug("http: connection not taken by the server");
	if (keep != -1)
		gate_reply(keep, gate_503, sizeof(gate_503) - 1);
}

/* Act on a verdict other than GATE_MORE; the fd is no longer ours. */
static void
gate_settle(struct sup *s, int fd, const struct sockaddr_storage *addr,
    socklen_t addrlen, int verdict)
{
	if (gate_tls_on && verdict != GATE_VALID)
		verdict = GATE_GONE; /* no plaintext reply on a TLS port */
	switch (verdict) {
	case GATE_BAD:
		gate_reply(fd, gate_400, sizeof(gate_400) - 1);
		return;
	case GATE_LONG:
		gate_reply(fd, gate_414, sizeof(gate_414) - 1);
		return;
	case GATE_HUGE:
		gate_reply(fd, gate_431, sizeof(gate_431) - 1);
		return;
	case GATE_GONE:
		gate_close(fd);
		return;
	}
	gate_pass(s, fd, addr, addrlen);
}

/* Seat a connection whose request is still coming at the tail of the
 * list, shedding the oldest waiter if the fd limit asks for room.  Its
 * socket is edge-triggered: a request still arriving stays unread
 * (libmicrohttpd reads it), so level-triggered epoll would report it
 * ready at once again until the deadline, a busy loop. */
static void
gate_seat(struct sup *s, int fd, const struct sockaddr_storage *addr,
    socklen_t addrlen, uint64_t now)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET };
	struct gate_conn *g;

	while (gate_count >= gate_max() && gate_shed(s) == 0)
		;
	if ((g = gate_alloc()) == NULL) {
		gate_reply(fd, gate_503, sizeof(gate_503) - 1);
		return;
	}
	g->fd = fd;
	g->deadline_ns = now + GATE_TIMEOUT_S * 1000000000ULL;
	g->addr = *addr;
	g->addrlen = addrlen;
	ev.data.ptr = g;
	if (epoll_ctl(s->ev.ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
		gate_close(fd);
		g->fd = -1;
		g->next = gate_free_list;
		gate_free_list = g;
		return;
	}
	g->next = NULL;
	g->prev = gate_newest;
	if (gate_newest != NULL)
		gate_newest->next = g;
	else
		gate_oldest = g;
	gate_newest = g;
	gate_count++;
}

/* The next connection in the backlog, or -1 (then the caller stops).
 * Out of fds, the oldest waiter makes room; with none, the listener
 * pauses until the next tick. */
static int
gate_take(struct sup *s, struct sockaddr_storage *addr, socklen_t *addrlen)
{
	int fd, held_shed = 0;

	for (;;) {
		*addrlen = sizeof(*addr);
		fd = accept4(s->stats_fd, (struct sockaddr *)addr, addrlen,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd != -1) {
			gate_warned = 0;
			return fd;
		}
		if (errno != EMFILE && errno != ENFILE && errno != ENOBUFS &&
		    errno != ENOMEM)
			break;
		if (gate_shed(s) == 0)
			continue;
		/* no waiter: one held connection, once (its fd comes back
		 * when libmicrohttpd closes it) */
		if (!held_shed && gate_held_shed(s) == 0) {
			held_shed = 1;
			continue;
		}
		if (!gate_warned)
			log_warn("accept4 stats, retrying every tick");
		gate_warned = 1;
		gate_pause(s);
		return -1;
	}
	if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
		log_warn("accept4 stats");
	return -1;
}

/* The stats listener is readable: take waiting connections, a batch at
 * a time so that libmicrohttpd answers the ones handed over in between. */
void
gate_accept(struct sup *s)
{
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int fd, i, v;

	for (i = 0; i < GATE_BATCH; i++) {
		if ((fd = gate_take(s, &addr, &addrlen)) == -1)
			return;
		if ((v = gate_look(fd)) == GATE_MORE)
			gate_seat(s, fd, &addr, addrlen, ctr_clock_ns());
		else
			gate_settle(s, fd, &addr, addrlen, v);
	}
}

/* A waiter's head is there (verdict v): it leaves the list, and its
 * connection is handed over or answered. */
static void
gate_leave(struct sup *s, struct gate_conn *g, int v)
{
	struct sockaddr_storage addr = g->addr;
	socklen_t addrlen = g->addrlen;
	int fd = g->fd;

	gate_unlink(s, g);
	gate_settle(s, fd, &addr, addrlen, v);
}

void
gate_event(struct sup *s, void *ptr)
{
	struct gate_conn *g = ptr;
	int v;

	if (g->fd == -1) /* shed or expired earlier in this epoll batch */
		return;
	/* Thousands of trickling waiters keep thousands of events ready,
	 * and epoll hands them out in turn with the listener's among them:
	 * a scrape would wait for all of them.  So look at the listener
	 * every few waiter events (one accept4 that finds nothing). */
	if (++gate_events % GATE_ACCEPT_EVERY == 0 && !gate_paused)
		gate_accept(s);
	if ((v = gate_look(g->fd)) != GATE_MORE)
		gate_leave(s, g, v);
}

/*
 * Before the upgrade's execve, which closes every waiter: a request whose
 * head came in since the waiter was last looked at (its edge-triggered
 * event still unread in the loop's epoll set) is handed over or answered
 * now.  Returns how many waiters seated at or after since_ns still wait
 * for their head: a scraper sends its request at once, so the upgrade
 * waits a moment for those, never for the idle and trickling ones.
 */
unsigned
gate_settle_waiters(struct sup *s, uint64_t since_ns)
{
	const uint64_t wait_ns = GATE_TIMEOUT_S * 1000000000ULL;
	struct gate_conn *g, *next;
	unsigned young = 0;
	int v;

	for (g = gate_oldest; g != NULL; g = next) {
		next = g->next;
		if ((v = gate_look(g->fd)) == GATE_MORE) {
			if (g->deadline_ns >= since_ns + wait_ns)
				young++;
			continue;
		}
		gate_leave(s, g, v);
	}
	return young;
}

/* Called on every supervisor tick: expire waiters past their deadline,
 * oldest first, and put back a paused listener. */
void
gate_expire(struct sup *s)
{
	uint64_t now = ctr_clock_ns();

	while (gate_oldest != NULL && gate_oldest->deadline_ns <= now)
		gate_drop(s, gate_oldest, gate_408, sizeof(gate_408) - 1);
	gate_resume(s);
}
