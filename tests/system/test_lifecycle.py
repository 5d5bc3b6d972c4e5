"""
Issue 3, the lifecycle, proven on the real binary under load and faults:
HUP reload (valid and invalid config, changed worker count), chaos kills,
hung-worker detection, crash-loop backoff and forgiveness, exit status 2,
TTIN/TTOU, --max-requests recycling, drain deadlines (TERM and reload),
supervisor SIGKILL, USR1 after logrotate's rename.

Every wait is a bounded poll (wait_until); the few fixed windows are
deliberate observation periods for "X does not happen" and say so.  Every
process is started through conftest's upperd fixture (killed by pid at
teardown) and every signal to a worker goes through safe_kill (only a live
upperd child of the supervisor under test is ever hit).
"""

import ctypes
import datetime
import errno
import os
import random
import re
import resource
import signal
import socket
import time

import pytest

import conftest
from conftest import (REASONS, http_get, recv_exactly, tcp_connect,
                      tcp_roundtrip, udp_roundtrip, wait_until)
from lifecycle_load import (MONOTONIC, Load, StatsSampler, brief,
                            get_stats, log_events, log_matches, pid_gone,
                            safe_kill,
                            signal_and_wait_consumed, slot_of,
                            wait_roundtrips)

NO_RESTARTS = {r: 0 for r in REASONS}


def reasons(**kw):
    d = dict(NO_RESTARTS)
    d.update(kw)
    return d


def pids_by_slot(doc):
    return {w["slot"]: w["pid"] for w in doc["workers"]}


def all_running(doc, n):
    ws = doc["workers"]
    return (doc["workers_configured"] == n and
            sum(1 for w in ws if w["state"] == "running" and w["pid"]) == n)


def roundtrip_on(s, msg, timeout=10.0):
    s.sendall(msg)
    return recv_exactly(s, len(msg), timeout)


def wait_closed_by_server(s, deadline):
    """Wait until the server closes s (EOF or reset); returns the
    monotonic time it happened, or raises AssertionError at deadline."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("connection still open at the deadline")
        s.settimeout(left)
        try:
            b = s.recv(4096)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic()
        if not b:
            return time.monotonic()
        raise AssertionError("unexpected data on an idle connection: %r" % b)


def settle(d, timeout=10.0):
    """/stats once no connection is open and every draining worker is gone
    (its counters folded into its slot)."""
    def quiet():
        doc = get_stats(d.stats_port)
        if doc["totals"]["tcp_connections_active"] != 0:
            return None
        if any(w["state"] == "draining" for w in doc["workers"]):
            return None
        live = [p for p in conftest.children_of(d.pid)]
        active = {w["pid"] for w in doc["workers"] if w["pid"]}
        return doc if set(live) <= active else None
    return wait_until(quiet, timeout, msg="daemon at rest")


# --------------------------------------------------------------------------
# 1. HUP under load

def test_load_during_five_hups(upperd, tmp_path):
    """20 connections doing request/response without pause (10 keep one
    connection for the whole test, 10 reconnect every 25 round trips so new
    connect()s happen during every reload) while the supervisor gets 5
    HUPs: no failed connect, no wrong byte, no connection cut, every slot
    ends with a new pid and reload == 5, counters never go down and end
    exactly equal to what the clients sent and received."""
    cfg = tmp_path / "upperd.conf"
    cfg.write_text("# issue 3 reload test\ndrain-timeout = 30\n")
    d = upperd(workers=2, config=str(cfg))
    start = get_stats(d.stats_port)
    assert all_running(start, 2), brief(start)
    start_pids = pids_by_slot(start)
    seen = set(start_pids.values())
    sampler = StatsSampler(d.stats_port)
    sampler.start()
    load = Load(d.tcp_port, 20, seed=1, timeout=10.0,
                per_conn=lambda i: None if i < 10 else 25).start()
    try:
        wait_roundtrips(load, 3000)
        before = start_pids
        for k in range(5):
            os.kill(d.pid, signal.SIGHUP)

            def replaced():
                doc = get_stats(d.stats_port)
                ok = all_running(doc, 2) and all(
                    w["pid"] != before[w["slot"]] and w["pid"] not in seen
                    for w in doc["workers"])
                return doc if ok else None

            doc = wait_until(replaced, 15, msg="HUP %d: every slot has a "
                             "new running worker" % (k + 1))
            before = pids_by_slot(doc)
            seen.update(before.values())
            # the load is served by the new workers (and the old ones still
            # serve the connections they hold) before the next HUP
            wait_roundtrips(load, 3000)
    finally:
        load.stop()
        sampler.stop()

    assert load.collect("connect_failures") == [], load.summary()
    assert load.collect("wrong") == [], load.summary()
    assert load.collect("cut") == [], load.summary()
    assert load.collect("stalls") == [], load.summary()
    assert [c.crashed for c in load.clients if c.crashed] == []
    # the 10 long-lived connections lived through all 5 reloads
    assert [c.connects for c in load.clients[:10]] == [1] * 10
    assert load.total("roundtrips") >= 18000, load.summary()

    # once the clients are gone, no old worker lingers
    old = seen - set(before.values())
    assert len(old) == 10
    wait_until(lambda: all(pid_gone(p) for p in old), 5,
               msg="old workers %s to exit" % sorted(old))

    doc = settle(d)
    assert all_running(doc, 2), brief(doc)
    for w in doc["workers"]:
        assert w["pid"] != start_pids[w["slot"]]
        assert w["restarts_by_reason"] == reasons(reload=5), brief(doc)
        assert w["restarts"] == 5
    assert doc["worker_restarts"] == 10

    assert sampler.errors == [], sampler.errors[:5]
    assert sampler.decreases == [], sampler.decreases[:5]
    assert sampler.samples >= 3

    # counters carried across 5 worker replacements, exactly
    t = doc["totals"]
    assert t["tcp_connections_accepted"] == load.total("connects")
    assert t["tcp_bytes_received"] == load.total("bytes_out")
    assert t["tcp_bytes_sent"] == load.total("bytes_in")
    assert t["tcp_lines_received"] == load.total("roundtrips")

    # the ready line again after each reload, once all workers serve
    wait_until(lambda: len(log_matches(d.log(), r"ready: 2 workers")) == 6,
               5, msg="6 ready lines")
    log = d.log()
    assert len(log_matches(log, r"replaced by pid \d+ \(reload\), "
                                r"draining")) == 10, log
    assert "outlived its drain" not in log, log
    assert log_matches(log, r"killed by|hung") == [], log


# --------------------------------------------------------------------------
# 2. HUP with an invalid config, then with a changed worker count

def test_hup_invalid_config_then_workers_3(upperd, tmp_path):
    cfg = tmp_path / "upperd.conf"
    cfg.write_text("workers = 2\n")
    d = upperd(workers=None, config=str(cfg))
    doc0 = get_stats(d.stats_port)
    assert all_running(doc0, 2), brief(doc0)
    pids0 = pids_by_slot(doc0)

    cfg.write_text("workers = abc\n")
    signal_and_wait_consumed(d.pid, signal.SIGHUP)
    fails = wait_until(lambda: log_matches(d.log(), r"reload failed.*"), 5,
                       msg="'reload failed' in the log")
    assert len(fails) == 1, d.log()
    assert "workers" in fails[0].group(0), fails[0].group(0)
    doc = get_stats(d.stats_port)
    assert pids_by_slot(doc) == pids0, (brief(doc0), brief(doc))
    assert all_running(doc, 2), brief(doc)
    assert doc["worker_restarts"] == 0
    assert all(not pid_gone(p) for p in pids0.values())
    assert "reloading" not in d.log()
    msg = b"still serving after a bad reload\n"
    assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()
    assert udp_roundtrip(d.udp_port, msg) == msg.upper()
    assert http_get(d.stats_port, "/healthz")[0] == 200

    cfg.write_text("workers = 3\n")
    os.kill(d.pid, signal.SIGHUP)

    def three():
        doc = get_stats(d.stats_port)
        if not all_running(doc, 3):
            return None
        p = pids_by_slot(doc)
        return doc if p[0] != pids0[0] and p[1] != pids0[1] else None

    doc = wait_until(three, 10, msg="3 running workers, slots 0 and 1 new")
    assert doc["workers_running"] == 3
    for s in (0, 1):
        assert slot_of(doc, s)["restarts_by_reason"] == reasons(reload=1)
    assert slot_of(doc, 2)["restarts_by_reason"] == NO_RESTARTS
    wait_until(lambda: log_matches(d.log(), r"ready: 3 workers"), 5,
               msg="the ready line after the reload")
    assert http_get(d.stats_port, "/healthz")[0] == 200
    for i in range(6):
        msg = b"three workers %d\n" % i
        assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()


# --------------------------------------------------------------------------
# 3. chaos

def test_chaos_kill_random_worker_every_300ms(upperd):
    """50 connections under load, a random running worker SIGKILLed every
    300 ms for 15 s (only while another worker is running, so something
    always serves the backlog).  A connection reset by a kill is expected
    (the client reconnects); a failed connect(), a wrong byte, or a request
    without a reply within 40 s is not."""
    d = upperd(workers=4)
    rng = random.Random(3)
    sampler = StatsSampler(d.stats_port)
    sampler.start()
    load = Load(d.tcp_port, 50, seed=3, timeout=40.0, chaos=True).start()
    kills = []
    skipped = 0
    try:
        wait_roundtrips(load, 500)
        end = time.monotonic() + 15.0
        tick = time.monotonic()
        while time.monotonic() < end:
            doc = get_stats(d.stats_port)
            running = [w for w in doc["workers"]
                       if w["state"] == "running" and w["pid"]]
            if len(running) >= 2:
                v = rng.choice(running)
                if safe_kill(v["pid"], signal.SIGKILL, d.pid):
                    kills.append((v["slot"], v["pid"]))
            else:
                skipped += 1
            tick += 0.3
            time.sleep(max(0.0, tick - time.monotonic()))  # the kill rate
        during = load.total("roundtrips")
    finally:
        load.stop(timeout=45)
        sampler.stop()

    summary = "%s kills=%d skipped=%d" % (load.summary(), len(kills),
                                          skipped)
    assert load.collect("connect_failures") == [], summary
    assert load.collect("wrong") == [], summary
    assert load.collect("stalls") == [], summary
    assert [c.crashed for c in load.clients if c.crashed] == [], summary
    assert sampler.errors == [], (summary, sampler.errors[:5])
    assert sampler.decreases == [], (summary, sampler.decreases[:5])
    # backoff (1, 2, 4, 8 s per slot) and "one other worker running" limit
    # how many kills 15 s allow: about 15 with 4 slots
    assert len(kills) >= 10, summary
    assert load.total("resets") > 0, summary
    assert during >= 1000, summary
    # every kill was seen, counted and logged as a crash
    def counted():
        doc = get_stats(d.stats_port)
        n = sum(w["restarts_by_reason"]["crash"] for w in doc["workers"])
        return doc if n >= len(kills) else None
    try:
        doc = wait_until(counted, 5, msg="%d crashes counted" % len(kills))
    except AssertionError as e:
        raise AssertionError("%s\nkills %r\nstats %r\nlog:\n%s" % (
            e, kills, brief(get_stats(d.stats_port)), d.log()[-6000:]))
    assert sum(w["restarts_by_reason"]["crash"]
               for w in doc["workers"]) == len(kills), brief(doc)
    assert all(w["restarts_by_reason"]["crash"] == w["restarts"]
               for w in doc["workers"]), brief(doc)
    killed = log_matches(d.log(), r"worker (\d+) pid (\d+) killed by signal "
                                  r"9 after [\d.]+s, respawn in \d+s")
    assert sorted((int(m.group(1)), int(m.group(2))) for m in killed) == \
        sorted(kills)


# --------------------------------------------------------------------------
# 4. hung worker

def test_sigstop_worker_is_replaced_as_hung(upperd):
    d = upperd(workers=2, heartbeat_timeout=2)
    conns = []
    stopped = None
    try:
        for i in range(6):
            s = tcp_connect(d.tcp_port)
            msg = b"held %d\n" % i
            assert roundtrip_on(s, msg) == msg.upper()
            conns.append(s)
        doc = get_stats(d.stats_port)
        victim = max(doc["workers"],
                     key=lambda w: w["tcp_connections_active"])
        slot, stopped = victim["slot"], victim["pid"]
        nconn = victim["tcp_connections_active"]
        assert nconn >= 1, brief(doc)
        assert safe_kill(stopped, signal.SIGSTOP, d.pid)
        t0 = time.monotonic()

        def replaced():
            w = slot_of(get_stats(d.stats_port), slot)
            return w if (w["pid"] not in (None, stopped) and
                         w["state"] == "running") else None

        w = wait_until(replaced, 8, msg="slot %d replaced" % slot)
        took = time.monotonic() - t0
        assert took <= 4.0, "replaced after %.2fs" % took
        assert w["restarts_by_reason"] == reasons(hung=1)
        # the replacement may serve before the SIGKILLed worker is reaped
        # (a loaded host): its exit is recorded at the reap
        w = wait_until(lambda: (lambda x: x if x["last_exit"] else None)(
            slot_of(get_stats(d.stats_port), slot)), 2,
            msg="slot %d's last exit recorded" % slot)
        assert w["last_exit"] == "signal 9"
        wait_until(lambda: pid_gone(stopped), 2,
                   msg="the stopped worker %d to be killed" % stopped)
        hung = log_matches(d.log(), r"worker %d pid %d hung: .*" %
                           (slot, stopped))
        assert len(hung) == 1, d.log()
        line = hung[0].group(0)
        m = re.search(r"no heartbeat for ([\d.]+)s", line)
        assert m and 2.0 <= float(m.group(1)) <= 4.0, line
        m = re.search(r"\b(\d+) connections? open", line)
        assert m and int(m.group(1)) == nconn, (nconn, line)
        other = [x for x in get_stats(d.stats_port)["workers"]
                 if x["slot"] != slot][0]
        assert other["restarts_by_reason"] == NO_RESTARTS
        msg = b"after the hang\n"
        assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()
    finally:
        for s in conns:
            s.close()
        if stopped and not pid_gone(stopped) and conftest.is_upperd(stopped):
            conftest.kill_pid(stopped, signal.SIGCONT)
            conftest.kill_pid(stopped, signal.SIGKILL)


# --------------------------------------------------------------------------
# 5. crash-loop backoff, forgiveness, exit status 2

KILLED_RE = (r"worker 0 pid (\d+) killed by signal 9 after ([\d.]+)s, "
             r"respawn in (\d+)s")


def next_pid(d, slot, old, timeout, seen=None):
    """Wait for slot to show a pid other than old; (pid, monotonic time).
    With seen (a dict), note meanwhile whether the slot showed state
    "backoff" and whether /healthz said 503 then."""
    def new():
        w = slot_of(get_stats(d.stats_port, timeout=2), slot)
        if seen is not None and w["state"] == "backoff":
            seen["backoff"] = True
            if http_get(d.stats_port, "/healthz")[0] == 503:
                seen["503"] = True
        p = w["pid"]
        return p if p not in (None, old) else None
    p = wait_until(new, timeout, interval=0.01,
                   msg="slot %d to get a pid other than %s" % (slot, old))
    return p, time.monotonic()


def test_crash_loop_backoff_grows(upperd):
    """Kill the slot's worker each time one appears: respawn delays 1, 2,
    4, 8, 16 s measured, and the log says 1, 2, 4, 8, 16 and then 30 for
    the sixth crash: the cap (uncapped it would be 32).  Meanwhile the
    slot shows "backoff" and /healthz says 503; each respawn counts one
    crash restart, the daemon's own started_at shows the wait, and once
    the replacement runs /healthz is 200 again.  About 32 s."""
    d = upperd(workers=1)
    w = slot_of(get_stats(d.stats_port), 0)
    pid, starts = w["pid"], [w["started_at"]]
    expected = [1, 2, 4, 8, 16]
    victims, delays = [], []
    seen = {"backoff": False, "503": False}
    for i in range(len(expected) + 1):
        assert safe_kill(pid, signal.SIGKILL, d.pid), pid
        t_kill = time.monotonic()
        victims.append(pid)
        if i == len(expected):
            break
        pid, t_new = next_pid(d, 0, pid, expected[i] + 3, seen)
        delays.append(t_new - t_kill)
        w = slot_of(get_stats(d.stats_port), 0)
        assert w["pid"] == pid, w
        assert w["restarts"] == i + 1, w
        assert w["restarts_by_reason"]["crash"] == i + 1, w
        starts.append(w["started_at"])
        if i == 0:
            wait_until(lambda: slot_of(get_stats(d.stats_port), 0)[
                "state"] == "running", 10, msg="the first replacement runs")
            st, _, body = http_get(d.stats_port, "/healthz")
            assert st == 200, (st, body)
    for exp, got in zip(expected, delays):
        assert 0.8 * exp <= got <= exp + 1.5, (expected, delays)
    # a death after under 10 s healthy waits the backoff before the next
    # spawn, by the daemon's clock too
    assert starts[2] - starts[1] >= 0.95, starts
    for k in range(1, len(expected)):
        assert starts[k + 1] - starts[k] >= 0.95 * expected[k], starts
    assert seen == {"backoff": True, "503": True}, seen
    doc = wait_until(
        lambda: (lambda w: w if w["state"] == "backoff" and
                 w["restarts_by_reason"]["crash"] == 6 else None)(
            slot_of(get_stats(d.stats_port), 0)),
        5, msg="slot 0 in backoff after 6 crashes")
    assert doc["restarts_by_reason"] == reasons(crash=6)
    assert doc["last_exit"] == "signal 9"
    st, _, body = http_get(d.stats_port, "/healthz")
    assert st == 503, (st, body)
    lines = wait_until(lambda: (lambda x: x if len(x) >= 6 else None)(
        log_matches(d.log(), KILLED_RE)), 5, msg="6 crash lines")
    assert [(int(m.group(1)), int(m.group(3))) for m in lines] == \
        list(zip(victims, [1, 2, 4, 8, 16, 30])), d.log()
    assert all(float(m.group(2)) < 10 for m in lines)


def test_backoff_forgiven_after_10s_healthy(upperd):
    """A worker that lived 10 s is respawned at once, and the next crash
    starts the backoff again at 1 s."""
    d = upperd(workers=1)
    p0 = slot_of(get_stats(d.stats_port), 0)["pid"]
    assert safe_kill(p0, signal.SIGKILL, d.pid)
    t = time.monotonic()
    p1, t1 = next_pid(d, 0, p0, 4)
    assert 0.8 <= t1 - t <= 2.5, t1 - t
    # let p1 be healthy for 10 s (the daemon's own started_at)
    started = slot_of(get_stats(d.stats_port), 0)["started_at"]
    wait_until(lambda: time.time() - started >= 10.3, 14, interval=0.1,
               msg="worker healthy for 10 s")
    assert slot_of(get_stats(d.stats_port), 0)["pid"] == p1
    assert safe_kill(p1, signal.SIGKILL, d.pid)
    t = time.monotonic()
    p2, t2 = next_pid(d, 0, p1, 3)
    assert t2 - t <= 0.6, "respawned after %.2fs, not at once" % (t2 - t)
    assert safe_kill(p2, signal.SIGKILL, d.pid)
    t = time.monotonic()
    p3, t3 = next_pid(d, 0, p2, 6)
    assert 0.8 <= t3 - t <= 2.5, "backoff not restarted at 1 s: %.2fs" % (
        t3 - t)
    lines = log_matches(d.log(), KILLED_RE)
    got = [(int(m.group(1)), float(m.group(2)), int(m.group(3)))
           for m in lines]
    assert [(p, r) for p, _, r in got] == [(p0, 1), (p1, 0), (p2, 1)], got
    assert got[1][1] >= 10.0, got


def test_worker_exit_status_2_is_not_respawned(upperd):
    """A worker that fails its own start-up exits 2 and is never respawned.
    Triggered from outside by lowering the supervisor's RLIMIT_NOFILE (a
    forked worker inherits it) so that a new worker cannot create the fds
    of its event loop, then restoring it."""
    d = upperd(workers=2)
    w1 = slot_of(get_stats(d.stats_port), 1)["pid"]
    anon = []
    for fd in os.listdir("/proc/%d/fd" % w1):
        try:
            if os.readlink("/proc/%d/fd/%s" % (w1, fd)).startswith(
                    "anon_inode:"):
                anon.append(int(fd))
        except OSError:
            pass
    assert anon, "worker has no signalfd/timerfd/epoll fd?"
    old = resource.prlimit(d.pid, resource.RLIMIT_NOFILE)
    try:
        resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (min(anon), old[1]))
        assert safe_kill(w1, signal.SIGKILL, d.pid)
        wait_until(lambda: log_matches(d.log(), r"worker 1 pid \d+ exited "
                                       r"with status 2"), 8,
                   msg="a worker exiting with status 2")
    finally:
        resource.prlimit(d.pid, resource.RLIMIT_NOFILE, old)
    line = log_matches(d.log(), r"worker 1 pid \d+ exited with status 2.*")
    assert len(line) == 1 and "not respawned" in line[0].group(0), d.log()
    w = wait_until(lambda: (lambda w: w if w["last_exit"] == "exit 2"
                            else None)(slot_of(get_stats(d.stats_port), 1)),
                   5, msg="slot 1 last_exit exit 2")
    assert w["pid"] is None and w["state"] == "stopped", w
    # Observation window: a respawn would come within the 2 s backoff.
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        w = slot_of(get_stats(d.stats_port), 1)
        assert w["pid"] is None and w["state"] == "stopped", w
        time.sleep(0.1)
    st, _, body = http_get(d.stats_port, "/healthz")
    assert st == 503, (st, body)
    assert slot_of(get_stats(d.stats_port), 0)["state"] == "running"
    msg = b"slot 0 still serves\n"
    assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()


# --------------------------------------------------------------------------
# 6. TTIN / TTOU

def test_ttin_adds_and_ttou_removes_a_worker(upperd):
    d = upperd(workers=2)
    sampler = StatsSampler(d.stats_port)
    sampler.start()
    conns = []
    try:
        os.kill(d.pid, signal.SIGTTIN)
        doc = wait_until(lambda: (lambda doc: doc if all_running(doc, 3)
                                  else None)(get_stats(d.stats_port)), 10,
                         msg="3 running workers after TTIN")
        assert doc["workers_running"] == 3
        assert slot_of(doc, 2)["restarts_by_reason"] == NO_RESTARTS
        assert log_matches(d.log(), r"scaling up to 3 workers")
        assert http_get(d.stats_port, "/healthz")[0] == 200

        # traffic until the new slot has served some
        for i in range(90):
            s = tcp_connect(d.tcp_port)
            msg = b"spread %d\n" % i
            assert roundtrip_on(s, msg) == msg.upper()
            conns.append(s)
            if i % 5 == 4 and slot_of(get_stats(d.stats_port),
                                      2)["tcp_bytes_received"] > 0:
                break
        for i in range(30):
            msg = b"datagram %d" % i
            assert udp_roundtrip(d.udp_port, msg) == msg.upper()
        for s in conns:
            s.close()
        conns = []
        before = settle(d)
        s2 = slot_of(before, 2)
        assert s2["tcp_bytes_received"] > 0, brief(before)
        kept = {k: s2[k] for k in MONOTONIC}
        old2 = s2["pid"]

        signal_and_wait_consumed(d.pid, signal.SIGTTOU)
        doc = get_stats(d.stats_port)
        assert doc["workers_configured"] == 2, brief(doc)
        doc = wait_until(lambda: (lambda doc: doc if slot_of(doc, 2)["state"]
                                  == "stopped" else None)(
            get_stats(d.stats_port)), 5, msg="slot 2 stopped")
        wait_until(lambda: pid_gone(old2), 5, msg="retired worker to exit")
        doc = get_stats(d.stats_port)
        assert all_running(doc, 2) and doc["workers_running"] == 2
        s2 = slot_of(doc, 2)
        assert {k: s2[k] for k in MONOTONIC} == kept
        assert s2["tcp_connections_active"] == 0
        for k in MONOTONIC:
            assert doc["totals"][k] == before["totals"][k], k
        m = d.metrics()
        assert m.get("upperd_worker_up", worker="2") == 0
        assert m.get("upperd_worker_up", worker="0") == 1
        assert m.get("upperd_worker_up", worker="1") == 1
        assert m.get("upperd_workers_configured") == 2
        assert m.get("upperd_workers_running") == 2
        assert m.get("upperd_tcp_bytes_received_total", worker="2") == \
            kept["tcp_bytes_received"]
        assert m.get("upperd_tcp_connections_accepted_total", worker="2") \
            == kept["tcp_connections_accepted"]
        assert log_matches(d.log(), r"scaling down to 2 workers, retiring "
                                    r"worker 2")
        assert http_get(d.stats_port, "/healthz")[0] == 200

        kept1 = {k: slot_of(doc, 1)[k] for k in MONOTONIC}
        signal_and_wait_consumed(d.pid, signal.SIGTTOU)
        doc = wait_until(lambda: (lambda doc: doc if slot_of(doc, 1)["state"]
                                  == "stopped" else None)(
            get_stats(d.stats_port)), 5, msg="slot 1 stopped")
        assert doc["workers_configured"] == 1

        # never below one
        signal_and_wait_consumed(d.pid, signal.SIGTTOU)
        doc = get_stats(d.stats_port)
        assert doc["workers_configured"] == 1, brief(doc)
        assert slot_of(doc, 0)["state"] == "running", brief(doc)
        assert len(log_matches(d.log(), r"scaling down")) == 2, d.log()
        assert http_get(d.stats_port, "/healthz")[0] == 200
        msg = b"one worker left\n"
        assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()

        # TTIN brings slot 1 back, its counters carry on
        os.kill(d.pid, signal.SIGTTIN)
        doc = wait_until(lambda: (lambda doc: doc if all_running(doc, 2)
                                  else None)(get_stats(d.stats_port)), 10,
                         msg="2 running workers after TTIN")
        s1 = slot_of(doc, 1)
        for k in MONOTONIC:
            assert s1[k] >= kept1[k], (k, s1, kept1)
    finally:
        for s in conns:
            s.close()
        sampler.stop()
    assert sampler.errors == [], sampler.errors[:5]
    assert sampler.decreases == [], sampler.decreases[:5]


# --------------------------------------------------------------------------
# 7. --max-requests

def test_max_requests_recycles(upperd):
    """Batches of 25 short connections against --max-requests 20 (at most
    22 with the jitter): after each batch the worker is past its limit
    and is replaced (it serves on until its replacement does, so a batch
    is never kept waiting)."""
    d = upperd(workers=1, max_requests=20)
    failures = []
    sent = 0

    def recycles():
        return slot_of(get_stats(d.stats_port), 0)["restarts_by_reason"][
            "recycle"]

    for i in range(100):
        msg = b"short connection number %d\n" % i
        try:
            got = tcp_roundtrip(d.tcp_port, msg, len(msg), timeout=10)
        except Exception as e:
            failures.append((i, repr(e)))
            continue
        if got != msg.upper():
            failures.append((i, got))
        sent += len(msg)
        if i % 25 == 24:
            want = (i + 1) // 25
            wait_until(lambda: recycles() >= want, 5,
                       msg="recycle number %d" % want)
    assert failures == []

    def recycled():
        doc = settle(d)
        w = slot_of(doc, 0)
        return doc if (w["state"] == "running" and
                       w["last_exit"] is not None) else None

    doc = wait_until(recycled, 10, msg="recycled and at rest")
    w = slot_of(doc, 0)
    r = w["restarts_by_reason"]
    assert r["recycle"] >= 3, brief(doc)
    assert r == reasons(recycle=r["recycle"]), brief(doc)
    assert w["last_exit"] == "exit 0", brief(doc)
    t = doc["totals"]
    assert t["tcp_connections_accepted"] == 100
    assert t["tcp_bytes_received"] == sent
    assert t["tcp_bytes_sent"] == sent
    log = d.log()
    assert len(log_matches(log, r"replaced by pid \d+ \(recycle\), "
                                r"draining")) == r["recycle"], log
    assert log_matches(log, r"killed by|outlived its drain|hung") == [], log


# --------------------------------------------------------------------------
# 8. drain deadline

def test_term_with_idle_connections_ends_within_drain_timeout(upperd):
    d = upperd(workers=2, drain_timeout=2)
    conns = []
    try:
        for i in range(5):
            s = tcp_connect(d.tcp_port)
            msg = b"idle %d\n" % i
            assert roundtrip_on(s, msg) == msg.upper()
            conns.append(s)
        pids = d.worker_pids()
        t0 = time.monotonic()
        os.kill(d.pid, signal.SIGTERM)
        wait_until(lambda: "shutting down" in d.log(), 2,
                   msg="'shutting down' in the log")
        # open connections may still finish their business
        for i, s in enumerate(conns):
            msg = b"during the drain %d\n" % i
            assert roundtrip_on(s, msg, timeout=1.5) == msg.upper()
        closed = [wait_closed_by_server(s, t0 + 4.0) - t0 for s in conns]
        rc = d.wait_exit(max(0.1, t0 + 4.0 - time.monotonic()))
        took = time.monotonic() - t0
        assert rc == 0
        assert took <= 4.0, took
        assert max(closed) <= 4.0, closed
        assert all(pid_gone(p) for p in pids)
    finally:
        for s in conns:
            s.close()


def test_reload_old_worker_gone_within_drain_timeout(upperd, tmp_path):
    cfg = tmp_path / "upperd.conf"
    cfg.write_text("log-level = info\n")
    d = upperd(workers=1, drain_timeout=2, config=str(cfg))
    s = tcp_connect(d.tcp_port)
    try:
        assert roundtrip_on(s, b"idle\n") == b"IDLE\n"
        doc = get_stats(d.stats_port)
        old = slot_of(doc, 0)["pid"]
        assert slot_of(doc, 0)["tcp_connections_active"] == 1
        t0 = time.monotonic()
        os.kill(d.pid, signal.SIGHUP)
        wait_until(lambda: (lambda w: w["pid"] not in (None, old) and
                            w["state"] == "running")(
            slot_of(get_stats(d.stats_port), 0)), 5,
            msg="slot 0 replaced")
        # the old worker still serves the connection it holds
        assert roundtrip_on(s, b"still here\n", timeout=1.5) == \
            b"STILL HERE\n"
        t_closed = wait_closed_by_server(s, t0 + 4.5) - t0
        wait_until(lambda: pid_gone(old), max(0.1, t0 + 4.0 -
                                              time.monotonic()),
                   interval=0.01, msg="old worker %d gone" % old)
        gone = time.monotonic() - t0
        assert t_closed >= 1.8, "cut %.2fs after HUP, before the drain " \
            "timeout" % t_closed
        assert gone <= 4.0, gone
        w = wait_until(lambda: (lambda w: w if w["last_exit"] else None)(
            slot_of(get_stats(d.stats_port), 0)), 2, msg="last_exit")
        assert w["last_exit"] == "exit 0", w
        assert w["restarts_by_reason"] == reasons(reload=1)
        assert "outlived its drain" not in d.log(), d.log()
    finally:
        s.close()


# --------------------------------------------------------------------------
# 9. supervisor SIGKILL

def test_supervisor_sigkill_takes_workers_and_frees_ports(upperd, monkeypatch):
    d = upperd(workers=2)
    msg = b"before the kill\n"
    assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()
    assert udp_roundtrip(d.udp_port, msg) == msg.upper()
    pids = d.worker_pids()
    assert len(pids) == 2
    os.kill(d.pid, signal.SIGKILL)
    t0 = time.monotonic()
    d.proc.wait(5)
    wait_until(lambda: all(pid_gone(p) for p in pids), 1.0, interval=0.01,
               msg="workers %s to exit with the supervisor" % pids)
    # a new upperd on the same ports, at once
    ports = iter([d.tcp_port, d.stats_port])
    monkeypatch.setattr(conftest, "free_port", lambda *a: next(ports))
    d2 = upperd(workers=2)
    took = time.monotonic() - t0
    assert (d2.tcp_port, d2.stats_port) == (d.tcp_port, d.stats_port)
    assert took <= 5.0, took
    assert tcp_roundtrip(d2.tcp_port, msg, len(msg)) == msg.upper()
    assert udp_roundtrip(d2.udp_port, msg) == msg.upper()
    assert get_stats(d2.stats_port)["pid"] == d2.pid


# --------------------------------------------------------------------------
# 10. USR1 after logrotate's rename

def test_usr1_after_rename(upperd):
    d = upperd(workers=2, log_level="debug")
    L = d.log_path
    rotated = L + ".1"
    wait_until(lambda: log_matches(d.log(), r"ready: "), 5, msg="ready line")
    w1 = slot_of(get_stats(d.stats_port), 1)["pid"]
    os.rename(L, rotated)
    os.kill(d.pid, signal.SIGUSR1)
    wait_until(lambda: os.path.exists(L) and "reopened" in d.log(), 5,
               msg="'reopened' in the new %s" % L)
    os.kill(d.pid, signal.SIGTTIN)
    wait_until(lambda: log_matches(d.log(), r"scaling up to 3 workers"), 5,
               msg="'scaling up' in the new log")
    with open(rotated) as f:
        old_text = f.read()
    assert "ready: " in old_text
    assert "scaling up" not in old_text and "reopened" not in old_text
    size = os.path.getsize(rotated)
    # a worker forked before the rotation must write to the new file too:
    # retire slots 2 then 1; worker 1 logs its drain (debug)
    signal_and_wait_consumed(d.pid, signal.SIGTTOU)
    signal_and_wait_consumed(d.pid, signal.SIGTTOU)
    wait_until(lambda: pid_gone(w1), 5, msg="worker 1 retired")
    new = d.log()
    assert log_matches(new, r"scaling down to 1 worker"), new
    assert [e for e in log_events(new) if e[1] == "worker 1" and
            e[2] == w1], "no line from worker 1 pid %d in the new log:\n%s" \
        % (w1, new)
    assert os.path.getsize(rotated) == size, "still written after USR1"


# --------------------------------------------------------------------------
# 11. a worker that outlives its drain is SIGKILLed (sup_kill_overdue)

_STAMP_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z ")


def stamped(text, pattern):
    """(epoch seconds from the log file's timestamp, match) for every log
    line whose message matches pattern, in order."""
    rx = re.compile(pattern)
    out = []
    for line in text.splitlines():
        m = conftest.LOG_LINE_RE.match(line)
        t = _STAMP_RE.match(line)
        if not m or not t:
            continue
        hit = rx.search(m.group(4))
        if hit:
            when = datetime.datetime.strptime(
                t.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
                tzinfo=datetime.timezone.utc).timestamp()
            out.append((when, hit))
    return out


def sigstop_worker(d, pid):
    """SIGSTOP a worker of d and wait until the kernel shows it stopped."""
    assert safe_kill(pid, signal.SIGSTOP, d.pid), pid
    wait_until(lambda: conftest.proc_status(pid)["State"].startswith("T"), 2,
               msg="worker %d to be stopped" % pid)


def release(pid):
    """finally-block cleanup of a worker the test stopped: if it is still
    an upperd process, continue it and kill it."""
    if pid and not pid_gone(pid) and conftest.is_upperd(pid):
        conftest.kill_pid(pid, signal.SIGCONT)
        conftest.kill_pid(pid, signal.SIGKILL)


# The supervisor SIGKILLs a stopping worker this long after its TERM
# (spawn.c, sup_stop_proc: drain timeout + 2 s of grace).
DRAIN = 1
KILL_AFTER = DRAIN + 2.0


def test_term_kills_worker_that_outlives_its_drain(upperd):
    """A worker that cannot act on TERM (it is SIGSTOPped) is SIGKILLed by
    the supervisor once its drain is overdue, never before the drain
    timeout, and the supervisor then exits 0 in bounded time.  The
    heartbeat timeout is long, so the stop cannot be taken for a hang:
    this is the overdue path, and the log must not call the worker hung."""
    d = upperd(workers=1, drain_timeout=DRAIN, heartbeat_timeout=600)
    w = slot_of(get_stats(d.stats_port), 0)["pid"]
    try:
        sigstop_worker(d, w)
        t0 = time.monotonic()
        os.kill(d.pid, signal.SIGTERM)
        rc = d.wait_exit(KILL_AFTER + 2.0)
        took = time.monotonic() - t0
        assert rc == 0, d.diagnostics()
        assert took >= DRAIN, "exited %.2fs after TERM, before the drain " \
            "timeout" % took
        assert pid_gone(w), "worker %d survived the supervisor" % w
        log = d.log()
        term = stamped(log, r"shutting down: draining workers for up to "
                            r"%ds" % DRAIN)
        kill = stamped(log, r"worker (\d+) pid (\d+) outlived its drain, "
                            r"killing it")
        assert len(term) == 1 and len(kill) == 1, log
        assert (int(kill[0][1].group(1)), int(kill[0][1].group(2))) == \
            (0, w), log
        late = kill[0][0] - term[0][0]
        assert DRAIN <= late <= KILL_AFTER + 0.5, "killed %.3fs after " \
            "TERM" % late
        # reaped, and it died of the SIGKILL, not of the TERM
        assert log_matches(log, r"worker 0 pid %d stopped \(signal 9\)" %
                           w), log
        assert log_matches(log, r"\bhung\b|not serving") == [], log
        assert "exiting" in log
    finally:
        release(w)


def test_reload_kills_old_worker_that_outlives_its_drain(upperd, tmp_path):
    """The same on reload: the replacement serves at once, the old worker,
    stopped, cannot drain and is SIGKILLed when its drain is overdue; the
    slot counts one reload (not a hang, not a crash) and the supervisor
    serves on."""
    cfg = tmp_path / "upperd.conf"
    cfg.write_text("drain-timeout = %d\n" % DRAIN)
    d = upperd(workers=1, heartbeat_timeout=600, config=str(cfg))
    old = slot_of(get_stats(d.stats_port), 0)["pid"]
    try:
        sigstop_worker(d, old)
        os.kill(d.pid, signal.SIGHUP)

        new = wait_replaced(d, (old,), "slot 0 replaced")["pid"]
        msg = b"served by the replacement\n"
        assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()
        wait_until(lambda: pid_gone(old), KILL_AFTER + 2.0,
                   msg="the stopped old worker %d to be killed" % old)
        log = d.log()
        swap = stamped(log, r"worker 0 pid %d replaced by pid %d \(reload\), "
                            r"draining" % (old, new))
        kill = stamped(log, r"worker 0 pid %d outlived its drain, killing "
                            r"it" % old)
        assert len(swap) == 1 and len(kill) == 1, log
        late = kill[0][0] - swap[0][0]
        assert DRAIN <= late <= KILL_AFTER + 0.5, "killed %.3fs after " \
            "its TERM" % late
        w = wait_until(lambda: (lambda w: w if w["last_exit"] else None)(
            slot_of(get_stats(d.stats_port), 0)), 2, msg="last_exit")
        assert w["last_exit"] == "signal 9", w
        assert w["pid"] == new and w["state"] == "running", w
        assert w["restarts_by_reason"] == reasons(reload=1), w
        assert d.alive()
        assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()
        log = d.log()
        assert log_matches(log, r"worker 0 pid %d stopped \(signal 9\)" %
                           old), log
        assert log_matches(log, r"\bhung\b|not serving|respawn") == [], log
    finally:
        release(old)


# --------------------------------------------------------------------------
# 12. a replacement that never serves is killed and retried (sup_check_next)
#
# A forked worker sets its ready flag within milliseconds, so SIGSTOPping a
# replacement from outside after the fact is a race.  Instead the test
# traces the supervisor (ptrace PTRACE_SEIZE with PTRACE_O_TRACEFORK, which
# a parent may do to its own child), lets it fork, and leaves the new child
# stopped before it has run one instruction of its own: a replacement that
# deterministically never becomes ready.  Both are then detached, so the
# supervisor runs untraced and the child is a plain stopped process.

_PTRACE_CONT = 7
_PTRACE_DETACH = 17
_PTRACE_SEIZE = 0x4206
_PTRACE_INTERRUPT = 0x4207
_PTRACE_GETEVENTMSG = 0x4201
_PTRACE_O_TRACEFORK = 0x2
_PTRACE_EVENT_FORK = 1
_WALL = 0x40000000


def _ptrace(req, pid, addr=0, data=0):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                            ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    if libc.ptrace(req, pid, addr, data) == -1:
        e = ctypes.get_errno()
        raise OSError(e, "ptrace(%#x, %d): %s" % (req, pid, os.strerror(e)))


def _wait_stop(pid, timeout):
    """Wait (bounded) for the traced pid's next stop; its wait status."""
    def reported():
        p, st = os.waitpid(pid, os.WNOHANG | _WALL)
        return ("status", st) if p else None
    st = wait_until(reported, timeout, interval=0.005,
                    msg="traced pid %d to stop" % pid)[1]
    assert os.WIFSTOPPED(st), "pid %d ended while traced: %#x" % (pid, st)
    return st


def fork_stopped(sup_pid, trigger, timeout=5.0):
    """Call trigger() with the supervisor traced for forks; return the pid
    of the next process it forks, left stopped (as by SIGSTOP) at its very
    first instruction, with the supervisor running and untraced again.
    Fails the test where ptrace is not permitted: it cannot test its
    behaviour without (make test runs as root)."""
    try:
        _ptrace(_PTRACE_SEIZE, sup_pid, 0, _PTRACE_O_TRACEFORK)
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EACCES, errno.ENOSYS):
            pytest.fail("cannot ptrace the supervisor here (%s): this test "
                        "needs ptrace, as root has" % e, pytrace=False)
        raise
    sup_stopped = False
    child = None
    try:
        trigger()
        while True:
            st = _wait_stop(sup_pid, timeout)
            sup_stopped = True
            event = st >> 16
            if event == _PTRACE_EVENT_FORK:
                break
            # anything else (a signal-delivery-stop): let it through
            sig = os.WSTOPSIG(st) if event == 0 else 0
            _ptrace(_PTRACE_CONT, sup_pid, 0, sig)
            sup_stopped = False
        msg = ctypes.c_ulong()
        _ptrace(_PTRACE_GETEVENTMSG, sup_pid, 0, ctypes.addressof(msg))
        child = msg.value
        # the child is auto-attached and starts in a ptrace stop; queue a
        # SIGSTOP so that it stops for good as soon as it is let go
        _wait_stop(child, timeout)
        assert safe_kill(child, signal.SIGSTOP, sup_pid), child
        _ptrace(_PTRACE_DETACH, child)
        return child
    except BaseException:
        if child:
            release(child)
        raise
    finally:
        if not sup_stopped:
            _ptrace(_PTRACE_INTERRUPT, sup_pid)
            _wait_stop(sup_pid, timeout)
        _ptrace(_PTRACE_DETACH, sup_pid)


HB = 2


def test_reload_replacement_never_ready_is_killed_and_retried(upperd,
                                                              tmp_path):
    """A reload's replacement that never becomes ready is killed once the
    heartbeat timeout has passed since its fork; meanwhile the old worker
    serves on, and a new replacement is started a second later, which
    serves and takes the slot over from the old worker."""
    cfg = tmp_path / "upperd.conf"
    cfg.write_text("heartbeat-timeout = %d\n" % HB)
    d = upperd(workers=1, config=str(cfg))
    old = slot_of(get_stats(d.stats_port), 0)["pid"]
    bad = None
    try:
        t_hup = time.time()
        bad = fork_stopped(d.pid, lambda: os.kill(d.pid, signal.SIGHUP))
        assert bad != old
        assert conftest.ppid_of(bad) == d.pid
        wait_until(lambda: conftest.proc_status(bad)["State"].startswith(
            "T"), 2, msg="replacement %d stopped" % bad)
        assert conftest.proc_status(bad)["TracerPid"] == "0"
        # the old worker serves alone (bad never ran), still as "running"
        w = slot_of(get_stats(d.stats_port), 0)
        assert w["pid"] == old and w["state"] == "running", w
        for i in range(3):
            msg = b"old worker while the replacement hangs %d\n" % i
            assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()
            assert udp_roundtrip(d.udp_port, msg) == msg.upper()

        kill = wait_until(
            lambda: stamped(d.log(), r"worker 0 replacement pid (\d+) not "
                                     r"serving after ([\d.]+)s, killing it"),
            HB + 3, msg="the replacement to be killed as not serving")
        assert len(kill) == 1, d.log()
        t_kill, m = kill[0]
        assert int(m.group(1)) == bad, d.log()
        assert HB <= float(m.group(2)) <= HB + 1.0, m.group(0)
        assert HB - 0.05 <= t_kill - t_hup <= HB + 1.5, t_kill - t_hup
        wait_until(lambda: pid_gone(bad), 2,
                   msg="the stopped replacement %d to be killed" % bad)

        w = wait_replaced(d, (old, bad), "a second replacement serving")
        new = w["pid"]
        retry = w["started_at"] - t_kill
        assert 0.9 <= retry <= 2.5, "retried %.3fs after the kill" % retry
        msg = b"served by the second replacement\n"
        assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()
        w = wait_drained(d, old, new)
        assert w["restarts_by_reason"] == reasons(hung=1, reload=1), w
        log = d.log()
        assert log_matches(log, r"worker 0 pid %d stopped \(signal 9\)" %
                           bad), log
        assert len(log_matches(log, r"replaced by pid")) == 1, log
        assert log_matches(log, r"worker 0 pid %d replaced by pid %d "
                                r"\(reload\), draining" % (old, new)), log
        assert log_matches(log, r"worker 0 pid %d stopped \(exit 0\)" %
                           old), log
        assert log_matches(log, r"pid \d+ hung:|outlived its drain|"
                                r"respawn") == [], log
    finally:
        release(bad)


# --------------------------------------------------------------------------
# 13. a replacement that fails at startup (exit 2) is retried with the
# slot's crash backoff while the old worker serves on (sup_on_crash), and
# the ready line after a reload waits for every replacement (sup_announce)
#
# A worker forked while the supervisor's RLIMIT_NOFILE soft limit is no
# higher than the fds the worker inherits (stdio, log, TCP and UDP) cannot
# create its signalfd, timerfd and epoll, logs "worker setup" and exits 2.
# The limit is lowered from outside (prlimit), so only workers forked
# meanwhile are hit: the old worker keeps its own limit and serves on.
# Meanwhile the supervisor cannot open an fd either (its own fds are
# numbered above the limit): no config file may be re-read, and an HTTP
# request waits unanswered until the limit is restored (the last test of
# this file checks that the wait costs no CPU).

class FdStarvation:
    """Lower (and restore) the supervisor's RLIMIT_NOFILE soft limit so
    that any worker it forks meanwhile fails in its setup with exit 2."""

    def __init__(self, d, worker):
        self.d = d
        inherited = []
        for f in os.listdir("/proc/%d/fd" % worker):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (worker, f))
            except OSError:
                continue
            if not target.startswith("anon_inode:"):
                inherited.append(int(f))
        # an idle worker: stdio, the log file, the TCP and UDP sockets, as
        # fds 0-5 with no gap a new fd could take; its own signalfd,
        # timerfd and epoll are anon inodes
        assert sorted(inherited) == list(range(6)), (worker, inherited)
        self.soft = len(inherited)
        self.orig = None

    def lower(self):
        orig = resource.prlimit(self.d.pid, resource.RLIMIT_NOFILE)
        assert orig[0] > self.soft, orig
        self.orig = orig
        resource.prlimit(self.d.pid, resource.RLIMIT_NOFILE,
                         (self.soft, orig[1]))

    def restore(self):
        """Idempotent; for the test's body and its finally block."""
        if self.orig is not None and self.d.alive():
            resource.prlimit(self.d.pid, resource.RLIMIT_NOFILE, self.orig)
        self.orig = None


def startup_failures(text):
    """(time, match) of every "worker setup" failure a worker logged."""
    return stamped(text, r"^worker setup: ")


def replacement_failures(text, slot=0):
    """(time, match) of the supervisor's lines for a replacement of slot
    that exited 2: groups pid, uptime, retry delay."""
    return stamped(text, r"^worker %d replacement pid (\d+) exited with "
                         r"exit 2 after ([\d.]+)s, the old worker serves "
                         r"on, retry in (\d+)s$" % slot)


def after_reload(text, pattern):
    """stamped(text, pattern) for the lines after the (one) reload line."""
    rl = stamped(text, r"^reloading: replacing workers")
    assert len(rl) == 1, text
    return [(t, m) for t, m in stamped(text, pattern) if t >= rl[0][0]]


def wait_replaced(d, gone, what):
    """Slot 0's record once a pid not in gone runs there."""
    def replaced():
        w = slot_of(get_stats(d.stats_port), 0)
        return w if (w["pid"] not in (None,) + tuple(gone) and
                     w["state"] == "running") else None
    return wait_until(replaced, 5, msg=what)


def wait_drained(d, old, new):
    """Slot 0's record once its old worker has drained and exited 0, with
    new serving in its place."""
    wait_until(lambda: pid_gone(old), 5, msg="old worker %d to drain" % old)
    w = wait_until(lambda: (lambda w: w if w["last_exit"] == "exit 0"
                            else None)(slot_of(get_stats(d.stats_port), 0)),
                   2, msg="the old worker's clean exit")
    assert w["pid"] == new and w["state"] == "running", w
    return w


def restore_before_retry(d, starve, old, t2):
    """Give the fds back within the 2 s backoff that follows the second
    failure (at t2): slot 0 is still the old worker's, two crashes
    counted."""
    starve.restore()
    w = slot_of(get_stats(d.stats_port), 0)
    assert time.time() < t2 + 2.0, "too slow to see the old worker"
    assert (w["pid"], w["state"], w["last_exit"]) == (
        old, "running", "exit 2"), w
    assert w["restarts_by_reason"] == reasons(crash=2), w


def serves(d, what):
    msg = b"served while %s\n" % what.encode()
    assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()
    assert udp_roundtrip(d.udp_port, msg) == msg.upper()


def wait_two_backed_off_failures(d):
    """Wait for the second retry line of slot 0's replacement; fail at
    once if startup failures pile up faster (a fork every tick).  Returns
    the two retry lines after checking their spacing."""
    def two():
        log = d.log()
        fails = replacement_failures(log)
        setups = startup_failures(log)
        return (fails, setups) if len(fails) >= 2 or len(setups) > 3 \
            else None

    fails, setups = wait_until(two, 6, msg="two retried replacements")
    assert len(setups) == 2 and len(fails) == 2, \
        "%d startup failures, %d retry lines: not backed off\n%s" % (
            len(setups), len(fails), d.diagnostics())
    (t1, m1), (t2, m2) = fails
    assert [m1.group(3), m2.group(3)] == ["1", "2"], (m1.group(0),
                                                      m2.group(0))
    assert 0.95 <= t2 - t1 <= 2.0, "retried %.3fs after a 1s backoff" % (
        t2 - t1)
    assert m1.group(1) != m2.group(1)
    for t, m in fails:
        assert float(m.group(2)) < 1.0, m.group(0)
        # the replacement itself said why
        assert [e for e in log_events(d.log()) if e[1] == "worker 0" and
                e[2] == int(m.group(1)) and
                e[3].startswith("worker setup: ")], d.log()
    return fails


def test_reload_replacement_startup_failure_is_retried(upperd):
    """A reload's replacement that exits 2 at startup is retried with the
    crash backoff (1 s, then 2 s), never marked failed; the old worker
    serves on meanwhile and keeps slot 0 as "running"; no ready line until
    a replacement serves, which then takes the slot over, the old worker
    draining to exit 0."""
    d = upperd(workers=1)
    old = slot_of(get_stats(d.stats_port), 0)["pid"]
    starve = FdStarvation(d, old)
    try:
        starve.lower()
        os.kill(d.pid, signal.SIGHUP)
        wait_until(lambda: startup_failures(d.log()), 3,
                   msg="the replacement to fail in its setup")
        first = wait_until(lambda: replacement_failures(d.log()) or
                           log_matches(d.log(), r"not respawned"), 2,
                           msg="the supervisor to see the exit 2")
        assert replacement_failures(d.log()), \
            "the reload's failed replacement is not retried\n" + \
            d.diagnostics()
        assert first[0][1].group(3) == "1", first[0][1].group(0)
        assert int(first[0][1].group(1)) != old
        # the old worker serves on alone
        assert conftest.ppid_of(old) == d.pid and not pid_gone(old)
        serves(d, "the replacement fails")
        fails = wait_two_backed_off_failures(d)
        t2 = fails[1][0]
        assert not pid_gone(old)
        serves(d, "the replacement fails again")
        log = d.log()
        assert after_reload(log, r"ready: ") == [], log
        assert log_matches(log, r"not respawned|hung|not serving") == [], log
        restore_before_retry(d, starve, old, t2)
        assert http_get(d.stats_port, "/healthz")[0] == 200

        w = wait_replaced(d, (old,), "a replacement serving in slot 0")
        new = w["pid"]
        assert 1.9 <= w["started_at"] - t2 <= 3.0, \
            "retried %.3fs after a 2s backoff" % (w["started_at"] - t2)
        serves(d, "the replacement took over")
        w = wait_drained(d, old, new)
        assert w["restarts_by_reason"] == reasons(crash=2, reload=1), w
        log = d.log()
        swap = stamped(log, r"^worker 0 pid %d replaced by pid %d "
                            r"\(reload\), draining$" % (old, new))
        assert len(swap) == 1 and len(log_matches(log, r"replaced by")) \
            == 1, log
        ready = after_reload(log, r"ready: (\d+) workers?,")
        assert len(ready) == 1 and ready[0][1].group(1) == "1", log
        assert ready[0][0] >= swap[0][0], log
        assert log_matches(log, r"worker 0 pid %d stopped \(exit 0\)" %
                           old), log
        assert len(startup_failures(log)) == 2, log
        assert log_matches(log, r"not respawned|hung|not serving") == [], log
    finally:
        starve.restore()


# Below 10 --max-requests has no jitter (N + random % (N / 10 + 1)).
MAX_REQ = 9


def test_recycle_replacement_startup_failure_is_backed_off(upperd):
    """A recycling worker's replacement that exits 2 at startup is retried
    with the crash backoff, not forked again every tick; the recycling
    worker, the only one, goes on serving new clients meanwhile (nobody
    else would accept them), and the replacement, once it can start,
    takes over."""
    d = upperd(workers=1, max_requests=MAX_REQ)
    old = slot_of(get_stats(d.stats_port), 0)["pid"]
    starve = FdStarvation(d, old)
    queued = udp = None
    try:
        starve.lower()
        for i in range(MAX_REQ):
            msg = b"request %d of the first worker\n" % i
            assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()
        wait_until(lambda: replacement_failures(d.log()) or
                   startup_failures(d.log()), 3,
                   msg="the recycle's replacement to fail")
        # clients arriving now are served by the recycling worker
        qmsg = b"arrived while the replacement fails\n"
        queued = tcp_connect(d.tcp_port)
        queued.sendall(qmsg)
        assert recv_exactly(queued, len(qmsg), 5) == qmsg.upper()
        queued.close()  # the old worker's drain waits for its clients
        queued = None
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.settimeout(5)
        udp.sendto(qmsg, ("127.0.0.1", d.udp_port))
        assert udp.recvfrom(65536)[0] == qmsg.upper()
        fails = wait_two_backed_off_failures(d)
        serves(d, "the replacement backs off")
        t2 = fails[1][0]
        assert not pid_gone(old)
        log = d.log()
        assert len(log_matches(log, r"^worker 0 pid %d reached "
                                    r"--max-requests, recycling$" % old)) \
            == 1, log
        assert log_matches(log, r"not respawned|hung|not serving") == [], log
        restore_before_retry(d, starve, old, t2)

        w = wait_replaced(d, (old,), "a replacement serving in slot 0")
        new = w["pid"]
        assert 1.9 <= w["started_at"] - t2 <= 3.0, \
            "retried %.3fs after a 2s backoff" % (w["started_at"] - t2)
        msg = b"served by the replacement\n"
        assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()
        w = wait_drained(d, old, new)
        assert w["restarts_by_reason"] == reasons(crash=2, recycle=1), w
        log = d.log()
        assert log_matches(log, r"^worker 0 pid %d replaced by pid %d "
                                r"\(recycle\), draining$" % (old, new)), log
        assert len(log_matches(log, r"replaced by")) == 1, log
        assert len(startup_failures(log)) == 2, log
        assert log_matches(log, r"worker 0 pid %d stopped \(exit 0\)" %
                           old), log
    finally:
        starve.restore()
        for s in (queued, udp):
            if s is not None:
                s.close()


def test_ready_line_after_reload_waits_for_replacements(upperd, tmp_path):
    """After a reload the ready line is logged once every slot's
    replacement serves: slot 1's replacement swaps in at once, slot 0's is
    held stopped (never ready) until it is killed as not serving and
    retried; no ready line before slot 0 swaps, /healthz 200 throughout."""
    cfg = tmp_path / "upperd.conf"
    cfg.write_text("heartbeat-timeout = %d\n" % HB)
    d = upperd(workers=2, config=str(cfg))
    doc = get_stats(d.stats_port)
    old0, old1 = slot_of(doc, 0)["pid"], slot_of(doc, 1)["pid"]
    bad = None
    try:
        # slot 0's replacement is forked first
        bad = fork_stopped(d.pid, lambda: os.kill(d.pid, signal.SIGHUP))
        swap1 = wait_until(
            lambda: stamped(d.log(), r"^worker 1 pid %d replaced by pid "
                                     r"(\d+) \(reload\), draining$" % old1),
            5, msg="slot 1 swapped")
        assert int(swap1[0][1].group(1)) != bad
        w0 = slot_of(get_stats(d.stats_port), 0)
        assert (w0["pid"], w0["state"]) == (old0, "running"), w0
        assert http_get(d.stats_port, "/healthz")[0] == 200
        assert after_reload(d.log(), r"ready: ") == [], d.log()
        kill = wait_until(
            lambda: stamped(d.log(), r"^worker 0 replacement pid %d not "
                                     r"serving after" % bad),
            HB + 3, msg="slot 0's stopped replacement to be killed")
        assert after_reload(d.log(), r"ready: ") == [], d.log()
        assert http_get(d.stats_port, "/healthz")[0] == 200
        swap0 = wait_until(
            lambda: stamped(d.log(), r"^worker 0 pid %d replaced by pid "
                                     r"(\d+) \(reload\), draining$" % old0),
            5, msg="slot 0 swapped")
        assert swap0[0][0] >= kill[0][0]
        ready = wait_until(lambda: after_reload(d.log(),
                                                r"ready: (\d+) workers"),
                           2, msg="the ready line after the reload")
        log = d.log()
        assert len(ready) == 1 and ready[0][1].group(1) == "2", log
        assert ready[0][0] >= swap0[0][0] >= swap1[0][0], log
        doc = get_stats(d.stats_port)
        new = pids_by_slot(doc)
        assert new[0] == int(swap0[0][1].group(1)), brief(doc)
        assert new[1] == int(swap1[0][1].group(1)), brief(doc)
        assert all_running(doc, 2), brief(doc)
        assert slot_of(doc, 0)["restarts_by_reason"] == reasons(
            hung=1, reload=1), brief(doc)
        assert slot_of(doc, 1)["restarts_by_reason"] == reasons(
            reload=1), brief(doc)
        serves(d, "both replacements took over")
    finally:
        release(bad)


def test_active_crash_while_replacement_starts_hands_slot_over(upperd,
                                                              tmp_path):
    """The serving worker dies while its reload replacement is still
    starting: the replacement holds the slot at once.  One crash is
    counted, nothing is respawned (no backoff, no third process), and
    the replacement serves once it runs."""
    cfg = tmp_path / "upperd.conf"
    cfg.write_text("heartbeat-timeout = 600\n")
    d = upperd(workers=1, config=str(cfg))
    old = slot_of(get_stats(d.stats_port), 0)["pid"]
    repl = None
    try:
        repl = fork_stopped(d.pid, lambda: os.kill(d.pid, signal.SIGHUP))
        assert safe_kill(old, signal.SIGKILL, d.pid), old
        took = wait_until(
            lambda: stamped(d.log(), r"^worker 0 pid %d killed by signal 9; "
                                     r"replacement pid (\d+) takes over$"
                                     % old),
            5, msg="the replacement to take the slot over")
        assert int(took[0][1].group(1)) == repl, d.log()
        w = slot_of(get_stats(d.stats_port), 0)
        assert (w["pid"], w["state"]) == (repl, "starting"), w
        conftest.kill_pid(repl, signal.SIGCONT)

        def serving():
            w = slot_of(get_stats(d.stats_port), 0)
            return w if w["state"] == "running" else None

        w = wait_until(serving, 5, msg="the replacement serving")
        assert w["pid"] == repl, w
        assert w["restarts_by_reason"] == reasons(crash=1), w
        assert w["last_exit"] == "signal 9", w
        serves(d, "the replacement that took over")
        assert [p for p in conftest.children_of(d.pid)] == [repl]
        log = d.log()
        assert log_matches(log, r"respawn in|replaced by|hung|not serving"
                           ) == [], log
        wait_until(lambda: after_reload(d.log(), r"ready: 1 worker,"), 2,
                   msg="the ready line after the reload")
    finally:
        release(repl)


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_stats_listener_out_of_fds_waits_without_spinning(upperd):
    """With no fd left, a waiting stats connection cannot be accepted and
    the listener stays readable: the supervisor warns once, takes it out
    of its epoll set until the next tick instead of spinning on it, and
    answers the connection once fds are back."""
    d = upperd(workers=1)
    w = slot_of(get_stats(d.stats_port), 0)["pid"]
    starve = FdStarvation(d, w)
    s = None
    try:
        starve.lower()
        s = socket.create_connection(("127.0.0.1", d.stats_port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        wait_until(lambda: log_matches(d.log(), r"accept4 stats"), 3,
                   msg="the supervisor to run out of fds")
        c0, t0 = _cpu_seconds(d.pid), time.monotonic()
        time.sleep(1.0)  # a window to measure the loop's CPU over
        used = (_cpu_seconds(d.pid) - c0) / (time.monotonic() - t0)
        assert used < 0.3, "supervisor at %.0f %% CPU while out of fds" % (
            100 * used)
        assert len(log_matches(d.log(), r"accept4 stats")) == 1, d.log()
        starve.restore()
        reply = b""
        while not reply.endswith(b"ok"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply
        assert d.alive()
        assert http_get(d.stats_port, "/healthz")[0] == 200
    finally:
        starve.restore()
        if s is not None:
            s.close()


def test_retired_slot_draining_shows_its_pid(upperd):
    """TTOU retires slot 1 while a client holds a connection to it: the
    slot is draining and /stats names the process that drains; once the
    client leaves, the slot is stopped with no pid."""
    d = upperd(workers=2, drain_timeout=30)
    old1 = slot_of(get_stats(d.stats_port), 1)["pid"]
    conns = []
    try:
        while slot_of(get_stats(d.stats_port), 1)[
                "tcp_connections_active"] == 0:
            assert len(conns) < 40, brief(get_stats(d.stats_port))
            s = tcp_connect(d.tcp_port)
            assert roundtrip_on(s, b"hold\n") == b"HOLD\n"
            conns.append(s)
        signal_and_wait_consumed(d.pid, signal.SIGTTOU)
        w = wait_until(lambda: (lambda w: w if w["state"] == "draining"
                                else None)(slot_of(get_stats(d.stats_port),
                                                   1)),
                       5, msg="slot 1 draining")
        assert w["pid"] == old1, w
        assert w["started_at"] is not None, w
    finally:
        for s in conns:
            s.close()
    w = wait_until(lambda: (lambda w: w if w["state"] == "stopped"
                            else None)(slot_of(get_stats(d.stats_port), 1)),
                   5, msg="slot 1 stopped")
    assert w["pid"] is None, w
    assert pid_gone(old1)
