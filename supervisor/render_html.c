/*
 * render_html.c: the status page of a snapshot.  The page's constant
 * halves live in status_page.c; this writes the per-worker rows between
 * them, with the same cell classes the page's script fills, so a text
 * browser shows the table and the first paint needs no fetch.  Rates need
 * two samples and show "-" until the script has them.
 */
#include <stdio.h>
#include <stdlib.h>

#include "render.h"

static const char *const html_states[] = SNAP_STATE_NAMES;

static void
html_row(FILE *f, const struct snapshot *s, const struct snap_worker *w)
{
	fprintf(f,
	    "<tr data-slot=\"%u\" class=\"%s\"><td class=\"slot\">%u"
	    "</td>",
	    w->slot, html_states[w->state], w->slot);
	if (w->pid)
		fprintf(f,
		    "<td class=\"pid\">%d</td><td class=\"state\">%s"
		    "</td><td class=\"uptime\">%.0fs</td>",
		    (int)w->pid, html_states[w->state], s->now - w->started_at);
	else
		fprintf(f,
		    "<td class=\"pid\">-</td><td class=\"state\">%s"
		    "</td><td class=\"uptime\">-</td>",
		    html_states[w->state]);
	fprintf(f,
	    "<td class=\"restarts\">%llu</td>"
	    "<td class=\"tcp_connections_active\">%llu</td>",
	    (unsigned long long)snap_restarts(w),
	    (unsigned long long)w->v[CTR_tcp_connections_active]);
	fprintf(f,
	    "<td class=\"tcp_connections_accepted\" data-total=\"%llu\">"
	    "-</td><td class=\"tcp_bytes_received\" data-total=\"%llu\">-</td>"
	    "<td class=\"tcp_bytes_sent\" data-total=\"%llu\">-</td>"
	    "<td class=\"udp_datagrams_received\" data-total=\"%llu\">-</td>",
	    (unsigned long long)w->v[CTR_tcp_connections_accepted],
	    (unsigned long long)w->v[CTR_tcp_bytes_received],
	    (unsigned long long)w->v[CTR_tcp_bytes_sent],
	    (unsigned long long)w->v[CTR_udp_datagrams_received]);
	fprintf(f, "<td class=\"last_exit\">%s</td></tr>\n",
	    w->last_exit[0] ? w->last_exit : "-");
}

char *
render_html(const struct snapshot *s, size_t *len)
{
	char *buf = NULL;
	size_t i;
	FILE *f;

	if ((f = open_memstream(&buf, len)) == NULL)
		return NULL;
	fputs(render_status_head, f);
	for (i = 0; i < s->nworkers; i++)
		html_row(f, s, &s->workers[i]);
	fputs(render_status_tail, f);
	if (ferror(f)) {
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	return buf;
}
