/*
 * backoff.h: the crash-loop backoff of one worker slot, as a pure function
 * so the supervisor's policy is unit-tested without forking anything.
 *
 * A slot whose worker keeps dying young is respawned after 1 s, 2 s, 4 s ...
 * up to 30 s (SPEC "Supervision"); a worker that lived 10 s is forgiven and
 * its slot starts again from an immediate respawn.  That keeps at least 1 s
 * between two spawns of a slot that keeps failing (s6's rule): either the
 * worker lived >= 10 s or the delay before the next spawn is >= 1 s.
 */
#ifndef UPPERD_BACKOFF_H
#define UPPERD_BACKOFF_H

/* Shortest delay after a quick death: never respawn in a tight loop. */
#define BACKOFF_MIN_S 1
/* Longest delay: a broken slot is still retried twice a minute. */
#define BACKOFF_MAX_S 30
/* A worker that ran this long (seconds) was healthy: its death is forgiven. */
#define BACKOFF_HEALTHY_S 10

/*
 * Seconds to wait before respawning a slot whose worker just died after
 * running uptime_s seconds (monotonic, measured from its fork), given
 * prev_delay_s, the delay that preceded that worker's spawn (0 for a first
 * spawn or one after a forgiven death).  Returns 0 (respawn now) when the
 * worker was healthy, else BACKOFF_MIN_S doubling up to BACKOFF_MAX_S.
 * Feed the result back as prev_delay_s at the slot's next death.
 */
unsigned backoff_next(unsigned prev_delay_s, double uptime_s);

#endif
