/*
 * render.h: the three renderers of a snapshot, each a pure function.
 * render_json.c (jansson) makes the /stats document, render_prom.c the
 * Prometheus text exposition, render_html.c the status page's rows.  Each
 * returns a malloc'd NUL-terminated string (caller frees) and sets *len, or
 * NULL on allocation failure.
 */
#ifndef UPPERD_RENDER_H
#define UPPERD_RENDER_H

#include <stddef.h>

#include "snapshot.h"

char *render_json(const struct snapshot *s, size_t *len);
char *render_prom(const struct snapshot *s, size_t *len);

/* The self-contained HTML status page served at GET /: the constant
 * halves (status_page.c) around the current per-worker rows. */
char *render_html(const struct snapshot *s, size_t *len);
extern const char render_status_head[];
extern const char render_status_tail[];

#endif
