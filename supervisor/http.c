/*
 * http.c: the stats endpoint.  libmicrohttpd runs in external-epoll mode
 * inside the supervisor's loop (no HTTP thread: forking stays safe).  The
 * supervisor binds and accepts on the socket itself (gate.c checks
 * the request line first) and hands each connection to the daemon.  Every
 * request that is not a GET or HEAD of a known path gets its 4xx here;
 * malformed and oversized requests are refused by libmicrohttpd within
 * the memory limit.
 *
 * Securing it (--stats-tls-cert/-key, --stats-auth) is here too.  The
 * certificate reaches GnuTLS through a retrieve callback rather than
 * libmicrohttpd's fixed in-memory one, so a HUP swaps it for the next
 * handshake without restarting the daemon or cutting a scrape.  Users
 * are checked by auth.c.  Both are loaded whole before anything changes:
 * a bad file on HUP leaves the running ones.
 */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "gate_line.h"
#include "http_route.h"
#include "log.h"
#include "net.h"
#include "render.h"
#include "sup.h"

#define HTTP_CONN_LIMIT 256
/* Over TLS the gate hands a connection on with its ClientHello, before
 * its request: libmicrohttpd then holds the slow ones, so it may hold
 * more (gate.c). */
#define HTTP_TLS_CONN_LIMIT 2048
#define HTTP_CONN_TIMEOUT_S 10
#define HTTP_MEMORY_LIMIT (32 * 1024)
#define HTTP_TLS_CHAIN 16           /* certificates in a chain file */
#define HTTP_FILE_MAX (1024 * 1024) /* a PEM file larger is refused */

/* A certificate chain and its key, as the handshake hands them out. */
struct http_tls {
	gnutls_pcert_st pcert[HTTP_TLS_CHAIN];
	unsigned npcert;
	gnutls_privkey_t key;
};

/* The serving TLS material and users (NULL: plain HTTP, no auth).  The
 * previous material is freed only at the next reload: a handshake under
 * way may still hold it. */
static struct http_tls *http_tls, *http_tls_prev;
static struct auth *http_auth;

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
	if (code == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
		    "Basic realm=\"upperd\"");
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

/* Bytes a "Basic" token decodes to.  libmicrohttpd hands the user and
 * the password over as C strings, so a NUL in the decoded credentials
 * cuts them short ("secret\0junk" would pass as "secret"): a length that
 * differs from theirs means one was there. */
static size_t
http_basic_len(const char *hdr)
{
	size_t n, pad = 0;

	if (hdr == NULL || strncmp(hdr, "Basic ", 6) != 0)
		return 0;
	n = strlen(hdr + 6);
	while (pad < 2 && n > pad && hdr[6 + n - 1 - pad] == '=')
		pad++;
	return n / 4 * 3 - pad;
}

/* Does the request carry a user's credentials (or need none)?  A
 * malformed Authorization header costs the check a wrong password does. */
static int
http_authorized(struct MHD_Connection *conn)
{
	enum auth_verdict v = AUTH_NO;
	char *user, *pass = NULL;
	const char *hdr;

	if (http_auth == NULL)
		return 1;
	user = MHD_basic_auth_get_username_password(conn, &pass);
	hdr = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_AUTHORIZATION);
	if (user != NULL && pass != NULL &&
	    http_basic_len(hdr) == strlen(user) + 1 + strlen(pass))
		v = auth_check(http_auth, user, pass);
	else if (hdr != NULL)
		v = auth_check(http_auth, "", "");
	if (user != NULL)
		MHD_free(user);
	if (pass != NULL)
		MHD_free(pass);
	if (v == AUTH_BUSY)
		log_debug("http: too many password checks this second, 401 "
		          "without checking");
	else if (v == AUTH_NO)
		log_debug("http: no valid credentials, 401");
	return v == AUTH_OK;
}

/* Counts the Host header lines into *cls (an iterator that returns
 * MHD_NO would end the iteration). */
static enum MHD_Result
http_count_host(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	(void)kind;
	(void)value;
	if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
		++*(int *)cls;
	return MHD_YES;
}

static enum MHD_Result
http_handler(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload,
    size_t *upload_len, void **req)
{
	struct sup *s = cls;
	int hosts;

	(void)upload;
	(void)upload_len;
	(void)req;
	/* Over TLS the gate cannot read the request line, so its limits
	 * are applied here too (a plain request has passed them). */
	if (strlen(method) > GATE_METHOD_MAX)
		return http_text(conn, MHD_HTTP_BAD_REQUEST, "bad request\n");
	if (strlen(url) > GATE_LINE_MAX)
		return http_text(conn, MHD_HTTP_URI_TOO_LONG,
		    "request too long\n");
	/* RFC 9112 3.2: an HTTP/1.1 request without Host, and any request
	 * with more than one, is a 400. */
	hosts = 0;
	MHD_get_connection_values(conn, MHD_HEADER_KIND, http_count_host,
	    &hosts);
	if (hosts > 1 ||
	    (hosts == 0 && strcmp(version, MHD_HTTP_VERSION_1_1) == 0))
		return http_text(conn, MHD_HTTP_BAD_REQUEST,
		    hosts > 1 ? "more than one host\n" : "no host\n");
	url = http_route_path(url);
	if (strcmp(url, "/healthz") != 0 && !http_authorized(conn))
		return http_text(conn, MHD_HTTP_UNAUTHORIZED,
		    "authorization required\n");
	switch (http_route(method, url)) {
	case HTTP_ROUTE_METHOD:
		return http_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
		    "method not allowed\n");
	case HTTP_ROUTE_STATS:
		return http_render(conn, s, render_json, "application/json");
	case HTTP_ROUTE_METRICS:
		return http_render(conn, s, render_prom,
		    "text/plain; version=0.0.4; charset=utf-8");
	case HTTP_ROUTE_HEALTHZ:
		return http_healthz(conn, s);
	case HTTP_ROUTE_INDEX:
		return http_render(conn, s, render_html,
		    "text/html; charset=utf-8");
	case HTTP_ROUTE_NOT_FOUND:
		break;
	}
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

/* A whole file, for GnuTLS; -1 with err. */
static int
http_read_file(const char *path, gnutls_datum_t *d, char *err, size_t errlen)
{
	const char *why = NULL;
	struct stat st;
	ssize_t n = 0;
	int fd;

	d->data = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(fd, &st) == -1)
		why = strerror(errno);
	else if (!S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    st.st_size > HTTP_FILE_MAX)
		why = "not a regular file of 1 byte to 1 MiB";
	else if ((d->data = gnutls_malloc((size_t)st.st_size)) == NULL)
		why = "out of memory";
	else if ((n = read(fd, d->data, (size_t)st.st_size)) != st.st_size)
		why = n == -1 ? strerror(errno) : "short read";
	if (fd != -1)
		close(fd);
	if (why != NULL) {
		snprintf(err, errlen, "cannot read %s: %s", path, why);
		gnutls_free(d->data);
		d->data = NULL;
		return -1;
	}
	d->size = (unsigned)n;
	return 0;
}

static void
http_tls_free(struct http_tls *t)
{
	unsigned i;

	if (t == NULL)
		return;
	for (i = 0; i < t->npcert; i++)
		gnutls_pcert_deinit(&t->pcert[i]);
	if (t->key != NULL)
		gnutls_privkey_deinit(t->key);
	free(t);
}

/* Does the key belong to the certificate?  GnuTLS checks when it makes
 * credentials of them (a mismatch would only show at each handshake). */
static int
http_tls_match(const gnutls_datum_t *cert, const gnutls_datum_t *key)
{
	gnutls_certificate_credentials_t cred;
	int r;

	if (gnutls_certificate_allocate_credentials(&cred) < 0)
		return GNUTLS_E_MEMORY_ERROR;
	r = gnutls_certificate_set_x509_key_mem2(cred, cert, key,
	    GNUTLS_X509_FMT_PEM, NULL, 0);
	gnutls_certificate_free_credentials(cred);
	return r < 0 ? r : 0;
}

/* Import a checked PEM pair into t; a GnuTLS error code or 0. */
static int
http_tls_import(struct http_tls *t, const gnutls_datum_t *cert,
    const gnutls_datum_t *key)
{
	unsigned n = HTTP_TLS_CHAIN;
	int r;

	if ((r = http_tls_match(cert, key)) < 0 ||
	    (r = gnutls_pcert_list_import_x509_raw(t->pcert, &n, cert,
	         GNUTLS_X509_FMT_PEM, 0)) < 0)
		return r;
	t->npcert = n;
	if ((r = gnutls_privkey_init(&t->key)) < 0)
		return r;
	return gnutls_privkey_import_x509_raw(t->key, key, GNUTLS_X509_FMT_PEM,
	    NULL, 0);
}

/* The chain and key of a PEM pair, or NULL with err. */
static struct http_tls *
http_tls_load(const struct cfg *c, char *err, size_t errlen)
{
	gnutls_datum_t cert = { NULL, 0 }, key = { NULL, 0 };
	struct http_tls *t = calloc(1, sizeof(*t));
	int r;

	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (http_read_file(c->stats_tls_cert, &cert, err, errlen) == -1 ||
	    http_read_file(c->stats_tls_key, &key, err, errlen) == -1) {
		r = -1;
	} else if ((r = http_tls_import(t, &cert, &key)) < 0)
		snprintf(err, errlen, "bad TLS certificate %s or key %s: %s",
		    c->stats_tls_cert, c->stats_tls_key, gnutls_strerror(r));
	gnutls_free(cert.data);
	gnutls_free(key.data);
	if (r < 0) {
		http_tls_free(t);
		return NULL;
	}
	return t;
}

/* GnuTLS asks for the certificate at each handshake: the one loaded
 * last. */
static int
http_tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn,
    int nreqs, const gnutls_pk_algorithm_t *algos, int nalgos,
    gnutls_pcert_st **pcert, unsigned int *npcert, gnutls_privkey_t *key)
{
	(void)session;
	(void)req_ca_dn;
	(void)nreqs;
	(void)algos;
	(void)nalgos;
	if (http_tls == NULL)
		return -1;
	*pcert = http_tls->pcert;
	*npcert = http_tls->npcert;
	*key = http_tls->key;
	return 0;
}

/*
 * Load what securing the endpoint takes from c: the TLS pair and the
 * users file.  At start, and on every HUP before anything else changes:
 * all or nothing, so a bad file (-1, err) keeps what serves.  TLS cannot
 * be turned on or off while the daemon runs (it is how it was started).
 */
int
sup_http_load(struct sup *s, const struct cfg *c, char *err, size_t errlen)
{
	struct http_tls *t = NULL;
	struct auth *a = NULL;
	int tls = c->stats_tls_cert[0] != '\0';

	if (s->mhd != NULL && tls != (http_tls != NULL)) {
		snprintf(err, errlen,
		    "--stats-tls-cert cannot be %s by a "
		    "reload, only at start",
		    tls ? "added" : "removed");
		return -1;
	}
	if (tls && (t = http_tls_load(c, err, errlen)) == NULL)
		return -1;
	if (c->stats_auth[0] != '\0' &&
	    (a = auth_load(c->stats_auth, err, errlen)) == NULL) {
		http_tls_free(t);
		return -1;
	}
	http_tls_free(http_tls_prev);
	http_tls_prev = http_tls;
	http_tls = t;
	auth_free(http_auth);
	http_auth = a;
	return 0;
}

/* Is the stats socket bound where only this machine reaches it?  Asked
 * of the socket, so an inherited one (socket activation) counts too. */
static int
http_loopback(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&ss;
	const struct sockaddr_in *v4 = (const struct sockaddr_in *)&ss;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) == -1)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohl(v4->sin_addr.s_addr) >> 24 == 127;
	if (ss.ss_family != AF_INET6)
		return 1; /* a unix socket */
	return IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr) ||
	    (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr) &&
	        v6->sin6_addr.s6_addr[12] == 127);
}

/* Once per process (a failed upgrade restarts the daemon): an endpoint
 * the network reaches, with no credentials asked, is worth a warning. */
static void
http_warn_open(const struct sup *s)
{
	static int warned;
	char where[CFG_ADDR_MAX];

	if (warned || http_auth != NULL || http_loopback(s->stats_fd))
		return;
	warned = 1;
	net_local_name(s->stats_fd, where, sizeof(where));
	log_warnx("stats endpoint %s is not on loopback and has no "
	          "--stats-auth: whoever reaches it reads it",
	    where);
}

int
sup_http_start(struct sup *s)
{
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
	    MHD_USE_NO_LISTEN_SOCKET;

	http_warn_open(s);
	gate_init(http_tls != NULL,
	    http_tls != NULL ? HTTP_TLS_CONN_LIMIT : HTTP_CONN_LIMIT);
	/* The logger first: libmicrohttpd writes whatever it logs before
	 * this option raw to stderr, and warns when it is not first. */
	s->mhd = MHD_start_daemon(flags | (http_tls != NULL ? MHD_USE_TLS : 0),
	    0, NULL, NULL, http_handler, s, MHD_OPTION_EXTERNAL_LOGGER,
	    http_log, NULL, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned)(http_tls != NULL ? HTTP_TLS_CONN_LIMIT :
	                                  HTTP_CONN_LIMIT),
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_CONN_TIMEOUT_S,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_MEMORY_LIMIT,
	    http_tls != NULL ? MHD_OPTION_HTTPS_CERT_CALLBACK : MHD_OPTION_END,
	    http_tls_retrieve, MHD_OPTION_END);
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
