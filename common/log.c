/*
 * log.c: the one logger of both process kinds.  Each line is formatted into
 * a stack buffer and written with a single write(2), so lines from the
 * supervisor and its workers never interleave mid-line on a shared fd.
 * Every line carries a UTC timestamp, on stderr as in a log file, except
 * when stderr is journald's stream (JOURNAL_STREAM names it, as systemd
 * sets it for a service): the journal stamps each line itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum log_level log_level = LOG_LEVEL_INFO;
static char log_name[32] = "supervisor";
static int log_out = STDERR_FILENO;
static int log_stamp = -1; /* -1: not decided yet for stderr */

static const char *const log_level_names[] = { "error", "warn", "info",
	"debug" };

void
log_setlevel(enum log_level level)
{
	log_level = level;
}

void
log_procname(const char *name)
{
	snprintf(log_name, sizeof(log_name), "%s", name);
}

static int
log_open_with(const char *path, int flags)
{
	int fd;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | flags,
	    0644);
	if (fd == -1)
		return -1;
	if (log_out != STDERR_FILENO)
		close(log_out);
	log_out = fd;
	log_stamp = 1;
	return 0;
}

int
log_open(const char *path)
{
	return log_open_with(path, 0);
}

int
log_open_nofollow(const char *path)
{
	return log_open_with(path, O_NOFOLLOW);
}

void
log_to_stderr(void)
{
	if (log_out != STDERR_FILENO)
		close(log_out);
	log_out = STDERR_FILENO;
	log_stamp = -1;
}

/* Whether stderr is the journal's stream: JOURNAL_STREAM is "DEV:INODE"
 * of it (systemd.exec(5)); a stderr redirected since is not. */
static int
log_stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	return js != NULL && sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
	    fstat(STDERR_FILENO, &st) == 0 &&
	    (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

int
log_fd(void)
{
	return log_out;
}

static void
log_vwrite(enum log_level level, int with_errno, const char *fmt, va_list ap)
{
	char line[1024];
	int saved = errno;
	size_t n = 0;
	int r;

	if (level > log_level)
		return;
	if (log_stamp == -1)
		log_stamp = !log_stderr_is_journal();
	if (log_stamp) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ ",
		    ts.tv_nsec / 1000000);
	}
	r = snprintf(line + n, sizeof(line) - n,
	    "%s %s[%d]: ", log_level_names[level], log_name, (int)getpid());
	n += (size_t)r;
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	n = r < 0 ? n : n + (size_t)r;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	if (with_errno)
		n += (size_t)snprintf(line + n, sizeof(line) - n, ": %s",
		    strerror(saved));
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(log_out, line, n);
	errno = saved;
}

/* The five loggers, written out so grep and ctags find them. */
void
log_warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_WARN, 1, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_WARN, 0, fmt, ap);
	va_end(ap);
}

void
log_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_INFO, 0, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_DEBUG, 0, fmt, ap);
	va_end(ap);
}

/* Both fatals end here: one line at error level, then exit(1). */
static void __attribute__((noreturn))
log_vfatal(int with_errno, const char *fmt, va_list ap)
{
	log_vwrite(LOG_LEVEL_ERROR, with_errno, fmt, ap);
	exit(1);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vfatal(1, fmt, ap);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vfatal(0, fmt, ap);
}
