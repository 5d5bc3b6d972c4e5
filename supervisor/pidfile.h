/*
 * pidfile.h: the locked pid file (pidfile.c).
 */
#ifndef UPPERD_PIDFILE_H
#define UPPERD_PIDFILE_H

#include <sys/types.h>

/* Open and lock path, creating it, without touching what it holds.
 * -1 with errno EWOULDBLOCK and *holder set (0 if unreadable) when a
 * running upperd holds it, or -1 with another errno. */
int pid_lock(const char *path, pid_t *holder);
/* Write pid into the locked file, replacing what it held. */
int pid_write(pid_t pid);
/* The locked file's descriptor (close-on-exec), or -1: whoever re-execs
 * the supervisor passes it on to keep the lock. */
int pid_fd(void);
/* After a re-exec: fd (handed over open) is the locked file at path. */
int pid_adopt(int fd, const char *path);
/* Remove the file if this process holds its lock, then drop the lock;
 * -1 with errno if the unlink failed (the file is then emptied, and the
 * lock dropped anyway). */
int pid_remove(void);

#endif
