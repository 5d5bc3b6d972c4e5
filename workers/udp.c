/*
 * udp.c: datagrams of one worker.  Batches of up to UDP_BATCH datagrams
 * are taken with one recvmmsg(2), uppercased each into its own region of
 * one output area, and answered with one sendmmsg(2).  UDP has no flow
 * control to lean on, so nothing is ever queued: a reply the socket will
 * not take now, or one whose uppercase form outgrows the largest datagram,
 * is dropped and counted in udp_errors.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "wrk.h"

#define UDP_BATCH 16
#define UDP_MAX_PAYLOAD 65507 /* IPv4: 65535 - 8 (UDP) - 20 (IP) */
#define UDP_BUF 65536
#define UDP_BATCHES_PER_EVENT 4

struct wrk_udp {
	struct mmsghdr in[UDP_BATCH];
	struct mmsghdr out[UDP_BATCH];
	struct iovec iov_in[UDP_BATCH];
	struct iovec iov_out[UDP_BATCH];
	struct sockaddr_storage peer[UDP_BATCH];
	uint8_t *inbuf;  /* UDP_BATCH * UDP_BUF */
	uint8_t *outbuf; /* UDP_BATCH * UPC_OUT_MAX(UDP_BUF): pages are only
			     touched by the rare expanding payload */
};

int
udp_init(struct wrk *w)
{
	struct wrk_udp *u;

	if ((u = calloc(1, sizeof(*u))) == NULL)
		return -1;
	u->inbuf = malloc((size_t)UDP_BATCH * UDP_BUF);
	u->outbuf = malloc((size_t)UDP_BATCH * UPC_OUT_MAX(UDP_BUF));
	if (u->inbuf == NULL || u->outbuf == NULL) {
		free(u->inbuf);
		free(u->outbuf);
		free(u);
		return -1;
	}
	w->udp = u;
	return 0;
}

static void
udp_arm(struct wrk_udp *u)
{
	int i;

	for (i = 0; i < UDP_BATCH; i++) {
		u->iov_in[i].iov_base = u->inbuf + (size_t)i * UDP_BUF;
		u->iov_in[i].iov_len = UDP_BUF;
		memset(&u->in[i].msg_hdr, 0, sizeof(u->in[i].msg_hdr));
		u->in[i].msg_hdr.msg_iov = &u->iov_in[i];
		u->in[i].msg_hdr.msg_iovlen = 1;
		u->in[i].msg_hdr.msg_name = &u->peer[i];
		u->in[i].msg_hdr.msg_namelen = sizeof(u->peer[i]);
	}
}

/* Transform the n received datagrams into replies; returns how many
 * replies are ready to send (oversized ones are dropped). */
static int
udp_transform(struct wrk *w, struct wrk_udp *u, int n)
{
	enum upc_mode mode = w->cfg->case_mode;
	uint64_t bytes = 0;
	int i, k = 0;
	size_t len;
	uint8_t *out;

	for (i = 0; i < n; i++) {
		bytes += u->in[i].msg_len;
		out = u->outbuf + (size_t)k * UPC_OUT_MAX(UDP_BUF);
		len = upc_buf(mode, u->iov_in[i].iov_base, u->in[i].msg_len,
		    out);
		if (len > UDP_MAX_PAYLOAD) {
			ctr_add(w->cell, CTR_udp_errors, 1);
			continue;
		}
		u->iov_out[k] = (struct iovec){ out, len };
		memset(&u->out[k], 0, sizeof(u->out[k]));
		u->out[k].msg_hdr.msg_iov = &u->iov_out[k];
		u->out[k].msg_hdr.msg_iovlen = 1;
		u->out[k].msg_hdr.msg_name = &u->peer[i];
		u->out[k].msg_hdr.msg_namelen = u->in[i].msg_hdr.msg_namelen;
		k++;
	}
	ctr_add(w->cell, CTR_udp_datagrams_received, (uint64_t)n);
	ctr_add(w->cell, CTR_udp_bytes_received, bytes);
	wrk_served(w, (uint64_t)n);
	return k;
}

static void
udp_send(struct wrk *w, int fd, struct wrk_udp *u, int k)
{
	uint64_t bytes = 0, ok = 0;
	int i, next = 0, r;

	while (next < k) {
		r = sendmmsg(fd, u->out + next, (unsigned)(k - next), 0);
		if (r > 0) {
			for (i = next; i < next + r; i++)
				bytes += u->out[i].msg_len;
			ok += (uint64_t)r;
			next += r;
		} else if (r == -1 && errno == EINTR) {
			continue;
		} else {
			/* The first remaining reply failed: drop it. */
			ctr_add(w->cell, CTR_udp_errors, 1);
			next++;
		}
	}
	ctr_add(w->cell, CTR_udp_datagrams_sent, ok);
	ctr_add(w->cell, CTR_udp_bytes_sent, bytes);
}

/* Datagrams on UDP socket i, answered from the same socket (so from the
 * address the client sent to): up to UDP_BATCHES_PER_EVENT batches.
 * Returns 1 when the last batch was full (more may wait), else 0. */
int
udp_event(struct wrk *w, unsigned i)
{
	struct wrk_udp *u = w->udp;
	int b, n, k, fd;

	if (i >= w->nufd) /* closed by a drain earlier in this batch */
		return 0;
	fd = w->ufd[i];
	for (b = 0; b < UDP_BATCHES_PER_EVENT; b++) {
		udp_arm(u);
		n = recvmmsg(fd, u->in, UDP_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0) {
			if (n == -1 && errno != EAGAIN &&
			    errno != EWOULDBLOCK && errno != EINTR)
				ctr_add(w->cell, CTR_udp_errors, 1);
			return 0;
		}
		w->cell->activity_ns = w->now_ns;
		if (n > 1)
			w->tick_work++; /* datagrams queued up meanwhile */
		k = udp_transform(w, u, n);
		udp_send(w, fd, u, k);
		if (n < UDP_BATCH)
			return 0;
	}
	return 1;
}
