/*
 * engine_epoll.c: the readiness engine.  One epoll set per worker watches
 * the signalfd, the timerfd, the shared listeners (while this worker
 * takes connections: wrk_may_accept), the shared UDP sockets
 * (EPOLLEXCLUSIVE: one worker is woken per datagram burst), one of each
 * per --tcp, --udp address, and every connection.  A readable connection is read into the worker's one input
 * buffer and its output written at once with send(2); only what the
 * socket does not take is copied (c->pend), and the connection then waits
 * for EPOLLOUT instead of EPOLLIN.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "wrk.h"

#define EPO_MAX_EVENTS 256
#define EPO_READS_PER_EVENT 4

int
eng_epoll_open(struct wrk *w)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE };
	unsigned i;

	for (i = 0; i < w->nufd; i++) {
		ev.data.u64 = WRK_EV_UDP + i;
		if (epoll_ctl(w->ev.ep, EPOLL_CTL_ADD, w->ufd[i], &ev) == -1)
			return -1;
	}
	return 0;
}

int
eng_epoll_listen(struct wrk *w, int on)
{
	struct epoll_event ev = { .events = EPOLLIN };
	unsigned i;
	int rc = 0;

	for (i = 0; i < w->nlfd; i++) {
		ev.data.u64 = WRK_EV_LISTEN + i;
		if (epoll_ctl(w->ev.ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL,
		        w->lfd[i], &ev) == -1)
			rc = -1;
	}
	return rc;
}

void
eng_epoll_udp_close(struct wrk *w)
{
	unsigned i;

	/*
	 * epoll watches the open socket, not our fd, and the supervisor and
	 * the other workers keep it open: closing our fd alone would leave
	 * it registered, waking us for datagrams we can no longer read and
	 * taking EPOLLEXCLUSIVE wakeups from the workers that can.
	 */
	for (i = 0; i < w->nufd; i++)
		if (epoll_ctl(w->ev.ep, EPOLL_CTL_DEL, w->ufd[i], NULL) == -1)
			log_warn("epoll_ctl del UDP socket");
}

static int
epo_conn_add(struct wrk *w, struct wconn *c)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

	c->events = EPOLLIN;
	return epoll_ctl(w->ev.ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void
epo_conn_close(struct wrk *w, struct wconn *c)
{
	close(c->fd);
	tcp_conn_free(w, c);
}

static int
epo_interest(struct wrk *w, struct wconn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->events == events)
		return 0;
	c->events = events;
	return epoll_ctl(w->ev.ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write as much of buf as the socket takes now, counting it; returns the
 * bytes written, or -1 when the connection is dead (and closed).  What a
 * send took before a later one failed was sent all the same: counted. */
static ssize_t
epo_write(struct wrk *w, struct wconn *c, const uint8_t *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;
	int dead = 0;

	while (off < len && !dead) {
		n = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
		if (n > 0)
			off += (size_t)n;
		else if (n == -1 && errno == EINTR)
			continue;
		else if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		else
			dead = 1;
	}
	ctr_add(w->cell, CTR_tcp_bytes_sent, off);
	if (dead) {
		tcp_conn_close(w, c);
		return -1;
	}
	return (ssize_t)off;
}

/* Write what the transform produced; keep the rest for EPOLLOUT.
 * Returns -1 when the connection is dead (and closed). */
static int
epo_send(struct wrk *w, struct wconn *c, const uint8_t *buf, size_t len)
{
	ssize_t off = epo_write(w, c, buf, len);

	if (off == -1)
		return -1;
	if ((size_t)off == len)
		return 0;
	if ((c->pend = malloc(len - (size_t)off)) == NULL) {
		tcp_conn_close(w, c);
		return -1;
	}
	c->acked = tcp_conn_acked(c); /* for tcp_conn_taking */
	memcpy(c->pend, buf + off, len - (size_t)off);
	c->pend_len = (uint32_t)(len - (size_t)off);
	c->pend_off = 0;
	return 0;
}

static int
epo_flush(struct wrk *w, struct wconn *c)
{
	ssize_t n = epo_write(w, c, c->pend + c->pend_off,
	    c->pend_len - c->pend_off);

	if (n == -1)
		return -1;
	/* taking our reply: not idle (see tcp_expire_idle) */
	if (n > 0)
		tcp_conn_active(w, c);
	c->pend_off += (uint32_t)n;
	if (c->pend_off < c->pend_len)
		return 0;
	free(c->pend);
	c->pend = NULL;
	c->pend_len = c->pend_off = 0;
	return 0;
}

/* One read's worth; returns 1 to keep reading, 0 to stop, -1 if closed. */
static int
epo_read_once(struct wrk *w, struct wconn *c)
{
	ssize_t n = recv(c->fd, w->inbuf, WRK_INBUF, 0);

	if (n > 0) {
		if (tcp_input(w, c, w->inbuf, (size_t)n) == -1)
			return -1;
		return n == WRK_INBUF && c->pend == NULL;
	}
	if (n == 0)
		return tcp_input_eof(w, c) == -1 ? -1 : 0;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return 0;
	tcp_conn_close(w, c);
	return -1;
}

static void
epo_conn_event(struct wrk *w, struct wconn *c, uint32_t events)
{
	int i, r = 1;

	if ((events & EPOLLOUT) && epo_flush(w, c) == -1)
		return;
	if (c->pend == NULL && !c->eof &&
	    (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		for (i = 0; i < EPO_READS_PER_EVENT && r == 1; i++)
			if ((r = epo_read_once(w, c)) == -1)
				return;
	if (c->pend == NULL && c->eof) {
		tcp_conn_close(w, c);
		return;
	}
	if (epo_interest(w, c, c->pend ? EPOLLOUT : EPOLLIN) == -1)
		tcp_conn_close(w, c);
}

/* The tick is only noted here: it runs after the rest of the batch (see
 * wrk_loop). */
static void
epo_dispatch(struct wrk *w, const struct epoll_event *ev)
{
	uint64_t tag = ev->data.u64;

	if (tag >= WRK_EV_LISTEN && tag < WRK_EV_UDP) {
		tcp_accept(w, (unsigned)(tag - WRK_EV_LISTEN));
		return;
	}
	if (tag >= WRK_EV_UDP && tag < WRK_EV_END) {
		(void)udp_event(w, (unsigned)(tag - WRK_EV_UDP));
		return;
	}
	switch (tag) {
	case EVSRC_SIGNAL:
		wrk_signal(w);
		break;
	case EVSRC_TICK:
		w->tick = 1;
		break;
	default:
		epo_conn_event(w, ev->data.ptr, ev->events);
	}
}

/* Wait and dispatch; the number of events, -1 when epoll_wait failed. */
int
eng_epoll_events(struct wrk *w, int timeout_ms)
{
	struct epoll_event ev[EPO_MAX_EVENTS];
	int i, n;

	n = epoll_wait(w->ev.ep, ev, EPO_MAX_EVENTS, timeout_ms);
	if (n == -1 && errno != EINTR)
		return -1;
	w->now_ns = ctr_clock_ns();
	for (i = 0; i < n && !w->quit; i++)
		epo_dispatch(w, &ev[i]);
	return n < 0 ? 0 : n;
}

static int
epo_wait(struct wrk *w, int timeout_ms)
{
	return eng_epoll_events(w, timeout_ms) == -1 ? -1 : 0;
}

const struct eng_ops eng_epoll = {
	.name = "epoll",
	.open = eng_epoll_open,
	.wait = epo_wait,
	.listen = eng_epoll_listen,
	.conn_add = epo_conn_add,
	.send = epo_send,
	.conn_close = epo_conn_close,
	.udp_close = eng_epoll_udp_close,
};
