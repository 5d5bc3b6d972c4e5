/*
 * notify.c: upperd under systemd (Type=notify), through libsystemd's
 * sd_notify.  READY=1 with a STATUS= line once every worker serves (at
 * start, after a reload, after an upgrade), a STATUS= line at most once a
 * second while running (workers running/configured, open TCP connections,
 * requests per second, as PHP-FPM's), RELOADING=1 with MONOTONIC_USEC= when
 * a reload starts, STOPPING=1 when a stop starts, MAINPID= on request, and
 * WATCHDOG=1 from the supervisor's own 100 ms tick: if the loop stops
 * turning, the pings stop and systemd acts.
 *
 * Without NOTIFY_SOCKET every call here does nothing.  A notify socket
 * that is missing or refuses a message, and a WATCHDOG_USEC that is not a
 * number, are one warn line each; upperd serves on without them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"
#include "sup.h"

#define NTF_STATUS_NS 1000000000ULL /* STATUS= at most this often */
#define NTF_SHOWN 128               /* bytes of an env value in a log line */

static struct {
	int on;              /* NOTIFY_SOCKET set and usable */
	int ready;           /* READY=1 sent once: a later wait is a reload */
	int stopping;        /* STOPPING=1 sent */
	uint64_t wd_ns;      /* watchdog ping interval; 0: no watchdog */
	uint64_t wd_last_ns; /* last WATCHDOG=1 */
	uint64_t st_last_ns; /* last STATUS= computation */
	uint64_t served;     /* requests counted at st_last_ns */
	char status[160];    /* last STATUS= text sent */
} ntf;

/* An environment value fit for one log line: printable ASCII, cut. */
static void
ntf_shown(char *buf, size_t len, const char *v)
{
	size_t i;

	for (i = 0; v != NULL && v[i] != '\0' && i + 1 < len; i++)
		buf[i] = v[i] >= 0x20 && v[i] < 0x7f ? v[i] : '?';
	buf[i] = '\0';
}

/* Send one message; the first failure is logged and ends notifying. */
static void
ntf_send(const char *msg)
{
	char shown[NTF_SHOWN];
	int r;

	if (!ntf.on || (r = sd_notify(0, msg)) > 0)
		return;
	ntf.on = 0;
	ntf_shown(shown, sizeof(shown), getenv("NOTIFY_SOCKET"));
	log_warnx("systemd notify socket \"%s\": %s; not notifying systemd",
	    shown, r == 0 ? "not usable" : strerror(-r));
}

/* WATCHDOG_USEC (and WATCHDOG_PID, which must name us) as libsystemd
 * reads them. */
static void
ntf_watchdog_init(void)
{
	char usec_s[NTF_SHOWN], pid_s[NTF_SHOWN];
	uint64_t usec = 0;
	int r = sd_watchdog_enabled(0, &usec);

	if (r > 0) {
		ntf.wd_ns = usec * 1000;
		return;
	}
	if (r == 0)
		return;
	ntf_shown(usec_s, sizeof(usec_s), getenv("WATCHDOG_USEC"));
	ntf_shown(pid_s, sizeof(pid_s), getenv("WATCHDOG_PID"));
	log_warnx("WATCHDOG_USEC=\"%s\" WATCHDOG_PID=\"%s\": %s; no "
	          "watchdog pings",
	    usec_s, pid_s, strerror(-r));
}

void
ntf_init(void)
{
	const char *sock = getenv("NOTIFY_SOCKET");
	char shown[NTF_SHOWN];
	struct stat st;

	ntf.on = sock != NULL && sock[0] != '\0';
	/* A path socket can be checked now (abstract ones, "@...", only by
	 * sending): the operator hears of it at start, not at readiness. */
	if (ntf.on && sock[0] == '/' && stat(sock, &st) == -1) {
		ntf_shown(shown, sizeof(shown), sock);
		log_warnx("systemd notify socket \"%s\": %s; not notifying "
		          "systemd",
		    shown, strerror(errno));
		ntf.on = 0;
	}
	if (ntf.on)
		ntf_watchdog_init();
	ntf.st_last_ns = ctr_clock_ns();
}

/* Requests served so far (TCP connections + UDP datagrams, as for
 * --max-requests) and TCP connections open now. */
static void
ntf_counts(const struct sup *s, uint64_t *served, uint64_t *open)
{
	unsigned i, hwm = s->tab->ncells_hwm;
	const struct ctr_cell *c;

	*served = *open = 0;
	for (i = 0; i < s->nslots; i++)
		*served += s->slot[i].base_v[CTR_tcp_connections_accepted] +
		    s->slot[i].base_v[CTR_udp_datagrams_received];
	for (i = 0; i < hwm; i++) {
		if (s->proc[i].pid == 0)
			continue;
		c = &s->tab->cell[i];
		*served += ctr_get(&c->v[CTR_tcp_connections_accepted]) +
		    ctr_get(&c->v[CTR_udp_datagrams_received]);
		*open += ctr_get(&c->v[CTR_tcp_connections_active]);
	}
}

/* What the supervisor is doing besides serving, as the status's prefix. */
static const char *
ntf_phase(const struct sup *s)
{
	if (s->mode != SUP_RUNNING)
		return "stopping: ";
	if (s->announced)
		return "";
	return ntf.ready ? "reloading: " : "starting: ";
}

/* The STATUS= text now; the rate is over the time since the last one. */
static void
ntf_status_text(const struct sup *s, char *buf, size_t len)
{
	uint64_t now = ctr_clock_ns(), served, open;
	unsigned i, running = 0;
	double rate = 0;

	ntf_counts(s, &served, &open);
	if (now > ntf.st_last_ns && served >= ntf.served)
		rate = (double)(served - ntf.served) * 1e9 /
		    (double)(now - ntf.st_last_ns);
	ntf.st_last_ns = now;
	ntf.served = served;
	for (i = 0; i < s->configured; i++)
		running += sup_slot_state(s, i) == SNAP_RUNNING;
	snprintf(buf, len,
	    "%s%u/%u workers running, %" PRIu64 " TCP connections open, "
	    "%.0f requests/s",
	    ntf_phase(s), running, s->configured, open, rate);
}

void
ntf_tick(struct sup *s)
{
	char text[sizeof(ntf.status)], msg[sizeof(text) + 8];
	uint64_t now = ctr_clock_ns();

	if (!ntf.on)
		return;
	if (ntf.wd_ns && now - ntf.wd_last_ns >= ntf.wd_ns / 4) {
		ntf.wd_last_ns = now;
		ntf_send("WATCHDOG=1");
	}
	if (now - ntf.st_last_ns < NTF_STATUS_NS)
		return;
	ntf_status_text(s, text, sizeof(text));
	if (strcmp(text, ntf.status) == 0)
		return;
	memcpy(ntf.status, text, sizeof(text));
	snprintf(msg, sizeof(msg), "STATUS=%s", text);
	ntf_send(msg);
}

void
ntf_ready(struct sup *s)
{
	char msg[sizeof(ntf.status) + 16];

	if (!ntf.on)
		return;
	ntf.ready = 1;
	ntf_status_text(s, ntf.status, sizeof(ntf.status));
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", ntf.status);
	ntf_send(msg);
}

void
ntf_reloading(void)
{
	struct timespec ts;
	char msg[96];

	if (!ntf.on)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg),
	    "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading",
	    (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
	ntf_send(msg);
}

void
ntf_stopping(void)
{
	if (!ntf.on || ntf.stopping)
		return;
	ntf.stopping = 1;
	ntf_send("STOPPING=1\nSTATUS=stopping");
}

void
ntf_mainpid(pid_t pid)
{
	char msg[32];

	snprintf(msg, sizeof(msg), "MAINPID=%d", (int)pid);
	ntf_send(msg);
}
