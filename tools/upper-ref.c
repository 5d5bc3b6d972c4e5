/*
 * upper-ref.c: the benchmark's reference server, the smallest server that
 * does upperd's syscalls and nothing else.
 *
 * The parent binds one TCP listener and one UDP socket, forks --procs
 * children and waits for a signal.  Each child runs its own level-triggered
 * epoll over the shared listener and UDP socket (both EPOLLEXCLUSIVE, as in
 * upperd) and its clients: one read into a shared buffer, ASCII uppercase in
 * place, one write back.  A partial write parks the rest in a buffer of the
 * connection's own and stops reading it until that drains, so memory stays
 * bounded and idle connections hold no buffer.  No counters, no supervision,
 * no logging: whatever upperd costs beyond this is the price of its features.
 * SIGTERM/SIGINT stop it; children die with the parent (PR_SET_PDEATHSIG).
 * Sized for the benchmark: at the fd limit it spins on a listener it
 * cannot accept from, so keep RLIMIT_NOFILE above the connections held.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net.h"
#include "upcase.h"

#define REF_BUF 65536
#define REF_EVENTS 256
#define REF_UDP_BATCH 64
#define REF_MAX_PROCS 256

/* Output the client has not taken yet; NULL for almost every connection. */
struct ref_conn {
	uint8_t *pend;
	uint32_t len;
	uint32_t off;
};

/* One child's state: connections are indexed by fd. */
struct ref_child {
	int ep;
	int lfd;
	int ufd;
	struct ref_conn *conns;
	size_t nconns;
	uint8_t buf[REF_BUF];
};

static void
ref_usage(FILE *f)
{
	fprintf(f,
	    "usage: upper-ref [--tcp ADDR:PORT|off] [--udp ADDR:PORT|off]"
	    " [--procs N]\n"
	    "  a bare epoll server that ASCII-uppercases what it gets; "
	    "defaults 127.0.0.1:12000 and 1 process\n");
}

static int
ref_watch(int ep, int op, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.fd = fd };

	return epoll_ctl(ep, op, fd, &ev);
}

static void
ref_close(struct ref_child *ch, int fd)
{
	struct ref_conn *c = &ch->conns[fd];

	free(c->pend);
	memset(c, 0, sizeof(*c));
	close(fd);
}

static void
ref_accept(struct ref_child *ch)
{
	int fd, on = 1;

	while ((fd = accept4(ch->lfd, NULL, NULL,
	            SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1) {
		if ((size_t)fd >= ch->nconns) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
		if (ref_watch(ch->ep, EPOLL_CTL_ADD, fd, EPOLLIN) == -1)
			close(fd);
	}
}

/* Keep what send() did not take and wait for EPOLLOUT instead of input. */
static void
ref_park(struct ref_child *ch, int fd, const uint8_t *p, size_t n)
{
	struct ref_conn *c = &ch->conns[fd];

	if ((c->pend = malloc(n)) == NULL) {
		ref_close(ch, fd);
		return;
	}
	memcpy(c->pend, p, n);
	c->len = (uint32_t)n;
	c->off = 0;
	ref_watch(ch->ep, EPOLL_CTL_MOD, fd, EPOLLOUT);
}

static void
ref_read(struct ref_child *ch, int fd)
{
	ssize_t n, w;

	n = recv(fd, ch->buf, sizeof(ch->buf), 0);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		ref_close(ch, fd);
		return;
	}
	upc_ascii_inplace(ch->buf, (size_t)n);
	w = send(fd, ch->buf, (size_t)n, MSG_NOSIGNAL);
	if (w == -1 && errno != EAGAIN) {
		ref_close(ch, fd);
		return;
	}
	if (w < n)
		ref_park(ch, fd, ch->buf + (w > 0 ? w : 0),
		    (size_t)(n - (w > 0 ? w : 0)));
}

static void
ref_flush(struct ref_child *ch, int fd)
{
	struct ref_conn *c = &ch->conns[fd];
	ssize_t w;

	w = send(fd, c->pend + c->off, c->len - c->off, MSG_NOSIGNAL);
	if (w == -1 && errno == EAGAIN)
		return;
	if (w == -1) {
		ref_close(ch, fd);
		return;
	}
	c->off += (uint32_t)w;
	if (c->off < c->len)
		return;
	free(c->pend);
	memset(c, 0, sizeof(*c));
	ref_watch(ch->ep, EPOLL_CTL_MOD, fd, EPOLLIN);
}

/* A bounded batch per wakeup, so TCP clients get their turn. */
static void
ref_udp(struct ref_child *ch)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	ssize_t n;
	int i;

	for (i = 0; i < REF_UDP_BATCH; i++) {
		sl = sizeof(ss);
		n = recvfrom(ch->ufd, ch->buf, sizeof(ch->buf), 0,
		    (struct sockaddr *)&ss, &sl);
		if (n == -1)
			return;
		upc_ascii_inplace(ch->buf, (size_t)n);
		sendto(ch->ufd, ch->buf, (size_t)n, 0, (struct sockaddr *)&ss,
		    sl);
	}
}

static void
ref_event(struct ref_child *ch, const struct epoll_event *ev)
{
	int fd = ev->data.fd;

	if (fd == ch->lfd)
		ref_accept(ch);
	else if (fd == ch->ufd)
		ref_udp(ch);
	else if (ch->conns[fd].pend != NULL)
		ref_flush(ch, fd);
	else
		ref_read(ch, fd);
}

static int
ref_child_main(int lfd, int ufd)
{
	struct epoll_event evs[REF_EVENTS];
	struct ref_child *ch;
	struct rlimit rl;
	int i, n;

	if ((ch = calloc(1, sizeof(*ch))) == NULL ||
	    getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return 1;
	ch->nconns = rl.rlim_cur;
	ch->conns = calloc(ch->nconns, sizeof(*ch->conns));
	ch->lfd = lfd;
	ch->ufd = ufd;
	if (ch->conns == NULL || (ch->ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		return 1;
	if (lfd != -1 &&
	    ref_watch(ch->ep, EPOLL_CTL_ADD, lfd, EPOLLIN | EPOLLEXCLUSIVE) ==
	        -1)
		return 1;
	if (ufd != -1 &&
	    ref_watch(ch->ep, EPOLL_CTL_ADD, ufd, EPOLLIN | EPOLLEXCLUSIVE) ==
	        -1)
		return 1;
	for (;;) {
		n = epoll_wait(ch->ep, evs, REF_EVENTS, -1);
		for (i = 0; i < n; i++)
			ref_event(ch, &evs[i]);
	}
}

static int
ref_open(const char *spec, int udp)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd;

	if (strcmp(spec, "off") == 0)
		return -1;
	if (net_parse_addr(spec, &ss, &sl) == -1) {
		fprintf(stderr, "upper-ref: bad address '%s'\n", spec);
		exit(2);
	}
	fd = udp ? net_bind_udp(&ss, sl) : net_listen_tcp(&ss, sl, 4096);
	if (fd == -1) {
		fprintf(stderr, "upper-ref: bind %s %s: %s\n",
		    udp ? "udp" : "tcp", spec, strerror(errno));
		exit(1);
	}
	return fd;
}

static pid_t
ref_spawn(int lfd, int ufd, pid_t parent)
{
	sigset_t none;
	pid_t pid;

	if ((pid = fork()) != 0)
		return pid;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(0);
	_exit(ref_child_main(lfd, ufd));
}

static void
ref_stop(const pid_t *kids, int n)
{
	int i;

	for (i = 0; i < n; i++)
		kill(kids[i], SIGTERM);
	for (i = 0; i < n; i++)
		waitpid(kids[i], NULL, 0);
}

/* The parent only waits: a signal stops everything, a dead child too
 * (a reference server short of a process would skew the benchmark). */
static int
ref_wait(pid_t *kids, int n)
{
	sigset_t set;
	int sig, rc;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	do
		sig = sigwaitinfo(&set, NULL);
	while (sig == -1 && errno == EINTR);
	rc = sig == SIGCHLD ? 1 : 0;
	if (rc)
		fprintf(stderr, "upper-ref: a child died, stopping\n");
	ref_stop(kids, n);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "tcp", required_argument, NULL, 't' },
		{ "udp", required_argument, NULL, 'u' },
		{ "procs", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *tcp = "127.0.0.1:12000", *udp = "127.0.0.1:12000";
	pid_t kids[REF_MAX_PROCS];
	int c, i, nprocs = 1, lfd, ufd;
	sigset_t set;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			tcp = optarg;
			break;
		case 'u':
			udp = optarg;
			break;
		case 'n':
			nprocs = atoi(optarg);
			break;
		case 'h':
			ref_usage(stdout);
			return 0;
		default:
			ref_usage(stderr);
			return 2;
		}
	}
	if (optind != argc || nprocs < 1 || nprocs > REF_MAX_PROCS) {
		ref_usage(stderr);
		return 2;
	}
	lfd = ref_open(tcp, 0);
	ufd = ref_open(udp, 1);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (i = 0; i < nprocs; i++)
		if ((kids[i] = ref_spawn(lfd, ufd, getpid())) == -1) {
			perror("upper-ref: fork");
			ref_stop(kids, i);
			return 1;
		}
	return ref_wait(kids, nprocs);
}
