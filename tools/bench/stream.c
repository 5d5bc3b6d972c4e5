/*
 * stream.c: the request streams upper-bench sends and the reply streams it
 * expects, and the check of every reply byte against them.
 *
 * Nothing is allocated per request: a payload is a slice of a periodic
 * stream built once per process, and a reply is compared with the slice
 * of the expected stream at the same position.  A wrong byte counts one
 * error per unit (a request, or 64 KiB of bulk).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unicase.h>

#include "bench.h"

/* The expected reply when the server only maps a-z (and upper-ref). */
static void
ub_stream_ascii_upper(uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] >= 'a' && p[i] <= 'z')
			p[i] = (uint8_t)(p[i] - 'a' + 'A');
}

/* rr and churn: request i of a connection is `size` bytes of the stream
 * "abc...z" (by stream position) with '\n' closing each request, so the
 * stream repeats every lcm(size, 26) bytes; the buffer runs on past one
 * period so that a send of up to UB_CHUNK bytes is one contiguous slice.
 * UDP takes its payloads from the same letters. */
void
ub_stream_rr(struct ub_ctx *x)
{
	const struct ub_opts *o = x->o;
	size_t size = (size_t)o->size, period = size, i, len;

	while (period % 26 != 0)
		period += size;
	len = period + UB_CHUNK;
	if (len < period + size) /* a churn request or a datagram is whole */
		len = period + size;
	x->in_len = len;
	x->in = ub_calloc(len, 1);
	x->exp = ub_calloc(len, 1);
	for (i = 0; i < len; i++)
		x->in[i] = (uint8_t)(i % size == size - 1 ? '\n' :
		                                            'a' + i % 26);
	memcpy(x->exp, x->in, len);
	ub_stream_ascii_upper(x->exp, len);
	x->in_period = x->exp_period = period;
	x->err_unit = size;
}

/* Sentences for the mixed-script text, lowercase, chosen to exercise
 * what full case mapping does: growth (ß, ﬁ, ΐ), titlecase digraphs (ǆ),
 * 2-, 3- and 4-byte sequences and caseless scripts. */
static const char *const ub_stream_mixed_text[] = {
	"le cœur déçu mais l'âme plutôt naïve, louÿs rêva de crapaüter en "
	"canoë au delà des îles. ",
	"die straße ist übermäßig groß, ärgerlich für öde füße. ",
	"ξεσκεπάζω την ψυχοφθόρα βδελυγμία, ΐ και ΰ. ",
	"съешь же ещё этих мягких французских булок, да выпей чаю. ",
	"日本語のテキストと漢字、中文字符，한국어 문장. ",
	"emoji 😀🎉👍 and 𐐨𐐩 deseret. ",
	"ǆemal ǉubljana ǌegoš, ﬁne ﬂow ﬀ. ",
	"plain english words keep the ascii fast path busy most of the time.\n",
};

static void
ub_stream_fill_text(uint8_t *blk, size_t n, int mixed)
{
	static const char *const words[] = { "the ", "quick ", "brown ", "fox ",
		"jumps ", "over ", "lazy ", "dog ", "sentence\n" };
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	const char *s;
	size_t pos = 0, len;

	for (;;) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		if (mixed)
			s = ub_stream_mixed_text[(seed >> 33) % 8];
		else
			s = words[(seed >> 33) % 9];
		len = strlen(s);
		if (pos + len > n)
			break;
		memcpy(blk + pos, s, len);
		pos += len;
	}
	memset(blk + pos, 'x', n - pos); /* ASCII pad: a char boundary */
	blk[n - 1] = '\n';
}

/* Expected reply of n bytes of text.  In unicode mode upc_buf() is the
 * transform under test, so libunistring's u8_toupper() checks it first:
 * a bench whose oracle is wrong would only measure agreement. */
static size_t
ub_stream_expect(const struct ub_opts *o, const uint8_t *in, size_t n,
    uint8_t *out)
{
	size_t len, ref_len = UPC_OUT_MAX(n), i;
	uint8_t *ref;

	if (n == 0)
		return 0;
	if (o->upc == UPC_ASCII || !o->mixed) {
		memcpy(out, in, n);
		ub_stream_ascii_upper(out, n);
		return n;
	}
	len = upc_buf(UPC_UNICODE, in, n, out);
	ref = u8_toupper(in, n, NULL, NULL, NULL, &ref_len);
	if (ref == NULL)
		ub_die("u8_toupper: %s", strerror(errno));
	for (i = 0; i < len && i < ref_len && out[i] == ref[i]; i++)
		;
	if (i != len || len != ref_len)
		ub_die("upc_buf and u8_toupper disagree at byte %zu of the "
		       "mixed text",
		    i);
	free(ref);
	return len;
}

/* bulk: the request stream repeats a 1 MiB text block; its expected reply
 * repeats the block's uppercase (full case mapping has no context for
 * uppercase, so the uppercase of a repetition is the repetition of the
 * uppercase).  A connection's share ends on a character boundary. */
void
ub_stream_bulk(struct ub_ctx *x)
{
	const struct ub_opts *o = x->o;
	uint8_t *tail;

	x->in = ub_calloc(UB_BLOCK + UB_CHUNK, 1);
	x->exp = ub_calloc(UPC_OUT_MAX(UB_BLOCK), 1);
	tail = ub_calloc(UPC_OUT_MAX(UB_BLOCK), 1);
	ub_stream_fill_text(x->in, UB_BLOCK, o->mixed);
	memcpy(x->in + UB_BLOCK, x->in, UB_CHUNK);
	x->in_period = UB_BLOCK;
	x->exp_period = ub_stream_expect(o, x->in, UB_BLOCK, x->exp);
	x->bulk_tail_in = (o->bytes / (uint64_t)o->conns) % UB_BLOCK;
	while (x->bulk_tail_in > 0 && (x->in[x->bulk_tail_in] & 0xc0) == 0x80)
		x->bulk_tail_in--;
	x->bulk_tail_exp = ub_stream_expect(o, x->in, x->bulk_tail_in, tail);
	free(tail);
	x->err_unit = UB_BULK_UNIT;
}

/* Count each unit (request, or 64 KiB of bulk) holding a wrong byte once,
 * and show the first wrong byte of the run. */
static void
ub_stream_wrong(struct ub_ctx *x, struct ub_conn *c, const uint8_t *got,
    const uint8_t *want, size_t n, uint64_t pos)
{
	uint64_t unit;
	size_t i;

	for (i = 0; i < n; i++) {
		if (got[i] == want[i])
			continue;
		unit = (pos + i) / x->err_unit;
		if (c->bad_unit == unit + 1)
			continue;
		c->bad_unit = unit + 1;
		x->res->errors++;
		if (!x->complained++)
			fprintf(stderr,
			    "upper-bench: connection %u: reply "
			    "byte %llu is 0x%02x, expected 0x%02x\n",
			    c->gidx, (unsigned long long)(pos + i), got[i],
			    want[i]);
	}
}

/* Compare n reply bytes, received at the connection's read position, with
 * the expected stream. */
void
ub_stream_verify(struct ub_ctx *x, struct ub_conn *c, const uint8_t *p,
    size_t n)
{
	uint64_t pos = c->rpos;
	size_t off, len;

	while (n > 0) {
		off = (size_t)(pos % x->exp_period);
		len = x->exp_period - off;
		if (len > n)
			len = n;
		if (memcmp(p, x->exp + off, len) != 0)
			ub_stream_wrong(x, c, p, x->exp + off, len, pos);
		p += len;
		n -= len;
		pos += len;
	}
}
