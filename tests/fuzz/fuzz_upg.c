/*
 * fuzz_upg.c: libFuzzer harness for the binary upgrade's state decoder
 * (upg_decode in supervisor/upg_state.c), which reads whatever the old
 * image left in the memfd.
 *
 * The first input byte picks the mode.  Even: the rest is the state,
 * bytes as they come.  Odd: the rest is a list of edits (offset high,
 * offset low, xor) applied to a real state that upg_encode wrote for a
 * fixture of three slots and four processes, so the fuzzer starts deep in
 * the format; bit 1 then also cuts the image short by the next byte.
 * Either way the decoder must return one of its codes, read nothing past
 * the buffer (an exact heap copy), and, when it accepts, give a state
 * that holds together (the ranges the new image relies on) and that
 * upg_encode writes back to bytes decoding to the very same state.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upgrade.h"

static struct sup fz_sup;
static struct ctr_table fz_tab;
static struct upg_state fz_st, fz_st2;
static unsigned char *fz_image;
static size_t fz_image_len;
static const struct upg_fd fz_fds[] = { { UPG_FD_TABLE, 7 }, { UPG_FD_TCP, 4 },
	{ UPG_FD_UDP, 5 }, { UPG_FD_STATS, 6 }, { UPG_FD_PIDFILE, 3 } };

static void
fz_fail(const char *what, int rc)
{
	fprintf(stderr, "%s (decode %d)\n", what, rc);
	abort();
}

/* Three slots (a replacement starting on 0, a worker draining on 1, 2
 * retired), as the old image would hand them over. */
static void
fz_fixture(void)
{
	unsigned i;

	memset(&fz_sup, 0, sizeof(fz_sup));
	fz_sup.tab = &fz_tab;
	fz_tab.ncells_hwm = 5;
	fz_sup.start_time = 1763700000.25;
	fz_sup.configured = 2;
	fz_sup.nslots = 3;
	fz_sup.upg.ok = 1;
	fz_sup.upg.queued = UPG_Q_HUP;
	strcpy(fz_sup.upg.exe, "/usr/sbin/upperd");
	strcpy(fz_sup.cfg.pid_file, "/run/upperd.pid");
	for (i = 0; i < CFG_MAX_WORKERS; i++)
		fz_sup.slot[i].active = fz_sup.slot[i].next = -1;
	for (i = 0; i < 3; i++) {
		fz_sup.slot[i].used = 1;
		fz_sup.slot[i].base_v[0] = 1000 * i + 1;
		fz_sup.slot[i].base_hist.bucket[2] = i;
	}
	strcpy(fz_sup.slot[0].last_exit, "signal 9");
	fz_sup.slot[0].active = 0;
	fz_sup.slot[0].next = 2;
	fz_sup.slot[1].active = 4;
	fz_sup.slot[2].retired = 1;
	fz_sup.proc[0] = (struct sup_proc){ 100, 0, 11, 1.5, SUP_STOP_NONE, 0 };
	fz_sup.proc[2] = (struct sup_proc){ 102, 0, 12, 2.5, SUP_STOP_NONE, 0 };
	fz_sup.proc[3] = (struct sup_proc){ 103, 1, 13, 3.5, SUP_STOP_RELOAD,
		777 };
	fz_sup.proc[4] = (struct sup_proc){ 104, 1, 14, 4.5, SUP_STOP_NONE, 0 };
	fz_image = upg_encode(&fz_sup, fz_fds, 5, &fz_image_len);
	if (fz_image == NULL || upg_decode(fz_image, fz_image_len, &fz_st) != 0)
		fz_fail("the fixture does not decode", -1);
}

/* What the new image relies on in an accepted state. */
static void
fz_check(const struct upg_state *s)
{
	unsigned i;

	if (s->configured < 1 || s->configured > s->nslots ||
	    s->nslots > CFG_MAX_WORKERS || s->nfds > UPG_MAX_FDS)
		fz_fail("counts out of range", 0);
	if (memchr(s->exe, '\0', sizeof(s->exe)) == NULL ||
	    memchr(s->version, '\0', sizeof(s->version)) == NULL ||
	    memchr(s->pid_file, '\0', sizeof(s->pid_file)) == NULL)
		fz_fail("unterminated string", 0);
	for (i = 0; i < s->nfds; i++)
		if (s->fd[i].kind < UPG_FD_TABLE ||
		    s->fd[i].kind > UPG_FD_LAST || s->fd[i].fd < 0)
			fz_fail("bad fd entry", 0);
	for (i = 0; i < s->nslots; i++) {
		const struct sup_slot *sl = &s->slot[i];

		if (sl->active >= CTR_MAX_CELLS || sl->next >= CTR_MAX_CELLS ||
		    (sl->active >= 0 && s->proc[sl->active].pid <= 0) ||
		    (sl->next >= 0 && s->proc[sl->next].pid <= 0))
			fz_fail("slot names no process", 0);
	}
}

/* Encode an accepted state again and decode that: the same state. */
static void
fz_round_trip(const struct upg_state *s)
{
	unsigned char *buf;
	size_t len;
	int rc;

	memset(&fz_sup, 0, sizeof(fz_sup));
	fz_sup.tab = &fz_tab;
	fz_tab.ncells_hwm = CTR_MAX_CELLS;
	fz_sup.start_time = s->start_time;
	fz_sup.configured = s->configured;
	fz_sup.nslots = s->nslots;
	fz_sup.upg.ok = s->ok;
	fz_sup.upg.failed = s->failed;
	fz_sup.upg.queued = s->queued;
	strcpy(fz_sup.upg.exe, s->exe);
	strcpy(fz_sup.cfg.pid_file, s->pid_file);
	memcpy(fz_sup.slot, s->slot, sizeof(s->slot));
	memcpy(fz_sup.proc, s->proc, sizeof(s->proc));
	if ((buf = upg_encode(&fz_sup, s->fd, s->nfds, &len)) == NULL)
		abort();
	rc = upg_decode(buf, len, &fz_st2);
	free(buf);
	if (rc != UPG_OK)
		fz_fail("re-encoded state refused", rc);
	/* the image writes its own version; everything else must match */
	memcpy(fz_st2.version, s->version, sizeof(s->version));
	if (memcmp(&fz_st2, s, sizeof(*s)) != 0)
		fz_fail("re-encoded state differs", rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *buf;
	size_t len, i = 1, off;
	int rc;

	if (fz_image == NULL)
		fz_fixture();
	if (size < 1)
		return 0;
	if (data[0] & 1) {
		len = fz_image_len;
		if (data[0] & 2 && size > 1) {
			len -= data[1] < len ? data[1] : len;
			i = 2;
		}
		if ((buf = malloc(len ? len : 1)) == NULL)
			abort();
		memcpy(buf, fz_image, len);
		for (; i + 3 <= size; i += 3) {
			off = ((size_t)data[i] << 8 | data[i + 1]);
			if (len > 0)
				buf[off % len] ^= data[i + 2];
		}
	} else {
		len = size - 1;
		if ((buf = malloc(len ? len : 1)) == NULL)
			abort();
		memcpy(buf, data + 1, len);
	}
	rc = upg_decode(buf, len, &fz_st);
	free(buf);
	if (rc < UPG_E_TRAIL || rc > UPG_OK)
		fz_fail("unknown result", rc);
	if (upg_strerror(rc) == NULL)
		fz_fail("no message", rc);
	if (rc == UPG_OK) {
		fz_check(&fz_st);
		fz_round_trip(&fz_st);
	}
	return 0;
}
