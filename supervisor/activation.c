/*
 * activation.c: systemd socket activation.  When LISTEN_PID names this
 * process, the LISTEN_FDS sockets from fd 3 on are served instead of
 * binding: act_classify (act_classify.c) decides which service each one
 * is, this file reads the environment and the sockets through libsystemd
 * and makes the chosen ones ready to serve, first thing at start.  A kind with no inherited
 * socket is bound from the configuration as usual (main.c).  A socket it
 * cannot use is one warn line and is closed; upperd serves on.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "activation.h"
#include "log.h"
#include "sup.h"

/* More than this many inherited fds: the rest are closed, unused. */
#define ACT_MAX 64
#define ACT_NOTE_MAX 192

/* act_adopt runs before the log file is open (it must see the fds before
 * this process opens any): what it has to say waits here for act_report,
 * which the log file then receives. */
static char act_notes[ACT_MAX + 2][ACT_NOTE_MAX];
static unsigned act_nnotes;

static void __attribute__((format(printf, 1, 2))) act_note(const char *fmt, ...)
{
	va_list ap;

	if (act_nnotes == sizeof(act_notes) / sizeof(act_notes[0]))
		return;
	va_start(ap, fmt);
	vsnprintf(act_notes[act_nnotes++], ACT_NOTE_MAX, fmt, ap);
	va_end(ap);
}

void
act_report(void)
{
	unsigned i;

	for (i = 0; i < act_nnotes; i++)
		log_warnx("%s", act_notes[i]);
	act_nnotes = 0;
}

static int
act_sockopt(int fd, int opt)
{
	socklen_t len = sizeof(int);
	int v = -1;

	if (getsockopt(fd, SOL_SOCKET, opt, &v, &len) == -1)
		return -1;
	return v;
}

/* What the socket says about itself; a non-socket has type -1. */
static void
act_describe(int fd, const char *name, struct act_sock *a)
{
	a->name = name;
	a->type = act_sockopt(fd, SO_TYPE);
	a->listening = act_sockopt(fd, SO_ACCEPTCONN) == 1;
	/* libsystemd's own test of an IPv4/IPv6 socket; its family then */
	a->family = sd_is_socket_inet(fd, AF_UNSPEC, 0, -1, 0) > 0 ?
	    act_sockopt(fd, SO_DOMAIN) :
	    AF_UNSPEC;
}

/* systemd passes sockets blocking and inheritable: the workers need them
 * non-blocking, nothing exec'd needs them, and a TCP listener loses Nagle
 * as a bound one does (accepted sockets inherit it). */
static int
act_prepare(int fd, enum act_kind k)
{
	int fl = fcntl(fd, F_GETFL), on = 1;

	if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) == -1)
		return -1;
	if (k == ACT_TCP)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	return 0;
}

static void
act_take(struct sup *s, int fd, enum act_kind k)
{
	if (k == ACT_TCP)
		s->tcp_fd[s->ntcp++] = fd;
	else if (k == ACT_UDP)
		s->udp_fd[s->nudp++] = fd;
	else
		s->stats_fd = fd;
}

static void
act_free_names(char **names)
{
	char **p;

	if (names == NULL)
		return;
	for (p = names; *p != NULL; p++)
		free(*p);
	free(names);
}

/* One warn line for a socket left unused, which is then closed. */
static void
act_reject(int fd, const char *name, const char *why)
{
	act_note("socket activation: fd %d%s%s%s: %s, not used", fd,
	    name ? " (" : "", name ? name : "", name ? ")" : "", why);
	close(fd);
}

unsigned
act_adopt(struct sup *s)
{
	struct act_sock in[ACT_MAX];
	enum act_kind kind[ACT_MAX];
	const char *why[ACT_MAX];
	char **names = NULL;
	int n, i, fd;
	unsigned used = 0;

	if ((n = sd_listen_fds_with_names(1, &names)) < 0) {
		act_note("socket activation: LISTEN_FDS or LISTEN_FDNAMES "
		         "malformed (%s), binding as configured",
		    strerror(-n));
		return 0;
	}
	for (i = ACT_MAX; i < n; i++)
		act_reject(SD_LISTEN_FDS_START + i, NULL,
		    "more inherited fds than upperd takes");
	n = n > ACT_MAX ? ACT_MAX : n;
	for (i = 0; i < n; i++)
		act_describe(SD_LISTEN_FDS_START + i,
		    names && strcmp(names[i], "unknown") ? names[i] : NULL,
		    &in[i]);
	act_classify(in, (unsigned)n, kind, why);
	for (i = 0; i < n; i++) {
		fd = SD_LISTEN_FDS_START + i;
		if (kind[i] != ACT_BAD && act_prepare(fd, kind[i]) == -1) {
			why[i] = strerror(errno);
			kind[i] = ACT_BAD;
		}
		if (kind[i] == ACT_BAD) {
			act_reject(fd, in[i].name, why[i]);
			continue;
		}
		act_take(s, fd, kind[i]);
		used++;
	}
	act_free_names(names);
	return used;
}
