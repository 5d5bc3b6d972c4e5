/*
 * tcp.c: TCP connections of one worker, whatever the engine.  A connection
 * is a byte stream transform: whatever the engine read is uppercased into
 * the worker's shared output buffer and handed back to the engine to send.
 * Only what the client does not take at once is kept per connection
 * (engine.h's send), and while it is kept the connection is not read: a
 * client that never reads stalls itself (TCP flow control) and costs at
 * most one buffer.  Here too: accepting, counting, the idle order and the
 * idle timeout.
 */
#include <errno.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <linux/tcp.h> /* tcp_info with tcpi_bytes_acked (glibc's lacks it) */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "wrk.h"

#define TCP_ACCEPT_BATCH 64
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

/* Out of the idle order and the counts now; the engine closes the fd
 * and hands the struct back (tcp_conn_free) when it is done with it. */
void
tcp_conn_close(struct wrk *w, struct wconn *c)
{
	tcp_lru_unlink(&w->lru, c);
	w->nconns--;
	ctr_sub(w->cell, CTR_tcp_connections_active, 1);
	ctr_observe(w->cell, w->now_ns - c->accepted_ns);
	w->eng->conn_close(w, c);
}

void
tcp_conn_free(struct wrk *w, struct wconn *c)
{
	free(c->pend);
	free(c->q);
	c->pend = c->q = NULL;
	c->next = w->free_conns;
	w->free_conns = c;
}

/* Not idle now: to the tail of the idle order. */
void
tcp_conn_active(struct wrk *w, struct wconn *c)
{
	c->last_active_ns = w->now_ns;
	tcp_lru_unlink(&w->lru, c);
	tcp_lru_append(&w->lru, c);
}

/* How much of our output the client's TCP has acknowledged; 0 when
 * unknown (a kernel before 4.2 leaves the field out). */
uint64_t
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

static void
tcp_add(struct wrk *w, int fd)
{
	struct wconn *c;

	if ((c = tcp_conn_alloc(w)) == NULL) {
		close(fd);
		ctr_add(w->cell, CTR_tcp_connections_rejected, 1);
		return;
	}
	c->fd = fd;
	c->accepted_ns = c->last_active_ns = w->now_ns;
	if (w->eng->conn_add(w, c) == -1) {
		log_warn("%s: taking a connection on", w->eng->name);
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

/* A connection accepted: taken on unless max-conns is full. */
static void
tcp_accepted(struct wrk *w, int fd)
{
	if (w->accept_failing) {
		w->accept_failing = 0;
		log_info("accept4 succeeds again");
	}
	if (w->nconns >= w->cfg->max_conns) {
		close(fd);
		ctr_add(w->cell, CTR_tcp_connections_rejected, 1);
		return;
	}
	tcp_add(w, fd);
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
 * Other errors (the client gave up meanwhile) change nothing.
 */
static void
tcp_accept_failed(struct wrk *w, int err)
{
	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
		return;
	if (!w->accept_failing)
		log_warn("accept4, not accepting for %llu ms at a time "
		         "until it succeeds",
		    (unsigned long long)TCP_ACCEPT_PAUSE_NS / 1000000);
	w->accept_failing = 1;
	w->accept_resume_ns = w->now_ns + TCP_ACCEPT_PAUSE_NS;
	wrk_listen(w, 0);
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

/*
 * Listener l is readable: accept a batch; stop early when this worker
 * holds more than its share (another worker takes the rest) or fds run
 * out (tcp_accept_failed).  Both engines accept here, with accept4: every
 * worker watching the listener is woken (not one exclusively), so a
 * stopped or hung worker cannot sit on a wakeup that another would have
 * served (io_uring's multishot accept waits exclusively and did).
 */
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
			tcp_accept_failed(w, errno);
			return;
		}
		tcp_accepted(w, fd);
	}
}

/*
 * A drain, before closing listener i: every connection the kernel has
 * already completed is taken (and served as part of the drain), whatever
 * this worker's share.  If this worker holds the socket's last open copy,
 * its close would otherwise reset them: a client, or a load balancer
 * without health checks (nginx's stream module), would see a connection
 * accepted and then cut at the very start of a graceful stop.  Bounded:
 * clients still arriving must not keep the drain from starting (the
 * kernel's queue holds at most SOMAXCONN).
 */
void
tcp_take_pending(struct wrk *w, unsigned i)
{
	int n, fd;

	for (n = 0; n < SOMAXCONN; n++) {
		fd = accept4(w->lfd[i], NULL, NULL,
		    SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		tcp_accepted(w, fd);
	}
}

/* n bytes the engine read for c: counted, uppercased, handed back to
 * the engine to send.  -1 when c is dead (and closed). */
int
tcp_input(struct wrk *w, struct wconn *c, const uint8_t *buf, size_t n)
{
	size_t out;

	if (c->work_tick != (uint8_t)w->tick_seq) {
		c->work_tick = (uint8_t)w->tick_seq;
		w->tick_work++; /* one more client busy this tick */
	}
	ctr_add(w->cell, CTR_tcp_bytes_received, (uint64_t)n);
	ctr_add(w->cell, CTR_tcp_lines_received, tcp_count_newlines(buf, n));
	w->cell->activity_ns = w->now_ns;
	tcp_conn_active(w, c);
	out = upc_feed(&c->st, w->cfg->case_mode, buf, n, w->outbuf);
	return w->eng->send(w, c, w->outbuf, out);
}

/* The client shut down its side: the end of a split character goes out,
 * and c closes once its output is sent.  -1 when c is closed. */
int
tcp_input_eof(struct wrk *w, struct wconn *c)
{
	size_t out;

	c->eof = 1;
	out = upc_finish(&c->st, w->outbuf);
	if (out > 0 && w->eng->send(w, c, w->outbuf, out) == -1)
		return -1;
	if (c->pend != NULL)
		return 0;
	tcp_conn_close(w, c);
	return -1;
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
