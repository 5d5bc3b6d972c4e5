/*
 * peer_rr.c: the engine bench's request/response load generator, small
 * enough to speak any server's protocol: each of --conns connections keeps
 * --depth copies of one fixed request (--req, C escapes) in flight and
 * counts a reply each time --reply-len bytes have come back (the length is
 * learnt from the server's first reply when not given).  So upperd and
 * upper-ref ("ping\n" -> "PING\n"), memcached ("version\r\n") and Redis
 * ("PING\r\n") are measured by the same loop.  --idle N more connections
 * are opened first and held silent.  One thread, epoll; the latency of a
 * reply is taken from the send of the request it answers (FIFO per
 * connection).  Prints one JSON line: requests/s, p50/p99/max in us, and
 * "fair": the least-served connection's replies over the mean.
 * upper-bench stays the scenario tool; this one exists because that one
 * checks uppercase replies and the peers do not uppercase.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PR_MAX_DEPTH 256
#define PR_HIST 2000000 /* 1 us buckets up to 2 s */

struct pr_conn {
	int fd;
	uint32_t got;                /* bytes of the current reply */
	uint64_t sent[PR_MAX_DEPTH]; /* send times, a FIFO */
	unsigned head, n;
	uint64_t done; /* replies in the measured part: fairness */
};

static char pr_req[256];
static size_t pr_reqlen, pr_replen;
static uint64_t pr_hist[PR_HIST + 1], pr_count, pr_all;

static uint64_t
pr_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static size_t
pr_unescape(char *out, size_t cap, const char *s)
{
	size_t n = 0;

	for (; *s && n < cap; s++) {
		if (*s == '\\' && s[1] == 'r')
			out[n++] = '\r', s++;
		else if (*s == '\\' && s[1] == 'n')
			out[n++] = '\n', s++;
		else
			out[n++] = *s;
	}
	return n;
}

static int
pr_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), on = 1;

	if (fd == -1 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	return fd;
}

/* The reply length, from one blocking round trip (memcached's version). */
static int
pr_probe(int port)
{
	char buf[512];
	int fd = pr_connect(port);
	ssize_t n;

	if (fd == -1 || write(fd, pr_req, pr_reqlen) != (ssize_t)pr_reqlen)
		return -1;
	n = read(fd, buf, sizeof(buf)); /* replies are one small segment */
	close(fd);
	if (n <= 0)
		return -1;
	pr_replen = (size_t)n;
	return 0;
}

static void
pr_send(struct pr_conn *c, unsigned k, uint64_t now)
{
	static char burst[PR_MAX_DEPTH * 256];
	unsigned i;

	for (i = 0; i < k; i++) {
		memcpy(burst + i * pr_reqlen, pr_req, pr_reqlen);
		c->sent[(c->head + c->n + i) % PR_MAX_DEPTH] = now;
	}
	c->n += k;
	if (write(c->fd, burst, k * pr_reqlen) != (ssize_t)(k * pr_reqlen)) {
		fprintf(stderr, "peer_rr: short write\n");
		exit(1);
	}
}

/* Count the replies in n bytes; send as many new requests. */
static void
pr_input(struct pr_conn *c, size_t n, uint64_t now, int measure)
{
	unsigned done = 0;
	uint64_t us;

	while (n > 0) {
		size_t take = pr_replen - c->got < n ? pr_replen - c->got : n;

		c->got += (uint32_t)take;
		n -= take;
		if (c->got < pr_replen)
			break;
		c->got = 0;
		us = (now - c->sent[c->head]) / 1000;
		c->head = (c->head + 1) % PR_MAX_DEPTH;
		c->n--;
		done++;
		pr_all++;
		if (measure) {
			pr_hist[us < PR_HIST ? us : PR_HIST]++;
			pr_count++;
			c->done++;
		}
	}
	if (done)
		pr_send(c, done, now);
}

static double
pr_pct(double p)
{
	uint64_t want = (uint64_t)(p * (double)pr_count), seen = 0;
	size_t i;

	for (i = 0; i <= PR_HIST; i++)
		if ((seen += pr_hist[i]) > want)
			return (double)i;
	return PR_HIST;
}

int
main(int argc, char **argv)
{
	int port = 12000, conns = 50, depth = 1, idle = 0, ep, i, n, c;
	double dur = 3, warm = 0.5;
	struct epoll_event ev, evs[256];
	struct pr_conn *cs;
	uint64_t t0, tw, te, now, max = 0, least = UINT64_MAX;
	char buf[65536];
	ssize_t r;

	pr_reqlen = pr_unescape(pr_req, sizeof(pr_req), "ping\n");
	while ((c = getopt(argc, argv, "p:c:d:i:t:w:r:l:")) != -1) {
		switch (c) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'c':
			conns = atoi(optarg);
			break;
		case 'd':
			depth = atoi(optarg);
			break;
		case 'i':
			idle = atoi(optarg);
			break;
		case 't':
			dur = atof(optarg);
			break;
		case 'w':
			warm = atof(optarg);
			break;
		case 'r':
			pr_reqlen = pr_unescape(pr_req, sizeof(pr_req), optarg);
			break;
		case 'l':
			pr_replen = (size_t)atol(optarg);
			break;
		default:
			fprintf(stderr,
			    "usage: peer_rr [-p port] [-c conns] "
			    "[-d depth] [-i idle] [-t secs] [-w warmup] "
			    "[-r request] [-l reply-len]\n");
			return 2;
		}
	}
	if (depth < 1 || depth > PR_MAX_DEPTH || conns < 1 ||
	    (pr_replen == 0 && pr_probe(port) == -1)) {
		fprintf(stderr, "peer_rr: bad arguments or no reply\n");
		return 2;
	}
	for (i = 0; i < idle; i++)
		if (pr_connect(port) == -1) {
			fprintf(stderr, "peer_rr: idle connect %d: %s\n", i,
			    strerror(errno));
			return 1;
		}
	ep = epoll_create1(0);
	cs = calloc((size_t)conns, sizeof(*cs));
	t0 = pr_now();
	for (i = 0; i < conns; i++) {
		if ((cs[i].fd = pr_connect(port)) == -1) {
			fprintf(stderr, "peer_rr: connect: %s\n",
			    strerror(errno));
			return 1;
		}
		ev.events = EPOLLIN;
		ev.data.ptr = &cs[i];
		epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
		pr_send(&cs[i], (unsigned)depth, t0);
	}
	tw = pr_now() + (uint64_t)(warm * 1e9);
	te = tw + (uint64_t)(dur * 1e9);
	while ((now = pr_now()) < te) {
		n = epoll_wait(ep, evs, 256, 100);
		now = pr_now();
		for (i = 0; i < n; i++) {
			struct pr_conn *pc = evs[i].data.ptr;

			if ((r = read(pc->fd, buf, sizeof(buf))) <= 0) {
				fprintf(stderr, "peer_rr: server closed\n");
				return 1;
			}
			pr_input(pc, (size_t)r, now, now >= tw);
		}
	}
	for (i = 0; i < conns; i++)
		if (cs[i].done < least)
			least = cs[i].done;
	for (i = PR_HIST; i >= 0; i--)
		if (pr_hist[i]) {
			max = (uint64_t)i;
			break;
		}
	printf("{\"rps\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f,"
	       "\"max_us\":%llu,\"requests\":%llu,\"all\":%llu,"
	       "\"fair\":%.2f}\n",
	    (double)pr_count / dur, pr_pct(0.5), pr_pct(0.99),
	    (unsigned long long)max, (unsigned long long)pr_count,
	    (unsigned long long)pr_all,
	    pr_count ? (double)least * conns / (double)pr_count : 0.0);
	return 0;
}
