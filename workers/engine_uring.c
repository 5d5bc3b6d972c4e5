/*
 * engine_uring.c: the completion engine, one io_uring per worker.  The
 * kernel does the waiting and the copying; the worker makes one
 * io_uring_enter(2) per batch of events instead of an epoll_wait plus a
 * recv and a send per request.
 *
 * - The signalfd, the timerfd, the listener and the UDP socket stay in
 *   the epoll engine's epoll set, and the ring polls that set (one
 *   multishot poll): they are rare events, and a ring must not hold the
 *   shared sockets itself.  A request on the listener keeps it open after
 *   the worker dies until the ring's teardown, which runs later in a
 *   kernel worker, so a new upperd could not bind the port at once
 *   (test_supervisor_sigkill); and io_uring's multishot accept waits
 *   exclusively, so a stopped worker's armed accept took the wakeup and
 *   the connection waited for that worker (a reload with a SIGSTOPped
 *   worker, test_lifecycle).  Accepting is tcp_accept's accept4 batch,
 *   and UDP udp_event's recvmmsg/sendmmsg, as with epoll.  The epoll set
 *   is level-triggered but the ring's poll fires on new readiness only,
 *   so the set is read again, without waiting, until it reports nothing.
 * - Connections: one multishot receive each, into a ring of provided
 *   buffers shared by every connection of the worker, so an idle
 *   connection owns no buffer.  When the ring runs dry a receive ends
 *   with ENOBUFS and is armed again once this batch has given its
 *   buffers back.  The kernel bounds how much one multishot receive
 *   takes in a row, so a busy connection does not starve the others.
 *   Where the kernel can (6.18 here; urg_probe_limit), one arming takes
 *   about URG_RECV_MAX bytes and is armed again by urg_settle: armed
 *   without a limit, a receive takes everything the socket has queued
 *   (megabytes, once a client that does not read has filled it) before
 *   the worker sees a byte of it and can stop it.
 * - Output: copied into c->pend and sent with one send request at a
 *   time per connection (two in flight on one socket could be reordered);
 *   what is made meanwhile queues in c->q and goes out as one send when
 *   the first completes, so pipelined requests are answered in batches.
 *   Past WRK_OUTBUF of unsent output the receive is cancelled: a client
 *   that does not read stalls itself, as with epoll.
 * - A closed connection's fd is closed at once, its pending requests
 *   cancelled; its struct waits on w->dying for their last completions.
 */
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "wrk.h"

#define URG_SQ_ENTRIES 1024
#define URG_CQ_ENTRIES 8192
#define URG_NBUF 256 /* provided receive buffers, a power of two */
#define URG_BUFSZ (32 * 1024)
#define URG_BGID 1
#define URG_QUEUE_MIN 4096 /* first allocation of c->q */
/* Bytes one arming of a connection's receive may take, as one epoll read:
 * a connection then holds at most WRK_OUTBUF plus the output of
 * URG_RECV_MAX + URG_BUFSZ (one read may pass the limit) of unsent
 * output. */
#define URG_RECV_MAX WRK_INBUF

/*
 * user_data: a connection's pointer with the operation in its low bits
 * (malloc aligns to 16), or one of the small tags below, which no heap
 * pointer is.
 */
#define URG_OP_RECV 0
#define URG_OP_SEND 1
#define URG_OP_MASK 15
enum { URG_UD_EPOLL = 1, URG_UD_CANCEL, URG_UD_PROBE };

struct eng_uring {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	uint8_t *bufs; /* URG_NBUF * URG_BUFSZ, pages touched as used */
	int ep_more;   /* the epoll set reported events: read it again */
	int recv_lim;  /* the kernel limits a multishot receive's bytes */
};

static struct eng_uring urg_state;

/* A submission slot; the queue is submitted to make room when full. */
static struct io_uring_sqe *
urg_sqe(struct eng_uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (sqe == NULL) {
		(void)io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

static int
urg_poll(struct eng_uring *u, int fd, uint64_t ud)
{
	struct io_uring_sqe *sqe = urg_sqe(u);

	if (sqe == NULL)
		return -1;
	io_uring_prep_poll_multishot(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

static int
urg_cancel(struct eng_uring *u, uint64_t ud)
{
	struct io_uring_sqe *sqe = urg_sqe(u);

	if (sqe == NULL)
		return -1;
	io_uring_prep_cancel64(sqe, ud, 0);
	io_uring_sqe_set_data64(sqe, URG_UD_CANCEL);
	return 0;
}

static uint64_t
urg_ud(const struct wconn *c, unsigned op)
{
	return (uint64_t)(uintptr_t)c | op;
}

static void urg_buf_return(struct eng_uring *u, unsigned bid);

/* A multishot receive into the shared buffers that ends after lim bytes
 * (0: never): sqe->optlen in newer headers, the word that older ones
 * call file_index. */
static void
urg_prep_recv(struct io_uring_sqe *sqe, int fd, unsigned lim)
{
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = URG_BGID;
	sqe->file_index = lim;
}

/*
 * Does this kernel end a multishot receive after a number of bytes?  Two
 * bytes wait in a socketpair and a receive limited to one byte is armed:
 * a kernel that knows the limit ends it once it has read (the limit
 * may be passed by what one read takes, at most URG_BUFSZ);
 * one that does not refuses the field (EINVAL), or, should one ignore it,
 * the receive stays armed and is cancelled.  Only completions of this
 * receive can be in the ring yet.
 */
static void
urg_probe_limit(struct eng_uring *u)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int sv[2], more = 1, n;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		return;
	if (write(sv[1], "xx", 2) != 2 ||
	    (sqe = io_uring_get_sqe(&u->ring)) == NULL)
		goto out;
	urg_prep_recv(sqe, sv[0], 1);
	io_uring_sqe_set_data64(sqe, URG_UD_PROBE);
	for (n = 0; more && n < 4; n++) {
		if (io_uring_submit_and_wait(&u->ring, 1) < 0 ||
		    io_uring_peek_cqe(&u->ring, &cqe) != 0)
			break;
		if (io_uring_cqe_get_data64(cqe) == URG_UD_PROBE) {
			more = (cqe->flags & IORING_CQE_F_MORE) != 0;
			if (n == 0 && cqe->res > 0 && !more)
				u->recv_lim = 1;
			if (cqe->flags & IORING_CQE_F_BUFFER)
				urg_buf_return(u,
				    cqe->flags >> IORING_CQE_BUFFER_SHIFT);
			if (more && n == 0 &&
			    (sqe = io_uring_get_sqe(&u->ring)) != NULL) {
				io_uring_prep_cancel64(sqe, URG_UD_PROBE, 0);
				io_uring_sqe_set_data64(sqe, URG_UD_CANCEL);
			}
		}
		io_uring_cqe_seen(&u->ring, cqe);
	}
out:
	close(sv[0]);
	close(sv[1]);
}

/* The ring, the shared receive buffers and the polls; flags the kernel
 * does not know (DEFER_TASKRUN before 6.1) are dropped and retried. */
static int
urg_init(struct eng_uring *u)
{
	struct io_uring_params p;
	struct io_uring_buf_reg reg;
	size_t rsz = URG_NBUF * sizeof(struct io_uring_buf);
	int r, i;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
	    IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
	    IORING_SETUP_DEFER_TASKRUN;
	p.cq_entries = URG_CQ_ENTRIES;
	r = io_uring_queue_init_params(URG_SQ_ENTRIES, &u->ring, &p);
	if (r == -EINVAL) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = URG_CQ_ENTRIES;
		r = io_uring_queue_init_params(URG_SQ_ENTRIES, &u->ring, &p);
	}
	if (r < 0) {
		errno = -r;
		return -1;
	}
	u->br = mmap(NULL, rsz, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	u->bufs = mmap(NULL, (size_t)URG_NBUF * URG_BUFSZ,
	    PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (u->br == MAP_FAILED || u->bufs == MAP_FAILED)
		return -1;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)u->br;
	reg.ring_entries = URG_NBUF;
	reg.bgid = URG_BGID;
	if ((r = io_uring_register_buf_ring(&u->ring, &reg, 0)) < 0) {
		errno = -r;
		return -1;
	}
	io_uring_buf_ring_init(u->br);
	for (i = 0; i < URG_NBUF; i++)
		io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * URG_BUFSZ,
		    URG_BUFSZ, (unsigned short)i,
		    io_uring_buf_ring_mask(URG_NBUF), i);
	io_uring_buf_ring_advance(u->br, URG_NBUF);
	urg_probe_limit(u);
	return 0;
}

/* The epoll set is filled last: a failure before leaves it to epoll. */
static int
urg_open(struct wrk *w)
{
	struct eng_uring *u = &urg_state;

	if (urg_init(u) == -1 || urg_poll(u, w->ev.ep, URG_UD_EPOLL) == -1)
		return -1;
	w->uring = u;
	return eng_epoll_open(w);
}

static int
urg_recv(struct eng_uring *u, struct wconn *c)
{
	struct io_uring_sqe *sqe = urg_sqe(u);

	if (sqe == NULL)
		return -1;
	urg_prep_recv(sqe, c->fd, u->recv_lim ? URG_RECV_MAX : 0);
	io_uring_sqe_set_data64(sqe, urg_ud(c, URG_OP_RECV));
	c->recv_on = 1;
	return 0;
}

static int
urg_conn_add(struct wrk *w, struct wconn *c)
{
	return urg_recv(w->uring, c);
}

/* Send what is left of c->pend. */
static int
urg_send_pend(struct eng_uring *u, struct wconn *c)
{
	struct io_uring_sqe *sqe = urg_sqe(u);

	if (sqe == NULL)
		return -1;
	io_uring_prep_send(sqe, c->fd, c->pend + c->pend_off,
	    c->pend_len - c->pend_off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, urg_ud(c, URG_OP_SEND));
	c->send_on = 1;
	return 0;
}

static size_t
urg_backlog(const struct wconn *c)
{
	return (size_t)(c->pend_len - c->pend_off) + c->q_len;
}

static int
urg_queue(struct wconn *c, const uint8_t *buf, size_t len)
{
	size_t cap = c->q_cap;
	uint8_t *q;

	if (c->q_len + len > cap) {
		cap = cap ? cap * 2 : URG_QUEUE_MIN;
		if (cap < c->q_len + len)
			cap = c->q_len + len;
		if ((q = realloc(c->q, cap)) == NULL)
			return -1;
		c->q = q;
		c->q_cap = (uint32_t)cap;
	}
	memcpy(c->q + c->q_len, buf, len);
	c->q_len += (uint32_t)len;
	return 0;
}

/* Receive while c has no more than WRK_OUTBUF unsent; keep the receive
 * armed or cancelled accordingly.  -1 when c had to be closed. */
static int
urg_settle(struct wrk *w, struct eng_uring *u, struct wconn *c)
{
	int want = !c->eof && urg_backlog(c) <= WRK_OUTBUF;

	if (want && !c->recv_on && urg_recv(u, c) == -1) {
		tcp_conn_close(w, c);
		return -1;
	}
	if (!want && c->recv_on && !c->recv_cancel) {
		c->recv_cancel = 1;
		if (urg_cancel(u, urg_ud(c, URG_OP_RECV)) == -1) {
			tcp_conn_close(w, c);
			return -1;
		}
	}
	return 0;
}

static int
urg_send(struct wrk *w, struct wconn *c, const uint8_t *buf, size_t len)
{
	struct eng_uring *u = w->uring;

	if (len == 0)
		return 0;
	if (c->pend != NULL) { /* a send is in flight: after it, in order */
		if (urg_queue(c, buf, len) == -1)
			goto dead;
		return urg_settle(w, u, c);
	}
	if ((c->pend = malloc(len)) == NULL)
		goto dead;
	memcpy(c->pend, buf, len);
	c->pend_len = (uint32_t)len;
	c->pend_off = 0;
	if (urg_send_pend(u, c) == -1)
		goto dead;
	return 0;
dead:
	tcp_conn_close(w, c);
	return -1;
}

/* c's last completion is in: back to the worker's free list. */
static void
urg_release(struct wrk *w, struct wconn *c)
{
	if (!c->dead || c->recv_on || c->send_on)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		w->dying.head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		w->dying.tail = c->prev;
	tcp_conn_free(w, c);
}

static void
urg_conn_close(struct wrk *w, struct wconn *c)
{
	struct eng_uring *u = w->uring;

	c->dead = 1;
	/* the requests hold the socket open until cancelled */
	if ((c->recv_on && !c->recv_cancel &&
	        urg_cancel(u, urg_ud(c, URG_OP_RECV)) == -1) ||
	    (c->send_on && urg_cancel(u, urg_ud(c, URG_OP_SEND)) == -1))
		log_warn("io_uring: cancel a connection's requests");
	c->recv_cancel = 1;
	close(c->fd);
	c->fd = -1;
	if (!c->recv_on && !c->send_on) {
		tcp_conn_free(w, c);
		return;
	}
	c->next = NULL;
	c->prev = w->dying.tail;
	if (w->dying.tail)
		w->dying.tail->next = c;
	else
		w->dying.head = c;
	w->dying.tail = c;
}

static void
urg_buf_return(struct eng_uring *u, unsigned bid)
{
	io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * URG_BUFSZ,
	    URG_BUFSZ, (unsigned short)bid, io_uring_buf_ring_mask(URG_NBUF),
	    0);
	io_uring_buf_ring_advance(u->br, 1);
}

static void
urg_on_recv(struct wrk *w, struct eng_uring *u, struct wconn *c,
    const struct io_uring_cqe *cqe)
{
	unsigned bid;

	if (cqe->flags & IORING_CQE_F_BUFFER) {
		bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		if (!c->dead && cqe->res > 0)
			(void)tcp_input(w, c, u->bufs + (size_t)bid * URG_BUFSZ,
			    (size_t)cqe->res);
		urg_buf_return(u, bid);
	} else if (!c->dead && cqe->res == 0) {
		(void)tcp_input_eof(w, c);
	} else if (!c->dead && cqe->res < 0 && cqe->res != -ENOBUFS &&
	    cqe->res != -ECANCELED) {
		tcp_conn_close(w, c); /* reset by the peer */
	}
	if (!(cqe->flags & IORING_CQE_F_MORE))
		c->recv_on = c->recv_cancel = 0;
	if (c->dead)
		urg_release(w, c);
	else if (!c->recv_on)
		(void)urg_settle(w, u, c);
}

static void
urg_on_send(struct wrk *w, struct eng_uring *u, struct wconn *c, int res)
{
	c->send_on = 0;
	if (c->dead) {
		urg_release(w, c);
		return;
	}
	if (res <= 0) {
		tcp_conn_close(w, c);
		return;
	}
	ctr_add(w->cell, CTR_tcp_bytes_sent, (uint64_t)res);
	tcp_conn_active(w, c); /* taking our reply: not idle */
	/* A short send: the socket is full.  What the client has taken so
	 * far is noted, as epoll does, for tcp_expire_idle to tell a client
	 * that takes nothing more (tcp_conn_taking); from zero, any client
	 * seemed to take some, and kept a second timeout. */
	if ((uint32_t)res < c->pend_len - c->pend_off)
		c->acked = tcp_conn_acked(c);
	c->pend_off += (uint32_t)res;
	if (c->pend_off == c->pend_len) {
		free(c->pend);
		c->pend = c->q;
		c->pend_len = c->q_len;
		c->pend_off = 0;
		c->q = NULL;
		c->q_len = c->q_cap = 0;
	}
	if (c->pend != NULL && urg_send_pend(u, c) == -1) {
		tcp_conn_close(w, c);
		return;
	}
	if (c->pend == NULL && c->eof) {
		tcp_conn_close(w, c);
		return;
	}
	(void)urg_settle(w, u, c);
}

static void
urg_dispatch(struct wrk *w, struct eng_uring *u, const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	struct wconn *c = (struct wconn *)(uintptr_t)(ud &
	    ~(uint64_t)URG_OP_MASK);

	if (ud == URG_UD_EPOLL) {
		u->ep_more = 1;
		/* ended on the kernel's terms (an overflowing queue) */
		if (!(cqe->flags & IORING_CQE_F_MORE) &&
		    urg_poll(u, w->ev.ep, URG_UD_EPOLL) == -1)
			log_warn("io_uring: poll");
	} else if (ud == URG_UD_CANCEL || ud == URG_UD_PROBE) {
		return; /* a late completion of urg_probe_limit's */
	} else if ((ud & URG_OP_MASK) == URG_OP_RECV)
		urg_on_recv(w, u, c, cqe);
	else
		urg_on_send(w, u, c, cqe->res);
}

/* Handle the completions at hand. */
static void
urg_reap(struct wrk *w, struct eng_uring *u)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(&u->ring, head, cqe)
	{
		urg_dispatch(w, u, cqe);
		n++;
		if (w->quit)
			break;
	}
	io_uring_cq_advance(&u->ring, n);
}

static int
urg_wait(struct wrk *w, int timeout_ms)
{
	struct eng_uring *u = w->uring;
	struct __kernel_timespec ts, *tsp = NULL;
	struct io_uring_cqe *cqe;
	int r;

	if (u->ep_more)
		timeout_ms = 0;
	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
		tsp = &ts;
	}
	r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, tsp, NULL);
	if (r < 0 && r != -ETIME && r != -EINTR) {
		errno = -r;
		return -1;
	}
	w->now_ns = ctr_clock_ns();
	urg_reap(w, u);
	if (!u->ep_more || w->quit)
		return 0;
	if ((r = eng_epoll_events(w, 0)) == -1)
		return -1;
	u->ep_more = r > 0;
	/*
	 * The tick expires idle connections after this batch (wrk_loop):
	 * input that arrived before it must be in the batch, as with epoll,
	 * or a connection whose request waits in the kernel is closed as
	 * idle.  Its completion may not be posted yet (the kernel posts them
	 * when we enter the ring): enter once more, without waiting.
	 */
	if (w->tick && !w->quit) {
		if ((r = io_uring_submit_and_get_events(&u->ring)) < 0) {
			errno = -r;
			return -1;
		}
		urg_reap(w, u);
	}
	return 0;
}

const struct eng_ops eng_uring = {
	.name = "io_uring",
	.open = urg_open,
	.wait = urg_wait,
	.listen = eng_epoll_listen,
	.conn_add = urg_conn_add,
	.send = urg_send,
	.conn_close = urg_conn_close,
	.udp_close = eng_epoll_udp_close,
};

/* io_uring where asked for and the kernel allows it (not disabled by
 * kernel.io_uring_disabled, a seccomp filter or an old kernel), else
 * epoll, said once (by worker 0; the others at debug). */
int
eng_open(struct wrk *w)
{
	if (w->cfg->io_engine == CFG_ENGINE_URING) {
		if (eng_uring.open(w) == 0) {
			w->eng = &eng_uring;
			return 0;
		}
		/* one line for the service, not one per worker */
		if (w->slot == 0)
			log_warn("io_uring unavailable, using epoll");
		else
			log_debug("io_uring unavailable, using epoll");
		if (urg_state.ring.ring_fd > 0)
			io_uring_queue_exit(&urg_state.ring);
		memset(&urg_state, 0, sizeof(urg_state));
		w->uring = NULL;
	}
	w->eng = &eng_epoll;
	return eng_epoll.open(w);
}
