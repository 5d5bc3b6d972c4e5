/*
 * act_classify.c: which service each socket that systemd passed serves
 * (activation.h).  Pure, with no libsystemd and no logging, so the
 * decision is tested (and fuzzed) apart from the environment and the fds.
 */
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#include "activation.h"

/* The kind a socket's name asks for; -1 when the name says nothing. */
static int
act_named(const char *name)
{
	if (name == NULL)
		return -1;
	if (strcmp(name, "tcp") == 0)
		return ACT_TCP;
	if (strcmp(name, "udp") == 0)
		return ACT_UDP;
	if (strcmp(name, "stats") == 0)
		return ACT_STATS;
	return -1;
}

/* The kind of one socket before the per-kind limits; ACT_BAD + why. */
static enum act_kind
act_one(const struct act_sock *s, const char **why)
{
	int want = act_named(s->name);

	if (s->family != AF_INET && s->family != AF_INET6) {
		*why = "not an IPv4 or IPv6 socket";
		return ACT_BAD;
	}
	if (s->type == SOCK_DGRAM) {
		if (want == -1 || want == ACT_UDP)
			return ACT_UDP;
		*why = want == ACT_TCP ? "named tcp but a datagram socket" :
		                         "named stats but a datagram socket";
		return ACT_BAD;
	}
	if (s->type != SOCK_STREAM) {
		*why = "neither a stream nor a datagram socket";
		return ACT_BAD;
	}
	if (want == ACT_UDP) {
		*why = "named udp but a stream socket";
		return ACT_BAD;
	}
	if (!s->listening) {
		*why = "a stream socket that is not listening";
		return ACT_BAD;
	}
	return want == ACT_STATS ? ACT_STATS : ACT_TCP;
}

void
act_classify(const struct act_sock *in, unsigned n, enum act_kind *kind,
    const char **why)
{
	unsigned i, count[ACT_BAD] = { 0 };
	enum act_kind k;

	for (i = 0; i < n; i++) {
		why[i] = NULL;
		k = act_one(&in[i], &why[i]);
		if (k == ACT_STATS && count[k] == 1) {
			why[i] = "a second stats socket";
			k = ACT_BAD;
		} else if (k != ACT_BAD && count[k] == CFG_MAX_ADDRS) {
			why[i] = "more sockets of its kind than upperd serves";
			k = ACT_BAD;
		}
		if (k != ACT_BAD)
			count[k]++;
		kind[i] = k;
	}
}
