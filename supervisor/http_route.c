/*
 * http_route.c: the stats endpoint's routing table.  It owns the mapping
 * from a request's method and path to the page that answers it; http.c
 * owns the answers.  No libmicrohttpd here, so the fuzzer (tests/fuzz/
 * fuzz_gate.c) drives it straight after the gate's parser.
 */
#include <string.h>
#include <strings.h>

#include "http_route.h"

static const struct {
	const char *path;
	enum http_route route;
} http_routes[] = {
	{ "/stats", HTTP_ROUTE_STATS },
	{ "/metrics", HTTP_ROUTE_METRICS },
	{ "/healthz", HTTP_ROUTE_HEALTHZ },
	{ "/", HTTP_ROUTE_INDEX },
};

/* The path of a target in absolute form ("http://host:port/metrics"),
 * which a server must accept (RFC 9112 3.2.2) and libmicrohttpd passes
 * on as it came; any other target as it is. */
const char *
http_route_path(const char *url)
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

/* HEAD is answered as GET (libmicrohttpd drops the body); any other
 * method is a 405 whatever the path, as before. */
enum http_route
http_route(const char *method, const char *url)
{
	size_t i;

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return HTTP_ROUTE_METHOD;
	for (i = 0; i < sizeof(http_routes) / sizeof(http_routes[0]); i++)
		if (strcmp(url, http_routes[i].path) == 0)
			return http_routes[i].route;
	return HTTP_ROUTE_NOT_FOUND;
}
