/*
 * upcase_speed.c: micro-benchmark of the uppercase transform alone.
 *
 * Feeds 64 KiB chunks through upc_feed() for about a second per case and
 * prints input MB/s (10^6 bytes), so the transform's share of a network
 * benchmark is known.  The last line times a bare u8_toupper() over the
 * mixed text: the baseline the memoised path is measured against.  Built
 * as bin/upcase-speed by `make bench`, which prints its figures.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unicase.h>

#include "counters.h"
#include "upcase.h"

#define CHUNK (64 * 1024)

/* Text per case; repeated to fill a chunk, cut at a character edge. */
static const char ascii_text[] =
    "The quick brown fox jumps over the lazy dog; 0123456789 {}[]!\n";
static const char mixed_text[] =
    "The quick brown fox, die Straße, café naïve. "
    "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον σκύλο. "
    "Быстрая коричневая лиса прыгает через ленивую собаку. "
    "敏捷的棕色狐狸跳过了懒狗。素早い茶色の狐が怠惰な犬を飛び越える。\n";
static const char cyrillic_text[] =
    "съешь же ещё этих мягких французских булок да выпей чаю ";
static const char cjk_text[] = "敏捷的棕色狐狸跳过了懒狗素早い茶色の狐";

static uint8_t in[CHUNK], out[UPC_OUT_MAX(CHUNK)];

/* Seconds on the monotonic clock, from the one clock helper. */
static double
now(void)
{
	return (double)ctr_clock_ns() / 1e9;
}

/* Fill in[] with copies of text; returns the length used. */
static size_t
fill(const char *text)
{
	size_t len = strlen(text), n = 0;

	while (n + len <= sizeof(in)) {
		memcpy(in + n, text, len);
		n += len;
	}
	return n;
}

/* Keeps the compiler from dropping the work. */
static volatile uint8_t sink;

static void
run_feed(const char *name, enum upc_mode mode, const char *text)
{
	struct upc_stream st = { 0 };
	size_t n = fill(text), total = 0;
	double t0 = now(), t;

	do {
		for (int i = 0; i < 64; i++) {
			size_t w = upc_feed(&st, mode, in, n, out);

			sink ^= out[w / 2];
			total += n;
		}
	} while ((t = now() - t0) < 1.0);
	printf("%-34s %9.0f MB/s\n", name, (double)total / t / 1e6);
}

static void
run_inplace(void)
{
	size_t n = fill(ascii_text), total = 0;
	double t0 = now(), t;

	do {
		for (int i = 0; i < 64; i++) {
			upc_ascii_inplace(in, n);
			in[0] = 't'; /* keep something to do */
			total += n;
		}
	} while ((t = now() - t0) < 1.0);
	printf("%-34s %9.0f MB/s\n", "upc_ascii_inplace, ascii text",
	    (double)total / t / 1e6);
}

/* The same text through bare u8_toupper(), for comparison. */
static void
run_libunistring(void)
{
	size_t n = fill(mixed_text), total = 0, len;
	double t0 = now(), t;

	do {
		for (int i = 0; i < 16; i++) {
			len = sizeof(out);
			if (u8_toupper(in, n, NULL, NULL, out, &len) != out)
				abort();
			total += n;
		}
	} while ((t = now() - t0) < 1.0);
	printf("%-34s %9.0f MB/s\n", "bare u8_toupper, mixed text",
	    (double)total / t / 1e6);
}

int
main(void)
{
	run_feed("ascii mode, ascii text", UPC_ASCII, ascii_text);
	run_inplace();
	run_feed("unicode mode, ascii text", UPC_UNICODE, ascii_text);
	run_feed("unicode mode, mixed text", UPC_UNICODE, mixed_text);
	run_feed("unicode mode, cyrillic text", UPC_UNICODE, cyrillic_text);
	run_feed("unicode mode, cjk text", UPC_UNICODE, cjk_text);
	run_feed("ascii mode, mixed text", UPC_ASCII, mixed_text);
	run_libunistring();
	return 0;
}
