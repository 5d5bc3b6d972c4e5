/*
 * main.c: wiring only.  Parse the settings, open what must be opened while
 * still privileged (log file, sockets, pid file), drop privileges, start
 * the workers and hand over to the event loop.  Every failure before
 * serving is one line on stderr and a non-zero exit with nothing left
 * running: 2 for usage/config, 1 for run-time problems like a busy port.
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "activation.h"
#include "log.h"
#include "net.h"
#include "pidfile.h"
#include "proctitle.h"
#include "sup.h"
#include "upgrade.h"

static struct sup sup;

static void __attribute__((format(printf, 2, 3), noreturn))
die(int status, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	fprintf(stderr, "upperd: %.*s\n", n, line);
	/* only a pid file this process locked is removed (pidfile.c) */
	if (sup.pid == getpid())
		(void)pid_remove();
	exit(status);
}

static int
open_socket(const char *what, const char *addr, int tcp)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd;

	if (strcmp(addr, "off") == 0)
		return -1;
	if (net_parse_addr(addr, &ss, &len) == -1)
		die(2, "invalid %s address \"%s\"", what, addr);
	fd = tcp ? net_listen_tcp(&ss, len, 4096) : net_bind_udp(&ss, len);
	if (fd == -1)
		die(1, "cannot %s %s %s: %s", tcp ? "listen on" : "bind", what,
		    addr, strerror(errno));
	return fd;
}

/* Bind every address of a kind (--tcp, --udp), each its own socket. */
static void
open_kind(const char *what, const char (*addrs)[CFG_ADDR_MAX], unsigned n,
    int tcp, int *fds, unsigned *nfds)
{
	unsigned i;

	for (i = 0; i < n; i++)
		fds[(*nfds)++] = open_socket(what, addrs[i], tcp);
}

static const char nothing_to_serve[] =
    "both --tcp and --udp are off: nothing to serve";

/* Each kind that got no socket from systemd (socket activation, taken
 * in setup) binds its configured addresses. */
static void
open_sockets(struct sup *s)
{
	if (s->ntcp == 0)
		open_kind("tcp", s->cfg.tcp, s->cfg.ntcp, 1, s->tcp_fd,
		    &s->ntcp);
	if (s->nudp == 0)
		open_kind("udp", s->cfg.udp, s->cfg.nudp, 0, s->udp_fd,
		    &s->nudp);
	if (s->stats_fd == -1)
		s->stats_fd = open_socket("stats", s->cfg.stats, 1);
	if (s->ntcp == 0 && s->nudp == 0)
		die(2, "%s", nothing_to_serve);
}

/* Before binding: a second upperd with the same pid file must name the
 * running one, not fail on its busy port.  The pid written is final:
 * upperd does not fork to the background. */
static void
lock_pid_file(const char *path)
{
	pid_t holder;

	if (path[0] == '\0')
		return;
	if (pid_lock(path, &holder) == -1) {
		if (errno == EWOULDBLOCK && holder > 0)
			die(1,
			    "already running as pid %d (pid file %s is "
			    "locked)",
			    (int)holder, path);
		if (errno == EWOULDBLOCK)
			die(1, "already running (pid file %s is locked)", path);
		die(1, "cannot lock pid file %s: %s", path, strerror(errno));
	}
	if (pid_write(getpid()) == -1)
		die(1, "cannot write pid file %s: %s", path, strerror(errno));
}

/* After binding: nothing later needs root (addresses never change). */
static void
drop_privileges(const struct passwd *pw, const char *log_file)
{
	struct stat st;

	if (pw == NULL)
		return;
	/* The log file stays ours to reopen on USR1 after the drop.  Only
	 * a plain file of its own is handed over: one with a second name
	 * (a hard link the account made to a file of root's) or a device
	 * is written to but keeps its owner. */
	if (log_fd() != STDERR_FILENO &&
	    (fstat(log_fd(), &st) == -1 || !S_ISREG(st.st_mode) ||
	        st.st_nlink != 1))
		log_warnx("log file %s is not a plain file with one name: "
		          "not handed to %s (a reopen on USR1 may fail)",
		    log_file, pw->pw_name);
	else if (log_fd() != STDERR_FILENO &&
	    fchown(log_fd(), pw->pw_uid, pw->pw_gid) == -1)
		die(1, "cannot chown log file to %s: %s", pw->pw_name,
		    strerror(errno));
	if (setgroups(0, NULL) == -1 || setgid(pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1)
		die(1, "cannot drop privileges to %s: %s", pw->pw_name,
		    strerror(errno));
}

/* Each worker may hold --max-conns sockets: use all the hard limit allows. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/*
 * The settings as a start takes them: options, the config file, the user
 * to run as.  --help, --version and --check-config end here; the check
 * binds and starts nothing, so it is safe beside a running upperd (the
 * unit's ExecReload runs it before sending HUP).
 */
static struct passwd *
load_settings(struct sup *s, int argc, char **argv)
{
	char err[CFG_ERR_MAX];
	enum cfg_action action;
	struct passwd *pw = NULL;

	s->argc = argc;
	s->argv = argv;
	if (cfg_load(&s->cfg, argc, argv, &action, err, sizeof(err)) == -1)
		die(2, "%s (see upperd --help)", err);
	if (action == CFG_HELP) {
		fputs(cfg_usage, stdout);
		exit(0);
	}
	if (action == CFG_VERSION) {
		printf("upperd %s\n", UPPERD_VERSION);
		exit(0);
	}
	if (s->cfg.user[0] && (pw = getpwnam(s->cfg.user)) == NULL)
		die(2, "unknown user \"%s\" for --user", s->cfg.user);
	/* the stats endpoint's TLS pair and users file: read now, so that
	 * --check-config says whether they are good */
	if (strcmp(s->cfg.stats, "off") != 0 &&
	    sup_http_load(s, &s->cfg, err, sizeof(err)) == -1)
		die(2, "%s", err);
	if (action == CFG_CHECK) {
		/* as a start without sockets from systemd would say */
		if (s->cfg.ntcp == 0 && s->cfg.nudp == 0)
			die(2, "%s", nothing_to_serve);
		fprintf(stderr, "upperd: %s: configuration ok\n",
		    s->cfg.config[0] ? s->cfg.config : "command line");
		exit(0);
	}
	return pw;
}

static void
setup(struct sup *s, int argc, char **argv)
{
	struct passwd *pw = load_settings(s, argc, argv);

	log_setlevel(s->cfg.log_level);
	/* The sockets systemd passed, before this process opens anything:
	 * LISTEN_FDS counts fds from 3 on, so a log or pid file opened
	 * first could get a number it claims, and be closed as a socket
	 * upperd cannot use. */
	s->stats_fd = -1;
	(void)act_adopt(s);
	/* Opened as root for the --user account: never through a symlink,
	 * which that account could have put there (drop_privileges) */
	if (s->cfg.log_file[0] &&
	    (pw != NULL ? log_open_nofollow : log_open)(s->cfg.log_file) == -1)
		die(1, "cannot open log file %s: %s", s->cfg.log_file,
		    strerror(errno));
	act_report();
	sup_apply_sched(&s->cfg);
	s->pid = getpid();
	s->start_time = sup_epoch();
	upg_init(s, argv[0]);
	raise_fd_limit();
	lock_pid_file(s->cfg.pid_file);
	open_sockets(s);
	/* After the sockets, so a worker's fds stay 0-5 without a gap where
	 * this one (closed in the worker) was. */
	if ((s->tab = ctr_table_create(&s->tab_fd)) == NULL)
		die(1, "cannot map the counter table: %s", strerror(errno));
	drop_privileges(pw, s->cfg.log_file);
}

/* UPG_ENV_FD's value: a stray or mistyped one ("abc" was fd 0 to atoi,
 * and a start then waited on standard input) is a start error. */
static int
restore_fd(const char *v)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < 0 || n > INT_MAX)
		die(1, "upgrade: %s is not a file descriptor number",
		    UPG_ENV_FD);
	return (int)n;
}

/*
 * The image a binary upgrade executed (UPG_ENV_FD set): as its probe, try
 * and exit; in charge, take the old image's state over instead of binding
 * and forking.  Returns 1 when restored.  The probe already parsed this
 * config and read this state, so a failure here is a file changed in the
 * meantime; the workers, tied to this pid, then end with it.
 */
static int
restore(struct sup *s, int argc, char **argv)
{
	char err[CFG_ERR_MAX + 64];
	enum cfg_action action;
	const char *fd = getenv(UPG_ENV_FD);

	if (fd == NULL)
		return 0;
	if (getenv(UPG_ENV_PROBE) != NULL)
		upg_probe_main(argc, argv);
	s->argc = argc;
	s->argv = argv;
	if (cfg_load(&s->cfg, argc, argv, &action, err, sizeof(err)) == -1 ||
	    (strcmp(s->cfg.stats, "off") != 0 &&
	        sup_http_load(s, &s->cfg, err, sizeof(err)) == -1))
		die(2, "upgrade: %s", err);
	log_setlevel(s->cfg.log_level);
	if (s->cfg.log_file[0] && log_open(s->cfg.log_file) == -1)
		die(1, "upgrade: cannot open log file %s: %s", s->cfg.log_file,
		    strerror(errno));
	sup_apply_sched(&s->cfg);
	if (upg_restore(s, restore_fd(fd), err, sizeof(err)) == -1)
		die(1, "upgrade: %s", err);
	return 1;
}

int
main(int argc, char **argv)
{
	int status, restored;

	/* argv's memory becomes the title: parse (and re-parse) a copy */
	argv = ptl_init(argc, argv);
	if (!(restored = restore(&sup, argc, argv)))
		setup(&sup, argc, argv);
	ptl_set("upperd", "upperd: supervisor%s%s",
	    sup.cfg.config[0] ? " -c " : "", sup.cfg.config);
	ntf_init();
	sup_signals_init(&sup);
	if (sup.stats_fd != -1 && sup_http_start(&sup) == -1)
		die(1, "cannot start the stats endpoint on %s", sup.cfg.stats);
	if (restored)
		upg_resume(&sup);
	else
		sup_start_workers(&sup);
	status = sup_loop(&sup);
	sup_http_stop(&sup);
	if (pid_remove() == -1)
		log_warn("cannot remove pid file %s, left empty",
		    sup.cfg.pid_file);
	log_info("exiting");
	return status;
}
