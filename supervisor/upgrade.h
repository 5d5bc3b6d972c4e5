/*
 * upgrade.h: the binary upgrade on USR2 (upgrade.c).  The supervisor
 * re-executes itself in place, as HAProxy's master and PHP-FPM do, so its
 * pid, its children, the pid file and MAINPID all stay valid; it hands its
 * state to the new image through a memfd, written by upg_encode and read
 * back by upg_decode.  Before that point of no return a probe of the new
 * executable must parse the config, read that state and say "ready".
 */
#ifndef UPPERD_UPGRADE_H
#define UPPERD_UPGRADE_H

#include <stddef.h>
#include <stdint.h>

#include "sup.h"

/* Bump UPG_STATE_LAYOUT whenever the encoding below changes: a new binary
 * refuses an old image's state of another layout instead of misreading
 * it.  make STATE_LAYOUT=N stamps another number (version.c), for the
 * test of that refusal. */
#ifndef UPG_STATE_LAYOUT
#define UPG_STATE_LAYOUT 1
#endif
extern const unsigned upg_state_layout;

/* Environment of the new image: the state memfd, and for the probe its
 * handshake pipe (where it writes "ready\n" or "error: WHY\n"). */
#define UPG_ENV_FD "UPPERD_UPGRADE_FD"
#define UPG_ENV_PROBE "UPPERD_UPGRADE_PROBE"

/* Signals that wait while an upgrade runs (struct sup_upgrade.queued). */
#define UPG_Q_HUP 1U
#define UPG_Q_TERM 2U
#define UPG_Q_USR2 4U

/* What an fd handed over is. */
enum upg_fd_kind {
	UPG_FD_TABLE = 1,
	UPG_FD_TCP,
	UPG_FD_UDP,
	UPG_FD_STATS,
	UPG_FD_PIDFILE /* the locked pid file: the lock goes with the fd */
};
#define UPG_FD_LAST UPG_FD_PIDFILE
#define UPG_MAX_FDS 64
_Static_assert(UPG_MAX_FDS >= 2 * CFG_MAX_ADDRS + 3, "every socket fits");

struct upg_fd {
	uint32_t kind;
	int32_t fd;
};

/* The handed-over state, decoded.  proc[] is indexed by cell like struct
 * sup's (pid 0: free). */
struct upg_state {
	uint32_t layout; /* set even when the decode fails on it */
	double start_time;
	unsigned configured, nslots;
	uint64_t ok, failed;
	unsigned queued;
	char exe[CFG_PATH_MAX];
	char version[64]; /* the old image's, for the log line */
	char pid_file[CFG_PATH_MAX];
	struct sup_slot slot[CFG_MAX_WORKERS];
	struct sup_proc proc[CTR_MAX_CELLS];
	struct upg_fd fd[UPG_MAX_FDS];
	unsigned nfds;
};

enum upg_err {
	UPG_OK = 0,
	UPG_E_SHORT = -1,  /* the buffer ends early */
	UPG_E_MAGIC = -2,  /* not upperd state */
	UPG_E_LAYOUT = -3, /* another layout (out->layout says which) */
	UPG_E_SHAPE = -4,  /* other counter, bucket or reason counts */
	UPG_E_RANGE = -5,  /* a value out of range or inconsistent */
	UPG_E_TRAIL = -6   /* bytes after the end */
};

/* The fds the new image keeps, each with its kind; returns how many. */
unsigned upg_fd_list(const struct sup *s, struct upg_fd *l);
/* Serialize s and the fds it hands over into a malloc'd buffer; NULL
 * when out of memory. */
void *upg_encode(const struct sup *s, const struct upg_fd *fds, unsigned nfds,
    size_t *len);
/* Parse buf, any bytes at all, into out: UPG_OK or an enum upg_err.  Pure:
 * no I/O, no allocation, nothing but out written. */
int upg_decode(const void *buf, size_t len, struct upg_state *out);
const char *upg_strerror(int err);

/* The supervisor's side, in its event loop. */
void upg_init(struct sup *s, const char *argv0);
void upg_start(struct sup *s);
int upg_busy(const struct sup *s);
int upg_queue(struct sup *s, int signo);
void upg_on_pipe(struct sup *s);
void upg_reaped(struct sup *s, pid_t pid, int status);
void upg_tick(struct sup *s);
void upg_replay(struct sup *s);

/* The new image's side.  upg_probe_main runs the probe (never returns);
 * upg_restore fills s from the handed-over state, -1 with a reason in
 * err; upg_resume then replaces the old workers and replays what waited. */
void upg_probe_main(int argc, char **argv) __attribute__((noreturn));
int upg_restore(struct sup *s, int fd, char *err, size_t errlen);
void upg_resume(struct sup *s);

/* systemd hooks (RELOADING=1 when an upgrade starts, READY=1 when it
 * ended, MAINPID= unchanged in place); wired to notify.c once it lands. */
void upg_notify_reloading(struct sup *s);
void upg_notify_ready(struct sup *s);

#endif
