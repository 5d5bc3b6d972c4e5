/*
 * http_line.h: the request-line check in front of libmicrohttpd.
 */
#ifndef UPPERD_HTTP_LINE_H
#define UPPERD_HTTP_LINE_H

#include <stddef.h>

#define GATE_LINE_MAX 8192 /* longest request line accepted */

enum gate_verdict { GATE_VALID, GATE_MORE, GATE_BAD, GATE_LONG };

/* Classify the first n bytes a client sent (see http_line.c). */
int gate_check(const char *buf, size_t n);

#endif
