/*
 * tcp.c: TCP connections of one worker.  A connection is a byte stream
 * transform: whatever is read is uppercased into the worker's shared
 * output buffer and written straight back.  Only what the client does not
 * take at once is copied into a per-connection buffer, and while that
 * buffer is non-empty the connection is not read: a client that never
 * reads stalls itself (TCP flow control) and costs at most one buffer.
 */
#include <errno.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <linux/tcp.h> /* tcp_info with tcpi_bytes_acked (glibc's lacks it) */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "wrk.h"

#define TCP_ACCEPT_BATCH 64
#define TCP_READS_PER_EVENT 4
#define TCP_ACCEPT_PAUSE_NS 100000000ULL /* 100 ms, after fds run out */

static void
tcp_lru_unlink(struct wconn_list *l, struct wconn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->prev = c->next = NULL;
}

static void
tcp_lru_append(struct wconn_list *l, struct wconn *c)
{
	c->prev = l->tail;
	c->next = NULL;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
}

static struct wconn *
tcp_conn_alloc(struct wrk *w)
{
	struct wconn *c = w->free_conns;

	if (c != NULL)
		w->free_conns = c->next;
	else if ((c = malloc(sizeof(*c))) == NULL)
		return NULL;
	memset(c, 0, sizeof(*c));
	return c;
}

static void
tcp_conn_close(struct wrk *w, struct wconn *c)
{
	close(c->fd);
	free(c->pend);
	tcp_lru_unlink(&w->lru, c);
	w->nconns--;
	ctr_sub(w->cell, CTR_tcp_connections_active, 1);
	ctr_observe(w->cell, w->now_ns - c->accepted_ns);
	c->next = w->free_conns;
	w->free_conns = c;
}

/* Not idle now: to the tail of the idle order. */
static void
tcp_conn_active(struct wrk *w, struct wconn *c)
{
	c->last_active_ns = w->now_ns;
	tcp_lru_unlink(&w->lru, c);
	tcp_lru_append(&w->lru, c);
}

/* How much of our output the client's TCP has acknowledged; 0 when
 * unknown (a kernel before 4.2 leaves the field out). */
static uint64_t
tcp_conn_acked(const struct wconn *c)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == -1)
		return 0;
	return ti.tcpi_bytes_acked;
}

/* Has a connection with pending output taken any of it since we last
 * looked?  The kernel's send buffer holds far more than the client takes
 * in one timeout, so our own writes (tcp_flush) can pause for longer than
 * that while the client reads steadily: only the ACKs tell. */
static int
tcp_conn_taking(struct wconn *c)
{
	uint64_t acked = tcp_conn_acked(c);

	if (acked <= c->acked)
		return 0;
	c->acked = acked;
	return 1;
}

static int
tcp_conn_interest(struct wrk *w, struct wconn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (c->events == events)
		return 0;
	c->events = events;
	return epoll_ctl(w->ev.ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void
tcp_add(struct wrk *w, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct wconn *c;

	if ((c = tcp_conn_alloc(w)) == NULL) {
		close(fd);
		ctr_add(w->cell, CTR_tcp_connections_rejected, 1);
		return;
	}
	c->fd = fd;
	c->events = EPOLLIN;
	c->accepted_ns = c->last_active_ns = w->now_ns;
	ev.data.ptr = c;
	if (epoll_ctl(w->ev.ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
		log_warn("epoll_ctl add connection");
		close(fd);
		c->next = w->free_conns;
		w->free_conns = c;
		ctr_add(w->cell, CTR_tcp_connections_rejected, 1);
		return;
	}
	tcp_lru_append(&w->lru, c);
	w->nconns++;
	ctr_add(w->cell, CTR_tcp_connections_accepted, 1);
	ctr_add(w->cell, CTR_tcp_connections_active, 1);
	ctr_set(&w->cell->recent, ctr_get(&w->cell->recent) + 1);
	wrk_served(w, 1);
}

/*
 * Out of fds or memory: accept4 would fail again at once and leave the
 * connection queued, so stop watching the listener for a while (nginx's
 * accept pause) instead of retrying in a tight loop; wrk_loop listens
 * again once it is over.  Meanwhile the other workers, which may have fds
 * to spare, take the backlog.  That is why a waiting connection is not
 * accepted on a reserved fd and closed: it would turn away a client that
 * another worker, or this one a moment later, could serve; when every
 * worker is out, the kernel's backlog makes clients wait, as with nginx.
 * One warning per episode, which ends at the next accept that succeeds.
 */
static void
tcp_accept_pause(struct wrk *w)
{
	if (!w->accept_failing)
		log_warn("accept4, not accepting for %llu ms at a time "
		         "until it succeeds",
		    (unsigned long long)TCP_ACCEPT_PAUSE_NS / 1000000);
	w->accept_failing = 1;
	w->accept_resume_ns = w->now_ns + TCP_ACCEPT_PAUSE_NS;
	wrk_listen(w, 0);
}

/* Accept a batch from listener l; stop early when this worker holds more than its share
 * (another worker takes the rest) or fds run out (tcp_accept_pause). */
void
tcp_accept(struct wrk *w, unsigned l)
{
	int i, fd;

	for (i = 0; i < TCP_ACCEPT_BATCH && w->listening && l < w->nlfd; i++) {
		if (!wrk_may_accept(w)) {
			wrk_listen(w, 0);
			return;
		}
		fd = accept4(w->lfd[l], NULL, NULL,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				tcp_accept_pause(w);
			return;
		}
		if (w->accept_failing) {
			w->accept_failing = 0;
			log_info("accept4 succeeds again");
		}
		if (w->nconns >= w->cfg->max_conns) {
			close(fd);
			ctr_add(w->cell, CTR_tcp_connections_rejected, 1);
			continue;
		}
		tcp_add(w, fd);
	}
}

/* Write as much of buf as the socket takes now, counting it; returns the
 * bytes written, or -1 when the connection is dead (and closed).  What a
 * send took before a later one failed was sent all the same: counted. */
static ssize_t
tcp_write(struct wrk *w, struct wconn *c, const uint8_t *buf, size_t len)
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
tcp_send(struct wrk *w, struct wconn *c, const uint8_t *buf, size_t len)
{
	ssize_t off = tcp_write(w, c, buf, len);

	if (off == -1)
		return -1;
	if ((size_t)off == len)
		return 0;
	if ((c->pend = malloc(len - (size_t)off)) == NULL) {
		tcp_conn_close(w, c);
		return -1;
	}
	c->acked = tcp_conn_acked(c); /* for conn_taking */
	memcpy(c->pend, buf + off, len - (size_t)off);
	c->pend_len = (uint32_t)(len - (size_t)off);
	c->pend_off = 0;
	return 0;
}

#ifdef __SSE2__
/* The byte lanes of a count vector (each at most 255) summed. */
static inline uint64_t
tcp_lane_sum(__m128i acc)
{
	__m128i sum = _mm_sad_epu8(acc, _mm_setzero_si128());

	return (uint64_t)_mm_cvtsi128_si64(sum) +
	    (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(sum, sum));
}
#endif

/* tcp_lines_received for a whole read, 64 bytes per step (SSE2 is part
 * of x86-64): calling memchr once per line, or a popcount without the
 * POPCNT instruction, costs more than the transform itself.  Four
 * independent byte-lane counters (cmpeq gives -1 per match) keep the
 * loads from waiting on one add chain (44 -> 60 GB/s); each counts up to
 * 255 steps before _mm_sad_epu8 folds it into 64-bit sums. */
static uint64_t
tcp_count_newlines(const uint8_t *p, size_t n)
{
	uint64_t lines = 0;
	size_t i = 0;

#ifdef __SSE2__
	const __m128i nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();

	while (i + 64 <= n) {
		__m128i a = zero, b = zero, c = zero, d = zero;
		size_t steps = (n - i) / 64;

		if (steps > 255)
			steps = 255;
		for (; steps > 0; steps--, i += 64) {
			const __m128i *v = (const __m128i *)(const void *)(p +
			    i);

			a = _mm_sub_epi8(a,
			    _mm_cmpeq_epi8(nl, _mm_loadu_si128(v)));
			b = _mm_sub_epi8(b,
			    _mm_cmpeq_epi8(nl, _mm_loadu_si128(v + 1)));
			c = _mm_sub_epi8(c,
			    _mm_cmpeq_epi8(nl, _mm_loadu_si128(v + 2)));
			d = _mm_sub_epi8(d,
			    _mm_cmpeq_epi8(nl, _mm_loadu_si128(v + 3)));
		}
		lines += tcp_lane_sum(a) + tcp_lane_sum(b) + tcp_lane_sum(c) +
		    tcp_lane_sum(d);
	}
#endif
	for (; i < n; i++)
		lines += p[i] == '\n';
	return lines;
}

/* One read's worth; returns 1 to keep reading, 0 to stop, -1 if closed. */
static int
tcp_read_once(struct wrk *w, struct wconn *c)
{
	enum upc_mode mode = w->cfg->case_mode;
	ssize_t n;
	size_t out;

	n = recv(c->fd, w->inbuf, WRK_INBUF, 0);
	if (n > 0) {
		if (c->work_tick != (uint8_t)w->tick_seq) {
			c->work_tick = (uint8_t)w->tick_seq;
			w->tick_work++; /* one more client busy this tick */
		}
		ctr_add(w->cell, CTR_tcp_bytes_received, (uint64_t)n);
		ctr_add(w->cell, CTR_tcp_lines_received,
		    tcp_count_newlines(w->inbuf, (size_t)n));
		w->cell->activity_ns = w->now_ns;
		tcp_conn_active(w, c);
		out = upc_feed(&c->st, mode, w->inbuf, (size_t)n, w->outbuf);
		if (tcp_send(w, c, w->outbuf, out) == -1)
			return -1;
		return n == WRK_INBUF && c->pend == NULL;
	}
	if (n == 0) {
		c->eof = 1;
		out = upc_finish(&c->st, w->outbuf);
		return tcp_send(w, c, w->outbuf, out) == -1 ? -1 : 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return 0;
	tcp_conn_close(w, c);
	return -1;
}

static int
tcp_flush(struct wrk *w, struct wconn *c)
{
	ssize_t n = tcp_write(w, c, c->pend + c->pend_off,
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

void
tcp_event(struct wrk *w, struct wconn *c, uint32_t events)
{
	int i, r = 1;

	if ((events & EPOLLOUT) && tcp_flush(w, c) == -1)
		return;
	if (c->pend == NULL && !c->eof &&
	    (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		for (i = 0; i < TCP_READS_PER_EVENT && r == 1; i++)
			if ((r = tcp_read_once(w, c)) == -1)
				return;
	if (c->pend == NULL && c->eof) {
		tcp_conn_close(w, c);
		return;
	}
	if (tcp_conn_interest(w, c, c->pend ? EPOLLOUT : EPOLLIN) == -1)
		tcp_conn_close(w, c);
}

/*
 * Least recently active first: stop at the first connection still within
 * the timeout.  A connection we do not read because its reply is pending
 * "sends nothing", but one still taking that reply is not idle (nginx's
 * send_timeout): it gets another period.  One that takes nothing for a
 * whole period is closed, within twice the timeout at worst.
 */
void
tcp_expire_idle(struct wrk *w)
{
	uint64_t limit = (uint64_t)w->cfg->idle_timeout * 1000000000ULL;
	struct wconn *c;

	while ((c = w->lru.head) != NULL &&
	    w->now_ns - c->last_active_ns >= limit) {
		if (c->pend != NULL && tcp_conn_taking(c)) {
			tcp_conn_active(w, c);
			continue;
		}
		ctr_add(w->cell, CTR_tcp_idle_timeouts, 1);
		tcp_conn_close(w, c);
	}
}

void
tcp_close_all(struct wrk *w)
{
	w->now_ns = ctr_clock_ns();
	while (w->lru.head != NULL)
		tcp_conn_close(w, w->lru.head);
}
