/*
 * counters.h: the shared-memory counter table, the one contract that crosses
 * the supervisor/worker line at run time.
 *
 * The table is one MAP_SHARED mapping of a memfd made before the first
 * fork: a header, then CTR_MAX_CELLS cells.  The memfd (not an anonymous
 * mapping) lets a binary upgrade (USR2) hand the very same pages to the new
 * supervisor image, whose old workers go on writing them; the header's
 * magic, layout number and sizes let that image refuse a table it would
 * misread.  A cell belongs to one worker
 * *process* (not to a slot): while a slot is being reloaded it has two
 * processes, the new one serving and the old one draining, and each bumps
 * its own cell.  Every traffic field therefore has exactly one writer and is
 * bumped with a relaxed load and store, no locked instruction.  When the
 * supervisor reaps a worker it folds the cell's counters into the slot's
 * private base (supervisor memory) and frees the cell, so a slot's value is
 * always base + live cells: never lost, never counted twice, never lower.
 *
 * CTR_COUNTERS is the only spelling of each counter name: the cell layout,
 * the JSON keys, the Prometheus names and HELP texts are generated from it.
 */
#ifndef UPPERD_COUNTERS_H
#define UPPERD_COUNTERS_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* X(name, kind, help): kind is CTR_KIND_COUNTER or CTR_KIND_GAUGE. */
#define CTR_COUNTERS(X)                                                        \
	X(tcp_connections_accepted, CTR_KIND_COUNTER,                          \
	    "TCP connections accepted.")                                       \
	X(tcp_connections_active, CTR_KIND_GAUGE,                              \
	    "TCP connections currently open.")                                 \
	X(tcp_connections_rejected, CTR_KIND_COUNTER,                          \
	    "TCP connections closed at once because the worker was at "        \
	    "--max-conns.")                                                    \
	X(tcp_idle_timeouts, CTR_KIND_COUNTER,                                 \
	    "TCP connections closed after --idle-timeout without input.")      \
	X(tcp_bytes_received, CTR_KIND_COUNTER, "TCP payload bytes received.") \
	X(tcp_bytes_sent, CTR_KIND_COUNTER, "TCP payload bytes sent.")         \
	X(tcp_lines_received, CTR_KIND_COUNTER,                                \
	    "Newline bytes received over TCP.")                                \
	X(udp_datagrams_received, CTR_KIND_COUNTER, "UDP datagrams received.") \
	X(udp_datagrams_sent, CTR_KIND_COUNTER, "UDP datagrams sent.")         \
	X(udp_bytes_received, CTR_KIND_COUNTER, "UDP payload bytes received.") \
	X(udp_bytes_sent, CTR_KIND_COUNTER, "UDP payload bytes sent.")         \
	X(udp_errors, CTR_KIND_COUNTER,                                        \
	    "UDP datagrams that could not be received or answered.")

enum ctr_kind { CTR_KIND_COUNTER, CTR_KIND_GAUGE };

enum ctr_id {
#define CTR_ENUM(name, kind, help) CTR_##name,
	CTR_COUNTERS(CTR_ENUM)
#undef CTR_ENUM
	    CTR_COUNT
};

/* Prometheus's default histogram buckets (upper bounds, seconds). */
#define CTR_HIST_BOUNDS                                                 \
	{                                                               \
		0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 \
	}
#define CTR_HIST_NBOUNDS 11
/* Bucket i counts observations <= bound i (not cumulative); the last bucket
 * (index CTR_HIST_NBOUNDS) counts those above every bound (+Inf). */
#define CTR_HIST_NBUCKETS (CTR_HIST_NBOUNDS + 1)

/* Static per-counter metadata, generated from CTR_COUNTERS. */
struct ctr_meta {
	const char *name;
	enum ctr_kind kind;
	const char *help;
};
extern const struct ctr_meta ctr_meta[CTR_COUNT];

/* The connection-duration histogram of one cell or one slot. */
struct ctr_hist {
	uint64_t bucket[CTR_HIST_NBUCKETS];
	uint64_t count;
	uint64_t sum_ns; /* total duration, nanoseconds */
};

/*
 * One worker process's cell.  Writers: the supervisor sets slot, pid and
 * in_use before fork and clears in_use after the reap; everything else is
 * written by the worker only.
 */
struct ctr_cell {
	/* supervisor-written */
	uint32_t in_use;
	uint32_t slot;
	int32_t pid;
	uint32_t pad0;
	/* worker-written */
	uint64_t heartbeat_ns; /* CLOCK_MONOTONIC of the last loop tick */
	uint64_t activity_ns;  /* CLOCK_MONOTONIC of the last client I/O */
	uint64_t served;    /* TCP connections + UDP datagrams, for recycling */
	uint32_t ready;     /* 1 once the event loop is serving */
	uint32_t draining;  /* 1 once it stopped accepting */
	uint32_t recycle;   /* 1 once it wants to be recycled */
	uint32_t listening; /* 1 while the listener is in its epoll set */
	uint64_t recent;    /* connections accepted lately, halved every
				   worker tick: the churn part of the load */
	uint64_t v[CTR_COUNT];
	struct ctr_hist hist;
} __attribute__((aligned(128)));

/* Enough cells for 1024 slots, each with a live worker and two generations
 * still draining after back-to-back reloads. */
#define CTR_MAX_CELLS 3072

/* Bump CTR_LAYOUT whenever struct ctr_cell or struct ctr_table changes
 * meaning (a counter added, a field moved): an upgrade between two builds
 * with different layouts is refused. */
#define CTR_MAGIC 0x75706374U /* "upct" */
#define CTR_LAYOUT 1U

struct ctr_table {
	uint32_t ncells_hwm; /* supervisor-written: cells [0, hwm) were used */
	uint32_t magic;      /* CTR_MAGIC */
	uint32_t layout;     /* CTR_LAYOUT */
	uint32_t cell_size;  /* sizeof(struct ctr_cell) */
	uint64_t table_size; /* sizeof(struct ctr_table) */
	uint32_t pad[26];
	struct ctr_cell cell[CTR_MAX_CELLS];
};

/* Map a zeroed table, stamped with its header, shared with every future
 * child; *fd is its memfd (close-on-exec).  NULL with errno. */
struct ctr_table *ctr_table_create(int *fd);

/* Map the table of memfd fd handed over by an upgrade; NULL when it is not
 * a table of this layout (errno EPROTO) or cannot be mapped (errno). */
struct ctr_table *ctr_table_attach(int fd);

/* Single-writer bump: a relaxed load and store, no locked instruction. */
static inline void
ctr_add(struct ctr_cell *c, enum ctr_id id, uint64_t n)
{
	uint64_t v = __atomic_load_n(&c->v[id], __ATOMIC_RELAXED);

	__atomic_store_n(&c->v[id], v + n, __ATOMIC_RELAXED);
}

static inline void
ctr_sub(struct ctr_cell *c, enum ctr_id id, uint64_t n)
{
	uint64_t v = __atomic_load_n(&c->v[id], __ATOMIC_RELAXED);

	__atomic_store_n(&c->v[id], v - n, __ATOMIC_RELAXED);
}

static inline uint64_t
ctr_get(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void
ctr_set(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/* The clock of heartbeats and activity stamps: CLOCK_MONOTONIC in ns, read
 * by the supervisor and its workers alike. */
static inline uint64_t
ctr_clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Record one finished connection of duration ns in the cell's histogram. */
void ctr_observe(struct ctr_cell *c, uint64_t ns);

/* Add src's counters and histogram into dst (a supervisor-private copy);
 * gauges are not folded: their connections died with the process. */
void
ctr_fold(uint64_t *dst_v, struct ctr_hist *dst_h, const struct ctr_cell *src);

#endif
