/*
 * proctitle.c: process titles (proctitle.h).  Linux shows, as a process's
 * command line, the memory where its argv strings were laid out, and the
 * environment strings follow it without a gap.  ptl_init moves both to
 * the heap, which frees that whole area for a title; ptl_set writes the
 * title there, NUL-padded so no old byte shows.  A forked worker inherits
 * the same layout and sets its own title in its own copy of the pages.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "proctitle.h"

extern char **environ;

static char *ptl_start, *ptl_end; /* the writable area, [start, end) */
/* The copies stay referenced from here, even after setenv swaps environ
 * for an array of its own (they are not leaks); volatile, or the compiler
 * drops the stores, which nothing reads back. */
static char **volatile ptl_argv, **volatile ptl_env;

/* End of the area from p on: each next string must start right after. */
static char *
ptl_extend(char *end, char **v)
{
	for (; v != NULL && *v != NULL; v++)
		if (*v == end)
			end = *v + strlen(*v) + 1;
	return end;
}

/* One block for the array and its strings: a string unsetenv drops from
 * environ stays inside a block we hold, so it is never a leak. */
static char **
ptl_copy(char **v, int n)
{
	size_t len = 0, k;
	char **c, *p;
	int i;

	for (i = 0; i < n; i++)
		len += strlen(v[i]) + 1;
	if ((c = malloc(((size_t)n + 1) * sizeof(*c) + len)) == NULL)
		return NULL;
	p = (char *)(c + n + 1);
	for (i = 0; i < n; i++) {
		k = strlen(v[i]) + 1;
		c[i] = memcpy(p, v[i], k);
		p += k;
	}
	c[n] = NULL;
	return c;
}

char **
ptl_init(int argc, char **argv)
{
	int nenv = 0;
	char *end;

	if (argc < 1 || argv[0] == NULL)
		return argv;
	while (environ != NULL && environ[nenv] != NULL)
		nenv++;
	end = ptl_extend(argv[0], argv);
	end = ptl_extend(end, environ);
	if ((ptl_argv = ptl_copy(argv, argc)) == NULL ||
	    (ptl_env = ptl_copy(environ, nenv)) == NULL)
		return argv;
	environ = ptl_env;
	ptl_start = argv[0];
	ptl_end = end;
	return ptl_argv;
}

void
ptl_set(const char *comm, const char *fmt, ...)
{
	size_t room, n;
	va_list ap;
	int r;

	(void)prctl(PR_SET_NAME, comm, 0, 0, 0);
	if (ptl_start == NULL || ptl_end - ptl_start < 2)
		return;
	room = (size_t)(ptl_end - ptl_start);
	va_start(ap, fmt);
	r = vsnprintf(ptl_start, room, fmt, ap);
	va_end(ap);
	n = r < 0 ? 0 : (size_t)r >= room ? room - 1 : (size_t)r;
	memset(ptl_start + n, '\0', room - n);
}
