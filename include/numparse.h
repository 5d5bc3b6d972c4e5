/*
 * numparse.h: the one strict parser of unsigned decimal numbers, shared by
 * the option parser and the address parser.  strtoul alone takes " 7",
 * "+7", "-7" (as a huge number) and "7x"; an operator's typo must be an
 * error, never a surprising value.
 */
#ifndef UPPERD_NUMPARSE_H
#define UPPERD_NUMPARSE_H

/* Parse s, decimal digits only, into *out if min <= value <= max;
 * -1 otherwise (nothing stored). */
int num_parse_ulong(const char *s, unsigned long min, unsigned long max,
    unsigned long *out);

#endif
