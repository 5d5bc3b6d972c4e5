/*
 * log.h: one line per event, one write(2) per line, in the OpenBSD shape:
 * "level process[pid]: message".  Shared by the supervisor and workers (a
 * worker inherits the log fd and renames itself with log_procname()).
 */
#ifndef UPPERD_LOG_H
#define UPPERD_LOG_H

enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG
};

/* Lines above level are dropped; logging starts at info, on stderr, as
 * "supervisor", and a reload may change the level. */
void log_setlevel(enum log_level level);
/* Name used in every line from now on, e.g. "worker 3". */
void log_procname(const char *name);
/* Append to path (O_APPEND) instead of stderr; called again to reopen after
 * rotation.  -1 with errno on failure, the old destination kept. */
int log_open(const char *path);
/* The same, refusing a symlink as the last component (ELOOP): for a root
 * process that will hand the file to another user, whose symlink there
 * could name any file of root's. */
int log_open_nofollow(const char *path);
/* Back to stderr, as without --log-file (a reload that drops it). */
void log_to_stderr(void);
/* The fd lines go to, so a forked worker can keep it open. */
int log_fd(void);

void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Log an error (with strerror(errno) for fatal) and exit(1). */
void
fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void
fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
