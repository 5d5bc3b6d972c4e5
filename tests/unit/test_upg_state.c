/*
 * test_upg_state.c: the state a binary upgrade hands over
 * (supervisor/upg_state.c): what upg_encode writes upg_decode reads back
 * field for field, and no damaged input (truncated, extended, another
 * layout, bytes flipped at random) makes the decoder read out of bounds or
 * accept a state whose slots point at processes that are not there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "upgrade.h"

static struct sup sup;
static struct ctr_table tab;
static struct upg_state st;
static const struct upg_fd fds[] = { { UPG_FD_TABLE, 7 }, { UPG_FD_TCP, 4 },
	{ UPG_FD_UDP, 5 }, { UPG_FD_STATS, 6 }, { UPG_FD_PIDFILE, 3 } };
#define NFDS (sizeof(fds) / sizeof(fds[0]))

/* Three slots: 0 serving with a replacement starting, 1 serving with an
 * old worker draining, 2 retired and in backoff; crash history on 0. */
static void
fixture(void)
{
	unsigned i;
	int c;

	memset(&sup, 0, sizeof(sup));
	memset(&tab, 0, sizeof(tab));
	sup.tab = &tab;
	tab.ncells_hwm = 5;
	sup.start_time = 1763700000.25;
	sup.configured = 2;
	sup.nslots = 3;
	sup.upg.ok = 4;
	sup.upg.failed = 2;
	sup.upg.queued = UPG_Q_HUP;
	strcpy(sup.upg.exe, "/usr/sbin/upperd");
	strcpy(sup.cfg.pid_file, "/run/upperd/upperd.pid");
	for (i = 0; i < CFG_MAX_WORKERS; i++)
		sup.slot[i].active = sup.slot[i].next = -1;
	for (i = 0; i < 3; i++) {
		struct sup_slot *sl = &sup.slot[i];

		sl->used = 1;
		for (c = 0; c < CTR_COUNT; c++)
			sl->base_v[c] = 1000 * i + (unsigned)c + 1;
		sl->base_hist.bucket[3] = 7 + i;
		sl->base_hist.count = 7 + i;
		sl->base_hist.sum_ns = 123456789ULL * (i + 1);
		sl->base_cpu = 0.5 * i;
	}
	sup.slot[0].restarts[SNAP_CRASH] = 3;
	sup.slot[0].backoff_s = 4;
	strcpy(sup.slot[0].last_exit, "signal 9");
	sup.slot[0].active = 0;
	sup.slot[0].next = 2;
	sup.slot[0].next_reason = SNAP_RELOAD;
	sup.slot[1].active = 4;
	sup.slot[1].restarts[SNAP_RELOAD] = 1;
	strcpy(sup.slot[1].last_exit, "exit 0");
	sup.slot[2].retired = 1;
	sup.slot[2].respawn_at_ns = 99;
	sup.proc[0] = (struct sup_proc){ 100, 0, 11, 1.5, SUP_STOP_NONE, 0 };
	sup.proc[2] = (struct sup_proc){ 102, 0, 12, 2.5, SUP_STOP_NONE, 0 };
	sup.proc[3] = (struct sup_proc){ 103, 1, 13, 3.5, SUP_STOP_RELOAD,
		777 };
	sup.proc[4] = (struct sup_proc){ 104, 1, 14, 4.5, SUP_STOP_NONE, 0 };
}

static unsigned char *
encoded(size_t *len)
{
	unsigned char *buf;

	fixture();
	buf = upg_encode(&sup, fds, NFDS, len);
	assert_non_null(buf);
	return buf;
}

static void
test_round_trip(void **state)
{
	unsigned char *buf;
	size_t len;
	unsigned i;

	(void)state;
	buf = encoded(&len);
	assert_int_equal(upg_decode(buf, len, &st), UPG_OK);
	free(buf);
	assert_int_equal(st.layout, upg_state_layout);
	assert_true(st.start_time == sup.start_time);
	assert_int_equal(st.configured, 2);
	assert_int_equal(st.nslots, 3);
	assert_int_equal(st.ok, 4);
	assert_int_equal(st.failed, 2);
	assert_int_equal(st.queued, UPG_Q_HUP);
	assert_string_equal(st.exe, "/usr/sbin/upperd");
	assert_string_equal(st.version, UPPERD_VERSION);
	assert_string_equal(st.pid_file, "/run/upperd/upperd.pid");
	assert_memory_equal(st.slot, sup.slot, sizeof(st.slot));
	for (i = 0; i < CTR_MAX_CELLS; i++) {
		assert_int_equal(st.proc[i].pid, sup.proc[i].pid);
		assert_int_equal(st.proc[i].slot, sup.proc[i].slot);
		assert_int_equal(st.proc[i].started_ns, sup.proc[i].started_ns);
		assert_true(st.proc[i].started_at == sup.proc[i].started_at);
		assert_int_equal(st.proc[i].stop, sup.proc[i].stop);
		assert_int_equal(st.proc[i].kill_at_ns, sup.proc[i].kill_at_ns);
	}
	assert_int_equal(st.nfds, NFDS);
	for (i = 0; i < NFDS; i++) {
		assert_int_equal(st.fd[i].kind, fds[i].kind);
		assert_int_equal(st.fd[i].fd, fds[i].fd);
	}
}

/* Every proper prefix is refused, and so is one byte more. */
static void
test_truncated_and_extended(void **state)
{
	unsigned char *buf, *big;
	size_t len, n;

	(void)state;
	buf = encoded(&len);
	assert_int_equal(upg_decode(NULL, 0, &st), UPG_E_SHORT);
	for (n = 0; n < len; n++)
		assert_int_not_equal(upg_decode(buf, n, &st), UPG_OK);
	big = malloc(len + 1);
	assert_non_null(big);
	memcpy(big, buf, len);
	big[len] = 0;
	assert_int_equal(upg_decode(big, len + 1, &st), UPG_E_TRAIL);
	free(big);
	free(buf);
}

/* Another layout is refused by name, before anything else is read. */
static void
test_other_layout(void **state)
{
	unsigned char *buf;
	uint32_t other = upg_state_layout + 98;
	size_t len;

	(void)state;
	buf = encoded(&len);
	memcpy(buf + 4, &other, sizeof(other));
	assert_int_equal(upg_decode(buf, len, &st), UPG_E_LAYOUT);
	assert_int_equal(st.layout, other);
	buf[0] ^= 1;
	assert_int_equal(upg_decode(buf, len, &st), UPG_E_MAGIC);
	free(buf);
}

/* A slot whose active process is not in the table is refused. */
static void
test_dangling_slot(void **state)
{
	unsigned char *buf;
	size_t len;

	(void)state;
	fixture();
	sup.slot[1].active = 1; /* cell 1 holds no process */
	buf = upg_encode(&sup, fds, NFDS, &len);
	assert_non_null(buf);
	assert_int_equal(upg_decode(buf, len, &st), UPG_E_RANGE);
	free(buf);
	fixture();
	sup.proc[4].slot = 0; /* slot 1's active process says slot 0 */
	buf = upg_encode(&sup, fds, NFDS, &len);
	assert_non_null(buf);
	assert_int_equal(upg_decode(buf, len, &st), UPG_E_RANGE);
	free(buf);
}

/* More sockets of a kind than the supervisor can hold are refused. */
static void
test_too_many_sockets(void **state)
{
	struct upg_fd many[CFG_MAX_ADDRS + 2];
	unsigned char *buf;
	unsigned i;
	size_t len;

	(void)state;
	fixture();
	many[0] = (struct upg_fd){ UPG_FD_TABLE, 3 };
	for (i = 1; i < CFG_MAX_ADDRS + 2; i++)
		many[i] = (struct upg_fd){ UPG_FD_TCP, (int32_t)(3 + i) };
	buf = upg_encode(&sup, many, CFG_MAX_ADDRS + 1, &len);
	assert_non_null(buf);
	assert_int_equal(upg_decode(buf, len, &st), UPG_OK);
	free(buf);
	buf = upg_encode(&sup, many, CFG_MAX_ADDRS + 2, &len);
	assert_non_null(buf);
	assert_int_equal(upg_decode(buf, len, &st), UPG_E_RANGE);
	free(buf);
}

/* What a decode that succeeded promises the supervisor. */
static void
check_sane(const struct upg_state *s)
{
	unsigned i;

	assert_true(s->configured >= 1 && s->configured <= s->nslots);
	assert_true(s->nslots <= CFG_MAX_WORKERS);
	assert_true(s->nfds <= UPG_MAX_FDS);
	for (i = 0; i < CFG_MAX_WORKERS; i++) {
		const struct sup_slot *sl = &s->slot[i];

		if (sl->active >= 0) {
			assert_true(i < s->nslots);
			assert_true(sl->active < CTR_MAX_CELLS);
			assert_true(s->proc[sl->active].pid > 0);
			assert_int_equal(s->proc[sl->active].slot, i);
		}
		if (sl->next >= 0) {
			assert_true(i < s->nslots);
			assert_true(sl->next < CTR_MAX_CELLS);
			assert_true(s->proc[sl->next].pid > 0);
		}
		assert_non_null(
		    memchr(sl->last_exit, '\0', sizeof(sl->last_exit)));
	}
	for (i = 0; i < s->nfds; i++)
		assert_true(s->fd[i].fd >= 0 && s->fd[i].kind >= UPG_FD_TABLE &&
		    s->fd[i].kind <= UPG_FD_LAST);
}

/* Random damage, deterministic: 1 to 4 bytes overwritten, sometimes the
 * buffer cut short.  Under ASan this is the decoder's bounds check. */
static void
test_random_damage(void **state)
{
	unsigned char *buf, *copy;
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	size_t len, n, cut;
	int iter, k, ok = 0;

	(void)state;
	buf = encoded(&len);
	copy = malloc(len);
	assert_non_null(copy);
	for (iter = 0; iter < 20000; iter++) {
		memcpy(copy, buf, len);
		n = 1 + (iter & 3);
		for (k = 0; k < (int)n; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			copy[x % len] = (unsigned char)(x >> 32);
		}
		cut = iter % 7 == 0 ? (size_t)(x >> 40) % len : len;
		if (upg_decode(copy, cut, &st) == UPG_OK) {
			check_sane(&st);
			ok++;
		}
	}
	/* most damage lands in counter values, which any number may be */
	assert_true(ok > 0);
	free(copy);
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_truncated_and_extended),
		cmocka_unit_test(test_other_layout),
		cmocka_unit_test(test_dangling_slot),
		cmocka_unit_test(test_too_many_sockets),
		cmocka_unit_test(test_random_damage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
