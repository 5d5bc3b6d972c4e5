/*
 * upgrade.c: USR2, the binary upgrade, done in place as HAProxy's master
 * and PHP-FPM do it: the supervisor execve()s the executable now found at
 * the path it was started from, keeping its pid (so the pid file, MAINPID,
 * its workers and waitpid all stay valid), its listening sockets and the
 * memfd of the counter table, and hands everything else over in a second
 * memfd (upg_state.c).  The new image restores that state, then replaces
 * the old binary's workers slot by slot as a reload does.
 *
 * After execve there is no old image to go back to, so the new executable
 * is tried first: a probe (fork + exec of it with UPG_ENV_PROBE set) must
 * parse the config, map the table, decode the state and write "ready" on
 * a pipe, then exit 0, within --heartbeat-timeout.  Anything else (the
 * file missing or not executable, an exit, a crash, a hang, a refusal of
 * the state's layout) leaves the running image serving on, unchanged,
 * with one log line saying why and upgrades.failed counted.  HUP, TERM,
 * INT and another USR2 wait while a probe runs and are replayed after it,
 * by whichever image is then in charge.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "pidfile.h"
#include "upgrade.h"

#define NS 1000000000ULL
#define UPG_QUIESCE_NS 1000000000ULL /* in-flight scrapes get this long */
#define UPG_ENV_PIPE "UPPERD_UPGRADE_PIPE"

extern char **environ;

/* Where "upperd" was found at start: argv[0] as given when it holds a
 * slash (made absolute against the start-time cwd), else the first PATH
 * entry holding an executable of that name.  Not /proc/self/exe: that
 * names the file this image was loaded from, which an upgrade replaces. */
static void
upg_resolve(char *out, size_t len, const char *argv0)
{
	char cwd[PATH_MAX], cand[PATH_MAX * 2];
	const char *path = getenv("PATH"), *p, *e;
	int n;

	if (getcwd(cwd, sizeof(cwd)) == NULL)
		snprintf(cwd, sizeof(cwd), "/");
	if (strchr(argv0, '/') == NULL && path != NULL) {
		for (p = path; *p; p = *e ? e + 1 : e) {
			e = strchrnul(p, ':');
			if (e == p || p[0] != '/')
				n = snprintf(cand, sizeof(cand), "%s/%.*s/%s",
				    cwd, (int)(e - p), p, argv0);
			else
				n = snprintf(cand, sizeof(cand), "%.*s/%s",
				    (int)(e - p), p, argv0);
			if (n > 0 && (size_t)n < len &&
			    access(cand, X_OK) == 0) {
				memcpy(out, cand, (size_t)n + 1);
				return;
			}
		}
	}
	while (argv0[0] == '.' && argv0[1] == '/')
		argv0 += 2;
	if (argv0[0] == '/')
		n = snprintf(cand, sizeof(cand), "%s", argv0);
	else
		n = snprintf(cand, sizeof(cand), "%s/%s", cwd, argv0);
	/* too long a path: an upgrade then fails on a missing file */
	if (n > 0 && (size_t)n < len)
		memcpy(out, cand, (size_t)n + 1);
	else
		out[0] = '\0';
}

void
upg_init(struct sup *s, const char *argv0)
{
	s->upg.pipe_fd = -1;
	upg_resolve(s->upg.exe, sizeof(s->upg.exe), argv0);
}

int
upg_busy(const struct sup *s)
{
	return s->upg.probe != 0;
}

/* systemd: RELOADING=1 now, READY=1 once the new workers serve (the new
 * image's ready line), or at once when the upgrade failed. */
void
upg_notify_reloading(struct sup *s)
{
	(void)s;
	ntf_reloading();
}

void
upg_notify_ready(struct sup *s)
{
	ntf_ready(s);
}

/* A signal that must wait for the running upgrade; 1 when queued. */
int
upg_queue(struct sup *s, int signo)
{
	unsigned bit;

	if (!upg_busy(s))
		return 0;
	switch (signo) {
	case SIGHUP:
		bit = UPG_Q_HUP;
		break;
	case SIGTERM:
	case SIGINT:
		bit = UPG_Q_TERM;
		break;
	case SIGUSR2:
		bit = UPG_Q_USR2;
		break;
	default:
		return 0;
	}
	s->upg.queued |= bit;
	log_info("upgrade in progress: %s waits for it to finish",
	    sigabbrev_np(signo));
	return 1;
}

/* What waited, once the image in charge is settled: a stop wins over
 * the rest; a reload comes before another upgrade. */
void
upg_replay(struct sup *s)
{
	unsigned q = s->upg.queued;

	s->upg.queued = 0;
	if (q & UPG_Q_TERM) {
		sup_shutdown(s, 0);
		return;
	}
	if (q & UPG_Q_HUP)
		sup_reload(s);
	if (q & UPG_Q_USR2)
		upg_start(s);
}

static void upg_fail(struct sup *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
upg_fail(struct sup *s, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	s->upg.failed++;
	log_error("upgrade to %s failed, %s %s serves on: %s", s->upg.exe,
	    "upperd", UPPERD_VERSION, why);
	upg_notify_ready(s);
	upg_replay(s);
}

unsigned
upg_fd_list(const struct sup *s, struct upg_fd *l)
{
	unsigned n = 0, i;

	l[n++] = (struct upg_fd){ UPG_FD_TABLE, s->tab_fd };
	/* every address, in order: the new image serves the same list */
	for (i = 0; i < s->ntcp; i++)
		l[n++] = (struct upg_fd){ UPG_FD_TCP, s->tcp_fd[i] };
	for (i = 0; i < s->nudp; i++)
		l[n++] = (struct upg_fd){ UPG_FD_UDP, s->udp_fd[i] };
	if (s->stats_fd != -1)
		l[n++] = (struct upg_fd){ UPG_FD_STATS, s->stats_fd };
	if (pid_fd() != -1)
		l[n++] = (struct upg_fd){ UPG_FD_PIDFILE, pid_fd() };
	return n;
}

/* The state as it is now, in a fresh memfd (close-on-exec); -1 with errno
 * set, nothing left open. */
static int
upg_state_fd(const struct sup *s)
{
	struct upg_fd l[UPG_MAX_FDS];
	unsigned nfds = upg_fd_list(s, l);
	size_t len, off = 0;
	ssize_t n;
	void *buf;
	int fd, saved;

	if ((buf = upg_encode(s, l, nfds, &len)) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	if ((fd = memfd_create("upperd-state", MFD_CLOEXEC)) == -1) {
		free(buf);
		return -1;
	}
	while (off < len) {
		n = pwrite(fd, (char *)buf + off, len - off, (off_t)off);
		if (n <= 0) {
			saved = n == 0 ? EIO : errno;
			free(buf);
			close(fd);
			errno = saved;
			return -1;
		}
		off += (size_t)n;
	}
	free(buf);
	return fd;
}

static int
upg_set_cloexec(int fd, int on)
{
	int fl = fcntl(fd, F_GETFD);

	if (fl == -1)
		return -1;
	return fcntl(fd, F_SETFD, on ? fl | FD_CLOEXEC : fl & ~FD_CLOEXEC);
}

static void
upg_setenv_fd(const char *name, int fd)
{
	char v[16];

	snprintf(v, sizeof(v), "%d", fd);
	setenv(name, v, 1);
}

/* The probe's side of fork: its own process group (so a script's children
 * die with it at the deadline), death with the supervisor, only the state,
 * the table and the pipe besides stdio, then the new executable. */
static void __attribute__((noreturn))
upg_probe_child(struct sup *s, int state_fd, int wfd)
{
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	(void)setpgid(0, 0);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != s->pid)
		_exit(1);
	close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	if (upg_set_cloexec(state_fd, 0) == -1 ||
	    upg_set_cloexec(s->tab_fd, 0) == -1 ||
	    upg_set_cloexec(wfd, 0) == -1)
		_exit(1);
	upg_setenv_fd(UPG_ENV_FD, state_fd);
	upg_setenv_fd(UPG_ENV_PIPE, wfd);
	setenv(UPG_ENV_PROBE, "1", 1);
	execve(s->upg.exe, s->argv, environ);
	dprintf(wfd, "error: cannot execute it: %s\n", strerror(errno));
	_exit(127);
}

/* Why the new executable cannot even be tried, or NULL; the file tried
 * is remembered (upg_replaced). */
static const char *
upg_precheck(struct sup *s)
{
	struct stat st;

	if (stat(s->upg.exe, &st) == -1)
		return strerror(errno);
	if (!S_ISREG(st.st_mode))
		return "not a regular file";
	if (access(s->upg.exe, X_OK) == -1)
		return "not executable";
	s->upg.dev = st.st_dev;
	s->upg.ino = st.st_ino;
	s->upg.size = st.st_size;
	s->upg.mtime = st.st_mtim;
	return NULL;
}

/* Is the file at the path now another one than the probe ran (installed
 * again meanwhile)?  A file gone is left to execve to report. */
static int
upg_replaced(const struct sup *s)
{
	struct stat st;

	if (stat(s->upg.exe, &st) == -1)
		return 0;
	return st.st_dev != s->upg.dev || st.st_ino != s->upg.ino ||
	    st.st_size != s->upg.size ||
	    st.st_mtim.tv_sec != s->upg.mtime.tv_sec ||
	    st.st_mtim.tv_nsec != s->upg.mtime.tv_nsec;
}

/* Fork the probe with the state and the pipe it answers on; the child
 * never returns.  -1 with a reason logged and counted as a failure. */
static int
upg_fork_probe(struct sup *s)
{
	int p[2], state_fd;
	pid_t pid;

	if ((state_fd = upg_state_fd(s)) == -1) {
		upg_fail(s, "cannot write the state: %s", strerror(errno));
		return -1;
	}
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) == -1) {
		upg_fail(s, "pipe: %s", strerror(errno));
		close(state_fd);
		return -1;
	}
	if ((pid = fork()) == -1) {
		upg_fail(s, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		close(state_fd);
		return -1;
	}
	if (pid == 0)
		upg_probe_child(s, state_fd, p[1]);
	close(p[1]);
	close(state_fd);
	s->upg.probe = pid;
	s->upg.pipe_fd = p[0];
	return 0;
}

/* USR2: start the probe of the new executable. */
void
upg_start(struct sup *s)
{
	const char *why;

	/* a stop has begun, lame duck included: the new image would not
	 * know of it and would serve on */
	if (s->mode != SUP_RUNNING || s->lame_until_ns) {
		log_info("upgrade: stopping, USR2 ignored");
		return;
	}
	if (upg_busy(s)) {
		s->upg.queued |= UPG_Q_USR2;
		return;
	}
	log_info("upgrade: trying %s", s->upg.exe);
	upg_notify_reloading(s);
	if ((why = upg_precheck(s)) != NULL) {
		upg_fail(s, "%s", why);
		return;
	}
	if (upg_fork_probe(s) == -1)
		return;
	s->upg.nsaid = 0;
	s->upg.said[0] = '\0';
	s->upg.timed_out = 0;
	s->upg.deadline_ns = ctr_clock_ns() +
	    (uint64_t)s->cfg.heartbeat_timeout * NS;
	if (evsrc_watch(s->ev.ep, s->upg.pipe_fd, SUP_EV_UPGRADE) == -1)
		log_warn("epoll_ctl upgrade pipe");
}

/* Read what the probe wrote so far; closes the pipe at its end. */
void
upg_on_pipe(struct sup *s)
{
	size_t room;
	ssize_t n;
	char junk[256];

	while (s->upg.pipe_fd != -1) {
		room = sizeof(s->upg.said) - 1 - s->upg.nsaid;
		if (room == 0)
			n = read(s->upg.pipe_fd, junk, sizeof(junk));
		else
			n = read(s->upg.pipe_fd, s->upg.said + s->upg.nsaid,
			    room);
		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			epoll_ctl(s->ev.ep, EPOLL_CTL_DEL, s->upg.pipe_fd,
			    NULL);
			close(s->upg.pipe_fd);
			s->upg.pipe_fd = -1;
			break;
		}
		if (room != 0)
			s->upg.nsaid += (size_t)n;
	}
	s->upg.said[s->upg.nsaid] = '\0';
}

/* Wait for in-flight scrapes (at most UPG_QUIESCE_NS), accepting nothing
 * new: a scrape that arrives during the execve waits in the listen
 * backlog for the new image.  A scrape the gate took in the last
 * UPG_QUIESCE_NS is waited for until its head is there and it is
 * answered (its request was on its way); older waiters, idle or
 * trickling, are closed by the execve.  The daemon itself is left
 * running: the execve ends it, and a failed one finds it as it was. */
static void
upg_quiesce_http(struct sup *s)
{
	const union MHD_DaemonInfo *info;
	struct epoll_event ev;
	uint64_t start = ctr_clock_ns(), until = start + UPG_QUIESCE_NS;
	unsigned young;
	int ep;

	if (s->mhd == NULL)
		return;
	(void)epoll_ctl(s->ev.ep, EPOLL_CTL_DEL, s->stats_fd, NULL);
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) != -1 &&
	    evsrc_watch(ep, sup_http_fd(s), SUP_EV_HTTP) == 0) {
		while (ctr_clock_ns() < until) {
			young = gate_settle_waiters(s, start - UPG_QUIESCE_NS);
			MHD_run(s->mhd);
			info = MHD_get_daemon_info(s->mhd,
			    MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
			if (young == 0 &&
			    (info == NULL || info->num_connections == 0))
				break;
			(void)epoll_wait(ep, &ev, 1, 10);
		}
	}
	if (ep != -1)
		close(ep);
}

/* The listeners, the table and the pid file stay open across execve. */
static int
upg_keep_fds(struct sup *s, int keep)
{
	struct upg_fd l[UPG_MAX_FDS];
	unsigned i, n = upg_fd_list(s, l);
	int rc = 0;

	for (i = 0; i < n; i++)
		if (upg_set_cloexec(l[i].fd, !keep) == -1)
			rc = -1;
	return rc;
}

/* An execve that failed left this image in charge: serve on. */
static void
upg_unexec(struct sup *s, int state_fd)
{
	unsetenv(UPG_ENV_FD);
	if (state_fd != -1)
		close(state_fd);
	(void)upg_keep_fds(s, 0);
	if (s->mhd != NULL &&
	    evsrc_watch(s->ev.ep, s->stats_fd, SUP_EV_STATS) == -1 &&
	    errno != EEXIST)
		log_warn("epoll_ctl stats");
}

/* The probe said ready and exited 0: the point of no return. */
static void
upg_exec(struct sup *s)
{
	int state_fd, saved;

	upg_quiesce_http(s);
	if (upg_replaced(s)) {
		upg_unexec(s, -1);
		upg_fail(s, "it was replaced while it was being tried");
		return;
	}
	if ((state_fd = upg_state_fd(s)) == -1 ||
	    upg_set_cloexec(state_fd, 0) == -1 || upg_keep_fds(s, 1) == -1) {
		saved = errno;
		upg_unexec(s, state_fd);
		upg_fail(s, "cannot hand the state over: %s", strerror(saved));
		return;
	}
	upg_setenv_fd(UPG_ENV_FD, state_fd);
	log_info("upgrade: %s is ready, executing it", s->upg.exe);
	execve(s->upg.exe, s->argv, environ);
	saved = errno;
	upg_unexec(s, state_fd);
	upg_fail(s, "execve: %s", strerror(saved));
}

/* The probe has ended: go on with the upgrade or say why not. */
static void
upg_settle(struct sup *s, int status)
{
	const char *said = s->upg.said;
	int ready = strncmp(said, "ready", 5) == 0;
	char sig[16];

	s->upg.said[strcspn(s->upg.said, "\n")] = '\0';
	if (s->upg.timed_out) {
		upg_fail(s, "not ready within %us (--heartbeat-timeout)",
		    s->cfg.heartbeat_timeout);
		return;
	}
	if (s->mode != SUP_RUNNING) {
		upg_fail(s, "upperd is stopping");
		return;
	}
	if (strncmp(said, "error: ", 7) == 0) {
		upg_fail(s, "the new executable refused: %s", said + 7);
		return;
	}
	if (WIFSIGNALED(status)) {
		snprintf(sig, sizeof(sig), "%d", WTERMSIG(status));
		upg_fail(s, "it was killed by signal %s %s", sig,
		    ready ? "after saying ready" : "before it was ready");
		return;
	}
	if (WEXITSTATUS(status) != 0 || !ready) {
		upg_fail(s, "it exited with status %d %s", WEXITSTATUS(status),
		    ready ? "after saying ready" : "without saying ready");
		return;
	}
	upg_exec(s);
}

void
upg_reaped(struct sup *s, pid_t pid, int status)
{
	if (pid != s->upg.probe)
		return;
	s->upg.probe = 0;
	upg_on_pipe(s);
	if (s->upg.pipe_fd != -1) {
		/* a child of the probe still holds the pipe: enough */
		epoll_ctl(s->ev.ep, EPOLL_CTL_DEL, s->upg.pipe_fd, NULL);
		close(s->upg.pipe_fd);
		s->upg.pipe_fd = -1;
	}
	upg_settle(s, status);
}

/* Every tick: a probe past its deadline, or outliving a stop, is killed
 * with its process group; the reap then settles it. */
void
upg_tick(struct sup *s)
{
	if (s->upg.probe == 0 || s->upg.timed_out)
		return;
	if (s->mode == SUP_RUNNING && ctr_clock_ns() < s->upg.deadline_ns)
		return;
	s->upg.timed_out = s->mode == SUP_RUNNING;
	(void)kill(-s->upg.probe, SIGKILL);
	(void)kill(s->upg.probe, SIGKILL);
}
