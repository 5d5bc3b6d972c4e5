/*
 * test_upcase.c: unit tests for the uppercase transform (workers/upcase.c).
 *
 * The oracle is the interpreter the SPEC names: tests/unit/upcase_oracle.py
 * runs under $UPPERD_PYTHON (default python3) at test time and writes, for
 * every code point and for random broken byte strings, what str.upper()
 * makes of them.  Every piece fed to upc_feed gets a heap buffer of exactly
 * UPC_OUT_MAX(n) bytes, so the sanitizer build catches any overrun.  Random
 * splits come from a seed printed at start; UPPERD_TEST_SEED repeats one.
 * The script is looked for under $UPPERD_SRCDIR, the working directory,
 * and the tree the binary sits in (bin/ or build/asan/bin/).
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <unistring/version.h>

#include "upcase.h"

#define ORACLE_SCRIPT "tests/unit/upcase_oracle.py"
#define MAX_REPORTS 20

/* The generator's whole output and a cursor over its records. */
struct oracle {
	uint8_t *buf;
	size_t len;
	size_t pos;
};

struct sample {
	const char *in;
	size_t inlen;
	const char *want;
	size_t wantlen;
};

/* Tables read better aligned. */
/* clang-format off */
/* S("in", "want"): string literals whose sizes include NUL bytes. */
#define S(a, b) { a, sizeof(a) - 1, b, sizeof(b) - 1 }

/* Invalid bytes pass through; what is valid around them is uppercased. */
static const struct sample samples[] = {
	S("\x80", "\x80"),
	S("\xbf\x80\x80", "\xbf\x80\x80"),
	S("\xc0\xaf", "\xc0\xaf"),			/* overlong '/' */
	S("\xc1\xbf", "\xc1\xbf"),
	S("\xe0\x80\xaf", "\xe0\x80\xaf"),		/* overlong, 3 bytes */
	S("\xf0\x80\x80\xaf", "\xf0\x80\x80\xaf"),	/* overlong, 4 bytes */
	S("\xed\xa0\x80", "\xed\xa0\x80"),		/* U+D800 */
	S("\xed\xbf\xbf", "\xed\xbf\xbf"),		/* U+DFFF */
	S("\xf4\x90\x80\x80", "\xf4\x90\x80\x80"),	/* U+110000 */
	S("\xf8\x88\x80\x80\x80", "\xf8\x88\x80\x80\x80"),
	S("\xfc\x84\x80\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80"),
	S("\xfe\xff", "\xfe\xff"),
	S("a\xc3", "A\xc3"),				/* cut off by the end */
	S("\xe2\x82" "a", "\xe2\x82" "A"),
	S("\xf0\x9f\x98" "x", "\xf0\x9f\x98" "X"),
	S("\xc3\xc3\xa4", "\xc3\xc3\x84"),		/* lead, then 'ä' */
	S("\xe2\x82\xe2\x82\xac", "\xe2\x82\xe2\x82\xac"),
	S("stra\xc3\x9f" "e\x80x", "STRASSE\x80X"),
	S("\xc3\xa9\xff\xc3\xa9", "\xc3\x89\xff\xc3\x89"),
	S("a\0b\0\xc3\xa9\0", "A\0B\0\xc3\x89\0"),
	S("\xce\x90\xed\xa0\x80\xce\xb0",
	    "\xce\x99\xcc\x88\xcc\x81\xed\xa0\x80\xce\xa5\xcc\x88\xcc\x81"),
	/* valid: edges of the ranges and special casing */
	S("\xed\x9f\xbf\xee\x80\x80", "\xed\x9f\xbf\xee\x80\x80"),
	S("\xf4\x8f\xbf\xbf\xf0\x90\x80\x80",
	    "\xf4\x8f\xbf\xbf\xf0\x90\x80\x80"),
	S("\xc7\x86\xc7\x85", "\xc7\x84\xc7\x84"),	/* ǆ ǅ -> Ǆ Ǆ */
	S("\xef\xac\x83", "FFI"),			/* ﬃ */
	S("\xc5\x89", "\xca\xbcN"),			/* ŉ -> ʼN */
	S("\xe1\xbe\xb7", "\xce\x91\xcd\x82\xce\x99"),	/* ᾷ */
	S("\xcd\x85", "\xce\x99"),			/* ypogegrammeni */
	S("\xc4\xb1\xc5\xbf", "IS"),			/* ı ſ */
	S("\xf0\x90\x90\xa8", "\xf0\x90\x90\x80"),	/* Deseret */
	S("\xe6\x97\xa5\xe6\x9c\xac", "\xe6\x97\xa5\xe6\x9c\xac"),
	S("\xf0\x9f\x98\x80!", "\xf0\x9f\x98\x80!"),
	S("\xd0\xbf\xd1\x80\xd0\xb8 \xce\xb1\xce\xb2",
	    "\xd0\x9f\xd0\xa0\xd0\x98 \xce\x91\xce\x92"),
};
/* clang-format on */

static uint64_t seed;
static struct oracle codepoints;

/* splitmix64: small, seedable, good enough to pick split points. */
static uint64_t
rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Mostly short pieces, which split characters, sometimes long ones. */
static size_t
piece_len(uint64_t *s, size_t maxpiece)
{
	uint64_t r = rnd(s);

	switch (r % 4) {
	case 0:
	case 1:
		return 1 + (r >> 8) % 4;
	case 2:
		return 1 + (r >> 8) % 64;
	default:
		return 1 + (r >> 8) % maxpiece;
	}
}

static void
print_hex(const char *label, const uint8_t *p, size_t n)
{
	fprintf(stderr, "  %s (%zu bytes):", label, n);
	for (size_t i = 0; i < n && i < 48; i++)
		fprintf(stderr, " %02x", p[i]);
	fprintf(stderr, "%s\n", n > 48 ? " ..." : "");
}

/* Compare and, on a difference, show where; returns true when equal. */
static bool
same_bytes(const char *what, const uint8_t *got, size_t gn, const uint8_t *want,
    size_t wn)
{
	size_t i = 0, from;

	if (gn == wn && memcmp(got, want, gn) == 0)
		return true;
	while (i < gn && i < wn && got[i] == want[i])
		i++;
	from = i > 16 ? i - 16 : 0;
	fprintf(stderr, "%s: differs at byte %zu (seed %llu)\n", what, i,
	    (unsigned long long)seed);
	print_hex("got ", got + from, gn - from);
	print_hex("want", want + from, wn - from);
	return false;
}

/* upc_feed() in random pieces, each into a buffer of exactly
 * UPC_OUT_MAX(piece), then upc_finish(); out needs UPC_OUT_MAX(n). */
static size_t
feed_pieces(enum upc_mode mode, const uint8_t *in, size_t n, uint8_t *out,
    uint64_t *s, size_t maxpiece)
{
	struct upc_stream st = { 0 };
	size_t w = 0, i = 0, k, got;
	uint8_t *tmp;

	while (i < n) {
		k = piece_len(s, maxpiece);
		k = k < n - i ? k : n - i;
		tmp = malloc(UPC_OUT_MAX(k));
		assert_non_null(tmp);
		got = upc_feed(&st, mode, in + i, k, tmp);
		assert_true(got <= UPC_OUT_MAX(k));
		assert_true(st.ncarry <= UPC_CARRY_MAX);
		memcpy(out + w, tmp, got);
		free(tmp);
		w += got;
		i += k;
	}
	return w + upc_finish(&st, out + w);
}

/* upc_feed() in pieces cut at the given points (sorted, within n). */
static size_t
feed_at(const uint8_t *in, size_t n, const size_t *cuts, size_t ncuts,
    uint8_t *out)
{
	struct upc_stream st = { 0 };
	size_t w = 0, from = 0, to, got;
	uint8_t *tmp;

	for (size_t c = 0; c <= ncuts; c++, from = to) {
		to = c < ncuts ? cuts[c] : n;
		tmp = malloc(UPC_OUT_MAX(to - from));
		assert_non_null(tmp);
		got = upc_feed(&st, UPC_UNICODE, in + from, to - from, tmp);
		assert_true(got <= UPC_OUT_MAX(to - from));
		memcpy(out + w, tmp, got);
		free(tmp);
		w += got;
	}
	return w + upc_finish(&st, out + w);
}

/* ---- running the Python oracle ---- */

static bool
find_script(char *path, size_t size)
{
	char exe[PATH_MAX], *slash;
	const char *dirs[4] = { getenv("UPPERD_SRCDIR"), ".", NULL, NULL };
	char up1[PATH_MAX + 8], up3[PATH_MAX + 16];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n > 0) {
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')) != NULL)
			*slash = '\0';
		snprintf(up1, sizeof(up1), "%s/..", exe);
		snprintf(up3, sizeof(up3), "%s/../../..", exe);
		dirs[2] = up1;
		dirs[3] = up3;
	}
	for (size_t i = 0; i < 4; i++) {
		if (dirs[i] == NULL || dirs[i][0] == '\0')
			continue;
		snprintf(path, size, "%s/%s", dirs[i], ORACLE_SCRIPT);
		if (access(path, R_OK) == 0)
			return true;
	}
	return false;
}

static bool
read_all(int fd, struct oracle *o)
{
	size_t cap = 1 << 20;
	ssize_t r;

	o->buf = malloc(cap);
	o->len = o->pos = 0;
	while (o->buf != NULL) {
		if (o->len == cap)
			o->buf = realloc(o->buf, cap *= 2);
		if (o->buf == NULL)
			break;
		r = read(fd, o->buf + o->len, cap - o->len);
		if (r == 0)
			return true;
		if (r < 0 && errno != EINTR)
			return false;
		o->len += r > 0 ? (size_t)r : 0;
	}
	return false;
}

/* Run the generator with arguments a1..a3 (NULL-terminated early) and
 * keep its output; prints its header line ("unidata=... python=..."). */
static bool
oracle_run(struct oracle *o, const char *a1, const char *a2, const char *a3)
{
	const char *py = getenv("UPPERD_PYTHON");
	char script[PATH_MAX + 64];
	int fd[2], status;
	bool ok;
	pid_t pid;
	uint8_t *nl;

	if (py == NULL || py[0] == '\0')
		py = "python3";
	if (!find_script(script, sizeof(script))) {
		fprintf(stderr, "cannot find %s; set UPPERD_SRCDIR\n",
		    ORACLE_SCRIPT);
		return false;
	}
	if (pipe(fd) == -1 || (pid = fork()) == -1)
		return false;
	if (pid == 0) {
		dup2(fd[1], STDOUT_FILENO);
		close(fd[0]);
		close(fd[1]);
		execlp(py, py, script, a1, a2, a3, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", py, strerror(errno));
		_exit(127);
	}
	close(fd[1]);
	ok = read_all(fd[0], o);
	close(fd[0]);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "oracle %s %s failed (%s %d)\n", py, script,
		    WIFEXITED(status) ? "exit" : "signal",
		    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		return false;
	}
	nl = memchr(o->buf, '\n', o->len);
	if (nl == NULL)
		return false;
	fprintf(stderr, "oracle: %.*s, libunistring %d.%d.%d\n",
	    (int)(nl - o->buf), (char *)o->buf, _libunistring_version >> 16,
	    (_libunistring_version >> 8) & 0xff, _libunistring_version & 0xff);
	o->pos = (size_t)(nl - o->buf) + 1;
	return true;
}

static bool
oracle_field(struct oracle *o, const uint8_t **p, size_t *n)
{
	uint32_t len;

	if (o->len - o->pos < 4)
		return false;
	len = (uint32_t)o->buf[o->pos] | (uint32_t)o->buf[o->pos + 1] << 8 |
	    (uint32_t)o->buf[o->pos + 2] << 16 |
	    (uint32_t)o->buf[o->pos + 3] << 24;
	if (o->len - o->pos - 4 < len)
		return false;
	*p = o->buf + o->pos + 4;
	*n = len;
	o->pos += 4 + (size_t)len;
	return true;
}

/* The next (input, expected) pair, false at the end. */
static bool
oracle_next(struct oracle *o, const uint8_t **in, size_t *inlen,
    const uint8_t **want, size_t *wantlen)
{
	if (o->pos == o->len)
		return false;
	if (!oracle_field(o, in, inlen) || !oracle_field(o, want, wantlen))
		fail_msg("oracle output truncated at byte %zu", o->pos);
	return true;
}

/* ---- unicode mode against Python, every code point ---- */

/* Record i of "codepoints" is U+i, skipping the surrogates. */
static unsigned
record_cp(size_t i)
{
	return (unsigned)(i < 0xd800 ? i : i + 0x800);
}

static void
test_every_codepoint(void **state)
{
	struct oracle o = codepoints;
	const uint8_t *in, *want;
	size_t inlen, wantlen, got, i, bad = 0, big = 0;
	size_t best_in = 1, best_out = 1;
	unsigned best_cp = 0;
	uint8_t *out;

	(void)state;
	for (i = 0; oracle_next(&o, &in, &inlen, &want, &wantlen); i++) {
		if (wantlen > 3 * inlen && big++ < MAX_REPORTS)
			fprintf(stderr, "U+%04X grows more than 3x\n",
			    record_cp(i));
		if (wantlen * best_in > best_out * inlen) {
			best_in = inlen;
			best_out = wantlen;
			best_cp = record_cp(i);
		}
		out = malloc(UPC_OUT_MAX(inlen));
		assert_non_null(out);
		got = upc_buf(UPC_UNICODE, in, inlen, out);
		if ((got != wantlen || memcmp(out, want, got) != 0) &&
		    bad++ < MAX_REPORTS) {
			fprintf(stderr, "U+%04X differs from Python\n",
			    record_cp(i));
			print_hex("upc   ", out, got);
			print_hex("python", want, wantlen);
		}
		free(out);
	}
	fprintf(stderr,
	    "%zu code points; max growth %zu -> %zu bytes "
	    "(U+%04X)\n",
	    i, best_in, best_out, best_cp);
	assert_int_equal(i, 0x110000 - 0x800);
	assert_int_equal(big, 0);
	assert_int_equal(bad, 0);
}

/* Every code point in one stream: one-shot, then in random pieces that
 * split characters anywhere, so carries land on every kind of byte. */
static void
test_every_codepoint_stream(void **state)
{
	struct oracle o = codepoints;
	const uint8_t *in, *want;
	size_t inlen, wantlen, n = 0, wn = 0, got;
	uint8_t *all = malloc(o.len), *wall = malloc(o.len), *out;
	uint64_t s = seed;

	(void)state;
	assert_non_null(all);
	assert_non_null(wall);
	while (oracle_next(&o, &in, &inlen, &want, &wantlen)) {
		memcpy(all + n, in, inlen);
		memcpy(wall + wn, want, wantlen);
		n += inlen;
		wn += wantlen;
	}
	out = malloc(UPC_OUT_MAX(n));
	assert_non_null(out);
	got = upc_buf(UPC_UNICODE, all, n, out);
	assert_true(
	    same_bytes("all code points, one shot", out, got, wall, wn));
	for (int round = 0; round < 3; round++) {
		got = feed_pieces(UPC_UNICODE, all, n, out, &s, 4096);
		assert_true(
		    same_bytes("all code points, pieces", out, got, wall, wn));
	}
	free(out);
	free(all);
	free(wall);
}

/* ---- broken UTF-8 against Python's surrogateescape ---- */

static void
test_broken_utf8_as_python_surrogateescape(void **state)
{
	struct oracle o;
	const uint8_t *in, *want;
	size_t inlen, wantlen, got, bad = 0, cases = 0;
	char pyseed[32];
	uint8_t *out;
	uint64_t s = seed;

	(void)state;
	snprintf(pyseed, sizeof(pyseed), "%llu", (unsigned long long)seed);
	assert_true(oracle_run(&o, "fuzz", pyseed, "4000"));
	while (oracle_next(&o, &in, &inlen, &want, &wantlen)) {
		cases++;
		out = malloc(UPC_OUT_MAX(inlen));
		assert_non_null(out);
		got = upc_buf(UPC_UNICODE, in, inlen, out);
		if (!same_bytes("fuzz, one shot", out, got, want, wantlen))
			bad++;
		got = feed_pieces(UPC_UNICODE, in, inlen, out, &s, 8);
		if (!same_bytes("fuzz, pieces", out, got, want, wantlen))
			bad++;
		if (bad > 0)
			print_hex("input", in, inlen);
		free(out);
		if (bad > 0)
			break;
	}
	free(o.buf);
	assert_int_equal(cases, 4000);
	assert_int_equal(bad, 0);
}

/* ---- hand-written cases, whole and split everywhere ---- */

static void
check_sample(size_t idx, const struct sample *t, uint8_t *out)
{
	const uint8_t *in = (const uint8_t *)t->in;
	const uint8_t *want = (const uint8_t *)t->want;
	size_t n = t->inlen, got, cuts[2];
	char what[64];

	snprintf(what, sizeof(what), "sample %zu, one shot", idx);
	got = upc_buf(UPC_UNICODE, in, n, out);
	assert_true(same_bytes(what, out, got, want, t->wantlen));
	for (cuts[0] = 0; cuts[0] <= n; cuts[0]++) {
		snprintf(what, sizeof(what), "sample %zu, cut at %zu", idx,
		    cuts[0]);
		got = feed_at(in, n, cuts, 1, out);
		assert_true(same_bytes(what, out, got, want, t->wantlen));
		for (cuts[1] = cuts[0]; cuts[1] <= n; cuts[1]++) {
			snprintf(what, sizeof(what),
			    "sample %zu, cuts at %zu, %zu", idx, cuts[0],
			    cuts[1]);
			got = feed_at(in, n, cuts, 2, out);
			assert_true(
			    same_bytes(what, out, got, want, t->wantlen));
		}
	}
}

static void
test_samples_split_everywhere(void **state)
{
	size_t bytewise[64];
	uint8_t out[UPC_OUT_MAX(64)];
	size_t got;

	(void)state;
	for (size_t i = 0; i < sizeof(bytewise) / sizeof(bytewise[0]); i++)
		bytewise[i] = i + 1;
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		const struct sample *t = &samples[i];

		assert_true(t->inlen <= 64);
		check_sample(i, t, out);
		got = feed_at((const uint8_t *)t->in, t->inlen, bytewise,
		    t->inlen > 0 ? t->inlen - 1 : 0, out);
		assert_true(same_bytes("sample, byte by byte", out, got,
		    (const uint8_t *)t->want, t->wantlen));
	}
}

/* The carry, feed by feed: what each call returns and keeps. */
static void
test_carry_steps(void **state)
{
	struct upc_stream st = { 0 };
	uint8_t out[UPC_OUT_MAX(8)];

	(void)state;
	assert_int_equal(upc_feed(&st, UPC_UNICODE, (const uint8_t *)"\xe2\x82",
	                     2, out),
	    0);
	assert_int_equal(st.ncarry, 2);
	assert_int_equal(upc_feed(&st, UPC_UNICODE, (const uint8_t *)"a", 1,
	                     out),
	    3);
	assert_memory_equal(out, "\xe2\x82\x41", 3);
	assert_int_equal(st.ncarry, 0);

	assert_int_equal(upc_feed(&st, UPC_UNICODE, (const uint8_t *)"a\xc3", 2,
	                     out),
	    1);
	assert_int_equal(upc_feed(&st, UPC_UNICODE, NULL, 0, out), 0);
	assert_int_equal(st.ncarry, 1);
	assert_int_equal(upc_finish(&st, out), 1);
	assert_int_equal(out[0], 0xc3);
	assert_int_equal(upc_finish(&st, out), 0);

	/* one byte in, six out: within UPC_OUT_MAX(1) */
	assert_int_equal(upc_feed(&st, UPC_UNICODE, (const uint8_t *)"\xce", 1,
	                     out),
	    0);
	assert_int_equal(upc_feed(&st, UPC_UNICODE, (const uint8_t *)"\x90", 1,
	                     out),
	    6);
	assert_memory_equal(out, "\xce\x99\xcc\x88\xcc\x81", 6);

	assert_int_equal(upc_feed(&st, UPC_UNICODE,
	                     (const uint8_t *)"\xf0\x90\x90", 3, out),
	    0);
	assert_int_equal(st.ncarry, 3);
	assert_int_equal(upc_feed(&st, UPC_UNICODE, (const uint8_t *)"\xa8\xe0",
	                     2, out),
	    4);
	assert_memory_equal(out, "\xf0\x90\x90\x80", 4);
	assert_int_equal(st.ncarry, 1);
	/* E0 80 is an overlong prefix: refuted at once, nothing carried */
	assert_int_equal(upc_feed(&st, UPC_UNICODE, (const uint8_t *)"\x80", 1,
	                     out),
	    2);
	assert_memory_equal(out, "\xe0\x80", 2);
	assert_int_equal(st.ncarry, 0);
}

/* Worst growth, 3x, fed one byte at a time and whole, into exact room. */
static void
test_worst_growth(void **state)
{
	enum { N = 1000 };
	uint8_t *in = malloc(2 * N), *out = malloc(UPC_OUT_MAX(2 * N));
	size_t got;
	uint64_t s = seed;

	(void)state;
	assert_non_null(in);
	assert_non_null(out);
	for (size_t i = 0; i < N; i++)
		memcpy(in + 2 * i, "\xce\x90", 2);
	got = upc_buf(UPC_UNICODE, in, 2 * N, out);
	assert_int_equal(got, 6 * N);
	got = feed_pieces(UPC_UNICODE, in, 2 * N, out, &s, 1);
	assert_int_equal(got, 6 * N);
	for (size_t i = 0; i < N; i++)
		assert_memory_equal(out + 6 * i, "\xce\x99\xcc\x88\xcc\x81", 6);
	free(in);
	free(out);
}

/* The ASCII fast path must end its run at every offset: one 'é' placed
 * at each position of ASCII strings of every length up to 200. */
static void
test_ascii_run_edges(void **state)
{
	uint8_t in[208], want[208], *out;
	char what[48];
	size_t got;
	uint64_t s = seed;

	(void)state;
	for (size_t n = 0; n <= 200; n++) {
		for (size_t i = 0; i < n; i++) {
			in[i] = (uint8_t)(0x20 + rnd(&s) % 0x5f);
			want[i] = in[i] >= 'a' && in[i] <= 'z' ? in[i] - 0x20 :
			                                         in[i];
		}
		for (size_t pos = 0; pos + 2 <= n; pos++) {
			uint8_t a = in[pos], b = in[pos + 1];
			uint8_t wa = want[pos], wb = want[pos + 1];

			memcpy(in + pos, "\xc3\xa9", 2);
			memcpy(want + pos, "\xc3\x89", 2);
			out = malloc(UPC_OUT_MAX(n));
			assert_non_null(out);
			got = upc_buf(UPC_UNICODE, in, n, out);
			snprintf(what, sizeof(what), "length %zu, at %zu", n,
			    pos);
			assert_true(same_bytes(what, out, got, want, n));
			free(out);
			in[pos] = a;
			in[pos + 1] = b;
			want[pos] = wa;
			want[pos + 1] = wb;
		}
	}
}

/* ---- ascii mode ---- */

static void
ascii_reference(const uint8_t *in, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++)
		out[i] = in[i] >= 'a' && in[i] <= 'z' ? in[i] - 32 : in[i];
}

static void
test_ascii_mode_maps_only_a_to_z(void **state)
{
	struct upc_stream st = { 0 };
	uint8_t all[256], out[UPC_OUT_MAX(256)];

	(void)state;
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	assert_int_equal(upc_buf(UPC_ASCII, all, 256, out), 256);
	for (int i = 0; i < 256; i++)
		assert_int_equal(out[i], i >= 'a' && i <= 'z' ? i - 32 : i);
	assert_int_equal(upc_buf(UPC_ASCII,
	                     (const uint8_t *)"stra\xc3\x9f\x65 `az{@", 12,
	                     out),
	    12);
	assert_memory_equal(out, "STRA\xc3\x9f\x45 `AZ{@", 12);
	/* ascii mode never carries */
	assert_int_equal(upc_feed(&st, UPC_ASCII, (const uint8_t *)"\xc3", 1,
	                     out),
	    1);
	assert_int_equal(out[0], 0xc3);
	assert_int_equal(st.ncarry, 0);
	assert_int_equal(upc_finish(&st, out), 0);
}

/* Random bytes at every alignment and length, through upc_buf, pieces
 * and upc_ascii_inplace, against the one-line reference. */
static void
test_ascii_random_as_reference(void **state)
{
	uint8_t buf[16 + 300], want[300], out[UPC_OUT_MAX(300)];
	size_t got;
	uint64_t s = seed;

	(void)state;
	for (int iter = 0; iter < 20000; iter++) {
		size_t off = rnd(&s) % 16, n = rnd(&s) % 300;
		uint8_t *in = buf + off;

		for (size_t i = 0; i < n; i++)
			in[i] = (uint8_t)rnd(&s);
		ascii_reference(in, n, want);
		got = upc_buf(UPC_ASCII, in, n, out);
		assert_true(same_bytes("ascii, one shot", out, got, want, n));
		got = feed_pieces(UPC_ASCII, in, n, out, &s, 100);
		assert_true(same_bytes("ascii, pieces", out, got, want, n));
		upc_ascii_inplace(in, n);
		assert_true(same_bytes("ascii, in place", in, n, want, n));
	}
}

/* ---- no allocation per call ---- */

/*
 * Counting allocations: by interposing malloc() (libunistring's calls land
 * here too), or under ASan, which brings its own malloc, by the sanitizer's
 * allocation hook, which sees every allocation ASan makes.  Either way the
 * test runs, in the plain build and in the sanitizer build alike.
 */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UPC_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define UPC_TEST_ASAN 1
#endif

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UPC_TEST_VALGRIND RUNNING_ON_VALGRIND
#else
#define UPC_TEST_VALGRIND 0
#endif

/* volatile: the compiler knows strdup() and friends, not that they land
 * in this counter */
static volatile unsigned long malloc_calls;

#if defined(UPC_TEST_ASAN)
/* <sanitizer/allocator_interface.h>, which not every compiler ships */
int
__sanitizer_install_malloc_and_free_hooks(void (
                                              *malloc_hook)(const volatile void
                                                                *,
                                              size_t),
    void (*free_hook)(const volatile void *));

static void
count_malloc(const volatile void *p, size_t n)
{
	(void)p;
	(void)n;
	malloc_calls++;
}

static void
count_free(const volatile void *p)
{
	(void)p;
}

static void
count_allocations(void)
{
	static int installed;

	if (!installed++)
		__sanitizer_install_malloc_and_free_hooks(count_malloc,
		    count_free);
}
#elif defined(__GLIBC__)
extern void *__libc_malloc(size_t n);

void *
malloc(size_t n)
{
	malloc_calls++;
	return __libc_malloc(n);
}

static void
count_allocations(void)
{
}
#else
#error "test_upcase.c counts allocations through glibc or ASan"
#endif

static void
test_transform_never_allocates(void **state)
{
	static const char text[] = "Straße ǆ ΐ ﬃ привет мир καλημέρα "
	                           "日本語 😀 𐐨 \xff\xc3";
	uint8_t out[UPC_OUT_MAX(sizeof(text))];
	struct upc_stream st = { 0 };
	unsigned long before;
	char *probe;

	(void)state;
	if (UPC_TEST_VALGRIND)
		/* memcheck replaces malloc itself: the glibc hook would count
		 * nothing and its blocks look leaked (make valgrind) */
		skip();
	count_allocations();
	before = malloc_calls;
	probe = strdup("x"); /* the counter must see library calls */
	assert_int_equal(malloc_calls - before, 1);
	free(probe);
	before = malloc_calls;
	for (size_t i = 0; i + 1 < sizeof(text); i++)
		upc_feed(&st, UPC_UNICODE, (const uint8_t *)text + i, 1, out);
	upc_finish(&st, out);
	upc_buf(UPC_UNICODE, (const uint8_t *)text, sizeof(text) - 1, out);
	upc_buf(UPC_ASCII, (const uint8_t *)text, sizeof(text) - 1, out);
	assert_int_equal(malloc_calls - before, 0);
}

static int
load_codepoints(void **state)
{
	(void)state;
	return oracle_run(&codepoints, "codepoints", NULL, NULL) ? 0 : -1;
}

static int
free_codepoints(void **state)
{
	(void)state;
	free(codepoints.buf);
	return 0;
}

int
main(void)
{
	const char *env = getenv("UPPERD_TEST_SEED");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_codepoint),
		cmocka_unit_test(test_every_codepoint_stream),
		cmocka_unit_test(test_broken_utf8_as_python_surrogateescape),
		cmocka_unit_test(test_samples_split_everywhere),
		cmocka_unit_test(test_carry_steps),
		cmocka_unit_test(test_worst_growth),
		cmocka_unit_test(test_ascii_run_edges),
		cmocka_unit_test(test_ascii_mode_maps_only_a_to_z),
		cmocka_unit_test(test_ascii_random_as_reference),
		cmocka_unit_test(test_transform_never_allocates),
	};

	seed = env != NULL ? strtoull(env, NULL, 0) :
	                     (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
	fprintf(stderr, "seed %llu (set UPPERD_TEST_SEED to repeat)\n",
	    (unsigned long long)seed);
	return cmocka_run_group_tests(tests, load_codepoints, free_codepoints);
}
