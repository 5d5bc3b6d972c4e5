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
/* 1 if name and pass are a user's credentials, else 0, in a time that
 * does not depend on which of the two was wrong. */
int auth_check(struct auth *a, const char *name, const char *pass);

#endif
