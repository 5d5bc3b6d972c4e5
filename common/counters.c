/*
 * counters.c: the counter table's storage and its few operations.  The
 * metadata array is generated from CTR_COUNTERS so a counter's name is
 * spelled once, in counters.h.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "counters.h"

const struct ctr_meta ctr_meta[CTR_COUNT] = {
#define CTR_META(name, kind, help) { #name, kind, help },
	CTR_COUNTERS(CTR_META)
#undef CTR_META
};

static const double ctr_bounds[CTR_HIST_NBOUNDS] = CTR_HIST_BOUNDS;

_Static_assert(offsetof(struct ctr_table, cell) == 128,
    "the table header is one 128-byte line");

/* A memfd is zero-filled like anonymous memory and survives fork in both
 * directions; unlike it, it also survives execve (upgrade.c). */
struct ctr_table *
ctr_table_create(int *fd)
{
	struct ctr_table *t;
	void *p;
	int saved;

	if ((*fd = memfd_create("upperd-counters", MFD_CLOEXEC)) == -1)
		return NULL;
	if (ftruncate(*fd, (off_t)sizeof(struct ctr_table)) == -1 ||
	    (p = mmap(NULL, sizeof(struct ctr_table), PROT_READ | PROT_WRITE,
	         MAP_SHARED, *fd, 0)) == MAP_FAILED) {
		saved = errno;
		close(*fd);
		*fd = -1;
		errno = saved;
		return NULL;
	}
	t = p;
	t->magic = CTR_MAGIC;
	t->layout = CTR_LAYOUT;
	t->cell_size = sizeof(struct ctr_cell);
	t->table_size = sizeof(struct ctr_table);
	return t;
}

struct ctr_table *
ctr_table_attach(int fd)
{
	const struct ctr_table *t;
	struct stat st;
	void *p;

	if (fstat(fd, &st) == -1)
		return NULL;
	if ((uint64_t)st.st_size != sizeof(struct ctr_table)) {
		errno = EPROTO;
		return NULL;
	}
	p = mmap(NULL, sizeof(struct ctr_table), PROT_READ | PROT_WRITE,
	    MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return NULL;
	t = p;
	if (t->magic != CTR_MAGIC || t->layout != CTR_LAYOUT ||
	    t->cell_size != sizeof(struct ctr_cell) ||
	    t->table_size != sizeof(struct ctr_table) ||
	    t->ncells_hwm > CTR_MAX_CELLS) {
		munmap(p, sizeof(struct ctr_table));
		errno = EPROTO;
		return NULL;
	}
	return p;
}

/* Workers call this once per closed connection, so a linear scan of eleven
 * bounds is cheaper than anything cleverer. */
void
ctr_observe(struct ctr_cell *c, uint64_t ns)
{
	double s = (double)ns / 1e9;
	int i;

	for (i = 0; i < CTR_HIST_NBOUNDS; i++)
		if (s <= ctr_bounds[i])
			break;
	ctr_set(&c->hist.bucket[i], ctr_get(&c->hist.bucket[i]) + 1);
	ctr_set(&c->hist.sum_ns, ctr_get(&c->hist.sum_ns) + ns);
	ctr_set(&c->hist.count, ctr_get(&c->hist.count) + 1);
}

/* The supervisor folds a reaped worker's cell into its slot's base. */
void
ctr_fold(uint64_t *dst_v, struct ctr_hist *dst_h, const struct ctr_cell *src)
{
	int i;

	for (i = 0; i < CTR_COUNT; i++)
		if (ctr_meta[i].kind == CTR_KIND_COUNTER)
			dst_v[i] += ctr_get(&src->v[i]);
	for (i = 0; i < CTR_HIST_NBUCKETS; i++)
		dst_h->bucket[i] += ctr_get(&src->hist.bucket[i]);
	dst_h->count += ctr_get(&src->hist.count);
	dst_h->sum_ns += ctr_get(&src->hist.sum_ns);
}
