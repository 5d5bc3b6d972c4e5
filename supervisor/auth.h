/*
 * auth.h: HTTP Basic users of the stats endpoint (auth.c).
 */
#ifndef UPPERD_AUTH_H
#define UPPERD_AUTH_H

#include <stddef.h>

struct auth;

/* Read a users file ("user:hash" lines, crypt(3) hashes, # comments);
 * NULL with a one-line message in err if it is missing, unreadable,
 * malformed or names no user. */
struct auth *auth_load(const char *path, char *err, size_t errlen);
void auth_free(struct auth *a);
enum auth_verdict {
	AUTH_NO,  /* not a user's credentials */
	AUTH_OK,  /* a user's credentials */
	AUTH_BUSY /* not checked: the hashing budget is spent (auth.c) */
};

/* Are name and pass a user's credentials?  A rejection takes a time that
 * does not depend on which of the two was wrong. */
enum auth_verdict
auth_check(struct auth *a, const char *name, const char *pass);

#endif
