/*
 * wrk.h: a worker process's private state, shared by worker.c (the event
 * loop, signals, heartbeat, draining), tcp.c (connections) and udp.c
 * (datagrams).  Nothing here is visible to the supervisor except through
 * the worker's counter cell.
 */
#ifndef UPPERD_WRK_H
#define UPPERD_WRK_H

#include <stdint.h>

#include "config.h"
#include "counters.h"
#include "engine.h"
#include "evsrc.h"
#include "upcase.h"

/* Read size per connection; the transform output and the pending-output
 * cap follow from it. */
#define WRK_INBUF (64 * 1024)
#define WRK_OUTBUF UPC_OUT_MAX(WRK_INBUF)

/* epoll tags of the non-connection fds (connections use their pointer,
 * never this small): listener i is WRK_EV_LISTEN + i, UDP socket i is
 * WRK_EV_UDP + i, for i < CFG_MAX_ADDRS. */
#define WRK_EV_LISTEN 16 /* after evsrc.h's two */
#define WRK_EV_UDP (WRK_EV_LISTEN + CFG_MAX_ADDRS)
#define WRK_EV_END (WRK_EV_UDP + CFG_MAX_ADDRS)

/*
 * One TCP connection.  An idle connection owns no buffer: output that the
 * client has not yet taken is the only thing ever allocated per
 * connection, and it is freed as soon as it drains.
 */
struct wconn {
	int fd;
	uint32_t events;      /* the current epoll interest */
	struct upc_stream st; /* carries a split UTF-8 character */
	uint8_t eof;          /* the client shut down its sending side */
	uint8_t work_tick;    /* low byte of the tick it last counted in */
	uint8_t recv_on;      /* io_uring: a multishot receive is armed */
	uint8_t send_on;      /* io_uring: pend is being sent */
	uint8_t recv_cancel;  /* io_uring: that receive is being cancelled */
	uint8_t dead;         /* io_uring: closed, completions still due */
	uint8_t *pend;        /* unsent output, NULL when none */
	uint32_t pend_len;
	uint32_t pend_off;
	uint8_t *q; /* io_uring: output made while pend is in flight */
	uint32_t q_len, q_cap;
	uint64_t acked; /* while pend: the client's TCP had taken this
				   much of our output when last looked at */
	uint64_t accepted_ns;
	uint64_t last_active_ns;   /* input, or output taken: --idle-timeout */
	struct wconn *prev, *next; /* idle order: least recently active first */
};

struct wconn_list {
	struct wconn *head, *tail;
};

struct wrk {
	const struct cfg *cfg;
	const struct eng_ops *eng;
	struct eng_uring *uring; /* engine_uring.c's state */
	struct ctr_table *tab;
	struct ctr_cell *cell;
	unsigned slot;
	struct evsrc ev;
	int lfd[CFG_MAX_ADDRS]; /* shared listeners (--tcp) */
	unsigned nlfd;          /* 0: TCP off, or closed by a drain */
	int ufd[CFG_MAX_ADDRS]; /* shared UDP sockets (--udp) */
	unsigned nufd;
	int listening; /* the engine watches every lfd */
	int draining;
	int quit;      /* QUIT: leave the loop now */
	int tick;      /* the timerfd fired in this wait */
	int recycling; /* past --max-requests: replacement asked for */
	uint64_t drain_deadline_ns;
	uint64_t accept_resume_ns; /* accept paused (fds out) until then */
	int accept_failing;        /* warned; until an accept succeeds */
	uint64_t now_ns;           /* CLOCK_MONOTONIC, refreshed every wakeup */
	uint64_t recycle_at;       /* served count that triggers recycling */
	unsigned tick_seq;         /* ticks so far */
	unsigned tick_work; /* clients' work found this tick (wrk_sched) */
	int batch;          /* running as SCHED_BATCH */
	int sched_fixed;    /* the policy could not be changed: stop trying */
	unsigned nconns;
	struct wconn_list lru;
	struct wconn_list dying; /* closed, the engine still refers to them */
	struct wconn *free_conns;
	uint8_t *inbuf;  /* shared by every connection: reads are */
	uint8_t *outbuf; /* transformed and written before the next */
	struct wrk_udp *udp;
};

/* tcp.c */
void tcp_accept(struct wrk *w, unsigned i);
void tcp_take_pending(struct wrk *w, unsigned i);
int tcp_input(struct wrk *w, struct wconn *c, const uint8_t *buf, size_t n);
int tcp_input_eof(struct wrk *w, struct wconn *c);
uint64_t tcp_conn_acked(const struct wconn *c);
void tcp_conn_active(struct wrk *w, struct wconn *c);
void tcp_conn_close(struct wrk *w, struct wconn *c);
void tcp_conn_free(struct wrk *w, struct wconn *c);
void tcp_expire_idle(struct wrk *w);
void tcp_close_all(struct wrk *w);

/* udp.c */
int udp_init(struct wrk *w);
int udp_event(struct wrk *w, unsigned i);

/* worker.c */
int wrk_may_accept(struct wrk *w);
void wrk_listen(struct wrk *w, int on);
void wrk_served(struct wrk *w, uint64_t n);
void wrk_signal(struct wrk *w);

#endif
