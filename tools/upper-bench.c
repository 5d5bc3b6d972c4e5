/*
 * upper-bench.c: the load generator for upperd (and for any server that
 * uppercases: the benchmark's reference server, the textbook servers).
 *
 * One non-blocking, level-triggered epoll loop per process drives every
 * connection of one mode:
 *   rr     TCP request/response, --conns connections with --depth requests
 *          in flight each (pipelining), --size bytes per request;
 *   udp    --sockets sockets with --depth datagrams in flight each, a
 *          sequence number in every payload: lost (never answered), late
 *          (answered after --udp-timeout gave it up) and reordered replies
 *          are counted;
 *   bulk   --bytes streamed over --conns connections, read back concurrently;
 *   idle   --idle connections held open while --conns more do rr work
 *          (all in the first process: the client side of the work is rr's);
 *   churn  --requests short connections, --conns at a time (one request,
 *          half-close, read to EOF): connection setup cost and balance.
 * --procs forks that many client processes (each with its share of the
 * connections, so the per-process fd limit is no ceiling); they connect, wait
 * at a barrier, run together and send their results up a pipe.
 *
 * Every reply byte is compared with the expected stream; a wrong byte counts
 * one error per request (per 64 KiB in bulk) and makes the exit status 1.
 * Latency goes into a log-linear histogram (128 sub-buckets per power of two,
 * so under 1% error).  The run always ends by warmup + duration + grace:
 * requests a stalled server never answers count as errors (UDP: as lost).
 * Output: one human line, then one JSON line.  Nothing is allocated per
 * request: payloads are slices of precomputed periodic streams.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unicase.h>
#include <unistd.h>

#include "net.h"
#include "upcase.h"

#define UB_HIST_BITS 7
#define UB_HIST_SUB (1 << UB_HIST_BITS)
#define UB_HIST_N ((64 - UB_HIST_BITS + 1) * UB_HIST_SUB)
#define UB_RBUF (256 * 1024)
#define UB_CHUNK (256 * 1024)  /* most bytes one bulk send() offers */
#define UB_BLOCK (1024 * 1024) /* period of the bulk text */
#define UB_BULK_UNIT 65536     /* bulk errors count wrong 64 KiB blocks */
#define UB_EVENTS 512
#define UB_CONNECT_WINDOW 512 /* connects in progress at once */
#define UB_UDP_RING 16384
#define UB_UDP_BATCH 64
#define UB_UDP_HDR 16 /* decimal sequence number, then letters */
#define UB_MAX_PROCS 256
#define UB_MAX_SIZE 65536
#define UB_MAX_DEPTH 4096
#define UB_NSEC 1000000000LL

enum ub_mode {
	UB_MODE_RR,
	UB_MODE_UDP,
	UB_MODE_BULK,
	UB_MODE_IDLE,
	UB_MODE_CHURN
};
enum ub_kind {
	UB_KIND_RR,
	UB_KIND_IDLE,
	UB_KIND_BULK,
	UB_KIND_CHURN,
	UB_KIND_UDP
};
enum ub_state { UB_ST_FREE, UB_ST_CONNECTING, UB_ST_OPEN };
enum ub_slot_state {
	UB_SLOT_FREE,
	UB_SLOT_OUT,
	UB_SLOT_TIMEDOUT,
	UB_SLOT_DONE
};

static const char *const ub_mode_names[] = { "rr", "udp", "bulk", "idle",
	"churn" };

struct ub_opts {
	enum ub_mode mode;
	const char *host;
	int port, udp_port;
	int conns, depth, size, sockets, idle, procs;
	long requests;
	double duration, warmup, grace, hold, connect_timeout, udp_timeout;
	uint64_t bytes;
	int mixed;
	enum upc_mode upc;
};

/* What one process measured; the parent sums them (maxima for times). */
struct ub_result {
	uint64_t requests, bytes_tx, bytes_rx;
	uint64_t errors, lost, late, reordered, stalled;
	uint64_t connected, connect_failures, idle_held, idle_closed;
	int64_t elapsed_ns;
	uint64_t max_ns, nlat;
	uint64_t hist[UB_HIST_N];
};

/* Sent at the barrier: how the connect phase went. */
struct ub_ready {
	uint64_t connected, failures;
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

/* A connection (or a UDP socket).  Streams are positions in the periodic
 * request and expected-reply streams of the process. */
struct ub_conn {
	int fd;
	uint8_t kind;
	uint8_t state;
	uint32_t events;
	uint32_t gidx;       /* index over all processes: source address */
	uint64_t sent_req;   /* rr: requests issued */
	uint64_t done_req;   /* rr: replies complete */
	uint64_t spos, rpos; /* bytes sent / received */
	uint64_t send_total, recv_total; /* bulk, churn: whole streams */
	uint64_t bad_unit; /* 1 + last unit already counted wrong */
	int64_t t0;        /* churn: connect start */
	int64_t *ts;       /* rr: issue time of each request in flight */
	struct ub_udp *udp;
};

struct ub_ctx {
	const struct ub_opts *o;
	int ep;
	int proc;
	int spread; /* bind sources to 127.0.0.2-251 */
	int running;
	int connecting;
	int streams; /* bulk/churn connections not finished */
	int complained;
	struct sockaddr_storage dst, udst;
	socklen_t dstlen, udstlen;
	int64_t t_start, t_warm, t_end;
	struct ub_result *res;
	struct ub_conn *conns;
	int nconns, nidle;
	int64_t *ts;
	uint64_t inflight; /* rr requests not yet answered */
	long churn_left;
	uint8_t *in, *exp; /* request stream, expected reply stream */
	size_t in_period, exp_period;
	size_t in_len; /* in holds one period and then some */
	size_t bulk_tail_in, bulk_tail_exp;
	uint64_t err_unit;
	uint8_t *rbuf;
	struct mmsghdr msgs[UB_UDP_BATCH];
	struct iovec iovs[UB_UDP_BATCH];
	uint8_t *dbuf; /* UB_UDP_BATCH datagrams of size + 1 */
};

static int64_t
ub_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * UB_NSEC + ts.tv_nsec;
}

static void __attribute__((format(printf, 1, 2), noreturn))
ub_die(const char *fmt, ...)
{
	va_list ap;

	fputs("upper-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *
ub_calloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (p == NULL)
		ub_die("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

static void
ub_ascii_upper(uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] >= 'a' && p[i] <= 'z')
			p[i] = (uint8_t)(p[i] - 'a' + 'A');
}

/* ---- latency histogram --------------------------------------------- */

static unsigned
ub_hist_index(uint64_t v)
{
	unsigned e;

	if (v < UB_HIST_SUB)
		return (unsigned)v;
	e = 63 - (unsigned)__builtin_clzll(v);
	return (e - UB_HIST_BITS + 1) * UB_HIST_SUB +
	    (unsigned)((v >> (e - UB_HIST_BITS)) & (UB_HIST_SUB - 1));
}

/* The middle of bucket i: the value reported for anything in it. */
static double
ub_hist_value(unsigned i)
{
	unsigned e, sub;
	double low, width;

	if (i < UB_HIST_SUB)
		return i;
	e = i / UB_HIST_SUB + UB_HIST_BITS - 1;
	sub = i % UB_HIST_SUB;
	width = ldexp(1.0, (int)(e - UB_HIST_BITS));
	low = (UB_HIST_SUB + sub) * width;
	return low + width / 2;
}

static void
ub_hist_record(struct ub_result *r, int64_t ns)
{
	uint64_t v = ns > 0 ? (uint64_t)ns : 0;

	r->hist[ub_hist_index(v)]++;
	r->nlat++;
	if (v > r->max_ns)
		r->max_ns = v;
}

/* Value in microseconds below which a fraction q of the samples lie. */
static double
ub_hist_quantile(const struct ub_result *r, double q)
{
	uint64_t want, seen = 0;
	unsigned i;
	double v;

	if (r->nlat == 0)
		return 0;
	want = (uint64_t)ceil(q * (double)r->nlat);
	if (want == 0)
		want = 1;
	for (i = 0; i < UB_HIST_N; i++) {
		seen += r->hist[i];
		if (seen >= want)
			break;
	}
	v = ub_hist_value(i);
	if (v > (double)r->max_ns)
		v = (double)r->max_ns;
	return v / 1000.0;
}

/* ---- expected streams ---------------------------------------------- */

/* rr and churn: request i of a connection is `size` bytes of the stream
 * "abc...z" (by stream position) with '\n' closing each request, so the
 * stream repeats every lcm(size, 26) bytes; the buffer runs on past one
 * period so that a send of up to UB_CHUNK bytes is one contiguous slice. */
static void
ub_streams_rr(struct ub_ctx *x)
{
	const struct ub_opts *o = x->o;
	size_t size = (size_t)o->size, period = size, i, len;

	while (period % 26 != 0)
		period += size;
	len = period + UB_CHUNK;
	if (len < period + size) /* a churn request or a datagram is whole */
		len = period + size;
	x->in_len = len;
	x->in = ub_calloc(len, 1);
	x->exp = ub_calloc(len, 1);
	for (i = 0; i < len; i++)
		x->in[i] = (uint8_t)(i % size == size - 1 ? '\n' :
		                                            'a' + i % 26);
	memcpy(x->exp, x->in, len);
	ub_ascii_upper(x->exp, len);
	x->in_period = x->exp_period = period;
	x->err_unit = size;
}

/* Sentences for the mixed-script text, lowercase, chosen to exercise
 * what full case mapping does: growth (ß, ﬁ, ΐ), titlecase digraphs (ǆ),
 * 2-, 3- and 4-byte sequences and caseless scripts. */
static const char *const ub_mixed_text[] = {
	"le cœur déçu mais l'âme plutôt naïve, louÿs rêva de crapaüter en "
	"canoë au delà des îles. ",
	"die straße ist übermäßig groß, ärgerlich für öde füße. ",
	"ξεσκεπάζω την ψυχοφθόρα βδελυγμία, ΐ και ΰ. ",
	"съешь же ещё этих мягких французских булок, да выпей чаю. ",
	"日本語のテキストと漢字、中文字符，한국어 문장. ",
	"emoji 😀🎉👍 and 𐐨𐐩 deseret. ",
	"ǆemal ǉubljana ǌegoš, ﬁne ﬂow ﬀ. ",
	"plain english words keep the ascii fast path busy most of the time.\n",
};

static void
ub_fill_text(uint8_t *blk, size_t n, int mixed)
{
	static const char *const words[] = { "the ", "quick ", "brown ", "fox ",
		"jumps ", "over ", "lazy ", "dog ", "sentence\n" };
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	const char *s;
	size_t pos = 0, len;

	for (;;) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		if (mixed)
			s = ub_mixed_text[(seed >> 33) % 8];
		else
			s = words[(seed >> 33) % 9];
		len = strlen(s);
		if (pos + len > n)
			break;
		memcpy(blk + pos, s, len);
		pos += len;
	}
	memset(blk + pos, 'x', n - pos); /* ASCII pad: a char boundary */
	blk[n - 1] = '\n';
}

/* Expected reply of n bytes of text.  In unicode mode upc_buf() is the
 * transform under test, so libunistring's u8_toupper() checks it first:
 * a bench whose oracle is wrong would only measure agreement. */
static size_t
ub_expect(const struct ub_opts *o, const uint8_t *in, size_t n, uint8_t *out)
{
	size_t len, ref_len = UPC_OUT_MAX(n), i;
	uint8_t *ref;

	if (n == 0)
		return 0;
	if (o->upc == UPC_ASCII || !o->mixed) {
		memcpy(out, in, n);
		ub_ascii_upper(out, n);
		return n;
	}
	len = upc_buf(UPC_UNICODE, in, n, out);
	ref = u8_toupper(in, n, NULL, NULL, NULL, &ref_len);
	if (ref == NULL)
		ub_die("u8_toupper: %s", strerror(errno));
	for (i = 0; i < len && i < ref_len && out[i] == ref[i]; i++)
		;
	if (i != len || len != ref_len)
		ub_die("upc_buf and u8_toupper disagree at byte %zu of the "
		       "mixed text",
		    i);
	free(ref);
	return len;
}

/* bulk: the request stream repeats a 1 MiB text block; its expected reply
 * repeats the block's uppercase (full case mapping has no context for
 * uppercase, so the uppercase of a repetition is the repetition of the
 * uppercase).  A connection's share ends on a character boundary. */
static void
ub_streams_bulk(struct ub_ctx *x)
{
	const struct ub_opts *o = x->o;
	uint8_t *tail;

	x->in = ub_calloc(UB_BLOCK + UB_CHUNK, 1);
	x->exp = ub_calloc(UPC_OUT_MAX(UB_BLOCK), 1);
	tail = ub_calloc(UPC_OUT_MAX(UB_BLOCK), 1);
	ub_fill_text(x->in, UB_BLOCK, o->mixed);
	memcpy(x->in + UB_BLOCK, x->in, UB_CHUNK);
	x->in_period = UB_BLOCK;
	x->exp_period = ub_expect(o, x->in, UB_BLOCK, x->exp);
	x->bulk_tail_in = (o->bytes / (uint64_t)o->conns) % UB_BLOCK;
	while (x->bulk_tail_in > 0 && (x->in[x->bulk_tail_in] & 0xc0) == 0x80)
		x->bulk_tail_in--;
	x->bulk_tail_exp = ub_expect(o, x->in, x->bulk_tail_in, tail);
	free(tail);
	x->err_unit = UB_BULK_UNIT;
}

/* ---- connections --------------------------------------------------- */

static void
ub_watch(struct ub_ctx *x, struct ub_conn *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };

	if (events == c->events)
		return;
	if (epoll_ctl(x->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd,
	        &ev) == -1)
		ub_die("epoll_ctl: %s", strerror(errno));
	c->events = events;
}

static void
ub_close(struct ub_ctx *x, struct ub_conn *c)
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
ub_bind_source(int fd, uint32_t gidx)
{
	struct sockaddr_in src = { .sin_family = AF_INET };
	int on = 1;

	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof(on));
	src.sin_addr.s_addr = htonl(0x7f000002 + gidx % 250);
	return bind(fd, (struct sockaddr *)&src, sizeof(src));
}

static void
ub_connect_failed(struct ub_ctx *x, int err)
{
	x->res->connect_failures++;
	if (!x->complained++)
		fprintf(stderr, "upper-bench: connect: %s\n", strerror(err));
}

/* Start a non-blocking connect; completion arrives as EPOLLOUT. */
static int
ub_connect(struct ub_ctx *x, struct ub_conn *c)
{
	int on = 1;

	c->fd = socket(x->dst.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		ub_connect_failed(x, errno);
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	c->state = UB_ST_CONNECTING;
	c->events = 0;
	x->connecting++;
	if ((x->spread && ub_bind_source(c->fd, c->gidx) == -1) ||
	    (connect(c->fd, (struct sockaddr *)&x->dst, x->dstlen) == -1 &&
	        errno != EINPROGRESS)) {
		ub_connect_failed(x, errno);
		ub_close(x, c);
		return -1;
	}
	ub_watch(x, c, EPOLLOUT);
	return 0;
}

static void ub_churn_start(struct ub_ctx *x, struct ub_conn *c);
static void ub_churn_next(struct ub_ctx *x, struct ub_conn *c);

static void
ub_connected(struct ub_ctx *x, struct ub_conn *c)
{
	socklen_t len = sizeof(int);
	int err = 0;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		ub_connect_failed(x, err);
		ub_close(x, c);
		if (c->kind == UB_KIND_CHURN) {
			x->streams--;
			ub_churn_next(x, c);
		}
		return;
	}
	x->connecting--;
	c->state = UB_ST_OPEN;
	x->res->connected++;
	if (c->kind == UB_KIND_CHURN)
		ub_churn_start(x, c);
	else if (c->kind == UB_KIND_IDLE)
		ub_watch(x, c, EPOLLIN | EPOLLRDHUP);
	else
		ub_watch(x, c, EPOLLIN);
}

/* The server broke a connection we still expected something from. */
static void
ub_lost(struct ub_ctx *x, struct ub_conn *c)
{
	uint64_t pending = c->sent_req - c->done_req;

	x->res->errors += pending ? pending : 1;
	x->inflight -= pending;
	if (c->kind == UB_KIND_BULK || c->kind == UB_KIND_CHURN)
		x->streams--;
	if (!x->complained++)
		fprintf(stderr,
		    "upper-bench: connection %u closed by the "
		    "server with %llu requests pending\n",
		    c->gidx, (unsigned long long)pending);
	ub_close(x, c);
}

/* Count each unit (request, or 64 KiB of bulk) holding a wrong byte once,
 * and show the first wrong byte of the run. */
static void
ub_wrong(struct ub_ctx *x, struct ub_conn *c, const uint8_t *got,
    const uint8_t *want, size_t n, uint64_t pos)
{
	uint64_t unit;
	size_t i;

	for (i = 0; i < n; i++) {
		if (got[i] == want[i])
			continue;
		unit = (pos + i) / x->err_unit;
		if (c->bad_unit == unit + 1)
			continue;
		c->bad_unit = unit + 1;
		x->res->errors++;
		if (!x->complained++)
			fprintf(stderr,
			    "upper-bench: connection %u: reply "
			    "byte %llu is 0x%02x, expected 0x%02x\n",
			    c->gidx, (unsigned long long)(pos + i), got[i],
			    want[i]);
	}
}

static void
ub_verify(struct ub_ctx *x, struct ub_conn *c, const uint8_t *p, size_t n)
{
	uint64_t pos = c->rpos;
	size_t off, len;

	while (n > 0) {
		off = (size_t)(pos % x->exp_period);
		len = x->exp_period - off;
		if (len > n)
			len = n;
		if (memcmp(p, x->exp + off, len) != 0)
			ub_wrong(x, c, p, x->exp + off, len, pos);
		p += len;
		n -= len;
		pos += len;
	}
}

/* recv() for every TCP kind: -1 when there is nothing (or the connection
 * was dropped, then with the connection closed), else the byte count. */
static ssize_t
ub_recv(struct ub_ctx *x, struct ub_conn *c, uint64_t limit)
{
	ssize_t n;

	n = recv(c->fd, x->rbuf, UB_RBUF, 0);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return -1;
	if (n == -1 ||
	    (n == 0 && c->kind != UB_KIND_CHURN && c->kind != UB_KIND_BULK)) {
		ub_lost(x, c);
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
		ub_lost(x, c);
		return -1;
	}
	ub_verify(x, c, x->rbuf, (size_t)n);
	return n;
}

/* ---- rr: request/response ------------------------------------------ */

static void
ub_rr_flush(struct ub_ctx *x, struct ub_conn *c)
{
	uint64_t end = c->sent_req * (uint64_t)x->o->size;
	size_t off, len;
	ssize_t w;

	while (c->spos < end) {
		off = (size_t)(c->spos % x->in_period);
		len = x->in_len - off;
		if (len > end - c->spos)
			len = (size_t)(end - c->spos);
		w = send(c->fd, x->in + off, len, MSG_NOSIGNAL);
		if (w == -1 && errno == EAGAIN) {
			ub_watch(x, c, EPOLLIN | EPOLLOUT);
			return;
		}
		if (w == -1) {
			ub_lost(x, c);
			return;
		}
		c->spos += (uint64_t)w;
		x->res->bytes_tx += (uint64_t)w;
	}
	ub_watch(x, c, EPOLLIN);
}

static void
ub_rr_issue(struct ub_ctx *x, struct ub_conn *c, uint64_t n, int64_t now)
{
	uint64_t i;

	for (i = 0; i < n; i++)
		c->ts[(c->sent_req + i) % (uint64_t)x->o->depth] = now;
	c->sent_req += n;
	x->inflight += n;
	ub_rr_flush(x, c);
}

static int
ub_in_window(const struct ub_ctx *x, int64_t t)
{
	return t >= x->t_warm && t < x->t_end;
}

static void
ub_rr_read(struct ub_ctx *x, struct ub_conn *c)
{
	uint64_t size = (uint64_t)x->o->size, done, k;
	struct ub_result *r = x->res;
	int64_t now;
	ssize_t n;

	if ((n = ub_recv(x, c, c->spos)) <= 0)
		return;
	now = ub_now();
	c->rpos += (uint64_t)n;
	r->bytes_rx += (uint64_t)n;
	done = c->rpos / size;
	for (k = c->done_req; k < done && ub_in_window(x, now); k++) {
		ub_hist_record(r, now - c->ts[k % (uint64_t)x->o->depth]);
		r->requests++;
	}
	k = done - c->done_req;
	c->done_req = done;
	x->inflight -= k;
	if (x->running && k > 0)
		ub_rr_issue(x, c, k, now);
}

/* An idle connection should never hear from the server. */
static void
ub_idle_read(struct ub_ctx *x, struct ub_conn *c)
{
	char b[64];
	ssize_t n = recv(c->fd, b, sizeof(b), 0);

	if (n == -1 && errno == EAGAIN)
		return;
	x->res->idle_closed++;
	x->res->errors++;
	if (!x->complained++)
		fprintf(stderr, "upper-bench: idle connection %u %s\n", c->gidx,
		    n > 0 ? "got data" : "closed by the server");
	ub_close(x, c);
}

/* ---- bulk ---------------------------------------------------------- */

static void
ub_bulk_send(struct ub_ctx *x, struct ub_conn *c)
{
	uint64_t left = c->send_total - c->spos;
	size_t off = (size_t)(c->spos % x->in_period);
	ssize_t w;

	w = send(c->fd, x->in + off, left < UB_CHUNK ? (size_t)left : UB_CHUNK,
	    MSG_NOSIGNAL);
	if (w == -1 && errno == EAGAIN)
		return;
	if (w == -1) {
		ub_lost(x, c);
		return;
	}
	c->spos += (uint64_t)w;
	x->res->bytes_tx += (uint64_t)w;
	if (c->spos == c->send_total) {
		shutdown(c->fd, SHUT_WR);
		ub_watch(x, c, EPOLLIN);
	}
}

/* Bulk and churn both end at EOF, which must come right after the last
 * expected byte. */
static void
ub_stream_read(struct ub_ctx *x, struct ub_conn *c)
{
	ssize_t n = ub_recv(x, c, c->recv_total);
	int64_t now;

	if (n > 0) {
		c->rpos += (uint64_t)n;
		x->res->bytes_rx += (uint64_t)n;
		return;
	}
	if (n != 0)
		return;
	now = ub_now();
	if (c->rpos != c->recv_total) {
		x->res->errors++;
		if (!x->complained++)
			fprintf(stderr,
			    "upper-bench: connection %u: EOF after "
			    "%llu of %llu reply bytes\n",
			    c->gidx, (unsigned long long)c->rpos,
			    (unsigned long long)c->recv_total);
	} else if (c->kind == UB_KIND_CHURN) {
		x->res->requests++;
		ub_hist_record(x->res, now - c->t0);
	}
	if (now - x->t_start > x->res->elapsed_ns)
		x->res->elapsed_ns = now - x->t_start;
	ub_close(x, c);
	x->streams--;
	if (c->kind == UB_KIND_CHURN)
		ub_churn_next(x, c);
}

/* ---- churn: one request per connection ----------------------------- */

static void
ub_churn_next(struct ub_ctx *x, struct ub_conn *c)
{
	while (x->running && x->churn_left > 0) {
		x->churn_left--;
		c->spos = c->rpos = c->bad_unit = 0;
		c->t0 = ub_now();
		if (ub_connect(x, c) == 0) {
			x->streams++;
			return;
		}
	}
}

static void
ub_churn_start(struct ub_ctx *x, struct ub_conn *c)
{
	ssize_t w;

	w = send(c->fd, x->in, c->send_total, MSG_NOSIGNAL);
	if (w != (ssize_t)c->send_total) {
		/* A fresh socket takes a small request whole. */
		ub_lost(x, c);
		ub_churn_next(x, c);
		return;
	}
	x->res->bytes_tx += c->send_total;
	shutdown(c->fd, SHUT_WR);
	ub_watch(x, c, EPOLLIN);
}

/* ---- udp ----------------------------------------------------------- */

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

	if (s->st == UB_SLOT_OUT) {
		u->inflight--;
		x->res->lost++;
	} else if (s->st == UB_SLOT_TIMEDOUT)
		x->res->lost++;
	s->seq = seq;
	s->t = now;
	s->st = UB_SLOT_OUT;
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
		if (s->seq == u->oldest && s->st == UB_SLOT_OUT) {
			if (now - s->t < limit)
				break;
			s->st = UB_SLOT_TIMEDOUT;
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
	if (s->seq != seq || s->st == UB_SLOT_TIMEDOUT) {
		x->res->late++; /* lost counts it too if the slot moved on */
		if (s->seq == seq)
			s->st = UB_SLOT_DONE;
		return;
	}
	if (s->st != UB_SLOT_OUT) {
		x->res->errors++; /* a duplicate */
		return;
	}
	s->st = UB_SLOT_DONE;
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
ub_udp_read(struct ub_ctx *x, struct ub_conn *c)
{
	struct mmsghdr rm[UB_UDP_BATCH];
	struct iovec iov[UB_UDP_BATCH];
	size_t room = (size_t)x->o->size + 1;
	int64_t now;
	int i, n;

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

static void
ub_udp_open(struct ub_ctx *x, struct ub_conn *c)
{
	int i;

	c->fd = socket(x->udst.ss_family,
	    SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1 ||
	    connect(c->fd, (struct sockaddr *)&x->udst, x->udstlen) == -1)
		ub_die("udp socket: %s", strerror(errno));
	c->udp = ub_calloc(1, sizeof(*c->udp));
	c->udp->next_seq = c->udp->oldest = 1;
	c->state = UB_ST_OPEN;
	x->res->connected++;
	ub_watch(x, c, EPOLLIN);
	if (x->dbuf != NULL)
		return;
	x->dbuf = ub_calloc(UB_UDP_BATCH, (size_t)x->o->size + 1);
	for (i = 0; i < UB_UDP_BATCH; i++) {
		x->iovs[i].iov_base = x->dbuf + (size_t)i * (x->o->size + 1);
		x->msgs[i].msg_hdr.msg_iov = &x->iovs[i];
		x->msgs[i].msg_hdr.msg_iovlen = 1;
	}
}

/* ---- the loop ------------------------------------------------------ */

static void
ub_event(struct ub_ctx *x, struct ub_conn *c, uint32_t ev)
{
	if (c->state == UB_ST_CONNECTING) {
		ub_connected(x, c);
		return;
	}
	if (c->state != UB_ST_OPEN)
		return;
	switch (c->kind) {
	case UB_KIND_RR:
		if (ev & EPOLLOUT)
			ub_rr_flush(x, c);
		if (c->state == UB_ST_OPEN && (ev & ~(uint32_t)EPOLLOUT))
			ub_rr_read(x, c);
		break;
	case UB_KIND_IDLE:
		ub_idle_read(x, c);
		break;
	case UB_KIND_BULK:
		if (ev & EPOLLOUT)
			ub_bulk_send(x, c);
		if (c->state == UB_ST_OPEN && (ev & ~(uint32_t)EPOLLOUT))
			ub_stream_read(x, c);
		break;
	case UB_KIND_CHURN:
		ub_stream_read(x, c);
		break;
	case UB_KIND_UDP:
		ub_udp_read(x, c);
		break;
	}
}

/* Timed work between events: UDP expiry and top-up. */
static void
ub_tick(struct ub_ctx *x, int64_t now)
{
	int i;

	if (x->o->mode != UB_MODE_UDP)
		return;
	for (i = 0; i < x->nconns; i++) {
		ub_udp_expire(x, &x->conns[i], now);
		ub_udp_topup(x, &x->conns[i], now);
	}
}

static uint64_t
ub_udp_inflight(const struct ub_ctx *x)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < x->nconns; i++)
		n += x->conns[i].udp->inflight;
	return n;
}

/* Is there anything left to wait for? */
static int
ub_busy(const struct ub_ctx *x)
{
	switch (x->o->mode) {
	case UB_MODE_BULK:
	case UB_MODE_CHURN:
		return x->streams > 0;
	case UB_MODE_UDP:
		return ub_udp_inflight(x) > 0;
	default:
		return x->inflight > 0;
	}
}

/* Run events until `until`, or sooner once stop_idle and nothing is
 * pending; wakes at least every 10 ms for the tick. */
static void
ub_loop(struct ub_ctx *x, int64_t until, int stop_idle)
{
	struct epoll_event evs[UB_EVENTS];
	int64_t now, ms;
	int i, n;

	while ((now = ub_now()) < until) {
		if (stop_idle && !ub_busy(x))
			return;
		ms = (until - now + 999999) / 1000000;
		n = epoll_wait(x->ep, evs, UB_EVENTS, ms > 10 ? 10 : (int)ms);
		if (n == -1 && errno != EINTR)
			ub_die("epoll_wait: %s", strerror(errno));
		for (i = 0; i < n; i++)
			ub_event(x, evs[i].data.ptr, evs[i].events);
		ub_tick(x, ub_now());
	}
}

/* ---- one process --------------------------------------------------- */

static int
ub_share(long total, int proc, int procs)
{
	return (int)(total / procs + (proc < total % procs));
}

/* Lay out this process's connections: active ones first, then idle. */
static void
ub_plan(struct ub_ctx *x)
{
	const struct ub_opts *o = x->o;
	int nact, i, depth = o->depth;
	uint64_t q;

	nact = ub_share(o->mode == UB_MODE_UDP ? o->sockets : o->conns, x->proc,
	    o->procs);
	/* idle: the working connections all in process 0, so the client side
	 * of the work is rr's exactly and only the idle ones differ */
	if (o->mode == UB_MODE_IDLE)
		nact = x->proc == 0 ? o->conns : 0;
	x->nidle = o->mode == UB_MODE_IDLE ?
	    ub_share(o->idle, x->proc, o->procs) :
	    0;
	x->nconns = nact + x->nidle;
	x->conns = ub_calloc((size_t)x->nconns + 1, sizeof(*x->conns));
	x->ts = ub_calloc((size_t)nact * (size_t)depth + 1, sizeof(int64_t));
	for (i = 0; i < x->nconns; i++) {
		struct ub_conn *c = &x->conns[i];

		c->fd = -1;
		c->gidx = (uint32_t)(x->proc + i * o->procs);
		c->ts = x->ts + (size_t)(i < nact ? i : 0) * (size_t)depth;
		c->kind = i >= nact          ? UB_KIND_IDLE :
		    o->mode == UB_MODE_UDP   ? UB_KIND_UDP :
		    o->mode == UB_MODE_BULK  ? UB_KIND_BULK :
		    o->mode == UB_MODE_CHURN ? UB_KIND_CHURN :
		                               UB_KIND_RR;
		if (c->kind == UB_KIND_BULK) {
			q = o->bytes / (uint64_t)o->conns / UB_BLOCK;
			c->send_total = q * UB_BLOCK + x->bulk_tail_in;
			c->recv_total = q * x->exp_period + x->bulk_tail_exp;
		} else if (c->kind == UB_KIND_CHURN) {
			c->send_total = c->recv_total = (uint64_t)o->size;
		}
	}
	x->churn_left = o->mode == UB_MODE_CHURN ?
	    ub_share(o->requests, x->proc, o->procs) :
	    0;
}

/* Open every connection before the clock starts (churn opens its own as
 * it goes); connects that do not finish by the deadline count failed. */
static void
ub_connect_all(struct ub_ctx *x)
{
	int64_t deadline = ub_now() +
	    (int64_t)(x->o->connect_timeout * UB_NSEC);
	struct epoll_event evs[UB_EVENTS];
	int next = 0, i, n;

	if (x->o->mode == UB_MODE_CHURN)
		return;
	while ((next < x->nconns || x->connecting > 0) && ub_now() < deadline) {
		while (next < x->nconns && x->connecting < UB_CONNECT_WINDOW) {
			struct ub_conn *c = &x->conns[next++];

			if (c->kind == UB_KIND_UDP)
				ub_udp_open(x, c);
			else
				ub_connect(x, c);
		}
		n = epoll_wait(x->ep, evs, UB_EVENTS, 100);
		for (i = 0; i < n; i++)
			ub_event(x, evs[i].data.ptr, evs[i].events);
	}
	for (i = 0; i < x->nconns; i++)
		if (x->conns[i].state == UB_ST_CONNECTING) {
			ub_connect_failed(x, ETIMEDOUT);
			ub_close(x, &x->conns[i]);
		}
	x->res->connect_failures += (uint64_t)(x->nconns - next);
}

/* The clock starts: give every connection its first work. */
static void
ub_go(struct ub_ctx *x)
{
	const struct ub_opts *o = x->o;
	int64_t now = ub_now();
	int i;

	x->t_start = now;
	x->t_warm = now + (int64_t)(o->warmup * UB_NSEC);
	x->t_end = x->t_warm + (int64_t)(o->duration * UB_NSEC);
	x->running = 1;
	for (i = 0; i < x->nconns; i++) {
		struct ub_conn *c = &x->conns[i];

		if (c->kind == UB_KIND_CHURN) {
			ub_churn_next(x, c);
			continue;
		}
		if (c->state != UB_ST_OPEN)
			continue;
		if (c->kind == UB_KIND_RR)
			ub_rr_issue(x, c, (uint64_t)o->depth, now);
		else if (c->kind == UB_KIND_BULK) {
			x->streams++;
			ub_watch(x, c, EPOLLIN | EPOLLOUT);
		} else if (c->kind == UB_KIND_UDP)
			ub_udp_topup(x, c, now);
	}
}

/* After the grace period: what never came back. */
static void
ub_account_end(struct ub_ctx *x)
{
	struct ub_result *r = x->res;
	struct ub_conn *c;
	int i, j;

	for (i = 0; i < x->nconns; i++) {
		c = &x->conns[i];
		if (c->kind == UB_KIND_UDP) {
			for (j = 0; j < UB_UDP_RING; j++)
				if (c->udp->ring[j].st == UB_SLOT_OUT ||
				    c->udp->ring[j].st == UB_SLOT_TIMEDOUT)
					r->lost++;
			continue;
		}
		if (c->state == UB_ST_CONNECTING) {
			r->stalled++; /* churn: a connect that never ended */
			continue;
		}
		if (c->state != UB_ST_OPEN)
			continue;
		if (c->kind == UB_KIND_IDLE)
			r->idle_held++;
		else if (c->kind == UB_KIND_RR)
			r->stalled += c->sent_req - c->done_req;
		else
			r->stalled++; /* a bulk or churn stream unfinished */
	}
	r->errors += r->stalled;
	if (r->stalled)
		fprintf(stderr,
		    "upper-bench: %llu requests or streams "
		    "unanswered at the end\n",
		    (unsigned long long)r->stalled);
	if (x->o->mode != UB_MODE_BULK && x->o->mode != UB_MODE_CHURN)
		r->elapsed_ns = x->t_end - x->t_warm;
	else if (x->streams > 0) /* unfinished: it took all the time */
		r->elapsed_ns = ub_now() - x->t_start;
}

static int
ub_write_all(int fd, const void *p, size_t n)
{
	const char *b = p;
	ssize_t w;

	while (n > 0) {
		w = write(fd, b, n);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
ub_read_all(int fd, void *p, size_t n)
{
	char *b = p;
	ssize_t r;

	while (n > 0) {
		r = read(fd, b, n);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r;
		n -= (size_t)r;
	}
	return 0;
}

static void
ub_resolve(struct ub_ctx *x)
{
	const struct ub_opts *o = x->o;
	int v6 = strchr(o->host, ':') != NULL;
	char spec[300];

	snprintf(spec, sizeof(spec), v6 ? "[%s]:%d" : "%s:%d", o->host,
	    o->port);
	if (net_parse_addr(spec, &x->dst, &x->dstlen) == -1)
		ub_die("bad address %s (numeric only)", spec);
	snprintf(spec, sizeof(spec), v6 ? "[%s]:%d" : "%s:%d", o->host,
	    o->udp_port);
	net_parse_addr(spec, &x->udst, &x->udstlen);
	x->spread = x->dst.ss_family == AF_INET &&
	    (o->mode == UB_MODE_IDLE || o->mode == UB_MODE_CHURN) &&
	    (ntohl(((struct sockaddr_in *)&x->dst)->sin_addr.s_addr) >> 24) ==
	        127;
}

/* A child: connect, report at the barrier, run when the parent closes
 * the go pipe, send the result. */
static int
ub_child(const struct ub_opts *o, int proc, int go, int out)
{
	struct ub_ctx *x = ub_calloc(1, sizeof(*x));
	struct ub_ready ready;
	char b;

	x->o = o;
	x->proc = proc;
	x->res = ub_calloc(1, sizeof(*x->res));
	x->rbuf = ub_calloc(UB_RBUF + UB_UDP_BATCH * (UB_MAX_SIZE + 1), 1);
	if ((x->ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		ub_die("epoll_create1: %s", strerror(errno));
	ub_resolve(x);
	if (o->mode == UB_MODE_BULK)
		ub_streams_bulk(x);
	else
		ub_streams_rr(x);
	ub_plan(x);
	ub_connect_all(x);
	ready.connected = x->res->connected;
	ready.failures = x->res->connect_failures;
	if (ub_write_all(out, &ready, sizeof(ready)) == -1)
		return 1;
	while (read(go, &b, 1) == -1 && errno == EINTR)
		;
	ub_go(x);
	/* bulk and churn end when done; --duration is only their limit */
	ub_loop(x, x->t_end,
	    o->mode == UB_MODE_BULK || o->mode == UB_MODE_CHURN);
	x->running = 0;
	if (o->mode != UB_MODE_BULK && o->mode != UB_MODE_CHURN)
		ub_loop(x, ub_now() + (int64_t)(o->grace * UB_NSEC), 1);
	ub_account_end(x);
	return ub_write_all(out, x->res, sizeof(*x->res)) == -1 ? 1 : 0;
}

/* ---- the parent ---------------------------------------------------- */

static void
ub_merge(struct ub_result *t, const struct ub_result *r)
{
	unsigned i;

	t->requests += r->requests;
	t->bytes_tx += r->bytes_tx;
	t->bytes_rx += r->bytes_rx;
	t->errors += r->errors;
	t->lost += r->lost;
	t->late += r->late;
	t->reordered += r->reordered;
	t->stalled += r->stalled;
	t->connected += r->connected;
	t->connect_failures += r->connect_failures;
	t->idle_held += r->idle_held;
	t->idle_closed += r->idle_closed;
	t->nlat += r->nlat;
	if (r->max_ns > t->max_ns)
		t->max_ns = r->max_ns;
	if (r->elapsed_ns > t->elapsed_ns)
		t->elapsed_ns = r->elapsed_ns;
	for (i = 0; i < UB_HIST_N; i++)
		t->hist[i] += r->hist[i];
}

/* Between the barrier and the start: --hold keeps every connection open
 * and quiet until SIGUSR1 or the time is up (a script measures memory). */
static void
ub_hold(const struct ub_opts *o, const struct ub_result *t)
{
	struct timespec ts;
	sigset_t set;

	fprintf(stderr,
	    "upper-bench: ready: %llu connections open, %llu "
	    "failed\n",
	    (unsigned long long)t->connected,
	    (unsigned long long)t->connect_failures);
	if (o->hold <= 0)
		return;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	ts.tv_sec = (time_t)o->hold;
	ts.tv_nsec = (long)((o->hold - (double)ts.tv_sec) * 1e9);
	while (sigtimedwait(&set, NULL, &ts) == -1 && errno == EINTR)
		;
}

static void
ub_fork_all(const struct ub_opts *o, pid_t *pids, int *outs, int go[2])
{
	int i, p[2];

	for (i = 0; i < o->procs; i++) {
		if (pipe2(p, O_CLOEXEC) == -1)
			ub_die("pipe: %s", strerror(errno));
		if ((pids[i] = fork()) == -1)
			ub_die("fork: %s", strerror(errno));
		if (pids[i] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(go[1]);
			close(p[0]);
			_exit(ub_child(o, i, go[0], p[1]));
		}
		close(p[1]);
		outs[i] = p[0];
	}
	close(go[0]);
}

static int
ub_run(const struct ub_opts *o, struct ub_result *t)
{
	pid_t pids[UB_MAX_PROCS];
	int outs[UB_MAX_PROCS], go[2], i, st, rc = 0;
	struct ub_result *r = ub_calloc(1, sizeof(*r));
	struct ub_ready ready;

	if (pipe2(go, O_CLOEXEC) == -1)
		ub_die("pipe: %s", strerror(errno));
	ub_fork_all(o, pids, outs, go);
	for (i = 0; i < o->procs; i++) {
		if (ub_read_all(outs[i], &ready, sizeof(ready)) == -1)
			ub_die("client process %d failed to start", i);
		t->connected += ready.connected;
		t->connect_failures += ready.failures;
	}
	ub_hold(o, t);
	memset(t, 0, sizeof(*t));
	close(go[1]); /* EOF on the go pipe: every child starts now */
	for (i = 0; i < o->procs; i++) {
		if (ub_read_all(outs[i], r, sizeof(*r)) == -1) {
			fprintf(stderr,
			    "upper-bench: client process %d "
			    "died\n",
			    i);
			rc = 1;
		} else
			ub_merge(t, r);
		close(outs[i]);
		waitpid(pids[i], &st, 0);
	}
	free(r);
	return rc;
}

static void
ub_print(const struct ub_opts *o, const struct ub_result *t)
{
	double secs = (double)t->elapsed_ns / 1e9, rps, mbs;
	double p50 = ub_hist_quantile(t, 0.5), p90 = ub_hist_quantile(t, 0.9);
	double p99 = ub_hist_quantile(t, 0.99);
	double p999 = ub_hist_quantile(t, 0.999);
	double max = (double)t->max_ns / 1000.0;
	int conns = o->mode == UB_MODE_UDP ? o->sockets : o->conns;

	if (secs <= 0)
		secs = 1e-9;
	rps = (double)t->requests / secs;
	/* bulk: input bytes per second; else measured replies' bytes */
	mbs = (o->mode == UB_MODE_BULK ? (double)t->bytes_tx :
	                                 (double)t->requests * o->size) /
	    secs / 1e6;
	if (o->mode == UB_MODE_BULK)
		printf("bulk: %llu bytes of %s text over %d conns in %.2f s: "
		       "%.1f MB/s; errors %llu connect_failures %llu",
		    (unsigned long long)t->bytes_tx,
		    o->mixed ? "mixed-script" : "ascii", conns, secs, mbs,
		    (unsigned long long)t->errors,
		    (unsigned long long)t->connect_failures);
	else
		printf("%s: %d %s depth %d size %d, %.2f s: %.0f req/s "
		       "%.1f MB/s; latency us p50 %.1f p90 %.1f p99 %.1f "
		       "p99.9 %.1f max %.1f; errors %llu lost %llu late %llu "
		       "reordered %llu connect_failures %llu",
		    ub_mode_names[o->mode], conns,
		    o->mode == UB_MODE_UDP ? "sockets" : "conns", o->depth,
		    o->size, secs, rps, mbs, p50, p90, p99, p999, max,
		    (unsigned long long)t->errors, (unsigned long long)t->lost,
		    (unsigned long long)t->late,
		    (unsigned long long)t->reordered,
		    (unsigned long long)t->connect_failures);
	if (o->mode == UB_MODE_IDLE)
		printf("; idle held %llu of %d",
		    (unsigned long long)t->idle_held, o->idle);
	printf("\n{\"mode\":\"%s\",\"conns\":%d,\"depth\":%d,\"size\":%d,"
	       "\"procs\":%d,\"idle\":%d,\"duration_s\":%.3f,"
	       "\"requests\":%llu,\"rps\":%.1f,\"mb_per_s\":%.2f,"
	       "\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,"
	       "\"p999_us\":%.2f,\"max_us\":%.2f,\"errors\":%llu,"
	       "\"lost\":%llu,\"late\":%llu,\"reordered\":%llu,"
	       "\"stalled\":%llu,\"connect_failures\":%llu,"
	       "\"idle_held\":%llu,\"bytes_sent\":%llu,"
	       "\"bytes_received\":%llu}\n",
	    ub_mode_names[o->mode], conns, o->depth, o->size, o->procs,
	    o->mode == UB_MODE_IDLE ? o->idle : 0, secs,
	    (unsigned long long)t->requests, rps, mbs, p50, p90, p99, p999, max,
	    (unsigned long long)t->errors, (unsigned long long)t->lost,
	    (unsigned long long)t->late, (unsigned long long)t->reordered,
	    (unsigned long long)t->stalled,
	    (unsigned long long)t->connect_failures,
	    (unsigned long long)t->idle_held, (unsigned long long)t->bytes_tx,
	    (unsigned long long)t->bytes_rx);
	fflush(stdout);
}

/* ---- options ------------------------------------------------------- */

static void
ub_usage(FILE *f)
{
	fprintf(f,
	    "usage: upper-bench [--mode rr|udp|bulk|idle|churn] [options]\n"
	    "  --host H         server (numeric, default 127.0.0.1)\n"
	    "  --port P         TCP port (default 12000)\n"
	    "  --udp-port P     UDP port (default: --port)\n"
	    "  --conns C        TCP connections doing work (rr/idle 50, "
	    "bulk 1, churn 10)\n"
	    "  --depth D        requests in flight per connection or socket\n"
	    "  --size B         bytes per request (default 64)\n"
	    "  --duration S     measured seconds (bulk/churn: time limit)\n"
	    "  --warmup S       unmeasured seconds first (rr/udp/idle)\n"
	    "  --grace S        wait for replies after the end (default 2)\n"
	    "  --sockets K      UDP sockets (default 4)\n"
	    "  --udp-timeout S  give a datagram up after S (default 0.2)\n"
	    "  --bytes N        bulk bytes in all, suffix K M G (default 1G)\n"
	    "  --text ascii|mixed  bulk text (mixed-script UTF-8)\n"
	    "  --case unicode|ascii  server's mode, for the expected reply\n"
	    "  --idle N         idle connections held (idle mode, 10000)\n"
	    "  --requests N     short connections in all (churn, 1000)\n"
	    "  --procs K        client processes (default 1)\n"
	    "  --connect-timeout S  limit of the connect phase (default 30)\n"
	    "  --hold S         after connecting, wait S or for SIGUSR1\n");
}

static double
ub_num(const char *s, const char *name, double min, double max)
{
	char *end;
	double v = strtod(s, &end);

	if (*s == '\0' || *end != '\0' || !(v >= min && v <= max)) {
		fprintf(stderr, "upper-bench: bad %s '%s'\n", name, s);
		exit(2);
	}
	return v;
}

static uint64_t
ub_bytes(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	double mul = 1;

	switch (*end) {
	case 'k':
	case 'K':
		mul = 1024;
		end++;
		break;
	case 'm':
	case 'M':
		mul = 1024.0 * 1024;
		end++;
		break;
	case 'g':
	case 'G':
		mul = 1024.0 * 1024 * 1024;
		end++;
		break;
	}
	if (*end == 'i' || *end == 'B')
		end += *end == 'i' && end[1] == 'B' ? 2 : 1;
	if (*s == '\0' || *end != '\0' || !(v * mul >= 1) || v * mul > 1e15) {
		fprintf(stderr, "upper-bench: bad --bytes '%s'\n", s);
		exit(2);
	}
	return (uint64_t)(v * mul);
}

static int
ub_pick(const char *s, const char *name, const char *const *names, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	fprintf(stderr, "upper-bench: bad %s '%s'\n", name, s);
	exit(2);
}

static void
ub_option(struct ub_opts *o, int c, const char *a)
{
	static const char *const texts[] = { "ascii", "mixed" };
	static const char *const cases[] = { "unicode", "ascii" };

	switch (c) {
	case 'm':
		o->mode = ub_pick(a, "--mode", ub_mode_names, 5);
		break;
	case 'H':
		o->host = a;
		break;
	case 'p':
		o->port = (int)ub_num(a, "--port", 1, 65535);
		break;
	case 'P':
		o->udp_port = (int)ub_num(a, "--udp-port", 1, 65535);
		break;
	case 'c':
		o->conns = (int)ub_num(a, "--conns", 0, 1e7);
		break;
	case 'd':
		o->depth = (int)ub_num(a, "--depth", 1, UB_MAX_DEPTH);
		break;
	case 's':
		o->size = (int)ub_num(a, "--size", 1, UB_MAX_SIZE);
		break;
	case 'D':
		o->duration = ub_num(a, "--duration", 0.01, 3600);
		break;
	case 'w':
		o->warmup = ub_num(a, "--warmup", 0, 3600);
		break;
	case 'g':
		o->grace = ub_num(a, "--grace", 0, 60);
		break;
	case 'k':
		o->sockets = (int)ub_num(a, "--sockets", 1, 1024);
		break;
	case 'T':
		o->udp_timeout = ub_num(a, "--udp-timeout", 0.001, 60);
		break;
	case 'b':
		o->bytes = ub_bytes(a);
		break;
	case 'x':
		o->mixed = ub_pick(a, "--text", texts, 2);
		break;
	case 'C':
		o->upc = ub_pick(a, "--case", cases, 2) ? UPC_ASCII :
		                                          UPC_UNICODE;
		break;
	case 'i':
		o->idle = (int)ub_num(a, "--idle", 0, 1e7);
		break;
	case 'r':
		o->requests = (long)ub_num(a, "--requests", 1, 1e9);
		break;
	case 'n':
		o->procs = (int)ub_num(a, "--procs", 1, UB_MAX_PROCS);
		break;
	case 'o':
		o->connect_timeout = ub_num(a, "--connect-timeout", 0.1, 3600);
		break;
	case 'h':
		o->hold = ub_num(a, "--hold", 0, 3600);
		break;
	}
}

/* Defaults that depend on the mode; -1 marks "not given". */
static void
ub_defaults(struct ub_opts *o)
{
	int timed = o->mode == UB_MODE_BULK || o->mode == UB_MODE_CHURN;

	if (o->conns < 0)
		o->conns = o->mode == UB_MODE_BULK ? 1 :
		    o->mode == UB_MODE_CHURN       ? 10 :
		                                     50;
	if (o->udp_port < 0)
		o->udp_port = o->port;
	if (o->duration < 0)
		o->duration = timed ? 60 : 10;
	if (o->warmup < 0 || timed)
		o->warmup = timed ? 0 : 1;
	if (o->mode == UB_MODE_UDP && o->size < UB_UDP_HDR + 1) {
		fprintf(stderr, "upper-bench: udp needs --size >= %d\n",
		    UB_UDP_HDR + 1);
		exit(2);
	}
	if (o->mode == UB_MODE_UDP && o->size > 65507) {
		fprintf(stderr, "upper-bench: udp --size is at most 65507\n");
		exit(2);
	}
	if (o->mode == UB_MODE_BULK && o->conns < 1) {
		fprintf(stderr, "upper-bench: bulk needs --conns >= 1\n");
		exit(2);
	}
}

static void
ub_parse(struct ub_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "udp-port", required_argument, NULL, 'P' },
		{ "conns", required_argument, NULL, 'c' },
		{ "depth", required_argument, NULL, 'd' },
		{ "size", required_argument, NULL, 's' },
		{ "duration", required_argument, NULL, 'D' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "grace", required_argument, NULL, 'g' },
		{ "sockets", required_argument, NULL, 'k' },
		{ "udp-timeout", required_argument, NULL, 'T' },
		{ "bytes", required_argument, NULL, 'b' },
		{ "text", required_argument, NULL, 'x' },
		{ "case", required_argument, NULL, 'C' },
		{ "idle", required_argument, NULL, 'i' },
		{ "requests", required_argument, NULL, 'r' },
		{ "procs", required_argument, NULL, 'n' },
		{ "connect-timeout", required_argument, NULL, 'o' },
		{ "hold", required_argument, NULL, 'h' },
		{ "help", no_argument, NULL, '?' + 256 },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*o = (struct ub_opts){ .host = "127.0.0.1",
		.port = 12000,
		.udp_port = -1,
		.conns = -1,
		.depth = 1,
		.size = 64,
		.sockets = 4,
		.idle = 10000,
		.procs = 1,
		.requests = 1000,
		.duration = -1,
		.warmup = -1,
		.grace = 2,
		.connect_timeout = 30,
		.udp_timeout = 0.2,
		.bytes = 1ULL << 30,
		.upc = UPC_UNICODE };
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == '?' + 256) {
			ub_usage(stdout);
			exit(0);
		}
		if (c == '?') {
			ub_usage(stderr);
			exit(2);
		}
		ub_option(o, c, optarg);
	}
	if (optind != argc) {
		ub_usage(stderr);
		exit(2);
	}
	ub_defaults(o);
}

/* Each process may hold its share of the connections plus a few fds. */
static void
ub_check_fds(const struct ub_opts *o)
{
	long per = o->mode == UB_MODE_IDLE ? o->conns + o->idle / o->procs + 1 :
	                                     o->conns / o->procs + 1;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    (rlim_t)per + 32 > rl.rlim_cur) {
		fprintf(stderr,
		    "upper-bench: %ld connections per process "
		    "exceed the fd limit %llu: raise --procs\n",
		    per, (unsigned long long)rl.rlim_cur);
		exit(2);
	}
}

int
main(int argc, char **argv)
{
	struct ub_result *t;
	struct ub_opts o;
	sigset_t set;
	int rc;

	ub_parse(&o, argc, argv);
	ub_check_fds(&o);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	t = ub_calloc(1, sizeof(*t));
	rc = ub_run(&o, t);
	ub_print(&o, t);
	/* A run where nothing was answered failed, even with no wrong byte. */
	if (t->requests == 0 && o.mode != UB_MODE_BULK)
		rc = 1;
	return rc || t->errors || t->connect_failures ? 1 : 0;
}
