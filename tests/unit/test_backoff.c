/*
 * test_backoff.c: the crash-loop backoff policy (supervisor/backoff.c):
 * the 1, 2, 4 ... 30 s sequence for quick deaths, forgiveness after
 * BACKOFF_HEALTHY_S healthy seconds, and the edges around both.
 */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backoff.h"

/* Workers that die at once: 1, 2, 4, 8, 16, then capped at 30. */
static void
test_quick_deaths_sequence(void **state)
{
	static const unsigned want[] = { 1, 2, 4, 8, 16, 30, 30, 30 };
	unsigned delay = 0;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		delay = backoff_next(delay, 0.2);
		assert_int_equal(delay, want[i]);
	}
}

/* A worker that lived long enough resets the slot; the next quick death
 * starts again from the minimum. */
static void
test_healthy_resets(void **state)
{
	(void)state;
	assert_int_equal(backoff_next(30, 10.0), 0);
	assert_int_equal(backoff_next(16, 3600.0), 0);
	assert_int_equal(backoff_next(0, 11.0), 0);
	assert_int_equal(backoff_next(0, 0.5), BACKOFF_MIN_S);
}

/* Exactly BACKOFF_HEALTHY_S is healthy; a hair less is not. */
static void
test_healthy_boundary(void **state)
{
	(void)state;
	assert_int_equal(backoff_next(4, BACKOFF_HEALTHY_S), 0);
	assert_int_equal(backoff_next(4, 9.999), 8);
	assert_int_equal(backoff_next(0, 9.999), 1);
	assert_int_equal(backoff_next(4, nextafter(10.0, 0.0)), 8);
}

/* Between spawns of a failing slot there is always >= 1 s: either a
 * delay of at least BACKOFF_MIN_S or an uptime of at least 10 s. */
static void
test_min_gap_between_spawns(void **state)
{
	unsigned prev;
	double up;

	(void)state;
	for (prev = 0; prev <= 40; prev++) {
		for (up = 0.0; up < 12.0; up += 0.25) {
			unsigned d = backoff_next(prev, up);

			assert_true(d >= BACKOFF_MIN_S || up >= 1.0);
			assert_true(d <= BACKOFF_MAX_S);
		}
	}
}

/* Odd or absurd previous delays still land in range without wrapping. */
static void
test_odd_previous_delays(void **state)
{
	(void)state;
	assert_int_equal(backoff_next(3, 0.0), 6);
	assert_int_equal(backoff_next(14, 0.0), 28);
	assert_int_equal(backoff_next(15, 0.0), 30);
	assert_int_equal(backoff_next(20, 0.0), 30);
	assert_int_equal(backoff_next(UINT_MAX, 0.0), 30);
	assert_int_equal(backoff_next(UINT_MAX / 2 + 1, 0.0), 30);
}

/* A clock gone wrong must not look healthy and cause a tight loop. */
static void
test_bad_uptime_backs_off(void **state)
{
	(void)state;
	assert_int_equal(backoff_next(0, -5.0), 1);
	assert_int_equal(backoff_next(2, NAN), 4);
	assert_int_equal(backoff_next(8, INFINITY), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quick_deaths_sequence),
		cmocka_unit_test(test_healthy_resets),
		cmocka_unit_test(test_healthy_boundary),
		cmocka_unit_test(test_min_gap_between_spawns),
		cmocka_unit_test(test_odd_previous_delays),
		cmocka_unit_test(test_bad_uptime_backs_off),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
