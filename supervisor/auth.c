/*
 * auth.c: HTTP Basic credentials for the stats endpoint (--stats-auth).
 * Owns the users file (lines "user:hash", the hash in crypt(3) form:
 * bcrypt $2b$/$2y$, yescrypt $y$, SHA-512 $6$; '#' comments) and the
 * check of a user and password against it with libxcrypt's crypt_r.
 *
 * The time to reject must not tell which part was wrong: an unknown user
 * is hashed too, against the costliest hash of the file (timed at load,
 * when every hash is also tried once), every user name is compared, and
 * hashes are compared in constant time.
 * A password hash costs tens of milliseconds by design, in the
 * supervisor's only thread, at every scrape: so a user's last verified
 * password is remembered as a keyed SHA-256 digest (as Prometheus's
 * exporter toolkit caches bcrypt results), and a scrape with it costs a
 * digest.  Only acceptance is fast; every rejection costs a crypt_r.
 */
#include <crypt.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "auth.h"

#define AUTH_NAME_MAX 128
#define AUTH_HASH_MAX 256
#define AUTH_DIGEST 32 /* SHA-256 */
#define AUTH_MAX_USERS 1024
#define AUTH_BUDGET_NS 500000000LL /* of hashing per second */
#define AUTH_BANK_NS 100000000LL

struct auth_user {
	char name[AUTH_NAME_MAX];
	char hash[AUTH_HASH_MAX];
	int cached; /* digest holds the last verified password */
	unsigned char digest[AUTH_DIGEST];
};

struct auth {
	size_t n;
	size_t dummy; /* the user whose hash an unknown user is checked by */
	unsigned char key[16]; /* keys the digests: none outlives a load */
	struct auth_user user[];
};

/* The methods SPEC names; others (DES, MD5) are refused at load. */
static const char *const auth_methods[] = { "$2b$", "$2y$", "$y$", "$6$" };

/* a == b over the length of b, in time that depends only on the
 * lengths. */
static int
auth_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i;
	unsigned char diff = la != lb;

	for (i = 0; i < lb; i++)
		diff |= (unsigned char)((i < la ? a[i] : 0) ^ b[i]);
	return diff == 0;
}

static int
auth_method_ok(const char *hash)
{
	size_t i;

	for (i = 0; i < sizeof(auth_methods) / sizeof(auth_methods[0]); i++)
		if (strncmp(hash, auth_methods[i], strlen(auth_methods[i])) ==
		    0)
			return crypt_checksalt(hash) == CRYPT_SALT_OK;
	return 0;
}

/* One line of the file into u; 1 for a user, 0 for a blank or comment
 * line, -1 with err for a malformed one. */
static int
auth_line(char *line, struct auth_user *u, const char *path, unsigned ln,
    char *err, size_t errlen)
{
	char *colon, *end;

	line[strcspn(line, "\r\n")] = '\0';
	while (*line == ' ' || *line == '\t')
		line++;
	end = line + strlen(line);
	while (end > line && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	if (*line == '\0' || *line == '#')
		return 0;
	colon = strchr(line, ':');
	if (colon == NULL || colon == line ||
	    (size_t)(colon - line) >= sizeof(u->name) ||
	    strlen(colon + 1) >= sizeof(u->hash)) {
		snprintf(err, errlen, "%s:%u: expected user:hash", path, ln);
		return -1;
	}
	*colon = '\0';
	if (!auth_method_ok(colon + 1)) {
		snprintf(err, errlen,
		    "%s:%u: the hash of user \"%.64s\" is not a bcrypt ($2b$, "
		    "$2y$), yescrypt ($y$) or SHA-512 ($6$) crypt(3) hash",
		    path, ln, line);
		return -1;
	}
	memset(u, 0, sizeof(*u));
	memcpy(u->name, line, (size_t)(colon - line) + 1);
	memcpy(u->hash, colon + 1, strlen(colon + 1) + 1);
	return 1;
}

static struct auth *
auth_read(FILE *f, const char *path, char *err, size_t errlen)
{
	struct auth *a;
	char line[1024];
	unsigned ln = 0;
	int r;

	a = calloc(1, sizeof(*a) + AUTH_MAX_USERS * sizeof(a->user[0]));
	if (a == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		ln++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, errlen, "%s:%u: line too long", path, ln);
			goto bad;
		}
		if (a->n == AUTH_MAX_USERS) {
			snprintf(err, errlen, "%s:%u: more than %d users", path,
			    ln, AUTH_MAX_USERS);
			goto bad;
		}
		if ((r = auth_line(line, &a->user[a->n], path, ln, err,
		         errlen)) == -1)
			goto bad;
		a->n += (size_t)r;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read %s: %s", path,
		    strerror(errno));
		goto bad;
	}
	if (a->n == 0) {
		snprintf(err, errlen, "%s: no user:hash line", path);
		goto bad;
	}
	return a;
bad:
	free(a);
	return NULL;
}

static uint64_t
auth_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Hash a password with every user's hash once: a hash libxcrypt cannot
 * use is an error now rather than a user locked out later, and the
 * costliest one is what an unknown user is checked against. */
static int
auth_try(struct auth *a, const char *path, char *err, size_t errlen)
{
	static struct crypt_data cd;
	uint64_t t0, t, worst = 0;
	const char *out;
	size_t i;

	for (i = 0; i < a->n; i++) {
		t0 = auth_now_ns();
		out = crypt_r("upperd", a->user[i].hash, &cd);
		/* a setting alone ("$6$salt") hashes, and matches nothing */
		if (out == NULL || out[0] == '*' ||
		    strlen(out) != strlen(a->user[i].hash)) {
			snprintf(err, errlen,
			    "%s: the hash of user \"%.64s\" is not a "
			    "complete crypt(3) hash",
			    path, a->user[i].name);
			return -1;
		}
		if ((t = auth_now_ns() - t0) >= worst) {
			worst = t;
			a->dummy = i;
		}
	}
	return 0;
}

struct auth *
auth_load(const char *path, char *err, size_t errlen)
{
	struct auth *a;
	FILE *f;

	if ((f = fopen(path, "re")) == NULL) {
		snprintf(err, errlen, "cannot open users file %s: %s", path,
		    strerror(errno));
		return NULL;
	}
	a = auth_read(f, path, err, errlen);
	fclose(f);
	if (a != NULL && auth_try(a, path, err, errlen) == -1) {
		free(a);
		return NULL;
	}
	if (a != NULL &&
	    getrandom(a->key, sizeof(a->key), 0) != (ssize_t)sizeof(a->key)) {
		snprintf(err, errlen, "getrandom: %s", strerror(errno));
		free(a);
		return NULL;
	}
	return a;
}

void
auth_free(struct auth *a)
{
	free(a);
}

/* The keyed digest of a password, for the cache; -1 if it failed. */
static int
auth_digest(const struct auth *a, const char *pass, unsigned char *out)
{
	return gnutls_hmac_fast(GNUTLS_MAC_SHA256, a->key, sizeof(a->key), pass,
	           strlen(pass), out) == 0 ?
	    0 :
	    -1;
}

/* The user named name, or NULL; every name is compared, whatever
 * matches. */
static struct auth_user *
auth_find(struct auth *a, const char *name)
{
	struct auth_user *found = NULL;
	size_t i;

	for (i = 0; i < a->n; i++)
		if (auth_equal(name, a->user[i].name) && found == NULL)
			found = &a->user[i];
	return found;
}

/*
 * May a password be hashed now?  Hashing is costly by design and runs in
 * the supervisor's only thread: a client sending wrong passwords as fast
 * as it can would stall the loop (scrapes, signals, worker supervision).
 * So hashes get at most AUTH_BUDGET_NS of every second, banked up to
 * AUTH_BANK_NS (a burst of hashes is a stall); past it a password not
 * already verified is refused unchecked, which says nothing about it
 * either.  A scrape then waits for one hash at most.
 */
static int
auth_budget(int64_t spent_ns)
{
	static int64_t bank = AUTH_BANK_NS;
	static uint64_t last;
	uint64_t now = auth_now_ns();

	if (last != 0)
		bank += (int64_t)((now - last) * AUTH_BUDGET_NS /
		    1000000000ULL);
	last = now;
	bank -= spent_ns;
	if (bank > AUTH_BANK_NS)
		bank = AUTH_BANK_NS;
	return bank > 0;
}

enum auth_verdict
auth_check(struct auth *a, const char *name, const char *pass)
{
	static struct crypt_data cd; /* 32 KiB: not on the stack */
	unsigned char d[AUTH_DIGEST];
	struct auth_user *u = auth_find(a, name);
	const char *out, *hash;
	uint64_t t0;
	int ok;

	if (u != NULL && u->cached && auth_digest(a, pass, d) == 0) {
		unsigned char diff = 0;
		size_t i;

		for (i = 0; i < AUTH_DIGEST; i++)
			diff |= (unsigned char)(d[i] ^ u->digest[i]);
		if (diff == 0)
			return AUTH_OK;
	}
	if (!auth_budget(0))
		return AUTH_BUSY;
	/* An unknown user costs what a known one does. */
	hash = u != NULL ? u->hash : a->user[a->dummy].hash;
	t0 = auth_now_ns();
	out = crypt_r(pass, hash, &cd);
	(void)auth_budget((int64_t)(auth_now_ns() - t0));
	ok = out != NULL && out[0] != '*' && auth_equal(out, hash) && u != NULL;
	if (ok && auth_digest(a, pass, u->digest) == 0)
		u->cached = 1;
	return ok ? AUTH_OK : AUTH_NO;
}
