/*
 * hist.c: upper-bench's latency histogram, log-linear: 128 sub-buckets per
 * power of two, so a reported value is within 1% of the sample.  One lives
 * in every struct ub_result; the parent adds the children's bucket by
 * bucket.
 */
#include <math.h>

#include "bench.h"

static unsigned
ub_hist_index(uint64_t v)
{
	unsigned e;

	if (v < UB_HIST_SUB)
		return (unsigned)v;
	e = 63 - (unsigned)__builtin_clzll(v);
	return (e - UB_HIST_BITS + 1) * UB_HIST_SUB +
	    (unsigned)((v >> (e - UB_HIST_BITS)) & (UB_HIST_SUB - 1));
}

/* The middle of bucket i: the value reported for anything in it. */
static double
ub_hist_value(unsigned i)
{
	unsigned e, sub;
	double low, width;

	if (i < UB_HIST_SUB)
		return i;
	e = i / UB_HIST_SUB + UB_HIST_BITS - 1;
	sub = i % UB_HIST_SUB;
	width = ldexp(1.0, (int)(e - UB_HIST_BITS));
	low = (UB_HIST_SUB + sub) * width;
	return low + width / 2;
}

/* One latency sample, in nanoseconds (negative clock steps count 0). */
void
ub_hist_record(struct ub_result *r, int64_t ns)
{
	uint64_t v = ns > 0 ? (uint64_t)ns : 0;

	r->hist[ub_hist_index(v)]++;
	r->nlat++;
	if (v > r->max_ns)
		r->max_ns = v;
}

/* Value in microseconds below which a fraction q of the samples lie. */
double
ub_hist_quantile(const struct ub_result *r, double q)
{
	uint64_t want, seen = 0;
	unsigned i;
	double v;

	if (r->nlat == 0)
		return 0;
	want = (uint64_t)ceil(q * (double)r->nlat);
	if (want == 0)
		want = 1;
	for (i = 0; i < UB_HIST_N; i++) {
		seen += r->hist[i];
		if (seen >= want)
			break;
	}
	v = ub_hist_value(i);
	if (v > (double)r->max_ns)
		v = (double)r->max_ns;
	return v / 1000.0;
}
