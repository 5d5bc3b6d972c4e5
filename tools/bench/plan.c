/*
 * plan.c: who holds what before a run starts: each client process's share
 * of the connections (their kinds and stream lengths), whether that share
 * fits the fd limit, and the server's addresses with the source spread
 * that lets tens of thousands of connections reach one loopback port.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"
#include "net.h"

/* Process proc's share of total items spread over procs processes. */
int
ub_plan_share(long total, int proc, int procs)
{
	return (int)(total / procs + (proc < total % procs));
}

/* Lay out this process's connections: active ones first, then idle. */
void
ub_plan_layout(struct ub_ctx *x)
{
	const struct ub_opts *o = x->o;
	const struct ub_mode *m = o->mode;
	int nact, i, depth = o->depth;

	nact = ub_plan_share(m->sockets ? o->sockets : o->conns, x->proc,
	    o->procs);
	/* idle: the working connections all in process 0, so the client side
	 * of the work is rr's exactly and only the idle ones differ */
	if (m->holds_idle)
		nact = x->proc == 0 ? o->conns : 0;
	x->nidle = m->holds_idle ? ub_plan_share(o->idle, x->proc, o->procs) :
	                           0;
	x->nconns = nact + x->nidle;
	x->conns = ub_calloc((size_t)x->nconns + 1, sizeof(*x->conns));
	x->ts = ub_calloc((size_t)nact * (size_t)depth + 1, sizeof(int64_t));
	for (i = 0; i < x->nconns; i++) {
		struct ub_conn *c = &x->conns[i];

		c->fd = -1;
		c->gidx = (uint32_t)(x->proc + i * o->procs);
		c->ts = x->ts + (size_t)(i < nact ? i : 0) * (size_t)depth;
		c->kind = i >= nact ? &ub_kind_idle : m->work;
		if (c->kind->plan != NULL)
			c->kind->plan(x, c);
	}
}

/* Each process may hold its share of the connections plus a few fds:
 * raise the soft limit to the hard one, and refuse (exit 2) beyond it. */
void
ub_plan_check_fds(const struct ub_opts *o)
{
	long per = o->mode->holds_idle ? o->conns + o->idle / o->procs + 1 :
	                                 o->conns / o->procs + 1;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    (rlim_t)per + 32 > rl.rlim_cur) {
		fprintf(stderr,
		    "upper-bench: %ld connections per process "
		    "exceed the fd limit %llu: raise --procs\n",
		    per, (unsigned long long)rl.rlim_cur);
		exit(2);
	}
}

/* The server's TCP and UDP addresses; sources spread over 127/8 when the
 * scenario opens many connections to a loopback server. */
void
ub_plan_resolve(struct ub_ctx *x)
{
	const struct ub_opts *o = x->o;
	int v6 = strchr(o->host, ':') != NULL;
	char spec[300];

	snprintf(spec, sizeof(spec), v6 ? "[%s]:%d" : "%s:%d", o->host,
	    o->port);
	if (net_parse_addr(spec, &x->dst, &x->dstlen) == -1)
		ub_die("bad address %s (numeric only)", spec);
	snprintf(spec, sizeof(spec), v6 ? "[%s]:%d" : "%s:%d", o->host,
	    o->udp_port);
	net_parse_addr(spec, &x->udst, &x->udstlen);
	x->spread = x->dst.ss_family == AF_INET && o->mode->spread &&
	    (ntohl(((struct sockaddr_in *)&x->dst)->sin_addr.s_addr) >> 24) ==
	        127;
}
