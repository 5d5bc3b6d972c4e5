/*
 * fuzz_upcase.c: libFuzzer harness for the streaming transform (upcase.c).
 *
 * A differential test, not only "no crash".  The first input byte picks
 * the mode and seeds the cut points; the rest is the stream.  The stream
 * fed chunk by chunk (chunks of 0 to 8 bytes mostly, to split characters
 * everywhere, now and then a long one) must give the same bytes as fed
 * whole, as upc_buf(), and as an oracle written here from the contract:
 * in unicode mode, libunistring's u8_toupper() on every maximal run of
 * well-formed UTF-8 (Unicode table 3-7: no overlongs, no surrogates,
 * nothing above U+10FFFF) with every other byte passed through; in ascii
 * mode, a-z to A-Z and nothing else.  Every output buffer is exactly
 * UPC_OUT_MAX(n) bytes on the heap, so ASan sees a write past the bound.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unicase.h>

#include "upcase.h"

/* Length of the well-formed UTF-8 character at p (1..4), or 0 when p
 * does not start one within n bytes.  Written from table 3-7 directly,
 * independently of upcase.c's validator. */
static size_t
orc_char_len(const uint8_t *p, size_t n)
{
	static const struct {
		uint8_t lo0, hi0, lo1, hi1;
		size_t len;
	} rows[] = {
		{ 0x00, 0x7f, 0, 0, 1 },
		{ 0xc2, 0xdf, 0x80, 0xbf, 2 },
		{ 0xe0, 0xe0, 0xa0, 0xbf, 3 },
		{ 0xe1, 0xec, 0x80, 0xbf, 3 },
		{ 0xed, 0xed, 0x80, 0x9f, 3 },
		{ 0xee, 0xef, 0x80, 0xbf, 3 },
		{ 0xf0, 0xf0, 0x90, 0xbf, 4 },
		{ 0xf1, 0xf3, 0x80, 0xbf, 4 },
		{ 0xf4, 0xf4, 0x80, 0x8f, 4 },
	};
	size_t r, i;

	for (r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		if (p[0] < rows[r].lo0 || p[0] > rows[r].hi0)
			continue;
		if (rows[r].len > n)
			return 0;
		if (rows[r].len > 1 &&
		    (p[1] < rows[r].lo1 || p[1] > rows[r].hi1))
			return 0;
		for (i = 2; i < rows[r].len; i++)
			if (p[i] < 0x80 || p[i] > 0xbf)
				return 0;
		return rows[r].len;
	}
	return 0;
}

/* The unicode-mode oracle; returns the bytes written to out. */
static size_t
orc_unicode(const uint8_t *in, size_t n, uint8_t *out)
{
	size_t i = 0, o = 0, start, k, rl;
	uint8_t *r;

	while (i < n) {
		start = i;
		while (i < n && (k = orc_char_len(in + i, n - i)) > 0)
			i += k;
		if (i > start) {
			r = u8_toupper(in + start, i - start, NULL, NULL, NULL,
			    &rl);
			if (r == NULL)
				abort();
			memcpy(out + o, r, rl);
			o += rl;
			free(r);
		} else
			out[o++] = in[i++]; /* not well-formed: as is */
	}
	return o;
}

static size_t
orc_ascii(const uint8_t *in, size_t n, uint8_t *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		out[i] = in[i] >= 'a' && in[i] <= 'z' ? in[i] - 0x20 : in[i];
	return n;
}

/* xorshift32: the chunk sizes, reproducible from the seed byte. */
static uint32_t
fz_next(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* Feed in chunk by chunk into one stream, each chunk through its own
 * exactly sized heap buffer; returns the bytes appended to out. */
static size_t
fz_chunked(enum upc_mode mode, const uint8_t *in, size_t n, uint32_t seed,
    uint8_t *out)
{
	struct upc_stream st = { 0 };
	size_t i = 0, o = 0, len, w;
	uint8_t *buf;

	while (i < n) {
		uint32_t x = fz_next(&seed);

		len = x % 16 == 0 ? x % 257 : x % 9;
		if (len > n - i)
			len = n - i;
		if ((buf = malloc(UPC_OUT_MAX(len))) == NULL)
			abort();
		w = upc_feed(&st, mode, in + i, len, buf);
		if (w > UPC_OUT_MAX(len))
			abort();
		memcpy(out + o, buf, w);
		free(buf);
		o += w;
		i += len;
	}
	if (st.ncarry > UPC_CARRY_MAX)
		abort();
	return o + upc_finish(&st, out + o);
}

static void
fz_same(const char *what, const uint8_t *a, size_t na, const uint8_t *b,
    size_t nb)
{
	size_t i;

	if (na == nb && memcmp(a, b, na) == 0)
		return;
	for (i = 0; i < na && i < nb && a[i] == b[i]; i++)
		;
	fprintf(stderr, "%s: %zu vs %zu bytes, first difference at %zu\n", what,
	    na, nb, i);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum upc_mode mode;
	uint8_t *whole, *chunked, *oracle, *one;
	size_t n, nw, nc, no, n1;
	uint32_t seed;

	if (size < 1)
		return 0;
	mode = data[0] & 1 ? UPC_ASCII : UPC_UNICODE;
	seed = 0x9e3779b9u ^ ((uint32_t)data[0] << 1) ^ (uint32_t)size;
	data++;
	n = size - 1;
	whole = malloc(UPC_OUT_MAX(n));
	chunked = malloc(UPC_OUT_MAX(n));
	oracle = malloc(8 * n + 16); /* the oracle's own room, not the bound */
	one = malloc(UPC_OUT_MAX(n));
	if (whole == NULL || chunked == NULL || oracle == NULL || one == NULL)
		abort();
	{
		struct upc_stream st = { 0 };

		nw = upc_feed(&st, mode, data, n, whole);
		nw += upc_finish(&st, whole + nw);
	}
	nc = fz_chunked(mode, data, n, seed, chunked);
	n1 = upc_buf(mode, data, n, one);
	no = mode == UPC_ASCII ? orc_ascii(data, n, oracle) :
	                         orc_unicode(data, n, oracle);
	fz_same("whole vs oracle", whole, nw, oracle, no);
	fz_same("chunked vs whole", chunked, nc, whole, nw);
	fz_same("upc_buf vs whole", one, n1, whole, nw);
	if (mode == UPC_ASCII) {
		memcpy(one, data, n);
		upc_ascii_inplace(one, n);
		fz_same("in place vs oracle", one, n, oracle, no);
	}
	free(whole);
	free(chunked);
	free(oracle);
	free(one);
	return 0;
}
