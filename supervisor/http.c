/*
 * http.c: the stats endpoint.  libmicrohttpd runs in external-epoll mode
 * inside the supervisor's loop (no HTTP thread: forking stays safe).  The
 * supervisor binds and accepts on the socket itself (gate.c checks
 * the request line first) and hands each connection to the daemon.  Every
 * request that
 * is not a GET or HEAD of a known path gets its 4xx here; malformed and
 * oversized requests are refused by libmicrohttpd within the memory limit.
 */
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "render.h"
#include "sup.h"

#define HTTP_CONN_LIMIT 256
#define HTTP_CONN_TIMEOUT_S 10
#define HTTP_MEMORY_LIMIT (32 * 1024)

static enum MHD_Result
http_reply(struct MHD_Connection *conn, unsigned code, const char *type,
    char *body, size_t len, int must_free)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, body,
	    must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (r == NULL) {
		if (must_free)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	/* One request per connection: every request line then passes the
	 * gate (gate.c), where libmicrohttpd alone would close a
	 * malformed second request on a kept-alive connection without a
	 * word.  Keep-alive saved no measurable CPU per scrape (0.28 ms of
	 * supervisor time at 100 Hz either way). */
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result
http_text(struct MHD_Connection *conn, unsigned code, const char *text)
{
	return http_reply(conn, code, "text/plain; charset=utf-8", (char *)text,
	    strlen(text), 0);
}

/* Render a fresh snapshot with one of the renderers, timing it for
 * upperd_scrape_duration_seconds. */
static enum MHD_Result
http_render(struct MHD_Connection *conn, struct sup *s,
    char *(*render)(const struct snapshot *, size_t *), const char *type)
{
	struct snapshot snap;
	uint64_t t0 = ctr_clock_ns();
	size_t len;
	char *body;

	if (sup_snapshot(s, &snap) == -1)
		return http_text(conn, 500, "out of memory\n");
	body = render(&snap, &len);
	sup_snapshot_free(&snap);
	s->last_scrape = (double)(ctr_clock_ns() - t0) / 1e9;
	if (body == NULL)
		return http_text(conn, 500, "out of memory\n");
	return http_reply(conn, 200, type, body, len, 1);
}

static enum MHD_Result
http_healthz(struct MHD_Connection *conn, struct sup *s)
{
	static char reason[128];
	unsigned i, running = 0;

	for (i = 0; i < s->configured; i++)
		running += sup_slot_state(s, i) == SNAP_RUNNING;
	/* From the first moment of a stop, lame duck included. */
	if (s->mode != SUP_RUNNING || s->lame_until_ns)
		return http_text(conn, 503, "draining");
	if (running == s->configured) {
		sup_announce(s);
		return http_text(conn, 200, "ok");
	}
	snprintf(reason, sizeof(reason), "%u of %u workers running\n", running,
	    s->configured);
	return http_text(conn, 503, reason);
}

/* The path of a target in absolute form ("http://host:port/metrics"),
 * which a server must accept (RFC 9112 3.2.2) and libmicrohttpd passes
 * on as it came; any other target as it is. */
static const char *
http_path(const char *url)
{
	const char *p;

	if (strncasecmp(url, "http://", 7) == 0)
		p = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		p = url + 8;
	else
		return url;
	p = strchr(p, '/');
	return p == NULL ? "/" : p;
}

static enum MHD_Result
http_handler(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload,
    size_t *upload_len, void **req)
{
	struct sup *s = cls;

	(void)upload;
	(void)upload_len;
	(void)req;
	/* RFC 9112 3.2: an HTTP/1.1 request without Host is a 400. */
	if (strcmp(version, MHD_HTTP_VERSION_1_1) == 0 &&
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	        MHD_HTTP_HEADER_HOST) == NULL)
		return http_text(conn, MHD_HTTP_BAD_REQUEST, "no host\n");
	url = http_path(url);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return http_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
		    "method not allowed\n");
	if (strcmp(url, "/stats") == 0)
		return http_render(conn, s, render_json, "application/json");
	if (strcmp(url, "/metrics") == 0)
		return http_render(conn, s, render_prom,
		    "text/plain; version=0.0.4; charset=utf-8");
	if (strcmp(url, "/healthz") == 0)
		return http_healthz(conn, s);
	if (strcmp(url, "/") == 0)
		return http_render(conn, s, render_html,
		    "text/html; charset=utf-8");
	return http_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
}

static void
http_log(void *cls, const char *fmt, va_list ap)
{
	char line[256];

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_debug("http: %s", line);
}

int
sup_http_start(struct sup *s)
{
	gate_init();
	/* The logger first: libmicrohttpd writes whatever it logs before
	 * this option raw to stderr, and warns when it is not first. */
	s->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
	        MHD_USE_NO_LISTEN_SOCKET,
	    0, NULL, NULL, http_handler, s, MHD_OPTION_EXTERNAL_LOGGER,
	    http_log, NULL, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)HTTP_CONN_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned)HTTP_CONN_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)HTTP_MEMORY_LIMIT, MHD_OPTION_END);
	return s->mhd == NULL ? -1 : 0;
}

int
sup_http_fd(struct sup *s)
{
	const union MHD_DaemonInfo *info;

	info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	return info == NULL ? -1 : info->epoll_fd;
}

void
sup_http_run(struct sup *s)
{
	if (s->mhd != NULL)
		MHD_run(s->mhd);
}

/* How long epoll may sleep before libmicrohttpd needs a turn. */
int
sup_http_timeout_ms(struct sup *s)
{
	MHD_UNSIGNED_LONG_LONG ms;

	if (s->mhd == NULL || MHD_get_timeout(s->mhd, &ms) == MHD_NO)
		return -1;
	return ms > 1000 ? 1000 : (int)ms;
}

void
sup_http_stop(struct sup *s)
{
	if (s->mhd != NULL)
		MHD_stop_daemon(s->mhd);
	s->mhd = NULL;
}
