/*
 * pidfile.c: the pid file, locked with flock(2) for as long as upperd
 * runs.  A second upperd given the same file finds it locked and names
 * the running pid instead of overwriting it (and deleting it on exit); a
 * file left by a process that is gone holds no lock and is taken over.
 * The lock belongs to the open file description: forked workers close
 * their copy without releasing it, and a re-exec that keeps the fd open
 * (clearing FD_CLOEXEC) keeps the lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pidfile.h"

#define PID_TRIES 5 /* a file unlinked under us by a stopping holder */

static int pid_lockfd = -1;
static char pid_path[PATH_MAX];

/* The pid a locked file names, or 0. */
static pid_t
pid_read(int fd)
{
	char buf[32];
	ssize_t n;
	long v;
	char *end;

	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	v = strtol(buf, &end, 10);
	if (end == buf || v <= 0 || v > INT_MAX)
		return 0;
	return (pid_t)v;
}

/* Is fd still the file at path?  The holder may have unlinked it between
 * our open and our lock: then the lock guards nothing, start over. */
static int
pid_same(int fd, const char *path)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 && stat(path, &b) == 0 &&
	    a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int
pid_lock(const char *path, pid_t *holder)
{
	int e, fd, i;

	*holder = 0;
	if (strlen(path) >= sizeof(pid_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (i = 0; i < PID_TRIES; i++) {
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
		    0644);
		if (fd == -1)
			return -1;
		if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
			e = errno;
			if (e == EWOULDBLOCK)
				*holder = pid_read(fd);
			close(fd);
			errno = e;
			return -1;
		}
		if (pid_same(fd, path)) {
			pid_lockfd = fd;
			memcpy(pid_path, path, strlen(path) + 1);
			return 0;
		}
		close(fd);
	}
	errno = EAGAIN;
	return -1;
}

int
pid_write(pid_t pid)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);

	if (pid_lockfd == -1 || ftruncate(pid_lockfd, 0) == -1 ||
	    pwrite(pid_lockfd, buf, (size_t)n, 0) != n)
		return -1;
	return 0;
}

int
pid_fd(void)
{
	return pid_lockfd;
}

int
pid_adopt(int fd, const char *path)
{
	if (strlen(path) >= sizeof(pid_path) ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) == -1)
		return -1;
	pid_lockfd = fd;
	memcpy(pid_path, path, strlen(path) + 1);
	return 0;
}

int
pid_remove(void)
{
	int ret, saved;

	if (pid_lockfd == -1)
		return 0;
	/* Unlink before unlocking: a starter waiting for the lock then
	 * finds its fd no longer names the file (pid_same) and retries.
	 * After --user dropped the right to unlink it, empty it at least:
	 * a stale pid would name whatever process gets it next (and
	 * logrotate's postrotate would signal that one). */
	if ((ret = unlink(pid_path)) == -1) {
		saved = errno;
		(void)!ftruncate(pid_lockfd, 0);
		errno = saved;
	}
	close(pid_lockfd);
	pid_lockfd = -1;
	return ret;
}
