/*
 * upg_image.c: the new image's side of a binary upgrade (upgrade.c has
 * the old one's).  As a probe it proves it could take over: the config
 * parses, the handed-over state decodes in this build's layout, the
 * counter table maps; it says "ready" on the pipe and exits.  As the
 * image in charge after the execve it restores the supervisor from that
 * state (the same pid, workers, sockets and counter table), then replaces
 * the old binary's workers as a reload does and replays what waited.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "pidfile.h"
#include "upgrade.h"

#define UPG_ENV_PIPE "UPPERD_UPGRADE_PIPE"
#define UPG_STATE_MAX (64u << 20) /* far above any real state */

/* Decoded here rather than on the stack: about half a megabyte. */
static struct upg_state upg_st;
static char upg_from[64];

static int
upg_env_fd(const char *name)
{
	const char *v = getenv(name);
	char *end;
	long n;

	if (v == NULL)
		return -1;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < 0 || n > 1 << 20)
		return -1;
	return (int)n;
}

/* Read and decode the state memfd: UPG_OK, an enum upg_err, or 1 with
 * errno set when it cannot be read at all. */
static int
upg_read_state(int fd, struct upg_state *st)
{
	struct stat sb;
	size_t len, off = 0;
	ssize_t n;
	void *buf;
	int rc;

	if (fd < 0 || fstat(fd, &sb) == -1)
		return errno = fd < 0 ? EBADF : errno, 1;
	if (sb.st_size <= 0 || (uint64_t)sb.st_size > UPG_STATE_MAX)
		return UPG_E_SHORT;
	len = (size_t)sb.st_size;
	if ((buf = malloc(len)) == NULL)
		return 1;
	while (off < len) {
		n = pread(fd, (char *)buf + off, len - off, (off_t)off);
		if (n <= 0) {
			free(buf);
			return errno = n == 0 ? EIO : errno, 1;
		}
		off += (size_t)n;
	}
	rc = upg_decode(buf, len, st);
	free(buf);
	return rc;
}

/* The one line the old image logs as the reason a probe refused. */
static int
upg_explain(char *err, size_t len, int rc, const struct upg_state *st)
{
	if (rc == 1)
		snprintf(err, len, "cannot read the state: %s",
		    strerror(errno));
	else if (rc == UPG_E_LAYOUT)
		snprintf(err, len,
		    "state layout %u, this build reads layout %u", st->layout,
		    upg_state_layout);
	else
		snprintf(err, len, "%s", upg_strerror(rc));
	return -1;
}

/* Map the table named in st; -1 with a reason in err. */
static int
upg_attach_table(struct sup *s, const struct upg_state *st, char *err,
    size_t len)
{
	unsigned i;

	for (i = 0; i < st->nfds; i++) {
		if (st->fd[i].kind != UPG_FD_TABLE)
			continue;
		if ((s->tab = ctr_table_attach(st->fd[i].fd)) == NULL) {
			snprintf(err, len, "counter table: %s",
			    errno == EPROTO ? "layout differs" :
			                      strerror(errno));
			return -1;
		}
		s->tab_fd = st->fd[i].fd;
		return 0;
	}
	snprintf(err, len, "no counter table handed over");
	return -1;
}

void
upg_probe_main(int argc, char **argv)
{
	static struct sup probe;
	char err[CFG_ERR_MAX + 64];
	enum cfg_action action;
	int wfd = upg_env_fd(UPG_ENV_PIPE), rc;

	if (wfd == -1)
		_exit(2);
	if (cfg_load(&probe.cfg, argc, argv, &action, err, sizeof(err)) == -1 ||
	    (strcmp(probe.cfg.stats, "off") != 0 &&
	        sup_http_load(&probe, &probe.cfg, err, sizeof(err)) == -1)) {
		dprintf(wfd, "error: configuration: %s\n", err);
		_exit(2);
	}
	rc = upg_read_state(upg_env_fd(UPG_ENV_FD), &upg_st);
	if (rc != UPG_OK) {
		upg_explain(err, sizeof(err), rc, &upg_st);
		dprintf(wfd, "error: %s\n", err);
		_exit(3);
	}
	if (upg_attach_table(&probe, &upg_st, err, sizeof(err)) == -1) {
		dprintf(wfd, "error: %s\n", err);
		_exit(3);
	}
	dprintf(wfd, "ready\n");
	_exit(0);
}

/* Take over the handed-over fds (close-on-exec again, so no probe or
 * later image inherits them by accident). */
static int
upg_adopt_fds(struct sup *s, const struct upg_state *st, char *err, size_t len)
{
	unsigned i;
	int fd;

	s->ntcp = s->nudp = 0;
	s->stats_fd = -1;
	for (i = 0; i < st->nfds; i++) {
		fd = st->fd[i].fd;
		if (fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
			snprintf(err, len, "fd %d handed over: %s", fd,
			    strerror(errno));
			return -1;
		}
		if (st->fd[i].kind == UPG_FD_TCP && s->ntcp < CFG_MAX_ADDRS)
			s->tcp_fd[s->ntcp++] = fd;
		else if (st->fd[i].kind == UPG_FD_UDP &&
		    s->nudp < CFG_MAX_ADDRS)
			s->udp_fd[s->nudp++] = fd;
		else if (st->fd[i].kind == UPG_FD_STATS)
			s->stats_fd = fd;
		else if (st->fd[i].kind == UPG_FD_PIDFILE &&
		    pid_adopt(fd, st->pid_file) == -1) {
			snprintf(err, len, "pid file %s handed over: %s",
			    st->pid_file, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static void
upg_adopt_procs(struct sup *s, const struct upg_state *st)
{
	unsigned i;

	memcpy(s->slot, st->slot, sizeof(s->slot));
	memcpy(s->proc, st->proc, sizeof(s->proc));
	for (i = 0; i < CTR_MAX_CELLS; i++)
		if (s->proc[i].pid != 0 && i >= s->tab->ncells_hwm)
			__atomic_store_n(&s->tab->ncells_hwm, i + 1,
			    __ATOMIC_RELEASE);
}

int
upg_restore(struct sup *s, int fd, char *err, size_t errlen)
{
	struct upg_state *st = &upg_st;
	int rc = upg_read_state(fd, st);

	if (rc != UPG_OK)
		return upg_explain(err, errlen, rc, st);
	if (upg_attach_table(s, st, err, errlen) == -1 ||
	    upg_adopt_fds(s, st, err, errlen) == -1)
		return -1;
	close(fd);
	unsetenv(UPG_ENV_FD);
	s->pid = getpid();
	s->start_time = st->start_time;
	s->configured = st->configured;
	s->nslots = st->nslots;
	upg_adopt_procs(s, st);
	s->upg.pipe_fd = -1;
	s->upg.ok = st->ok + 1;
	s->upg.failed = st->failed;
	s->upg.queued = st->queued;
	memcpy(s->upg.exe, st->exe, sizeof(s->upg.exe));
	memcpy(s->cfg.pid_file, st->pid_file, sizeof(s->cfg.pid_file));
	memcpy(upg_from, st->version, sizeof(upg_from));
	return 0;
}

/* The new image serves: its workers replace the old binary's. */
void
upg_resume(struct sup *s)
{
	unsigned i, n = 0;

	sup_reap(s);
	for (i = 0; i < s->configured; i++)
		n += s->slot[i].active >= 0;
	log_info("upgraded from upperd %s to upperd %s, pid %d: replacing "
	         "%u worker%s",
	    upg_from, UPPERD_VERSION, (int)s->pid, n, n == 1 ? "" : "s");
	sup_replace_workers(s);
	upg_replay(s);
}
