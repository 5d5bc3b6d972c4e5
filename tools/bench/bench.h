/*
 * bench.h: what the modules of upper-bench, the load generator, share.
 *
 * One non-blocking, level-triggered epoll loop per client process drives
 * every connection of one scenario (--mode).  A scenario is a struct
 * ub_mode: its name, its defaults and how it ends; its connections behave
 * as a struct ub_kind says, one hook per step of a run (open, connected,
 * start, event, tick, account).  A new scenario is one file defining both,
 * plus its line in ub_modes[] (opts.c).
 *
 * Modules, each with its prefix:
 *   main.c    ub_       main, the exit status, die and calloc helpers
 *   opts.c    ub_opt_   the option table, usage, defaults
 *   plan.c    ub_plan_  which process holds which connection; fd limit;
 *                       the server's address and the source spread
 *   stream.c  ub_stream_ the periodic request and expected-reply streams
 *                       and the check of every reply byte
 *   conn.c    ub_conn_  a TCP connection's life: connect, recv, EOF, loss
 *   loop.c    ub_loop_  the epoll loop and the phases of one client process
 *   proc.c    ub_proc_  client processes: fork, barrier, --hold, merge
 *   hist.c    ub_hist_  the latency histogram
 *   report.c  ub_report_ the human line and the JSON line
 *   rr.c, churn.c, udp.c, bulk.c, idle.c: the scenarios.
 */
#ifndef UB_BENCH_H
#define UB_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "upcase.h"

#define UB_HIST_BITS 7
#define UB_HIST_SUB (1 << UB_HIST_BITS)
#define UB_HIST_N ((64 - UB_HIST_BITS + 1) * UB_HIST_SUB)
#define UB_RBUF (256 * 1024)
#define UB_CHUNK (256 * 1024)  /* most bytes one bulk send() offers */
#define UB_BLOCK (1024 * 1024) /* period of the bulk text */
#define UB_BULK_UNIT 65536     /* bulk errors count wrong 64 KiB blocks */
#define UB_EVENTS 512
#define UB_CONNECT_WINDOW 512 /* connects in progress at once */
#define UB_UDP_RING 16384
#define UB_UDP_BATCH 64
#define UB_UDP_HDR 16 /* decimal sequence number, then letters */
#define UB_MAX_PROCS 256
#define UB_MAX_SIZE 65536
#define UB_MAX_DEPTH 4096
#define UB_NSEC 1000000000LL

enum ub_state { UB_ST_FREE, UB_ST_CONNECTING, UB_ST_OPEN };

struct ub_ctx;
struct ub_conn;
struct ub_opts;

/* What a kind of connection does at each step of a run; a NULL hook does
 * nothing.  Hooks run in the client process that owns the connection. */
struct ub_kind {
	/* Connect phase, before the clock starts: open the connection.  A
	 * kind without it (churn) opens its own connections once started. */
	void (*open)(struct ub_ctx *x, struct ub_conn *c);
	/* A TCP connect completed; a failed one calls connect_failed. */
	void (*connected)(struct ub_ctx *x, struct ub_conn *c);
	void (*connect_failed)(struct ub_ctx *x, struct ub_conn *c);
	/* The clock starts: the connection gets its first work. */
	void (*start)(struct ub_ctx *x, struct ub_conn *c, int64_t now);
	void (*event)(struct ub_ctx *x, struct ub_conn *c, uint32_t ev);
	/* Timed work between events (at least every 10 ms). */
	void (*tick)(struct ub_ctx *x, struct ub_conn *c, int64_t now);
	/* A stream ended at EOF (ok: after exactly the expected reply). */
	void (*finished)(struct ub_ctx *x, struct ub_conn *c, int64_t now,
	    int ok);
	/* After the grace period: count what this open connection still
	 * owes into the result. */
	void (*account)(struct ub_ctx *x, struct ub_conn *c);
	/* Is anything of this kind still to wait for (the whole process)? */
	int (*busy)(const struct ub_ctx *x);
	/* Lay out one connection of this kind (its stream lengths). */
	void (*plan)(struct ub_ctx *x, struct ub_conn *c);
	/* Ends with EOF after the whole expected reply and counts in
	 * x->streams while it runs (bulk, churn); else EOF means lost. */
	int stream;
};

/* A scenario: what --mode names. */
struct ub_mode {
	const char *name;
	const struct ub_kind *work; /* the kind of its working connections */
	int conns;                  /* default --conns */
	/* Ends when its work is done, --duration is only its limit, no
	 * warmup and no grace (bulk, churn). */
	int timed;
	int sockets;    /* works over --sockets UDP sockets, not --conns */
	int holds_idle; /* --idle connections held beside the work */
	int spread;     /* many connections: bind sources over 127/8 */
	int bytes_line; /* reports input MB/s, not requests (bulk) */
	/* Build the request and expected-reply streams of one process. */
	void (*prepare)(struct ub_ctx *x);
	/* Reject option combinations the scenario cannot run (exit 2). */
	void (*check)(const struct ub_opts *o);
};

struct ub_opts {
	const struct ub_mode *mode;
	const char *host;
	int port, udp_port;
	int conns, depth, size, sockets, idle, procs;
	long requests;
	double duration, warmup, grace, hold, connect_timeout, udp_timeout;
	uint64_t bytes;
	int mixed;
	enum upc_mode upc;
};

/* What one process measured; the parent sums them (maxima for times). */
struct ub_result {
	uint64_t requests, bytes_tx, bytes_rx;
	uint64_t errors, lost, late, reordered, stalled;
	uint64_t connected, connect_failures, idle_held, idle_closed;
	int64_t elapsed_ns;
	uint64_t max_ns, nlat;
	uint64_t hist[UB_HIST_N];
};

/* Sent up at the barrier: how the connect phase went. */
struct ub_ready {
	uint64_t connected, failures;
};

struct ub_udp;

/* A connection (or a UDP socket).  Streams are positions in the periodic
 * request and expected-reply streams of the process. */
struct ub_conn {
	int fd;
	uint8_t state;
	const struct ub_kind *kind;
	uint32_t events;
	uint32_t gidx;       /* index over all processes: source address */
	uint64_t sent_req;   /* rr: requests issued */
	uint64_t done_req;   /* rr: replies complete */
	uint64_t spos, rpos; /* bytes sent / received */
	uint64_t send_total, recv_total; /* bulk, churn: whole streams */
	uint64_t bad_unit; /* 1 + last unit already counted wrong */
	int64_t t0;        /* churn: connect start */
	int64_t *ts;       /* rr: issue time of each request in flight */
	struct ub_udp *udp;
};

/* One client process: its share of the connections and its streams. */
struct ub_ctx {
	const struct ub_opts *o;
	int ep;
	int proc;
	int spread; /* bind sources to 127.0.0.2-251 */
	int running;
	int connecting;
	int streams; /* bulk/churn connections not finished */
	int complained;
	struct sockaddr_storage dst, udst;
	socklen_t dstlen, udstlen;
	int64_t t_start, t_warm, t_end;
	struct ub_result *res;
	struct ub_conn *conns;
	int nconns, nidle;
	int64_t *ts;
	uint64_t inflight; /* rr requests not yet answered */
	long churn_left;
	uint8_t *in, *exp; /* request stream, expected reply stream */
	size_t in_period, exp_period;
	size_t in_len; /* in holds one period and then some */
	size_t bulk_tail_in, bulk_tail_exp;
	uint64_t err_unit;
	uint8_t *rbuf;
	struct mmsghdr msgs[UB_UDP_BATCH];
	struct iovec iovs[UB_UDP_BATCH];
	uint8_t *dbuf; /* UB_UDP_BATCH datagrams of size + 1 */
};

static inline int64_t
ub_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * UB_NSEC + ts.tv_nsec;
}

/* Is t inside the measured part of the run (after warmup, before end)? */
static inline int
ub_in_window(const struct ub_ctx *x, int64_t t)
{
	return t >= x->t_warm && t < x->t_end;
}

/* main.c: upper-bench's errors are fatal, one line on stderr, exit 1. */
void __attribute__((format(printf, 1, 2), noreturn))
ub_die(const char *fmt, ...);
void *ub_calloc(size_t n, size_t size);

/* opts.c: every scenario, in --mode's order; the first is the default. */
extern const struct ub_mode *const ub_modes[];
void ub_opt_parse(struct ub_opts *o, int argc, char **argv);

/* plan.c */
void ub_plan_check_fds(const struct ub_opts *o);
void ub_plan_resolve(struct ub_ctx *x);
void ub_plan_layout(struct ub_ctx *x);
int ub_plan_share(long total, int proc, int procs);

/* stream.c */
void ub_stream_rr(struct ub_ctx *x);
void ub_stream_bulk(struct ub_ctx *x);
void ub_stream_verify(struct ub_ctx *x, struct ub_conn *c, const uint8_t *p,
    size_t n);

/* conn.c */
void ub_conn_watch(struct ub_ctx *x, struct ub_conn *c, uint32_t events);
void ub_conn_close(struct ub_ctx *x, struct ub_conn *c);
int ub_conn_connect(struct ub_ctx *x, struct ub_conn *c);
void ub_conn_open(struct ub_ctx *x, struct ub_conn *c);
void ub_conn_failed(struct ub_ctx *x, int err);
void ub_conn_connected(struct ub_ctx *x, struct ub_conn *c);
void ub_conn_lost(struct ub_ctx *x, struct ub_conn *c);
int
ub_conn_send(struct ub_ctx *x, struct ub_conn *c, const uint8_t *p, size_t n);
ssize_t ub_conn_recv(struct ub_ctx *x, struct ub_conn *c, uint64_t limit);
void ub_conn_stream_read(struct ub_ctx *x, struct ub_conn *c);
void ub_conn_connected_in(struct ub_ctx *x, struct ub_conn *c);
void ub_conn_duplex(struct ub_ctx *x, struct ub_conn *c, uint32_t ev,
    void (*send)(struct ub_ctx *, struct ub_conn *),
    void (*read)(struct ub_ctx *, struct ub_conn *));
void ub_conn_stream_account(struct ub_ctx *x, struct ub_conn *c);
int ub_conn_streams_busy(const struct ub_ctx *x);

/* loop.c */
int ub_loop_child(const struct ub_opts *o, int proc, int go, int out);

/* proc.c */
int ub_proc_run(const struct ub_opts *o, struct ub_result *t);
int ub_proc_write_all(int fd, const void *p, size_t n);

/* hist.c */
void ub_hist_record(struct ub_result *r, int64_t ns);
double ub_hist_quantile(const struct ub_result *r, double q);

/* report.c */
void ub_report_print(const struct ub_opts *o, const struct ub_result *t);

/* The scenarios (rr.c, churn.c, udp.c, bulk.c, idle.c). */
extern const struct ub_mode ub_mode_rr, ub_mode_udp, ub_mode_bulk, ub_mode_idle,
    ub_mode_churn;
extern const struct ub_kind ub_kind_rr, ub_kind_idle;

#endif /* UB_BENCH_H */
