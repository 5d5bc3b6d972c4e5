/*
 * net.c: address parsing and socket creation.  Used by the supervisor
 * before it forks (the workers inherit what it binds) and by the tools.
 * Nothing here logs; errors return -1 with errno for the caller to report.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"
#include "numparse.h"

static int
net_parse_port(const char *s, in_port_t *port)
{
	unsigned long v;

	if (num_parse_ulong(s, 0, 65535, &v) == -1)
		return -1;
	*port = htons((in_port_t)v);
	return 0;
}

int
net_split_addr(const char *s, char *host, size_t hostlen, int *af,
    const char **port)
{
	const char *end;

	if (s[0] == '[') {
		end = strstr(s, "]:");
		*af = AF_INET6;
		s++;
	} else {
		end = strrchr(s, ':');
		*af = AF_INET;
	}
	if (end == NULL || (size_t)(end - s) >= hostlen) {
		errno = EINVAL;
		return -1;
	}
	memcpy(host, s, (size_t)(end - s));
	host[end - s] = '\0';
	*port = end + (*af == AF_INET6 ? 2 : 1);
	return 0;
}

/* "1.2.3.4:80", "[::1]:80", "*:80" (any IPv4). */
int
net_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	char host[128];
	const char *port;
	int af;

	memset(ss, 0, sizeof(*ss));
	if (net_split_addr(s, host, sizeof(host), &af, &port) == -1)
		return -1;
	if (af == AF_INET6) {
		in6->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1 ||
		    net_parse_port(port, &in6->sin6_port) == -1)
			goto bad;
		*len = sizeof(*in6);
		return 0;
	}
	in4->sin_family = AF_INET;
	if (strcmp(host, "*") == 0)
		in4->sin_addr.s_addr = htonl(INADDR_ANY);
	else if (inet_pton(AF_INET, host, &in4->sin_addr) != 1)
		goto bad;
	if (net_parse_port(port, &in4->sin_port) == -1)
		goto bad;
	*len = sizeof(*in4);
	return 0;
bad:
	errno = EINVAL;
	return -1;
}

static int
net_socket(const struct sockaddr_storage *ss, int type)
{
	int fd, on = 1;

	fd = socket(ss->ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1)
		goto fail;
	/* "[::]:P" means IPv6 only; an operator wanting both lists both. */
	if (ss->ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) == -1)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

int
net_listen_tcp(const struct sockaddr_storage *ss, socklen_t len, int backlog)
{
	int fd, saved, on = 1;

	if ((fd = net_socket(ss, SOCK_STREAM)) == -1)
		return -1;
	/* Replies are written whole, once per read: Nagle could only hold
	 * them back.  Accepted sockets inherit the option from the listener,
	 * which saves a setsockopt per connection. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) == -1 ||
	    bind(fd, (const struct sockaddr *)ss, len) == -1 ||
	    listen(fd, backlog) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int
net_bind_udp(const struct sockaddr_storage *ss, socklen_t len)
{
	int fd, saved;

	if ((fd = net_socket(ss, SOCK_DGRAM)) == -1)
		return -1;
	if (bind(fd, (const struct sockaddr *)ss, len) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

void
net_local_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN];

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == -1) {
		snprintf(buf, len, "?");
		return;
	}
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(in4->sin_port));
	}
}
