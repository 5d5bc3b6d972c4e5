/*
 * upper.c: the client, the textbook TCPClient/UDPClient made into a tool.
 *
 * With TEXT arguments it sends them (joined by spaces) once and prints the
 * reply.  Without, it reads lines from standard input and prints one reply
 * per line, prompting like the textbook client when standard input is a
 * terminal.  Over TCP the whole session uses one connection; a reply line is
 * read up to its newline, never by byte count, because Unicode uppercase may
 * change a line's length.  Exit status: 0 done, 1 runtime error, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UPPER_PROMPT "Input lowercase sentence:"
#define UPPER_UDP_TIMEOUT_MS 5000
#define UPPER_DGRAM_MAX 65536

/* Where we talk to, kept for error messages ("connect H:P: ..."). */
struct upper_peer {
	int fd;
	int udp;
	char name[300];
};

static void __attribute__((format(printf, 1, 2)))
upper_err(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	fputs("upper: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", strerror(saved));
}

static void
upper_usage(FILE *f)
{
	fprintf(f,
	    "usage: upper [--udp] [--host H] [--port P] [TEXT...]\n"
	    "  --udp      use UDP instead of TCP\n"
	    "  --host H   server host (default 127.0.0.1)\n"
	    "  --port P   server port (default 12000)\n"
	    "  -h, --help this text\n"
	    "With TEXT, send it and print the reply; without, send each "
	    "line of standard input.\n");
}

/* Resolve and connect; UDP sockets are connected too, so an ICMP port
 * unreachable shows up as "Connection refused" instead of a timeout. */
static int
upper_connect(struct upper_peer *p, const char *host, const char *port)
{
	struct addrinfo hints = { 0 }, *res, *ai;
	int rc;

	hints.ai_socktype = p->udp ? SOCK_DGRAM : SOCK_STREAM;
	snprintf(p->name, sizeof(p->name),
	    strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		fprintf(stderr, "upper: resolve %s: %s\n", host,
		    gai_strerror(rc));
		return -1;
	}
	p->fd = -1;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		p->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (p->fd == -1)
			continue;
		if (connect(p->fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		rc = errno;
		close(p->fd);
		p->fd = -1;
		errno = rc;
	}
	freeaddrinfo(res);
	if (p->fd == -1) {
		upper_err("connect %s", p->name);
		return -1;
	}
	return 0;
}

/*
 * Send a TCP request while printing whatever reply arrives meanwhile: the
 * server answers as it reads and stops reading from a client that does not
 * take its replies, so a long request written without reading would hang
 * both ends.  Everything received before the request is fully sent belongs
 * to it.  *nl is set once a newline has been printed.
 */
static int
upper_send_tcp(struct upper_peer *p, const char *buf, size_t n, int *nl)
{
	struct pollfd pfd = { .fd = p->fd, .events = POLLIN | POLLOUT };
	char in[65536];
	ssize_t w, r;

	*nl = 0;
	while (n > 0) {
		if (poll(&pfd, 1, -1) == -1) {
			if (errno == EINTR)
				continue;
			upper_err("poll");
			return -1;
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			r = recv(p->fd, in, sizeof(in), MSG_DONTWAIT);
			if (r > 0) {
				fwrite(in, 1, (size_t)r, stdout);
				*nl |= memchr(in, '\n', (size_t)r) != NULL;
			} else if (r == 0 ||
			    (errno != EAGAIN && errno != EINTR)) {
				upper_err("recv %s", p->name);
				return -1;
			}
		}
		if (!(pfd.revents & POLLOUT))
			continue;
		w = send(p->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w == -1 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (w == -1) {
			upper_err("send %s", p->name);
			return -1;
		}
		buf += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Copy the server's bytes to stdout until EOF (one-shot TCP). */
static int
upper_tcp_until_eof(struct upper_peer *p)
{
	char buf[65536];
	ssize_t n;

	for (;;) {
		n = recv(p->fd, buf, sizeof(buf), 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			upper_err("recv %s", p->name);
			return -1;
		}
		if (n == 0)
			break;
		fwrite(buf, 1, (size_t)n, stdout);
	}
	putchar('\n');
	return fflush(stdout) == EOF ? -1 : 0;
}

/* Copy one reply line, up to and including its newline, to stdout. */
static int
upper_tcp_line(struct upper_peer *p)
{
	char buf[4096], *nl;
	ssize_t n;

	for (;;) {
		/* Peek, then consume only up to the newline, so nothing of a
		 * later reply is ever swallowed. */
		n = recv(p->fd, buf, sizeof(buf), MSG_PEEK);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			upper_err("recv %s", p->name);
			return -1;
		}
		if (n == 0) {
			fprintf(stderr, "upper: %s closed the connection\n",
			    p->name);
			return -1;
		}
		nl = memchr(buf, '\n', (size_t)n);
		if (nl != NULL)
			n = nl - buf + 1;
		if (recv(p->fd, buf, (size_t)n, 0) != n) {
			upper_err("recv %s", p->name);
			return -1;
		}
		fwrite(buf, 1, (size_t)n, stdout);
		if (nl != NULL)
			return fflush(stdout) == EOF ? -1 : 0;
	}
}

/* One datagram out, one back within the timeout, printed with a newline. */
static int
upper_udp_exchange(struct upper_peer *p, const char *msg, size_t len)
{
	static char buf[UPPER_DGRAM_MAX];
	struct pollfd pfd = { .fd = p->fd, .events = POLLIN };
	ssize_t n;
	int rc;

	if (send(p->fd, msg, len, 0) == -1) {
		upper_err("send %s", p->name);
		return -1;
	}
	while (
	    (rc = poll(&pfd, 1, UPPER_UDP_TIMEOUT_MS)) == -1 && errno == EINTR)
		;
	if (rc == 0) {
		fprintf(stderr, "upper: no reply from %s within %d s\n",
		    p->name, UPPER_UDP_TIMEOUT_MS / 1000);
		return -1;
	}
	if (rc == -1 || (n = recv(p->fd, buf, sizeof(buf), 0)) == -1) {
		upper_err("recv %s", p->name);
		return -1;
	}
	fwrite(buf, 1, (size_t)n, stdout);
	putchar('\n');
	return fflush(stdout) == EOF ? -1 : 0;
}

static char *
upper_join(int argc, char **argv, size_t *len)
{
	size_t n = 0;
	char *s;
	int i;

	for (i = 0; i < argc; i++)
		n += strlen(argv[i]) + 1;
	if ((s = malloc(n + 1)) == NULL)
		return NULL;
	s[0] = '\0';
	for (i = 0; i < argc; i++) {
		if (i > 0)
			strcat(s, " ");
		strcat(s, argv[i]);
	}
	*len = strlen(s);
	return s;
}

static int
upper_oneshot(struct upper_peer *p, int argc, char **argv)
{
	size_t len;
	char *msg;
	int rc, nl;

	if ((msg = upper_join(argc, argv, &len)) == NULL) {
		upper_err("malloc");
		return -1;
	}
	if (p->udp)
		rc = upper_udp_exchange(p, msg, len);
	else if ((rc = upper_send_tcp(p, msg, len, &nl)) == 0) {
		shutdown(p->fd, SHUT_WR);
		rc = upper_tcp_until_eof(p);
	}
	free(msg);
	return rc;
}

/* One line of a session.  A last line without a newline is sent as it
 * is; then only EOF can tell where its reply ends. */
static int
upper_session_line(struct upper_peer *p, char *line, size_t len)
{
	int has_nl = len > 0 && line[len - 1] == '\n', done;

	if (p->udp)
		return upper_udp_exchange(p, line, len - (size_t)has_nl);
	if (upper_send_tcp(p, line, len, &done) == -1)
		return -1;
	if (done) /* the reply's newline came while sending */
		return fflush(stdout) == EOF ? -1 : 0;
	if (has_nl)
		return upper_tcp_line(p);
	shutdown(p->fd, SHUT_WR);
	return upper_tcp_until_eof(p);
}

static int
upper_session(struct upper_peer *p)
{
	int tty = isatty(STDIN_FILENO);
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;

	for (;;) {
		if (tty) {
			fputs(UPPER_PROMPT, stdout);
			fflush(stdout);
		}
		if ((len = getline(&line, &cap, stdin)) == -1)
			break;
		if ((rc = upper_session_line(p, line, (size_t)len)) == -1)
			break;
	}
	if (tty && len == -1)
		putchar('\n');
	free(line);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "udp", no_argument, NULL, 'u' },
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct upper_peer peer = { .fd = -1 };
	const char *host = "127.0.0.1", *port = "12000";
	char *end;
	long v;
	int c, rc;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'u':
			peer.udp = 1;
			break;
		case 'H':
			host = optarg;
			break;
		case 'p':
			port = optarg;
			break;
		case 'h':
			upper_usage(stdout);
			return 0;
		default:
			upper_usage(stderr);
			return 2;
		}
	}
	v = strtol(port, &end, 10);
	if (*port == '\0' || *end != '\0' || v < 1 || v > 65535) {
		fprintf(stderr, "upper: bad port '%s'\n", port);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (upper_connect(&peer, host, port) == -1)
		return 1;
	if (optind < argc)
		rc = upper_oneshot(&peer, argc - optind, argv + optind);
	else
		rc = upper_session(&peer);
	close(peer.fd);
	return rc == -1 ? 1 : 0;
}
