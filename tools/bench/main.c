/*
 * main.c: upper-bench, the load generator for upperd (and for any server
 * that uppercases: the benchmark's reference server, the textbook
 * servers).  main() wires the run: options, fd limit, signals, the client
 * processes, the report, the exit status.  bench.h tells where each part
 * lives.
 *
 * Every reply byte is compared with the expected stream; a wrong byte
 * counts one error per request (per 64 KiB in bulk) and makes the exit
 * status 1.  The run always ends by warmup + duration + grace: requests a
 * stalled server never answers count as errors (UDP: as lost).
 */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>

#include "bench.h"

void
ub_die(const char *fmt, ...)
{
	va_list ap;

	fputs("upper-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* calloc that cannot fail: a load generator without memory is done. */
void *
ub_calloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (p == NULL)
		ub_die("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

int
main(int argc, char **argv)
{
	struct ub_result *t;
	struct ub_opts o;
	sigset_t set;
	int rc;

	ub_opt_parse(&o, argc, argv);
	ub_plan_check_fds(&o);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	t = ub_calloc(1, sizeof(*t));
	rc = ub_proc_run(&o, t);
	ub_report_print(&o, t);
	/* A run where nothing was answered failed, even with no wrong byte
	 * (bulk counts bytes, not requests). */
	if (t->requests == 0 && !o.mode->bytes_line)
		rc = 1;
	rc = rc || t->errors || t->connect_failures ? 1 : 0;
	free(t);
	return rc;
}
