/*
 * fuzz_config.c: libFuzzer harness for the config file parser and the
 * option parser (config.c).
 *
 * The first input byte picks what the rest is: a config file (fed to
 * cfg_parse_file through a memfd's /proc path, so the real fopen and
 * getline path runs), a command line (argv split at NUL bytes, given to
 * cfg_load), or both (file, then "\0\0\0", then arguments, loaded with
 * "-c" naming the file first).  Whatever the input, the parser must
 * return: on error a single printable line in err and the settings left
 * exactly as they were (a reload with a broken file keeps the running
 * ones); on success settings within their documented ranges.  Arguments
 * holding a '/' are skipped so that the fuzzer cannot name /dev/zero or
 * a FIFO as the config file; relative names only find nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

#define FZ_MAX_ARGS 64

static int fz_fd = -1;
static char fz_path[64];

static void
fz_fail(const char *what, const char *err)
{
	fprintf(stderr, "%s: [%s]\n", what, err);
	abort();
}

/* The memfd's contents become file bytes; its path in fz_path. */
static void
fz_file(const uint8_t *p, size_t n)
{
	if (fz_fd == -1) {
		if ((fz_fd = memfd_create("upperd.conf", 0)) == -1)
			abort();
		snprintf(fz_path, sizeof(fz_path), "/proc/self/fd/%d", fz_fd);
	}
	if (ftruncate(fz_fd, 0) == -1 ||
	    (n > 0 && pwrite(fz_fd, p, n, 0) != (ssize_t)n))
		abort();
}

/* err must be one non-empty line of printable text. */
static void
fz_check_err(const char *err, size_t errlen)
{
	size_t i, n = strnlen(err, errlen);

	if (n == 0 || n == errlen)
		fz_fail("error message empty or unterminated", "");
	for (i = 0; i < n; i++)
		if ((unsigned char)err[i] < 0x20 || err[i] == 0x7f)
			fz_fail("control byte in error message", err);
}

static void
fz_check_ok(const struct cfg *c)
{
	if (c->workers < 1 || c->workers > CFG_MAX_WORKERS)
		fz_fail("workers out of range", "");
	if (c->case_mode != UPC_UNICODE && c->case_mode != UPC_ASCII)
		fz_fail("case out of range", "");
	if (strnlen(c->config, sizeof(c->config)) == sizeof(c->config) ||
	    strnlen(c->log_file, sizeof(c->log_file)) == sizeof(c->log_file) ||
	    strnlen(c->pid_file, sizeof(c->pid_file)) == sizeof(c->pid_file) ||
	    strnlen(c->user, sizeof(c->user)) == sizeof(c->user))
		fz_fail("unterminated string setting", "");
}

static void
fz_parse_file(const uint8_t *p, size_t n)
{
	struct cfg c, before;
	char err[CFG_ERR_MAX];

	fz_file(p, n);
	memset(&c, 0, sizeof(c));
	cfg_defaults(&c);
	before = c;
	if (cfg_parse_file(&c, fz_path, err, sizeof(err)) == -1) {
		fz_check_err(err, sizeof(err));
		if (memcmp(&c, &before, sizeof(c)) != 0)
			fz_fail("failed parse changed the settings", err);
	} else
		fz_check_ok(&c);
}

/* argv from NUL-separated bytes after "upperd" (and "-c FILE"); argument
 * copies are exact heap strings, so ASan sees any overread. */
static void
fz_load(const uint8_t *p, size_t n, int with_file)
{
	char *argv[FZ_MAX_ARGS + 4], *arg;
	struct cfg c, before;
	char err[CFG_ERR_MAX];
	enum cfg_action action;
	size_t i = 0, len;
	int argc = 0, first, r;

	argv[argc++] = strdup("upperd");
	if (with_file) {
		argv[argc++] = strdup("-c");
		argv[argc++] = strdup(fz_path);
	}
	first = argc;
	while (i < n && argc < FZ_MAX_ARGS + first) {
		len = strnlen((const char *)p + i, n - i);
		if ((arg = malloc(len + 1)) == NULL)
			abort();
		memcpy(arg, p + i, len);
		arg[len] = '\0';
		argv[argc++] = arg;
		i += len + 1;
	}
	argv[argc] = NULL;
	for (r = first; r < argc; r++)
		if (strchr(argv[r], '/') != NULL)
			goto out;
	memset(&c, 0, sizeof(c));
	cfg_defaults(&c);
	before = c;
	r = cfg_load(&c, argc, argv, &action, err, sizeof(err));
	if (r == -1) {
		fz_check_err(err, sizeof(err));
		if (memcmp(&c, &before, sizeof(c)) != 0)
			fz_fail("failed load changed the settings", err);
	} else if (action == CFG_RUN)
		fz_check_ok(&c);
out:
	for (r = 0; r < argc; r++)
		free(argv[r]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *sep;

	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		fz_parse_file(data + 1, size - 1);
		break;
	case 1:
		fz_load(data + 1, size - 1, 0);
		break;
	default:
		sep = memmem(data + 1, size - 1, "\0\0\0", 3);
		if (sep == NULL) {
			fz_file(data + 1, size - 1);
			fz_load(NULL, 0, 1);
		} else {
			fz_file(data + 1, (size_t)(sep - (data + 1)));
			fz_load(sep + 3, size - (size_t)(sep + 3 - data), 1);
		}
	}
	return 0;
}
