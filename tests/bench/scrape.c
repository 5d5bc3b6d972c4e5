/*
 * scrape.c: fetch a URL at a fixed rate until SIGTERM, like a busy
 * Prometheus, for `make bench`'s scrape row.
 *
 * One HTTP/1.1 connection, kept while the server keeps it and reopened
 * after an error.  It
 * replaced a Python loop whose own CPU was twice the server's rendering
 * cost: on a two-core machine a scraper that busy takes its share from
 * the load generator and the server, and a real Prometheus runs
 * elsewhere.  On exit prints one JSON line: scrapes done, failures,
 * seconds.
 *
 * usage: upperd-scrape HOST PORT PATH HZ
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "counters.h"

#define SCR_BUF (1 << 20)

static volatile sig_atomic_t scr_stop;

static void
scr_on_term(int sig)
{
	(void)sig;
	scr_stop = 1;
}

/* Seconds on the monotonic clock, from the one clock helper. */
static double
scr_now(void)
{
	return (double)ctr_clock_ns() / 1e9;
}

static int
scr_connect(const struct sockaddr_in *sa)
{
	struct timeval tv = { .tv_sec = 2 };
	int fd, on = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Content-Length of a complete header block, or -1. */
static long
scr_length(const char *hdr)
{
	const char *p = strcasestr(hdr, "\r\ncontent-length:");

	return p == NULL ? -1 : strtol(p + 17, NULL, 10);
}

/* One GET on fd; 1 if it answered 200 with its whole body, 0 for another
 * status, -1 when the connection failed (the caller reopens it).
 * *closing: the server said it closes the connection after this reply. */
static int
scr_get(int fd, const char *req, size_t reqlen, char *buf, int *closing)
{
	size_t have = 0;
	ssize_t n;
	char *end;
	long body;

	if (write(fd, req, reqlen) != (ssize_t)reqlen)
		return -1;
	for (;;) {
		if (have == SCR_BUF - 1)
			return -1;
		if ((n = read(fd, buf + have, SCR_BUF - 1 - have)) <= 0)
			return -1;
		have += (size_t)n;
		buf[have] = '\0';
		if ((end = strstr(buf, "\r\n\r\n")) == NULL)
			continue;
		if ((body = scr_length(buf)) < 0)
			return -1;
		if (have >= (size_t)(end + 4 - buf) + (size_t)body)
			break;
	}
	if (have != (size_t)(end + 4 - buf) + (size_t)body)
		return -1; /* more than asked for: out of step */
	*end = '\0';
	*closing = strcasestr(buf, "\r\nconnection: close") != NULL;
	return strncmp(buf, "HTTP/1.1 200 ", 13) == 0 ? 1 : 0;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	unsigned long ok = 0, failed = 0, tick = 0;
	double hz, start, delay;
	char req[512], *buf;
	int fd = -1, r, len, closing = 0;

	if (argc != 5 || inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1 ||
	    (hz = strtod(argv[4], NULL)) <= 0) {
		fprintf(stderr, "usage: upperd-scrape HOST PORT PATH HZ\n");
		return 2;
	}
	sa.sin_port = htons((uint16_t)atoi(argv[2]));
	len = snprintf(req, sizeof(req),
	    "GET %s HTTP/1.1\r\nHost: %s:%s\r\n"
	    "User-Agent: upperd-scrape\r\nAccept: */*\r\n\r\n",
	    argv[3], argv[1], argv[2]);
	if (len < 0 || (size_t)len >= sizeof(req) ||
	    (buf = malloc(SCR_BUF)) == NULL)
		return 1;
	signal(SIGTERM, scr_on_term);
	signal(SIGINT, scr_on_term);
	signal(SIGPIPE, SIG_IGN);
	start = scr_now();
	while (!scr_stop) {
		if (fd == -1)
			fd = scr_connect(&sa);
		r = fd == -1 ? -1 :
		               scr_get(fd, req, (size_t)len, buf, &closing);
		if (r == 1)
			ok++;
		else
			failed++;
		if ((r == -1 || closing) && fd != -1) {
			close(fd);
			fd = -1;
		}
		/* A fixed schedule: a slow scrape is not followed by a burst. */
		tick++;
		delay = start + (double)tick / hz - scr_now();
		if (delay > 0)
			usleep((useconds_t)(delay * 1e6));
		else
			tick = (unsigned long)((scr_now() - start) * hz);
	}
	printf("{\"scrapes\": %lu, \"failures\": %lu, \"seconds\": %.3f}\n", ok,
	    failed, scr_now() - start);
	return 0;
}
