/*
 * activation.h: systemd socket activation (LISTEN_FDS).  act_classify is
 * pure: it decides what each inherited socket serves from what the
 * environment and the socket say about it, so a test or a fuzzer drives
 * it with made-up tuples.  act_adopt reads the environment and the fds
 * and fills struct sup's socket lists (activation.c).
 */
#ifndef UPPERD_ACTIVATION_H
#define UPPERD_ACTIVATION_H

#include "config.h"

/* What one inherited socket serves. */
enum act_kind { ACT_TCP, ACT_UDP, ACT_STATS, ACT_BAD };

/* One inherited socket as found: its LISTEN_FDNAMES name ("" or NULL when
 * unnamed), SO_TYPE, SO_DOMAIN and SO_ACCEPTCONN. */
struct act_sock {
	const char *name;
	int type;
	int family;
	int listening;
};

/*
 * Decide kind[i] for each of the n sockets, in order: a socket named tcp,
 * udp or stats is that service; any other stream socket is TCP and
 * datagram socket UDP.  ACT_BAD, with why[i] a reason for the log, for a
 * socket that is not IPv4 or IPv6, of the wrong type for its name, a
 * stream socket not listening, a second stats socket, or past
 * CFG_MAX_ADDRS of a kind.  Never fails.
 */
void act_classify(const struct act_sock *in, unsigned n, enum act_kind *kind,
    const char **why);

struct sup;
/* Take over the sockets systemd passed (LISTEN_PID naming us), before
 * the process opens any fd of its own; one warn line per socket it cannot
 * use, and one for a malformed LISTEN_FDS, wait for act_report.  The
 * environment is cleared so no child sees it.  Returns how many were
 * adopted. */
unsigned act_adopt(struct sup *s);
/* Log what act_adopt found wrong (once the log file is open). */
void act_report(void);

#endif
