/*
 * upg_state.c: the encoding of the state a binary upgrade hands to the
 * new image (slots with their history and counter bases, the process
 * table, the fds), and its decoder.  The decoder is a pure function over a
 * byte buffer that checks every length, range and cross-reference, so no
 * input, however damaged, makes it read out of bounds or yield a state
 * the supervisor would misuse; the fuzz harness runs it alone.
 *
 * The encoding is native-endian (both images run on the same machine):
 * a header with the magic, the layout number and the counter, bucket and
 * reason counts, then the supervisor fields, the slots, the processes,
 * the fds and an end marker.  Strings are a u32 length and the bytes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "upgrade.h"

#define UPG_MAGIC 0x54535055U /* "UPST" */
#define UPG_END 0x21444e45U   /* "END!" */

struct upg_buf {
	unsigned char *p;
	size_t len, cap;
	int oom;
};

static void
upg_put(struct upg_buf *b, const void *v, size_t n)
{
	size_t cap = b->cap ? b->cap : 65536;
	unsigned char *p;

	if (b->oom)
		return;
	if (b->len + n > b->cap) {
		while (b->len + n > cap)
			cap *= 2;
		if ((p = realloc(b->p, cap)) == NULL) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, v, n);
	b->len += n;
}

static void
upg_put_u32(struct upg_buf *b, uint32_t v)
{
	upg_put(b, &v, sizeof(v));
}

static void
upg_put_u64(struct upg_buf *b, uint64_t v)
{
	upg_put(b, &v, sizeof(v));
}

static void
upg_put_f64(struct upg_buf *b, double v)
{
	upg_put(b, &v, sizeof(v));
}

static void
upg_put_str(struct upg_buf *b, const char *str)
{
	size_t n = strlen(str);

	upg_put_u32(b, (uint32_t)n);
	upg_put(b, str, n);
}

static void
upg_put_slot(struct upg_buf *b, const struct sup_slot *sl)
{
	int i;

	upg_put_u32(b, (uint32_t)sl->used);
	upg_put_u32(b, (uint32_t)sl->retired);
	upg_put_u32(b, (uint32_t)sl->failed);
	upg_put_u32(b, (uint32_t)sl->active);
	upg_put_u32(b, (uint32_t)sl->next);
	upg_put_u32(b, (uint32_t)sl->next_reason);
	upg_put_u32(b, (uint32_t)sl->next_pending);
	upg_put_u32(b, sl->backoff_s);
	upg_put_u64(b, sl->respawn_at_ns);
	for (i = 0; i < SNAP_NREASONS; i++)
		upg_put_u64(b, sl->restarts[i]);
	upg_put_str(b, sl->last_exit);
	for (i = 0; i < CTR_COUNT; i++)
		upg_put_u64(b, sl->base_v[i]);
	for (i = 0; i < CTR_HIST_NBUCKETS; i++)
		upg_put_u64(b, sl->base_hist.bucket[i]);
	upg_put_u64(b, sl->base_hist.count);
	upg_put_u64(b, sl->base_hist.sum_ns);
	upg_put_f64(b, sl->base_cpu);
}

static void
upg_put_fds(struct upg_buf *b, const struct upg_fd *l, unsigned n)
{
	unsigned i;

	upg_put_u32(b, n);
	for (i = 0; i < n; i++) {
		upg_put_u32(b, l[i].kind);
		upg_put_u32(b, (uint32_t)l[i].fd);
	}
}

void *
upg_encode(const struct sup *s, const struct upg_fd *fds, unsigned nfds,
    size_t *len)
{
	struct upg_buf b = { 0 };
	unsigned i, hwm = s->tab->ncells_hwm, nproc = 0;

	upg_put_u32(&b, UPG_MAGIC);
	upg_put_u32(&b, upg_state_layout);
	upg_put_u32(&b, CTR_COUNT);
	upg_put_u32(&b, CTR_HIST_NBUCKETS);
	upg_put_u32(&b, SNAP_NREASONS);
	upg_put_f64(&b, s->start_time);
	upg_put_u32(&b, s->configured);
	upg_put_u32(&b, s->nslots);
	upg_put_u64(&b, s->upg.ok);
	upg_put_u64(&b, s->upg.failed);
	upg_put_u32(&b, s->upg.queued);
	upg_put_str(&b, s->upg.exe);
	upg_put_str(&b, UPPERD_VERSION);
	upg_put_str(&b, s->cfg.pid_file);
	for (i = 0; i < s->nslots; i++)
		upg_put_slot(&b, &s->slot[i]);
	for (i = 0; i < hwm; i++)
		nproc += s->proc[i].pid != 0;
	upg_put_u32(&b, nproc);
	for (i = 0; i < hwm; i++) {
		const struct sup_proc *p = &s->proc[i];

		if (p->pid == 0)
			continue;
		upg_put_u32(&b, i);
		upg_put_u32(&b, (uint32_t)p->pid);
		upg_put_u32(&b, p->slot);
		upg_put_u64(&b, p->started_ns);
		upg_put_f64(&b, p->started_at);
		upg_put_u32(&b, (uint32_t)p->stop);
		upg_put_u64(&b, p->kill_at_ns);
	}
	upg_put_fds(&b, fds, nfds);
	upg_put_u32(&b, UPG_END);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

/* The reader: any read past the end sets bad and yields zeroes, so the
 * decoder checks once per record instead of after every field. */
struct upg_rd {
	const unsigned char *p;
	size_t len, off;
	int bad;
};

static void
upg_get(struct upg_rd *r, void *v, size_t n)
{
	if (r->bad || r->len - r->off < n) {
		r->bad = 1;
		memset(v, 0, n);
		return;
	}
	memcpy(v, r->p + r->off, n);
	r->off += n;
}

static uint32_t
upg_get_u32(struct upg_rd *r)
{
	uint32_t v;

	upg_get(r, &v, sizeof(v));
	return v;
}

static uint64_t
upg_get_u64(struct upg_rd *r)
{
	uint64_t v;

	upg_get(r, &v, sizeof(v));
	return v;
}

/* A finite, non-negative double, else NAN (rejected by the caller). */
static double
upg_get_f64(struct upg_rd *r)
{
	double v;

	upg_get(r, &v, sizeof(v));
	return isfinite(v) && v >= 0 ? v : NAN;
}

/* A string of fewer than cap bytes without a NUL; -1 otherwise. */
static int
upg_get_str(struct upg_rd *r, char *dst, size_t cap)
{
	uint32_t n = upg_get_u32(r);

	dst[0] = '\0';
	if (r->bad || n >= cap || r->len - r->off < n) {
		r->bad = 1;
		return -1;
	}
	memcpy(dst, r->p + r->off, n);
	dst[n] = '\0';
	r->off += n;
	return memchr(dst, '\0', n) == NULL ? 0 : -1;
}

/* -1 or a cell index; anything else is out of range. */
static int
upg_cell_ok(int32_t c)
{
	return c >= -1 && c < CTR_MAX_CELLS;
}

static int
upg_get_slot(struct upg_rd *r, struct sup_slot *sl)
{
	uint32_t used, retired, failed, reason, pending;
	int bad = 0, i;

	used = upg_get_u32(r);
	retired = upg_get_u32(r);
	failed = upg_get_u32(r);
	sl->active = (int32_t)upg_get_u32(r);
	sl->next = (int32_t)upg_get_u32(r);
	reason = upg_get_u32(r);
	pending = upg_get_u32(r);
	sl->backoff_s = upg_get_u32(r);
	sl->respawn_at_ns = upg_get_u64(r);
	for (i = 0; i < SNAP_NREASONS; i++)
		sl->restarts[i] = upg_get_u64(r);
	bad |= upg_get_str(r, sl->last_exit, sizeof(sl->last_exit));
	for (i = 0; i < CTR_COUNT; i++)
		sl->base_v[i] = upg_get_u64(r);
	for (i = 0; i < CTR_HIST_NBUCKETS; i++)
		sl->base_hist.bucket[i] = upg_get_u64(r);
	sl->base_hist.count = upg_get_u64(r);
	sl->base_hist.sum_ns = upg_get_u64(r);
	sl->base_cpu = upg_get_f64(r);
	if (r->bad)
		return UPG_E_SHORT;
	if (bad || used > 1 || retired > 1 || failed > 1 || pending > 1 ||
	    reason >= SNAP_NREASONS || !upg_cell_ok(sl->active) ||
	    !upg_cell_ok(sl->next) || isnan(sl->base_cpu))
		return UPG_E_RANGE;
	sl->used = (int)used;
	sl->retired = (int)retired;
	sl->failed = (int)failed;
	sl->next_pending = (int)pending;
	sl->next_reason = (enum snap_reason)reason;
	return UPG_OK;
}

static int
upg_get_proc(struct upg_rd *r, struct upg_state *out, unsigned nslots)
{
	uint32_t cell = upg_get_u32(r), slot, stop;
	int32_t pid = (int32_t)upg_get_u32(r);
	struct sup_proc *p;
	uint64_t started_ns, kill_at_ns;
	double started_at;

	slot = upg_get_u32(r);
	started_ns = upg_get_u64(r);
	started_at = upg_get_f64(r);
	stop = upg_get_u32(r);
	kill_at_ns = upg_get_u64(r);
	if (r->bad)
		return UPG_E_SHORT;
	if (cell >= CTR_MAX_CELLS || pid <= 0 || slot >= nslots ||
	    stop > SUP_STOP_SUPERSEDED || isnan(started_at) ||
	    out->proc[cell].pid != 0)
		return UPG_E_RANGE;
	p = &out->proc[cell];
	p->pid = pid;
	p->slot = slot;
	p->started_ns = started_ns;
	p->started_at = started_at;
	p->stop = (enum sup_stop)stop;
	p->kill_at_ns = kill_at_ns;
	return UPG_OK;
}

/* How many fds of each kind may come: one table, at most one pid file
 * and one stats listener, CFG_MAX_ADDRS TCP and UDP sockets. */
static unsigned
upg_fd_max(uint32_t kind)
{
	return kind == UPG_FD_TCP || kind == UPG_FD_UDP ? CFG_MAX_ADDRS : 1;
}

/* Every fd a plain non-negative number, each once, of a known kind, no
 * more of a kind than the supervisor holds, and the table among them. */
static int
upg_get_fds(struct upg_rd *r, struct upg_state *out)
{
	unsigned i, j, count[UPG_FD_LAST + 1] = { 0 };
	uint32_t n = upg_get_u32(r), kind;

	if (r->bad)
		return UPG_E_SHORT;
	if (n > UPG_MAX_FDS)
		return UPG_E_RANGE;
	for (i = 0; i < n; i++) {
		kind = out->fd[i].kind = upg_get_u32(r);
		out->fd[i].fd = (int32_t)upg_get_u32(r);
		if (r->bad)
			return UPG_E_SHORT;
		if (kind < UPG_FD_TABLE || kind > UPG_FD_LAST ||
		    out->fd[i].fd < 0 || ++count[kind] > upg_fd_max(kind))
			return UPG_E_RANGE;
		for (j = 0; j < i; j++)
			if (out->fd[j].fd == out->fd[i].fd)
				return UPG_E_RANGE;
	}
	out->nfds = n;
	return count[UPG_FD_TABLE] == 1 ? UPG_OK : UPG_E_RANGE;
}

/* A slot's active and next name live processes of that slot, distinct. */
static int
upg_check_links(const struct upg_state *out)
{
	unsigned i;

	for (i = 0; i < out->nslots; i++) {
		const struct sup_slot *sl = &out->slot[i];

		if (sl->active >= 0 &&
		    (out->proc[sl->active].pid == 0 ||
		        out->proc[sl->active].slot != i))
			return UPG_E_RANGE;
		if (sl->next >= 0 &&
		    (out->proc[sl->next].pid == 0 ||
		        out->proc[sl->next].slot != i ||
		        sl->next == sl->active))
			return UPG_E_RANGE;
	}
	return UPG_OK;
}

static int
upg_get_head(struct upg_rd *r, struct upg_state *out)
{
	uint32_t nctr, nbuckets, nreasons;
	int bad = 0;

	if (upg_get_u32(r) != UPG_MAGIC)
		return r->bad ? UPG_E_SHORT : UPG_E_MAGIC;
	out->layout = upg_get_u32(r);
	if (r->bad)
		return UPG_E_SHORT;
	if (out->layout != upg_state_layout)
		return UPG_E_LAYOUT;
	nctr = upg_get_u32(r);
	nbuckets = upg_get_u32(r);
	nreasons = upg_get_u32(r);
	out->start_time = upg_get_f64(r);
	out->configured = upg_get_u32(r);
	out->nslots = upg_get_u32(r);
	out->ok = upg_get_u64(r);
	out->failed = upg_get_u64(r);
	out->queued = upg_get_u32(r);
	bad |= upg_get_str(r, out->exe, sizeof(out->exe));
	bad |= upg_get_str(r, out->version, sizeof(out->version));
	bad |= upg_get_str(r, out->pid_file, sizeof(out->pid_file));
	if (r->bad)
		return UPG_E_SHORT;
	if (nctr != CTR_COUNT || nbuckets != CTR_HIST_NBUCKETS ||
	    nreasons != SNAP_NREASONS)
		return UPG_E_SHAPE;
	if (bad || isnan(out->start_time) || out->configured < 1 ||
	    out->configured > out->nslots || out->nslots > CFG_MAX_WORKERS ||
	    out->queued > (UPG_Q_HUP | UPG_Q_TERM | UPG_Q_USR2) ||
	    out->exe[0] != '/')
		return UPG_E_RANGE;
	return UPG_OK;
}

int
upg_decode(const void *buf, size_t len, struct upg_state *out)
{
	struct upg_rd r = { buf, len, 0, 0 };
	uint32_t nproc, i;
	int rc;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < CFG_MAX_WORKERS; i++)
		out->slot[i].active = out->slot[i].next = -1;
	if (buf == NULL)
		return UPG_E_SHORT;
	if ((rc = upg_get_head(&r, out)) != UPG_OK)
		return rc;
	for (i = 0; i < out->nslots; i++)
		if ((rc = upg_get_slot(&r, &out->slot[i])) != UPG_OK)
			return rc;
	nproc = upg_get_u32(&r);
	if (r.bad)
		return UPG_E_SHORT;
	if (nproc > CTR_MAX_CELLS)
		return UPG_E_RANGE;
	for (i = 0; i < nproc; i++)
		if ((rc = upg_get_proc(&r, out, out->nslots)) != UPG_OK)
			return rc;
	if ((rc = upg_get_fds(&r, out)) != UPG_OK)
		return rc;
	if (upg_get_u32(&r) != UPG_END)
		return r.bad ? UPG_E_SHORT : UPG_E_RANGE;
	if (r.off != len)
		return UPG_E_TRAIL;
	return upg_check_links(out);
}

const char *
upg_strerror(int err)
{
	switch (err) {
	case UPG_OK:
		return "ok";
	case UPG_E_SHORT:
		return "state truncated";
	case UPG_E_MAGIC:
		return "not upperd state";
	case UPG_E_LAYOUT:
		return "state layout differs";
	case UPG_E_SHAPE:
		return "counter layout differs";
	case UPG_E_RANGE:
		return "state inconsistent";
	case UPG_E_TRAIL:
		return "trailing bytes after the state";
	}
	return "unknown error";
}
