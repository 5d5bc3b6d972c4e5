/*
 * gate_line.h: the request-line check in front of libmicrohttpd.
 */
#ifndef UPPERD_GATE_LINE_H
#define UPPERD_GATE_LINE_H

#include <stddef.h>

#define GATE_LINE_MAX 8192 /* longest request line accepted */
/* Longest method accepted: the longest registered one has 17 letters. */
#define GATE_METHOD_MAX 32
/* Longest request head (line and headers) accepted: scrapers send a few
 * hundred bytes; libmicrohttpd, within its 32 KiB per connection, takes
 * more, but the gate peeks at the whole head each time a segment comes. */
#define GATE_HEAD_MAX 16384

#define GATE_TLS_HANDSHAKE 22     /* a TLS record's content type */
#define GATE_TLS_RECORD_MAX 16384 /* its longest plaintext (RFC 8446) */

enum gate_verdict { GATE_VALID, GATE_MORE, GATE_BAD, GATE_LONG, GATE_HUGE };

/* Classify the first n bytes a client sent (see gate_line.c): the
 * request line alone, or the whole head. */
int gate_check(const char *buf, size_t n);
int gate_head(const char *buf, size_t n);
/* The same for the first TLS record of an HTTPS connection. */
int gate_tls(const char *buf, size_t n);

#endif
