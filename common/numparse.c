/*
 * numparse.c: strict decimal numbers for options, config keys and ports.
 */
#include <errno.h>
#include <stdlib.h>

#include "numparse.h"

int
num_parse_ulong(const char *s, unsigned long min, unsigned long max,
    unsigned long *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}
