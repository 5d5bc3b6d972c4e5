/*
 * upper-ref-uring.c: the benchmark's second reference, upper-ref's job done
 * the io_uring way and nothing else: the limit of the completion model on
 * this machine, as upper-ref is the limit of epoll's.
 *
 * The parent binds, forks --procs children and waits for a signal, as
 * upper-ref does.  Each child has one ring: a multishot accept on the
 * shared listener, a multishot receive per connection into a ring of
 * shared provided buffers, ASCII uppercase in place in that buffer and a
 * send straight from it; the buffer goes back to the ring when its send
 * completes.  Sends of one connection go one at a time, in order (two in
 * flight could be reordered); the others wait in a per-connection list
 * threaded through the buffers.  A receive that found the buffer ring
 * empty is armed again after the batch that gave buffers back.  UDP: a multishot
 * poll, then recvfrom/sendto as upper-ref does.  No counters, no logging.
 */
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net.h"
#include "upcase.h"

#define RU_NBUF 1024
#define RU_BUFSZ 16384
#define RU_BGID 1
#define RU_MAX_PROCS 256
#define RU_NONE 0xffff

/* user_data: gen << 40 | fd << 8 | op.  An fd number is reused by the next
 * connection while the last completions of the closed one may still come:
 * the connection's generation tells them apart (they only give back their
 * buffer).  The send's buffer id rides in the conn. */
enum { RU_ACCEPT = 1, RU_RECV, RU_SEND, RU_UDP };

struct ru_conn {
	uint16_t head, tail; /* buffers waiting to be sent, RU_NONE = none */
	uint32_t off;        /* sent of the head buffer */
	uint8_t sending, closing, open;
	uint32_t gen;
};

static struct io_uring ru_ring;
static struct io_uring_buf_ring *ru_br;
static uint8_t *ru_bufs;
static uint32_t ru_len[RU_NBUF]; /* bytes in each buffer given out */
static uint16_t ru_next[RU_NBUF];
static struct ru_conn *ru_conns;
static size_t ru_nconns;
static int *ru_starved; /* fds whose receive found no buffer */
static size_t ru_nstarved;
static int ru_lfd, ru_ufd;

static struct io_uring_sqe *
ru_sqe(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ru_ring);

	if (sqe == NULL) {
		io_uring_submit(&ru_ring);
		sqe = io_uring_get_sqe(&ru_ring);
	}
	return sqe;
}

static void
ru_recv(int fd)
{
	struct io_uring_sqe *sqe = ru_sqe();

	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RU_BGID;
	io_uring_sqe_set_data64(sqe,
	    (uint64_t)ru_conns[fd].gen << 40 | (uint64_t)fd << 8 | RU_RECV);
}

static void
ru_arm(int fd, int op)
{
	struct io_uring_sqe *sqe = ru_sqe();

	if (op == RU_ACCEPT)
		io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, 0);
	else
		io_uring_prep_poll_multishot(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, (uint64_t)fd << 8 | (unsigned)op);
}

static void
ru_send_head(int fd)
{
	struct ru_conn *c = &ru_conns[fd];
	struct io_uring_sqe *sqe = ru_sqe();

	io_uring_prep_send(sqe, fd,
	    ru_bufs + (size_t)c->head * RU_BUFSZ + c->off,
	    ru_len[c->head] - c->off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe,
	    (uint64_t)c->gen << 40 | (uint64_t)fd << 8 | RU_SEND);
	c->sending = 1;
}

static void
ru_give_back(uint16_t bid)
{
	io_uring_buf_ring_add(ru_br, ru_bufs + (size_t)bid * RU_BUFSZ, RU_BUFSZ,
	    bid, io_uring_buf_ring_mask(RU_NBUF), 0);
	io_uring_buf_ring_advance(ru_br, 1);
}

/* Every buffer the connection holds goes back; the fd closes. */
static void
ru_close(int fd)
{
	struct ru_conn *c = &ru_conns[fd];
	struct io_uring_sqe *sqe;
	uint16_t b;

	while ((b = c->head) != RU_NONE) {
		c->head = ru_next[b];
		ru_give_back(b);
	}
	c->head = c->tail = RU_NONE;
	c->off = 0;
	c->sending = c->closing = c->open = 0;
	/* a receive still armed holds the socket: cancel it first */
	sqe = ru_sqe();
	io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
	io_uring_sqe_set_data64(sqe, 0); /* no op: its completion is ignored */
	io_uring_submit(&ru_ring);
	close(fd);
}

static void
ru_on_recv(int fd, const struct io_uring_cqe *cqe)
{
	struct ru_conn *c = &ru_conns[fd];
	uint16_t bid;

	if (cqe->res == -ENOBUFS) {
		ru_starved[ru_nstarved++] = fd;
		return;
	}
	if (cqe->res <= 0) {
		if (!c->sending)
			ru_close(fd);
		else
			c->closing = 1; /* when the send ends */
		return;
	}
	bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
	upc_ascii_inplace(ru_bufs + (size_t)bid * RU_BUFSZ, (size_t)cqe->res);
	ru_len[bid] = (uint32_t)cqe->res;
	ru_next[bid] = RU_NONE;
	if (c->head == RU_NONE)
		c->head = bid;
	else
		ru_next[c->tail] = bid;
	c->tail = bid;
	if (!c->sending)
		ru_send_head(fd);
	if (!(cqe->flags & IORING_CQE_F_MORE))
		ru_recv(fd);
}

static void
ru_on_send(int fd, int res)
{
	struct ru_conn *c = &ru_conns[fd];
	uint16_t b = c->head;

	c->sending = 0;
	if (res <= 0) {
		ru_close(fd);
		return;
	}
	c->off += (uint32_t)res;
	if (c->off == ru_len[b]) {
		c->head = ru_next[b];
		c->off = 0;
		ru_give_back(b);
	}
	if (c->head != RU_NONE)
		ru_send_head(fd);
	else if (c->closing)
		ru_close(fd);
}

static void
ru_udp(void)
{
	struct sockaddr_storage ss;
	uint8_t buf[65536];
	socklen_t sl;
	ssize_t n;
	int i;

	for (i = 0; i < 64; i++) {
		sl = sizeof(ss);
		n = recvfrom(ru_ufd, buf, sizeof(buf), MSG_DONTWAIT,
		    (struct sockaddr *)&ss, &sl);
		if (n == -1)
			return;
		upc_ascii_inplace(buf, (size_t)n);
		sendto(ru_ufd, buf, (size_t)n, 0, (struct sockaddr *)&ss, sl);
	}
}

static void
ru_event(const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	int fd = (int)(ud >> 8 & 0xffffffff),
	    more = cqe->flags & IORING_CQE_F_MORE;
	unsigned op = ud & 0xff;

	if ((op == RU_RECV || op == RU_SEND) &&
	    (!ru_conns[fd].open || ru_conns[fd].gen != (uint32_t)(ud >> 40))) {
		if (cqe->flags & IORING_CQE_F_BUFFER) /* a closed one's */
			ru_give_back(
			    (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
		return;
	}

	switch (op) {
	case RU_ACCEPT:
		if (cqe->res >= 0 && (size_t)cqe->res < ru_nconns) {
			ru_conns[cqe->res].open = 1;
			ru_conns[cqe->res].gen = (ru_conns[cqe->res].gen + 1) &
			    0xffffff;
			ru_recv(cqe->res);
		} else if (cqe->res >= 0)
			close(cqe->res);
		if (!more)
			ru_arm(ru_lfd, RU_ACCEPT);
		break;
	case RU_RECV:
		ru_on_recv(fd, cqe);
		break;
	case RU_SEND:
		ru_on_send(fd, cqe->res);
		break;
	case RU_UDP:
		ru_udp();
		if (!more)
			ru_arm(ru_ufd, RU_UDP);
		break;
	}
}

static int
ru_setup(void)
{
	struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE |
		    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		.cq_entries = 16384 };
	struct io_uring_buf_reg reg = { .ring_entries = RU_NBUF,
		.bgid = RU_BGID };
	struct rlimit rl;
	size_t i;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 ||
	    io_uring_queue_init_params(1024, &ru_ring, &p) < 0)
		return -1;
	ru_nconns = rl.rlim_cur;
	ru_conns = calloc(ru_nconns, sizeof(*ru_conns));
	ru_starved = calloc(ru_nconns, sizeof(*ru_starved));
	ru_br = mmap(NULL, RU_NBUF * sizeof(struct io_uring_buf),
	    PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ru_bufs = mmap(NULL, (size_t)RU_NBUF * RU_BUFSZ, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ru_conns == NULL || ru_starved == NULL || ru_br == MAP_FAILED ||
	    ru_bufs == MAP_FAILED)
		return -1;
	for (i = 0; i < ru_nconns; i++)
		ru_conns[i].head = ru_conns[i].tail = RU_NONE;
	reg.ring_addr = (unsigned long)ru_br;
	if (io_uring_register_buf_ring(&ru_ring, &reg, 0) < 0)
		return -1;
	io_uring_buf_ring_init(ru_br);
	for (i = 0; i < RU_NBUF; i++)
		ru_give_back((uint16_t)i);
	return 0;
}

static int
ru_child(void)
{
	struct io_uring_cqe *cqe;
	unsigned head, n;

	if (ru_setup() == -1) {
		perror("upper-ref-uring: io_uring");
		return 1;
	}
	if (ru_lfd != -1)
		ru_arm(ru_lfd, RU_ACCEPT);
	if (ru_ufd != -1)
		ru_arm(ru_ufd, RU_UDP);
	for (;;) {
		io_uring_submit_and_wait(&ru_ring, 1);
		n = 0;
		io_uring_for_each_cqe(&ru_ring, head, cqe)
		{
			ru_event(cqe);
			n++;
		}
		io_uring_cq_advance(&ru_ring, n);
		while (ru_nstarved > 0) /* buffers came back meanwhile */
			if (ru_conns[ru_starved[--ru_nstarved]].open)
				ru_recv(ru_starved[ru_nstarved]);
	}
}

static int
ru_open(const char *spec, int udp)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd;

	if (strcmp(spec, "off") == 0)
		return -1;
	if (net_parse_addr(spec, &ss, &sl) == -1 ||
	    (fd = udp ? net_bind_udp(&ss, sl) :
	                net_listen_tcp(&ss, sl, 4096)) == -1) {
		fprintf(stderr, "upper-ref-uring: %s: %s\n", spec,
		    strerror(errno));
		exit(2);
	}
	return fd;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "tcp", required_argument, NULL, 't' },
		{ "udp", required_argument, NULL, 'u' },
		{ "procs", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 },
	};
	const char *tcp = "127.0.0.1:12000", *udp = "127.0.0.1:12000";
	pid_t kids[RU_MAX_PROCS], parent = getpid();
	int c, i, n = 1, sig;
	sigset_t set;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 't')
			tcp = optarg;
		else if (c == 'u')
			udp = optarg;
		else if (c == 'n')
			n = atoi(optarg);
		else
			n = 0;
	}
	if (optind != argc || n < 1 || n > RU_MAX_PROCS) {
		fprintf(stderr,
		    "usage: upper-ref-uring [--tcp ADDR:PORT|off] "
		    "[--udp ADDR:PORT|off] [--procs N]\n");
		return 2;
	}
	ru_lfd = ru_open(tcp, 0);
	ru_ufd = ru_open(udp, 1);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (i = 0; i < n; i++)
		if ((kids[i] = fork()) == 0) {
			sigprocmask(SIG_UNBLOCK, &set, NULL);
			prctl(PR_SET_PDEATHSIG, SIGTERM);
			_exit(getppid() == parent ? ru_child() : 0);
		}
	do
		sig = sigwaitinfo(&set, NULL);
	while (sig == -1 && errno == EINTR);
	for (i = 0; i < n; i++)
		kill(kids[i], SIGTERM);
	for (i = 0; i < n; i++)
		waitpid(kids[i], NULL, 0);
	return sig == SIGCHLD;
}
