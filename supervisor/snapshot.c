/*
 * snapshot.c: freeze the counter table and the process table into a
 * struct snapshot for the renderers (memcached's aggregate-then-render).
 * A slot's counters are what its reaped processes left (the base) plus
 * every live cell of the slot, read with relaxed loads; CPU and memory
 * come from /proc.  Nothing here writes shared memory.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "sup.h"

struct proc_stat {
	double cpu_seconds;
	double start_ticks;
	uint64_t vsize;
	uint64_t rss_bytes;
};

/* Fields 14-15 (utime, stime), 22 (starttime), 23 (vsize), 24 (rss) of
 * /proc/PID/stat; the command name may hold spaces, so parse after ')'. */
static int
proc_read_stat(const char *pid, struct proc_stat *ps)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st, start, vsize;
	long long rss;
	ssize_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	if ((f = fopen(path, "re")) == NULL)
		return -1;
	n = (ssize_t)fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n > 0 ? n : 0] = '\0';
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	if (sscanf(p + 2,
	        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
	        "%llu %*d %*d %*d %*d %*d %*d %llu %llu %lld",
	        &ut, &st, &start, &vsize, &rss) != 5)
		return -1;
	ps->cpu_seconds = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	ps->start_ticks = (double)start;
	ps->vsize = vsize;
	ps->rss_bytes = (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
	return 0;
}

static uint64_t
proc_count_fds(void)
{
	struct dirent *de;
	uint64_t n = 0;
	DIR *d;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n > 0 ? n - 1 : 0; /* the directory's own fd */
}

static void
snap_fill_process(struct sup *s, struct snap_process *p)
{
	struct proc_stat ps;
	struct rlimit rl;

	memset(p, 0, sizeof(*p));
	if (proc_read_stat("self", &ps) == 0) {
		p->cpu_seconds = ps.cpu_seconds;
		p->rss_bytes = ps.rss_bytes;
		p->vsize_bytes = ps.vsize;
	}
	p->open_fds = proc_count_fds();
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		p->max_fds = rl.rlim_cur;
	p->start_time = s->start_time;
}

static void
snap_fill_slot(struct sup *s, unsigned i, struct snap_worker *w)
{
	const struct sup_slot *sl = &s->slot[i];
	int c = sup_slot_proc(s, i);

	w->slot = i;
	w->state = sup_slot_state(s, i);
	if (c >= 0) {
		w->pid = s->proc[c].pid;
		w->started_at = s->proc[c].started_at;
	}
	memcpy(w->restarts_by_reason, sl->restarts, sizeof(sl->restarts));
	memcpy(w->last_exit, sl->last_exit, sizeof(w->last_exit));
	memcpy(w->v, sl->base_v, sizeof(w->v));
	w->hist = sl->base_hist;
	w->cpu_seconds = sl->base_cpu;
}

/* Add one live process's cell and /proc figures to its slot. */
static void
snap_add_cell(struct sup *s, unsigned c, struct snap_worker *w)
{
	const struct ctr_cell *cell = &s->tab->cell[c];
	struct proc_stat ps;
	char pid[16];
	int i;

	/* The same sum a reap makes, plus the gauges of a live process. */
	ctr_fold(w->v, &w->hist, cell);
	for (i = 0; i < CTR_COUNT; i++)
		if (ctr_meta[i].kind == CTR_KIND_GAUGE)
			w->v[i] += ctr_get(&cell->v[i]);
	snprintf(pid, sizeof(pid), "%d", (int)s->proc[c].pid);
	if (proc_read_stat(pid, &ps) == 0) {
		w->cpu_seconds += ps.cpu_seconds;
		w->rss_bytes += ps.rss_bytes;
	}
}

int
sup_snapshot(struct sup *s, struct snapshot *snap)
{
	unsigned i, hwm = s->tab->ncells_hwm;

	memset(snap, 0, sizeof(*snap));
	snap->workers = calloc(s->nslots ? s->nslots : 1,
	    sizeof(*snap->workers));
	if (snap->workers == NULL)
		return -1;
	snap->version = UPPERD_VERSION;
	snap->pid = s->pid;
	snap->state = s->mode != SUP_RUNNING ? SNAP_SUP_DRAINING :
	    s->lame_until_ns                 ? SNAP_SUP_LAME_DUCK :
	                                       SNAP_SUP_RUNNING;
	snap->now = sup_epoch();
	snap->start_time = s->start_time;
	snap->workers_configured = s->configured;
	snap->last_scrape_seconds = s->last_scrape;
	snap->upgrades_ok = s->upg.ok;
	snap->upgrades_failed = s->upg.failed;
	snap->nworkers = s->nslots;
	for (i = 0; i < s->nslots; i++) {
		snap_fill_slot(s, i, &snap->workers[i]);
		snap->workers_running += snap->workers[i].state == SNAP_RUNNING;
	}
	for (i = 0; i < hwm; i++)
		if (s->proc[i].pid && s->proc[i].slot < s->nslots)
			snap_add_cell(s, i, &snap->workers[s->proc[i].slot]);
	snap_fill_process(s, &snap->proc);
	return 0;
}

void
sup_snapshot_free(struct snapshot *snap)
{
	free(snap->workers);
	snap->workers = NULL;
}
