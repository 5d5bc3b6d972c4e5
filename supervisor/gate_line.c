/*
 * gate_line.c: is this the start of an HTTP request?  The pure half of the
 * stats endpoint's gate (gate.c): it looks only at bytes, so it is
 * unit-tested on its own (tests/unit/test_gate_line.c).
 */
#include <string.h>

#include "gate_line.h"

/* RFC 9110 token characters, for the method. */
static int
gate_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A request target's characters: visible ASCII and above, no space. */
static int
gate_vchar(unsigned char c)
{
	return c > ' ' && c != 0x7f;
}

/* The line ran out of bytes: wait for more, unless it is already too long. */
static int
gate_short(size_t n)
{
	return n >= GATE_LINE_MAX ? GATE_LONG : GATE_MORE;
}

/* A non-empty run of at most max chars that ok() accepts, from *i, then
 * one space; GATE_VALID with *i past the space, else the line's verdict.
 * A run past max is malformed at once, not a line too long: a method
 * longer than any method is not a long URI (RFC 9112 3: 501 or 400). */
static int
gate_word(const char *buf, size_t n, size_t *i, int (*ok)(unsigned char),
    size_t max)
{
	size_t start = *i;

	while (*i < n && *i - start <= max && ok((unsigned char)buf[*i]))
		(*i)++;
	if (*i - start > max)
		return GATE_BAD;
	if (*i == n)
		return gate_short(n);
	if (*i == start || buf[(*i)++] != ' ')
		return GATE_BAD;
	return GATE_VALID;
}

/*
 * Classify the start of a request line: GATE_VALID once a whole
 * well-formed one is there (*end is then the offset after its LF),
 * GATE_MORE while it may still become one, GATE_BAD or GATE_LONG
 * otherwise.  Leading empty lines are allowed (RFC 9112 2.2).
 */
static int
gate_line(const char *buf, size_t n, size_t *end)
{
	size_t i = 0, start;
	int v;

	while (i < n && (buf[i] == '\r' || buf[i] == '\n'))
		i++;
	if ((v = gate_word(buf, n, &i, gate_tchar, GATE_METHOD_MAX)) !=
	        GATE_VALID ||
	    (v = gate_word(buf, n, &i, gate_vchar, n)) != GATE_VALID)
		return v; /* method, target */
	start = i;
	while (i < n && buf[i] != '\n')
		i++;
	if (i == n)
		return gate_short(n);
	*end = i + 1;
	if (buf[i - 1] == '\r')
		i--;
	if (i - start != 8 || memcmp(buf + start, "HTTP/", 5) != 0 ||
	    buf[start + 5] < '0' || buf[start + 5] > '9' ||
	    buf[start + 6] != '.' || buf[start + 7] < '0' ||
	    buf[start + 7] > '9')
		return GATE_BAD;
	return GATE_VALID;
}

int
gate_check(const char *buf, size_t n)
{
	size_t end;

	return gate_line(buf, n, &end);
}

/*
 * Classify the start of a request as libmicrohttpd would get it:
 * GATE_VALID once the request line is well-formed and the header block
 * has ended (an empty line), so that it answers at once and never holds
 * a slow client; GATE_MORE before; GATE_BAD or GATE_LONG for the line;
 * GATE_HUGE when the head does not end within GATE_HEAD_MAX bytes.
 */
int
gate_head(const char *buf, size_t n)
{
	const char *nl;
	size_t i, len;
	int v;

	v = gate_line(buf, n < GATE_LINE_MAX ? n : GATE_LINE_MAX, &i);
	if (v != GATE_VALID)
		return v;
	while ((nl = memchr(buf + i, '\n', n - i)) != NULL) {
		len = (size_t)(nl - (buf + i));
		i += len + 1;
		if (len == 0 || (len == 1 && nl[-1] == '\r'))
			return i <= GATE_HEAD_MAX ? GATE_VALID : GATE_HUGE;
	}
	return n >= GATE_HEAD_MAX ? GATE_HUGE : GATE_MORE;
}

/*
 * Classify the start of a connection to the HTTPS endpoint, where the
 * request itself is encrypted: GATE_VALID once the first TLS record, a
 * handshake record (the ClientHello), is whole, or fills GATE_HEAD_MAX;
 * GATE_MORE before; GATE_BAD for bytes that do not start a TLS handshake
 * (plain HTTP to the HTTPS port, say).
 */
int
gate_tls(const char *buf, size_t n)
{
	const unsigned char *p = (const unsigned char *)buf;
	size_t len;

	if ((n >= 1 && p[0] != GATE_TLS_HANDSHAKE) || (n >= 2 && p[1] != 3))
		return GATE_BAD;
	if (n < 5)
		return GATE_MORE;
	len = (size_t)p[3] << 8 | p[4];
	if (len == 0 || len > GATE_TLS_RECORD_MAX)
		return GATE_BAD;
	return n >= 5 + len || n >= GATE_HEAD_MAX ? GATE_VALID : GATE_MORE;
}
