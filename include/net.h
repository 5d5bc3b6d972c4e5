/*
 * net.h: socket helpers shared by the supervisor (which binds) and the
 * tools.  They never log: they return -1 with errno and the caller decides.
 */
#ifndef UPPERD_NET_H
#define UPPERD_NET_H

#include <stddef.h>
#include <sys/socket.h>

/* Split "[V6]:PORT" or "V4:PORT" into host (copied, without brackets),
 * its family and where PORT starts; -1 (errno EINVAL) if there is no
 * port part or host does not fit.  Nothing is checked beyond the shape. */
int net_split_addr(const char *s, char *host, size_t hostlen, int *af,
    const char **port);

/* Parse "ADDR:PORT" or "[V6]:PORT" into ss; -1 (errno EINVAL) if bad. */
int net_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* Bound, listening, non-blocking TCP socket; -1 with errno. */
int
net_listen_tcp(const struct sockaddr_storage *ss, socklen_t len, int backlog);

/* Bound, non-blocking UDP socket; -1 with errno. */
int net_bind_udp(const struct sockaddr_storage *ss, socklen_t len);

/* Format the local address of fd as "ADDR:PORT" (for the ready line). */
void net_local_name(int fd, char *buf, size_t len);

#endif
