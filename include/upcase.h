/*
 * upcase.h: the uppercase transform, a pure streaming function.
 *
 * unicode mode uppercases valid UTF-8 with Unicode full case mapping,
 * byte-for-byte as Python 3's str.upper(); bytes that are not valid UTF-8
 * pass through unchanged.  A character split across two feeds is carried in
 * the stream state and uppercased once it is complete.  ascii mode maps only
 * a-z and never carries.
 */
#ifndef UPPERD_UPCASE_H
#define UPPERD_UPCASE_H

#include <stddef.h>
#include <stdint.h>

enum upc_mode { UPC_UNICODE, UPC_ASCII };

/* Longest incomplete UTF-8 prefix a stream may carry between feeds. */
#define UPC_CARRY_MAX 3
/* Output room a feed of n bytes may need: full case mapping grows a
 * character's UTF-8 form at most threefold (U+0390 -> 3 code points). */
#define UPC_OUT_MAX(n) (3 * ((size_t)(n) + UPC_CARRY_MAX))

/* Per-connection state; zero-initialised is the start of a stream. */
struct upc_stream {
	uint8_t carry[UPC_CARRY_MAX];
	uint8_t ncarry;
};

/* Transform n bytes of in into out (room UPC_OUT_MAX(n)); returns the
 * bytes written.  An incomplete character at the end is kept in st. */
size_t upc_feed(struct upc_stream *st, enum upc_mode mode, const uint8_t *in,
    size_t n, uint8_t *out);

/* End of stream: write the carried bytes unchanged (they never completed a
 * character); returns the bytes written (at most UPC_CARRY_MAX). */
size_t upc_finish(struct upc_stream *st, uint8_t *out);

/* One-shot transform of a whole message (a datagram): feed + finish. */
size_t upc_buf(enum upc_mode mode, const uint8_t *in, size_t n, uint8_t *out);

/* Uppercase ASCII a-z in place, a word at a time; exported for the
 * benchmark's reference server and for the fast path. */
void upc_ascii_inplace(uint8_t *p, size_t n);

#endif
