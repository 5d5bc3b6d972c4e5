/*
 * fuzz_act.c: libFuzzer harness for socket activation's decision
 * (act_classify in supervisor/act_classify.c): which service each socket
 * systemd passed serves, given its LISTEN_FDNAMES name and what the
 * socket says about itself.  Reading LISTEN_FDS and LISTEN_FDNAMES is
 * libsystemd's (sd_listen_fds_with_names); this is upperd's own part.
 *
 * Every 4 input bytes make one socket: a name (none, "", tcp, udp, stats,
 * a systemd default name, a near miss, or the text of the next bytes),
 * a type, a family and whether it listens.  The result is checked against
 * the rules of SPEC "Socket activation", written out again here: named
 * tcp/udp/stats is that service, otherwise stream is TCP and datagram
 * UDP; not IPv4/IPv6, the wrong type for its name, a stream socket not
 * listening, a second stats socket, or more than CFG_MAX_ADDRS of a kind
 * is refused, with a reason.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "activation.h"

#define FZ_MAX 600 /* more than the kinds' limits together */

static const char *const fz_names[] = { NULL, "", "tcp", "udp", "stats",
	"unknown", "TCP", "stats2", "upperd.socket" };
static const int fz_types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET,
	SOCK_RAW };
static const int fz_families[] = { AF_INET, AF_INET6, AF_UNIX, AF_PACKET };

/* The SPEC's rule for one socket, before the per-kind limits. */
static enum act_kind
fz_want(const struct act_sock *s)
{
	const char *n = s->name ? s->name : "";
	int tcp = strcmp(n, "tcp") == 0, udp = strcmp(n, "udp") == 0,
	    stats = strcmp(n, "stats") == 0;

	if (s->family != AF_INET && s->family != AF_INET6)
		return ACT_BAD;
	if (s->type == SOCK_DGRAM)
		return tcp || stats ? ACT_BAD : ACT_UDP;
	if (s->type != SOCK_STREAM || udp || !s->listening)
		return ACT_BAD;
	return stats ? ACT_STATS : ACT_TCP;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct act_sock in[FZ_MAX];
	static enum act_kind kind[FZ_MAX];
	static const char *why[FZ_MAX];
	static char text[FZ_MAX][8];
	unsigned n = 0, i, count[ACT_BAD] = { 0 };
	size_t p;
	enum act_kind want;

	for (p = 0; p + 4 <= size && n < FZ_MAX; p += 4, n++) {
		unsigned sel = data[p] % 10;

		if (sel < 9)
			in[n].name = fz_names[sel];
		else {
			/* a name spelled by the input: 3 bytes */
			memcpy(text[n], data + p + 1, 3);
			text[n][3] = '\0';
			in[n].name = text[n];
		}
		in[n].type = fz_types[data[p + 1] % 4];
		in[n].family = fz_families[data[p + 2] % 4];
		in[n].listening = data[p + 3] & 1;
		kind[n] = (enum act_kind) - 1;
		why[n] = "unset";
	}
	act_classify(in, n, kind, why);
	for (i = 0; i < n; i++) {
		want = fz_want(&in[i]);
		if (want == ACT_STATS && count[ACT_STATS] == 1)
			want = ACT_BAD;
		else if (want != ACT_BAD && count[want] == CFG_MAX_ADDRS)
			want = ACT_BAD;
		if (want != ACT_BAD)
			count[want]++;
		if (kind[i] != want) {
			fprintf(stderr, "socket %u: kind %d, SPEC says %d\n", i,
			    (int)kind[i], (int)want);
			abort();
		}
		if ((kind[i] == ACT_BAD) != (why[i] != NULL)) {
			fprintf(stderr, "socket %u: kind %d with reason %s\n",
			    i, (int)kind[i], why[i] ? why[i] : "(none)");
			abort();
		}
	}
	return 0;
}
