/*
 * udp.c: the UDP scenario: --sockets connected UDP sockets, each keeping
 * --depth datagrams of --size bytes in flight, sent and read in batches
 * (sendmmsg, recvmmsg).  Every payload opens with a decimal sequence
 * number, so a reply finds its datagram again in a ring: lost (never
 * answered), late (answered after --udp-timeout gave it up) and reordered
 * replies are counted, and a lost datagram does not hold its place in the
 * window.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "bench.h"

enum ub_udp_slot_state {
	UB_UDP_FREE,
	UB_UDP_OUT,
	UB_UDP_TIMEDOUT,
	UB_UDP_DONE
};

/* One UDP datagram in flight, found again by seq % UB_UDP_RING. */
struct ub_udp_slot {
	uint64_t seq;
	int64_t t;
	uint8_t st;
};

struct ub_udp {
	uint64_t next_seq; /* sequence numbers start at 1 */
	uint64_t oldest;   /* no datagram before it is still out */
	uint64_t max_ans;  /* highest answered: smaller ones are reordered */
	uint64_t inflight;
	struct ub_udp_slot ring[UB_UDP_RING];
};

static void
ub_udp_put_seq(uint8_t *p, uint64_t seq)
{
	int i;

	for (i = UB_UDP_HDR - 1; i >= 0; i--) {
		p[i] = (uint8_t)('0' + seq % 10);
		seq /= 10;
	}
}

static int
ub_udp_get_seq(const uint8_t *p, uint64_t *seq)
{
	int i;

	*seq = 0;
	for (i = 0; i < UB_UDP_HDR; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		*seq = *seq * 10 + (uint64_t)(p[i] - '0');
	}
	return 0;
}

/* Claim the ring slot of a new sequence number.  A datagram still out
 * there after UB_UDP_RING newer ones is given up for lost. */
static void
ub_udp_claim(struct ub_ctx *x, struct ub_udp *u, uint64_t seq, int64_t now)
{
	struct ub_udp_slot *s = &u->ring[seq % UB_UDP_RING];

	if (s->st == UB_UDP_OUT) {
		u->inflight--;
		x->res->lost++;
	} else if (s->st == UB_UDP_TIMEDOUT)
		x->res->lost++;
	s->seq = seq;
	s->t = now;
	s->st = UB_UDP_OUT;
	u->inflight++;
}

/* Send n datagrams at once; returns how many went (0: buffer full). */
static int
ub_udp_send(struct ub_ctx *x, struct ub_conn *c, int n, int64_t now)
{
	struct ub_udp *u = c->udp;
	size_t size = (size_t)x->o->size;
	uint64_t seq;
	int i, sent;

	for (i = 0; i < n; i++) {
		seq = u->next_seq + (uint64_t)i;
		ub_udp_put_seq(x->iovs[i].iov_base, seq);
		memcpy((uint8_t *)x->iovs[i].iov_base + UB_UDP_HDR,
		    x->in + seq % 26, size - UB_UDP_HDR);
		x->iovs[i].iov_len = size;
	}
	sent = sendmmsg(c->fd, x->msgs, (unsigned)n, 0);
	if (sent <= 0)
		return 0;
	for (i = 0; i < sent; i++)
		ub_udp_claim(x, u, u->next_seq + (uint64_t)i, now);
	u->next_seq += (uint64_t)sent;
	x->res->bytes_tx += (uint64_t)sent * size;
	return sent;
}

static void
ub_udp_topup(struct ub_ctx *x, struct ub_conn *c, int64_t now)
{
	uint64_t want;

	/* A short send means a full buffer: the next tick tries again. */
	while (x->running && c->udp->inflight < (uint64_t)x->o->depth) {
		want = (uint64_t)x->o->depth - c->udp->inflight;
		if (want > UB_UDP_BATCH)
			want = UB_UDP_BATCH;
		if (ub_udp_send(x, c, (int)want, now) < (int)want)
			break;
	}
}

/* Give up on datagrams older than --udp-timeout, so a lost one does not
 * hold its place in the window; a reply may still come, counted late. */
static void
ub_udp_expire(struct ub_ctx *x, struct ub_conn *c, int64_t now)
{
	struct ub_udp *u = c->udp;
	int64_t limit = (int64_t)(x->o->udp_timeout * UB_NSEC);
	struct ub_udp_slot *s;

	while (u->oldest < u->next_seq) {
		s = &u->ring[u->oldest % UB_UDP_RING];
		if (s->seq == u->oldest && s->st == UB_UDP_OUT) {
			if (now - s->t < limit)
				break;
			s->st = UB_UDP_TIMEDOUT;
			u->inflight--;
		}
		u->oldest++;
	}
}

static void
ub_udp_reply(struct ub_ctx *x, struct ub_conn *c, const uint8_t *p, size_t n,
    int64_t now)
{
	struct ub_udp *u = c->udp;
	size_t size = (size_t)x->o->size;
	struct ub_udp_slot *s;
	uint64_t seq;

	if (n != size || ub_udp_get_seq(p, &seq) == -1 || seq == 0 ||
	    seq >= u->next_seq) {
		x->res->errors++;
		return;
	}
	if (memcmp(p + UB_UDP_HDR, x->exp + seq % 26, size - UB_UDP_HDR))
		x->res->errors++;
	s = &u->ring[seq % UB_UDP_RING];
	if (s->seq != seq || s->st == UB_UDP_TIMEDOUT) {
		x->res->late++; /* lost counts it too if the slot moved on */
		if (s->seq == seq)
			s->st = UB_UDP_DONE;
		return;
	}
	if (s->st != UB_UDP_OUT) {
		x->res->errors++; /* a duplicate */
		return;
	}
	s->st = UB_UDP_DONE;
	u->inflight--;
	if (seq < u->max_ans)
		x->res->reordered++;
	else
		u->max_ans = seq;
	if (ub_in_window(x, now)) {
		ub_hist_record(x->res, now - s->t);
		x->res->requests++;
	}
}

static void
ub_udp_event(struct ub_ctx *x, struct ub_conn *c, uint32_t ev)
{
	struct mmsghdr rm[UB_UDP_BATCH];
	struct iovec iov[UB_UDP_BATCH];
	size_t room = (size_t)x->o->size + 1;
	int64_t now;
	int i, n;

	(void)ev;
	for (i = 0; i < UB_UDP_BATCH; i++) {
		iov[i].iov_base = x->rbuf + (size_t)i * room;
		iov[i].iov_len = room;
		memset(&rm[i], 0, sizeof(rm[i]));
		rm[i].msg_hdr.msg_iov = &iov[i];
		rm[i].msg_hdr.msg_iovlen = 1;
	}
	n = recvmmsg(c->fd, rm, UB_UDP_BATCH, MSG_DONTWAIT, NULL);
	if (n <= 0)
		return; /* ECONNREFUSED from ICMP: the datagrams count lost */
	now = ub_now();
	for (i = 0; i < n; i++) {
		x->res->bytes_rx += rm[i].msg_len;
		ub_udp_reply(x, c, iov[i].iov_base, rm[i].msg_len, now);
	}
	ub_udp_topup(x, c, now);
}

/* The send batch is shared by the sockets of a process: set up once. */
static void
ub_udp_batch(struct ub_ctx *x)
{
	int i;

	if (x->dbuf != NULL)
		return;
	x->dbuf = ub_calloc(UB_UDP_BATCH, (size_t)x->o->size + 1);
	for (i = 0; i < UB_UDP_BATCH; i++) {
		x->iovs[i].iov_base = x->dbuf + (size_t)i * (x->o->size + 1);
		x->msgs[i].msg_hdr.msg_iov = &x->iovs[i];
		x->msgs[i].msg_hdr.msg_iovlen = 1;
	}
}

static void
ub_udp_open(struct ub_ctx *x, struct ub_conn *c)
{
	c->fd = socket(x->udst.ss_family,
	    SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1 ||
	    connect(c->fd, (struct sockaddr *)&x->udst, x->udstlen) == -1)
		ub_die("udp socket: %s", strerror(errno));
	c->udp = ub_calloc(1, sizeof(*c->udp));
	c->udp->next_seq = c->udp->oldest = 1;
	c->state = UB_ST_OPEN;
	x->res->connected++;
	ub_conn_watch(x, c, EPOLLIN);
	ub_udp_batch(x);
}

static void
ub_udp_tick(struct ub_ctx *x, struct ub_conn *c, int64_t now)
{
	ub_udp_expire(x, c, now);
	ub_udp_topup(x, c, now);
}

/* After the grace period, what is still out (or given up) is lost. */
static void
ub_udp_account(struct ub_ctx *x, struct ub_conn *c)
{
	int j;

	for (j = 0; j < UB_UDP_RING; j++)
		if (c->udp->ring[j].st == UB_UDP_OUT ||
		    c->udp->ring[j].st == UB_UDP_TIMEDOUT)
			x->res->lost++;
}

static int
ub_udp_busy(const struct ub_ctx *x)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < x->nconns; i++)
		n += x->conns[i].udp->inflight;
	return n > 0;
}

static void
ub_udp_check(const struct ub_opts *o)
{
	if (o->size < UB_UDP_HDR + 1) {
		fprintf(stderr, "upper-bench: udp needs --size >= %d\n",
		    UB_UDP_HDR + 1);
		exit(2);
	}
	if (o->size > 65507) {
		fprintf(stderr, "upper-bench: udp --size is at most 65507\n");
		exit(2);
	}
}

static const struct ub_kind ub_kind_udp = {
	.open = ub_udp_open,
	.start = ub_udp_topup,
	.event = ub_udp_event,
	.tick = ub_udp_tick,
	.account = ub_udp_account,
	.busy = ub_udp_busy,
};

const struct ub_mode ub_mode_udp = {
	.name = "udp",
	.work = &ub_kind_udp,
	.conns = 50,
	.sockets = 1,
	.prepare = ub_stream_rr,
	.check = ub_udp_check,
};
