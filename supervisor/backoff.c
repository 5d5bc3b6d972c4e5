/*
 * backoff.c: the crash-loop backoff policy of a worker slot (see backoff.h).
 * Pure arithmetic, no clock and no state: the supervisor's process table
 * keeps each slot's last delay and the spawn time, and asks here.
 */
#include "backoff.h"

/*
 * Exists so the respawn delay is decided in one tested place.  A NaN or
 * negative uptime (a clock gone wrong) does not count as healthy: when in
 * doubt, back off rather than spin.
 */
unsigned
backoff_next(unsigned prev_delay_s, double uptime_s)
{
	if (uptime_s >= BACKOFF_HEALTHY_S)
		return 0;
	if (prev_delay_s < BACKOFF_MIN_S)
		return BACKOFF_MIN_S;
	/* Compare before doubling so a huge prev cannot wrap around. */
	if (prev_delay_s >= BACKOFF_MAX_S / 2)
		return BACKOFF_MAX_S;
	return prev_delay_s * 2;
}
