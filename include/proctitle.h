/*
 * proctitle.h: what ps shows for each process ("upperd: supervisor -c
 * FILE", "upperd: worker 3", "upperd: worker 3 (draining)"), written over
 * the memory of the original argv and environment strings as nginx's
 * ngx_setproctitle does, and a short name for PR_SET_NAME (top, comm).
 */
#ifndef UPPERD_PROCTITLE_H
#define UPPERD_PROCTITLE_H

/* First thing in main: copies the environment and argv to the heap (so
 * getenv and a reload's re-parse keep working) and returns the copy of
 * argv, to be used instead of argv from then on.  If memory runs out it
 * returns argv and titles stay as they are. */
char **ptl_init(int argc, char **argv);

/* Set the title (cut to the room there is) and the 15-byte comm name. */
void ptl_set(const char *comm, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
