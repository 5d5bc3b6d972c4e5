/*
 * engine.h: the syscalls of a worker's event loop, behind one small
 * interface, so that its event model (connections, backpressure, idle
 * timeout, drain, heartbeat, counters, balancing) lives once in worker.c,
 * tcp.c and udp.c whatever waits for the events: epoll (engine_epoll.c,
 * readiness: the worker reads and writes) or io_uring (engine_uring.c,
 * completion: the kernel reads into shared buffers and writes from ours).
 *
 * An engine waits, then reports what happened by calling into the worker:
 * tcp_accept when the listener is readable, tcp_input and
 * tcp_input_eof for a connection, udp_event when datagrams wait,
 * wrk_signal for the signalfd, and w->tick for the timerfd.  The worker
 * asks it, in turn, to watch or leave the listener, to take a connection
 * on, to send a connection's output, to close one, and to drop the UDP
 * socket.
 */
#ifndef UPPERD_ENGINE_H
#define UPPERD_ENGINE_H

#include <stddef.h>
#include <stdint.h>

struct wrk;
struct wconn;

struct eng_ops {
	const char *name;
	/* Set up for w's fds (signalfd, timerfd, UDP socket); -1 with
	 * errno set when this engine cannot run here. */
	int (*open)(struct wrk *w);
	/* Wait at most timeout_ms (-1: no limit), set w->now_ns, report
	 * what happened; -1 with errno set when waiting itself failed. */
	int (*wait)(struct wrk *w, int timeout_ms);
	/* Start (on) or stop taking connections from the listeners. */
	int (*listen)(struct wrk *w, int on);
	/* Take on accepted connection c (c->fd set); -1 on failure. */
	int (*conn_add)(struct wrk *w, struct wconn *c);
	/* Send c's output buf; what the client does not take now is the
	 * engine's to keep (c->pend) and, while it is kept, c is not read.
	 * -1 when c is dead and has been closed (tcp_conn_close). */
	int (*send)(struct wrk *w, struct wconn *c, const uint8_t *buf,
	    size_t len);
	/* Close c's fd; hand c back with tcp_conn_free once the engine
	 * holds no reference to it. */
	void (*conn_close)(struct wrk *w, struct wconn *c);
	/* Stop watching the UDP socket (a drain closes it next). */
	void (*udp_close)(struct wrk *w);
};

extern const struct eng_ops eng_epoll;
extern const struct eng_ops eng_uring;

/* The epoll set the io_uring engine keeps for the signalfd, the timerfd
 * and the shared sockets (engine_uring.c says why). */
int eng_epoll_open(struct wrk *w);
int eng_epoll_listen(struct wrk *w, int on);
void eng_epoll_udp_close(struct wrk *w);
/* Wait up to timeout_ms and dispatch: how many events, -1 on failure. */
int eng_epoll_events(struct wrk *w, int timeout_ms);

/* Open the engine the config asks for, falling back from io_uring to
 * epoll with one warning; sets w->eng.  -1 when none could be opened. */
int eng_open(struct wrk *w);

#endif
