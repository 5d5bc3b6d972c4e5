/*
 * upcase.c: the uppercase transform behind upcase.h.
 *
 * It owns three things.  The ASCII fast path uppercases 64/16 bytes at a
 * time with SSE2 (8 at a time with SWAR where SSE2 is missing) and stops at
 * the first byte >= 0x80.  The UTF-8 path validates one character at a
 * time (Unicode table 3-7), passes every byte that does not start a
 * well-formed character through unchanged, and keeps a truncated tail in
 * struct upc_stream until the next feed completes or refutes it.  The case
 * mapping itself is libunistring's u8_toupper() with no language and no
 * normalization, which is Python's str.upper(); because u8_toupper() runs
 * at ~130 MB/s, its per-character results are memoised in 64-code-point
 * blocks, filled lazily on first use from u8_toupper() itself.  With no
 * language, full uppercasing has no context (Final_Sigma is lowercase only,
 * the other conditions are lt/tr/az), so a character's mapping does not
 * depend on its neighbours; the exhaustive unit test checks that.
 *
 * Output room: each character grows at most threefold (U+0390, U+03B0;
 * the unit test checks every code point), so UPC_OUT_MAX(n) always fits
 * and u8_toupper() never has to allocate.  in and out must not overlap.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <unistr.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "upcase.h"

/* Memo slots for blocks where some character changes; Unicode 14 needs 59.
 * Building with -DUPC_MEMO_BLOCKS=0 sends every such character through
 * u8_toupper() runs, so that path can be tested and timed on its own. */
#ifndef UPC_MEMO_BLOCKS
#define UPC_MEMO_BLOCKS 256
#endif

#define UPC_NBLOCKS (0x110000 >> 6)
#define UPC_ONES 0x0101010101010101ULL
#define UPC_HIGHS 0x8080808080808080ULL

/* upc_utf8_len() results besides a length of 2..4. */
enum { UPC_BAD = 0, UPC_TRUNC = -1 };

/* upc_blk[] values; UPC_BLK_MEMO + i names upc_memo[i]. */
enum {
	UPC_BLK_UNKNOWN = 0, /* not looked at yet (zeroed BSS: no init) */
	UPC_BLK_SAME,        /* no character of the block changes */
	UPC_BLK_SLOW,        /* not memoised: ask u8_toupper() each time */
	UPC_BLK_MEMO
};

/* One character's uppercase UTF-8; 6 bytes is the Unicode 14 maximum. */
struct upc_map {
	uint8_t len;
	uint8_t b[7];
};

/*
 * Atomics because a multi-threaded caller (a load generator verifying
 * replies) may fill the same block twice at once: both results are equal
 * and a release store publishes a memo slot only after it is written.
 */
static _Atomic uint16_t upc_blk[UPC_NBLOCKS];
static struct upc_map upc_memo[UPC_MEMO_BLOCKS > 0 ? UPC_MEMO_BLOCKS : 1][64];
static atomic_uint upc_memo_used;
static const unsigned upc_memo_cap = UPC_MEMO_BLOCKS;

static inline uint8_t
upc_ascii_byte(uint8_t c)
{
	return c >= 'a' && c <= 'z' ? c - 0x20 : c;
}

/* Eight bytes at once; bytes >= 0x80 are left alone. */
static inline uint64_t
upc_swar_upper(uint64_t w)
{
	uint64_t low7 = w & ~UPC_HIGHS;
	/* low7 + k never carries into the next byte (low7 <= 0x7f, k < 0x80) */
	uint64_t ge_a = low7 + (0x80 - 'a') * UPC_ONES;
	uint64_t gt_z = low7 + (0x7f - 'z') * UPC_ONES;
	uint64_t lower = (ge_a ^ gt_z) & ~w & UPC_HIGHS;

	return w ^ (lower >> 2);
}

/* Index of the first byte with its high bit set; hi must be non-zero. */
static inline size_t
upc_swar_first(uint64_t hi)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	return (size_t)__builtin_clzll(hi) / 8;
#else
	return (size_t)__builtin_ctzll(hi) / 8;
#endif
}

#ifdef __SSE2__
static inline __m128i
upc_vec_upper(__m128i v)
{
	/* adding 0x80 - 'a' moves a..z to -128..-103: one signed compare */
	__m128i t = _mm_add_epi8(v, _mm_set1_epi8((char)(0x80 - 'a')));
	__m128i lower = _mm_cmplt_epi8(t, _mm_set1_epi8(-128 + 26));

	return _mm_xor_si128(v, _mm_and_si128(lower, _mm_set1_epi8(0x20)));
}

static inline __m128i
upc_load(const uint8_t *p)
{
	return _mm_loadu_si128((const __m128i *)(const void *)p);
}

static inline void
upc_store(uint8_t *p, __m128i v)
{
	_mm_storeu_si128((__m128i *)(void *)p, v);
}

/* ascii mode's bulk loop; returns how many bytes it did (a multiple of 16).
 * The four loads come before the stores, so out == in is fine. */
static size_t
upc_ascii_vec(uint8_t *out, const uint8_t *in, size_t n)
{
	size_t i = 0;

	for (; i + 64 <= n; i += 64) {
		__m128i a = upc_load(in + i), b = upc_load(in + i + 16);
		__m128i c = upc_load(in + i + 32), d = upc_load(in + i + 48);

		upc_store(out + i, upc_vec_upper(a));
		upc_store(out + i + 16, upc_vec_upper(b));
		upc_store(out + i + 32, upc_vec_upper(c));
		upc_store(out + i + 48, upc_vec_upper(d));
	}
	for (; i + 16 <= n; i += 16)
		upc_store(out + i, upc_vec_upper(upc_load(in + i)));
	return i;
}

/*
 * unicode mode's ASCII run, see upc_ascii_run(); true if it found the end
 * of the run, in *done, else *done says how far it got.  A block holding a
 * non-ASCII byte is still stored whole (its bytes >= 0x80 unchanged): the
 * UTF-8 path overwrites the tail, and it lies within in's n bytes, so
 * within out's room.
 */
static bool
upc_ascii_run_vec(uint8_t *out, const uint8_t *in, size_t n, size_t *done)
{
	size_t i = 0;
	int m;

	for (; i + 64 <= n; i += 64) {
		__m128i a = upc_load(in + i), b = upc_load(in + i + 16);
		__m128i c = upc_load(in + i + 32), d = upc_load(in + i + 48);

		if (_mm_movemask_epi8(
		        _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d))))
			break;
		upc_store(out + i, upc_vec_upper(a));
		upc_store(out + i + 16, upc_vec_upper(b));
		upc_store(out + i + 32, upc_vec_upper(c));
		upc_store(out + i + 48, upc_vec_upper(d));
	}
	for (; i + 16 <= n; i += 16) {
		__m128i v = upc_load(in + i);

		upc_store(out + i, upc_vec_upper(v));
		if ((m = _mm_movemask_epi8(v)) != 0) {
			*done = i + (size_t)__builtin_ctz((unsigned)m);
			return true;
		}
	}
	*done = i;
	return false;
}
#endif

/* Copy n bytes uppercasing a-z only: ascii mode, and upc_ascii_inplace. */
static void
upc_ascii_copy(uint8_t *out, const uint8_t *in, size_t n)
{
	size_t i = 0;
	uint64_t w;

#ifdef __SSE2__
	i = upc_ascii_vec(out, in, n);
#endif
	for (; i + 8 <= n; i += 8) {
		memcpy(&w, in + i, 8);
		w = upc_swar_upper(w);
		memcpy(out + i, &w, 8);
	}
	for (; i < n; i++)
		out[i] = upc_ascii_byte(in[i]);
}

/* Uppercase the ASCII prefix of in into out; returns its length.  out may
 * be written up to n bytes even when the prefix is shorter. */
static size_t
upc_ascii_run(uint8_t *out, const uint8_t *in, size_t n)
{
	size_t i = 0;
	uint64_t w, hi;

#ifdef __SSE2__
	if (upc_ascii_run_vec(out, in, n, &i))
		return i;
#endif
	for (; i + 8 <= n; i += 8) {
		memcpy(&w, in + i, 8);
		hi = w & UPC_HIGHS;
		w = upc_swar_upper(w);
		memcpy(out + i, &w, 8);
		if (hi)
			return i + upc_swar_first(hi);
	}
	for (; i < n && in[i] < 0x80; i++)
		out[i] = upc_ascii_byte(in[i]);
	return i;
}

/*
 * Length (2..4) of the well-formed UTF-8 character at p, with its code
 * point in *cp; UPC_BAD if p does not start one (the byte then passes
 * through alone); UPC_TRUNC if all n bytes are a proper prefix of one.
 * The second-byte bounds reject overlongs, surrogates and > U+10FFFF.
 */
static inline int
upc_utf8_len(const uint8_t *p, size_t n, uint32_t *cp)
{
	uint8_t b = p[0], lo = 0x80, hi = 0xbf;
	uint32_t c;
	int len, i;

	if (b >= 0xc2 && b <= 0xdf && n >= 2 && (p[1] & 0xc0) == 0x80) {
		/* the commonest case, without the loop */
		*cp = (uint32_t)(b & 0x1f) << 6 | (p[1] & 0x3f);
		return 2;
	}
	if (b >= 0xc2 && b <= 0xdf) {
		len = 2;
		c = b & 0x1f;
	} else if (b >= 0xe0 && b <= 0xef) {
		len = 3;
		c = b & 0x0f;
		lo = b == 0xe0 ? 0xa0 : 0x80;
		hi = b == 0xed ? 0x9f : 0xbf;
	} else if (b >= 0xf0 && b <= 0xf4) {
		len = 4;
		c = b & 0x07;
		lo = b == 0xf0 ? 0x90 : 0x80;
		hi = b == 0xf4 ? 0x8f : 0xbf;
	} else
		return UPC_BAD;
	for (i = 1; i < len; i++, lo = 0x80, hi = 0xbf) {
		if ((size_t)i >= n)
			return UPC_TRUNC;
		if (p[i] < lo || p[i] > hi)
			return UPC_BAD;
		c = c << 6 | (p[i] & 0x3f);
	}
	*cp = c;
	return len;
}

/* Ask libunistring for one character's uppercase; false if it would not
 * fit a struct upc_map (the block is then left to u8_toupper runs). */
static bool
upc_map_char(uint32_t c, struct upc_map *m, bool *same)
{
	uint8_t src[4], res[32], *r;
	size_t rl = sizeof(res);
	int sl = u8_uctomb(src, c, sizeof(src));

	if (sl < 1)
		return false;
	r = u8_toupper(src, (size_t)sl, NULL, NULL, res, &rl);
	if (r != res) {
		free(r);
		return false;
	}
	if (rl > sizeof(m->b))
		return false;
	m->len = (uint8_t)rl;
	memcpy(m->b, res, rl);
	if (rl != (size_t)sl || memcmp(res, src, rl) != 0)
		*same = false;
	return true;
}

/* Work out what upc_blk[blk] should say; once per block per process. */
static __attribute__((noinline, cold)) unsigned
upc_blk_fill(uint32_t blk)
{
	struct upc_map m[64];
	bool same = true;
	unsigned slot;

	for (uint32_t i = 0; i < 64; i++)
		if (!upc_map_char(blk << 6 | i, &m[i], &same))
			return UPC_BLK_SLOW;
	if (same)
		return UPC_BLK_SAME;
	slot = atomic_fetch_add_explicit(&upc_memo_used, 1,
	    memory_order_relaxed);
	if (slot >= upc_memo_cap)
		return UPC_BLK_SLOW;
	memcpy(upc_memo[slot], m, sizeof(m));
	return UPC_BLK_MEMO + slot;
}

/* What to do with code point c (a valid scalar value >= 0x80). */
static inline unsigned
upc_blk_get(uint32_t c)
{
	unsigned k = atomic_load_explicit(&upc_blk[c >> 6],
	    memory_order_acquire);

	if (k == UPC_BLK_UNKNOWN) {
		k = upc_blk_fill(c >> 6);
		atomic_store_explicit(&upc_blk[c >> 6], (uint16_t)k,
		    memory_order_release);
	}
	return k;
}

/*
 * Uppercase the valid characters p[0..n) with one u8_toupper() call,
 * straight into out.  It only allocates when the result outgrows the
 * room, which threefold growth rules out; should that ever break, pass the
 * run through rather than overflow the caller's buffer.
 */
static uint8_t *
upc_slow_run(uint8_t *o, uint8_t *oend, const uint8_t *p, size_t n)
{
	size_t room = (size_t)(oend - o);
	uint8_t *r = u8_toupper(p, n, NULL, NULL, o, &room);

	if (r == o)
		return o + room;
	free(r);
	memcpy(o, p, n);
	return o + n;
}

/* Write a memoised character: a fixed 7-byte copy, cheaper than a
 * variable one, whenever that much room is left (all but always). */
static inline uint8_t *
upc_put_map(uint8_t *o, uint8_t *oend, const struct upc_map *m)
{
	if (oend - o >= (ptrdiff_t)sizeof(m->b))
		memcpy(o, m->b, sizeof(m->b));
	else
		memcpy(o, m->b, m->len);
	return o + m->len;
}

/* Copy a character of len 2..4 that does not change; a fixed 4-byte copy
 * when 4 input bytes are left (out then has room for 12). */
static inline uint8_t *
upc_put_same(uint8_t *o, const uint8_t *p, const uint8_t *end, int len)
{
	if (end - p >= 4)
		memcpy(o, p, 4);
	else
		memcpy(o, p, (size_t)len);
	return o + len;
}

/* Write the uppercase of the valid character p[0..len), code point c, in
 * a block whose upc_blk[] entry k is not UPC_BLK_SLOW. */
static inline uint8_t *
upc_put_char(uint8_t *o, uint8_t *oend, const uint8_t *p, const uint8_t *end,
    int len, uint32_t c, unsigned k)
{
	if (k == UPC_BLK_SAME)
		return upc_put_same(o, p, end, len);
	return upc_put_map(o, oend, &upc_memo[k - UPC_BLK_MEMO][c & 63]);
}

/* Length of the run of valid unmemoised characters at p, so that
 * u8_toupper() is called once per run rather than once per character. */
static size_t
upc_slow_span(const uint8_t *p, const uint8_t *end)
{
	const uint8_t *q = p;
	uint32_t c;
	int len;

	while (q < end && *q >= 0x80 &&
	    (len = upc_utf8_len(q, (size_t)(end - q), &c)) > 0 &&
	    upc_blk_get(c) == UPC_BLK_SLOW)
		q += len;
	return (size_t)(q - p);
}

/*
 * Uppercase from p up to two ASCII bytes in a row, or the end.  A
 * well-formed prefix cut off by the end is kept in st (at most 3 bytes).
 */
static const uint8_t *
upc_utf8_run(struct upc_stream *st, const uint8_t *p, const uint8_t *end,
    uint8_t **op, uint8_t *oend)
{
	uint8_t *o = *op;
	uint32_t c;
	size_t span;
	unsigned k;
	int len;

	while (p < end) {
		if (*p < 0x80) {
			/* a lone space or stop between words: not worth
			 * going back to the ASCII path for */
			if (end - p < 2 || p[1] < 0x80)
				break;
			*o++ = upc_ascii_byte(*p++);
			continue;
		}
		len = upc_utf8_len(p, (size_t)(end - p), &c);
		if (len > 0 && (k = upc_blk_get(c)) != UPC_BLK_SLOW) {
			o = upc_put_char(o, oend, p, end, len, c, k);
			p += len;
		} else if (len > 0) {
			span = upc_slow_span(p, end);
			o = upc_slow_run(o, oend, p, span);
			p += span;
		} else if (len == UPC_BAD) {
			*o++ = *p++;
		} else {
			st->ncarry = (uint8_t)(end - p);
			memcpy(st->carry, p, st->ncarry);
			p = end;
		}
	}
	*op = o;
	return p;
}

/*
 * Complete the character carried from the last feed with the first bytes
 * of in; returns how many of them it used.  If in refutes it, the carried
 * bytes go out unchanged and in is read afresh from its first byte.
 */
static size_t
upc_carry_resume(struct upc_stream *st, const uint8_t *in, size_t n,
    uint8_t **op, uint8_t *oend)
{
	uint8_t tmp[4];
	size_t m = st->ncarry, take = n < 4 - m ? n : 4 - m;
	uint32_t c;
	unsigned k;
	int len;

	memcpy(tmp, st->carry, m);
	memcpy(tmp + m, in, take);
	len = upc_utf8_len(tmp, m + take, &c);
	if (len == UPC_TRUNC) { /* still short: then take == n */
		memcpy(st->carry + m, in, take);
		st->ncarry = (uint8_t)(m + take);
		return take;
	}
	st->ncarry = 0;
	if (len == UPC_BAD) {
		memcpy(*op, tmp, m);
		*op += m;
		return 0;
	}
	if ((k = upc_blk_get(c)) == UPC_BLK_SLOW)
		*op = upc_slow_run(*op, oend, tmp, (size_t)len);
	else
		*op = upc_put_char(*op, oend, tmp, tmp + len, len, c, k);
	return (size_t)len - m;
}

/* The streaming entry point: one call per read, for TCP. */
size_t
upc_feed(struct upc_stream *st, enum upc_mode mode, const uint8_t *in, size_t n,
    uint8_t *out)
{
	uint8_t *o = out, *oend = out + UPC_OUT_MAX(n);
	const uint8_t *p = in, *end;
	size_t a;

	if (n == 0)
		return 0;
	end = in + n;
	if (mode == UPC_ASCII) {
		/* a carry here means the mode changed mid-stream: flush it */
		o += upc_finish(st, o);
		upc_ascii_copy(o, p, n);
		return (size_t)(o - out) + n;
	}
	if (st->ncarry > 0)
		p += upc_carry_resume(st, p, n, &o, oend);
	/* Invariant: oend - o >= 3 * (end - p), which bounds every write. */
	while (p < end) {
		a = upc_ascii_run(o, p, (size_t)(end - p));
		p += a;
		o += a;
		p = upc_utf8_run(st, p, end, &o, oend);
	}
	return (size_t)(o - out);
}

/* A stream's last bytes, when its peer stops sending mid-character. */
size_t
upc_finish(struct upc_stream *st, uint8_t *out)
{
	size_t n = st->ncarry;

	memcpy(out, st->carry, n);
	st->ncarry = 0;
	return n;
}

/* A datagram is a whole stream on its own. */
size_t
upc_buf(enum upc_mode mode, const uint8_t *in, size_t n, uint8_t *out)
{
	struct upc_stream st = { 0 };
	size_t w = upc_feed(&st, mode, in, n, out);

	return w + upc_finish(&st, out + w);
}

/* ascii mode without a second buffer, for the reference server. */
void
upc_ascii_inplace(uint8_t *p, size_t n)
{
	upc_ascii_copy(p, p, n);
}
