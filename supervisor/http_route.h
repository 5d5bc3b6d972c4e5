/*
 * http_route.h: which answer a stats request gets, from its method and
 * target alone; the pure half of http.c, so it is unit-tested and fuzzed.
 */
#ifndef UPPERD_HTTP_ROUTE_H
#define UPPERD_HTTP_ROUTE_H

enum http_route {
	HTTP_ROUTE_STATS,   /* GET /stats */
	HTTP_ROUTE_METRICS, /* GET /metrics */
	HTTP_ROUTE_HEALTHZ, /* GET /healthz */
	HTTP_ROUTE_INDEX,   /* GET /: the status page */
	HTTP_ROUTE_NOT_FOUND,
	HTTP_ROUTE_METHOD /* neither GET nor HEAD: 405 */
};

/* The path part of a target (the absolute form's path, else the target);
 * then the route of a method and that path. */
const char *http_route_path(const char *url);
enum http_route http_route(const char *method, const char *url);

#endif
