/*
 * counters.c: the counter table's storage and its few operations.  The
 * metadata array is generated from CTR_COUNTERS so a counter's name is
 * spelled once, in counters.h.
 */
#include <string.h>
#include <sys/mman.h>

#include "counters.h"

const struct ctr_meta ctr_meta[CTR_COUNT] = {
#define CTR_META(name, kind, help) { #name, kind, help },
	CTR_COUNTERS(CTR_META)
#undef CTR_META
};

static const double ctr_bounds[CTR_HIST_NBOUNDS] = CTR_HIST_BOUNDS;

/* Anonymous shared memory is zero-filled and survives fork in both
 * directions, which is all a counter table needs. */
struct ctr_table *
ctr_table_create(void)
{
	void *p = mmap(NULL, sizeof(struct ctr_table), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
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
