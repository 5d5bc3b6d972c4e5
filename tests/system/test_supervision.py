"""
Supervision: a killed worker is replaced in its slot with its counters
kept; graceful stop (TERM/INT) with a connection open mid-stream; QUIT;
workers die with the supervisor; --pid-file, --log-file (and USR1),
--user; --sched-policy.
"""

import os
import pwd
import signal
import socket
import time

import pytest


from conftest import (COUNTERS, GAUGES, LOG_LINE_RE, REASONS, http_get,
                      is_upperd, pid_alive, port_is_free, proc_status,
                      recv_exactly, recv_until_eof, tcp_connect,
                      tcp_roundtrip, udp_roundtrip, wait_until)


def slot_of(doc, slot):
    return [w for w in doc["workers"] if w["slot"] == slot][0]


def traffic(d, n=20):
    for i in range(n):
        msg = b"traffic %d\n" % i
        assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()
        assert udp_roundtrip(d.udp_port, msg) == msg.upper()


def settle(d):
    return wait_until(
        lambda: (lambda doc: doc if doc["totals"]["tcp_connections_active"]
                 == 0 else None)(d.stats()), 10, msg="no active connections")


def test_kill_9_worker_replaced_in_same_slot(daemon):
    traffic(daemon)
    before = settle(daemon)
    # the busiest worker, so its counters are not all zero
    victim = max(before["workers"], key=lambda w: w["tcp_bytes_received"] +
                 w["udp_bytes_received"])
    slot, old_pid = victim["slot"], victim["pid"]
    assert victim["tcp_bytes_received"] + victim["udp_bytes_received"] > 0
    other = [w for w in before["workers"] if w["slot"] != slot][0]
    os.kill(old_pid, signal.SIGKILL)

    def replaced():
        w = slot_of(daemon.stats(), slot)
        return w if (w["pid"] and w["pid"] != old_pid and
                     w["state"] == "running") else None

    w = wait_until(replaced, 15, msg="slot %d to get a new pid" % slot)
    new_pid = w["pid"]
    assert pid_alive(new_pid)
    assert int(proc_status(new_pid)["PPid"]) == daemon.pid
    assert w["restarts"] == victim["restarts"] + 1 == 1
    assert w["restarts_by_reason"] == {"crash": 1, "hung": 0, "recycle": 0,
                                       "reload": 0}
    assert w["last_exit"] == "signal 9"
    for k in COUNTERS:
        if k not in GAUGES:
            assert w[k] >= victim[k], k
    after = daemon.stats()
    assert after["worker_restarts"] == 1
    # the other slot is untouched
    o = slot_of(after, other["slot"])
    assert o["pid"] == other["pid"] and o["restarts"] == 0
    assert o["last_exit"] is None
    for k in COUNTERS:
        if k not in GAUGES:
            assert after["totals"][k] >= before["totals"][k], k
    # the metrics agree
    m = daemon.metrics()
    assert m.get("upperd_worker_restarts_total", worker=str(slot),
                 reason="crash") == 1
    assert m.get("upperd_worker_restarts_total", worker=str(other["slot"]),
                 reason="crash") == 0
    # the death is logged with its cause
    lines = [ln for ln in daemon.log().splitlines() if str(old_pid) in ln
             and LOG_LINE_RE.match(ln) and "supervisor" in ln]
    assert any("signal 9" in ln or "SIGKILL" in ln for ln in lines), \
        daemon.log()[-3000:]
    # service as before, and counters exact on top of what was there
    traffic(daemon, 10)
    doc = settle(daemon)
    assert doc["totals"]["tcp_connections_accepted"] == \
        before["totals"]["tcp_connections_accepted"] + 10
    assert doc["totals"]["udp_datagrams_received"] == \
        before["totals"]["udp_datagrams_received"] + 10
    st, _, body = http_get(daemon.stats_port, "/healthz")
    assert (st, body.strip()) == (200, b"ok")


def new_connection_served(port):
    """True if a new TCP connection gets an answer within 0.5 s."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    except OSError:
        return False
    try:
        s.settimeout(0.5)
        s.sendall(b"ping\n")
        return s.recv(100) == b"PING\n"
    except OSError:
        return False
    finally:
        s.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT],
                         ids=["TERM", "INT"])
def test_graceful_stop_mid_stream(upperd, sig):
    d = upperd(drain_timeout=20)
    workers = d.worker_pids()
    c = tcp_connect(d.tcp_port)
    try:
        c.sendall(b"first part, ")
        assert recv_exactly(c, 12) == b"FIRST PART, "
        c.sendall(b"half a char \xc3")
        assert recv_exactly(c, 12) == b"HALF A CHAR "
        d.send_signal(sig)
        # no new connection is served any more
        wait_until(lambda: not new_connection_served(d.tcp_port), 10,
                   msg="new connections to be refused/unserved")
        # the open connection goes on: the character completes, more text
        c.sendall(b"\xa9 and more\n")
        assert recv_exactly(c, 12) == "É AND MORE\n".encode()
        c.sendall(b"still going\n")
        assert recv_exactly(c, 12) == b"STILL GOING\n"
        assert d.alive(), "exited while a connection was still open"
    finally:
        c.close()
    t0 = time.monotonic()
    assert d.wait_exit(10) == 0
    # it exited because the connection finished, not by the drain timeout
    assert time.monotonic() - t0 < 10
    wait_until(lambda: not any(pid_alive(p) for p in workers), 5,
               msg="workers gone")
    assert not [p for p in workers if is_upperd(p)]
    assert wait_until(lambda: port_is_free(d.tcp_port), 5)


def test_drain_timeout_cuts_idle_connection(upperd):
    d = upperd(drain_timeout=1)
    c = tcp_connect(d.tcp_port)
    try:
        c.sendall(b"hello")
        assert recv_exactly(c, 5) == b"HELLO"
        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)
        assert d.wait_exit(10) == 0
        elapsed = time.monotonic() - t0
        assert 0.5 <= elapsed < 6, elapsed
        # the connection was closed by the server
        assert recv_until_eof(c, timeout=5) == b""
    except ConnectionResetError:
        pass  # a reset is a close too
    finally:
        c.close()


def test_quit_exits_at_once(upperd):
    d = upperd(drain_timeout=30)
    workers = d.worker_pids()
    c = tcp_connect(d.tcp_port)
    try:
        c.sendall(b"open\n")
        assert recv_exactly(c, 5) == b"OPEN\n"
        t0 = time.monotonic()
        d.send_signal(signal.SIGQUIT)
        assert d.wait_exit(5) == 0
        assert time.monotonic() - t0 < 3
    finally:
        c.close()
    wait_until(lambda: not any(pid_alive(p) for p in workers), 5,
               msg="workers gone after QUIT")


def test_workers_die_with_supervisor(daemon):
    workers = daemon.worker_pids()
    assert len(workers) == 2
    os.kill(daemon.pid, signal.SIGKILL)
    assert daemon.wait_exit(5) == -signal.SIGKILL
    wait_until(lambda: not any(pid_alive(p) for p in workers), 10,
               msg="orphaned workers %r to exit" % workers)
    # nothing holds the ports any more
    wait_until(lambda: port_is_free(daemon.tcp_port), 5,
               msg="service port free")
    wait_until(lambda: port_is_free(daemon.stats_port), 5,
               msg="stats port free")


def test_pid_file_holds_pid_until_stop(upperd, tmp_path):
    pf = tmp_path / "upperd.pid"
    d = upperd(pid_file=str(pf))
    assert pf.read_text().strip() == str(d.pid)
    assert pf.read_text() in (str(d.pid), "%d\n" % d.pid)
    assert d.stop(signal.SIGTERM, 10) == 0
    assert not pf.exists()


def test_log_file_gets_well_formed_lines_and_one_ready(upperd):
    d = upperd()
    # /healthz may say 200 a moment before the line is written
    text = wait_until(lambda: d.log() if "ready" in d.log() else None, 3,
                      msg="the ready line")
    lines = text.splitlines()
    for ln in lines:
        assert LOG_LINE_RE.match(ln), "bad log line: %r" % ln
    ready = [ln for ln in lines if "ready" in ln and
             LOG_LINE_RE.match(ln).group(2) == "supervisor"]
    assert len(ready) == 1, lines
    for addr in ("127.0.0.1:%d" % d.tcp_port, "127.0.0.1:%d" % d.stats_port):
        assert addr in ready[0], ready[0]
    # the UDP address is the same ADDR:PORT as TCP here: it appears twice
    # or the line says udp next to it
    assert ready[0].count("127.0.0.1:%d" % d.tcp_port) >= 2 or \
        "udp" in ready[0].lower(), ready[0]
    # log lines do not go to stderr when --log-file is given
    assert not [ln for ln in d.stderr().splitlines()
                if LOG_LINE_RE.match(ln)], d.stderr()


def test_log_to_stderr_without_log_file(upperd):
    d = upperd(log_to_file=False)
    text = wait_until(lambda: d.stderr() if "ready" in d.stderr() else None,
                      5, msg="ready line on stderr")
    for ln in text.splitlines():
        assert LOG_LINE_RE.match(ln), "bad log line: %r" % ln


def test_usr1_reopens_log_file(upperd):
    d = upperd()
    rotated = d.log_path + ".1"
    os.rename(d.log_path, rotated)
    d.send_signal(signal.SIGUSR1)
    wait_until(lambda: os.path.exists(d.log_path), 5,
               msg="log file reopened")
    rotated_size = os.path.getsize(rotated)
    # something to log: a worker death
    pid = d.worker_pids()[0]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: str(pid) in d.log(), 10,
               msg="the death logged in the new file")
    # nothing more went to the rotated file
    assert os.path.getsize(rotated) == rotated_size
    for ln in d.log().splitlines():
        assert LOG_LINE_RE.match(ln), ln


def test_reload_dropping_log_file_logs_to_stderr(upperd, tmp_path):
    """A reload whose file no longer names a log file sends the
    supervisor's lines to stderr (the default), saying so in the old file
    first; nothing more is written to the old file."""
    log = tmp_path / "from-config.log"
    cfg = tmp_path / "upperd.conf"
    cfg.write_text("log-file = %s\n" % log)
    d = upperd(log_to_file=False, config=str(cfg))
    wait_until(lambda: log.exists() and "ready" in log.read_text(), 5,
               msg="the ready line in the configured log file")
    cfg.write_text("# log-file removed\n")
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: "logging to stderr" in log.read_text(), 5,
               msg="the switch announced in the old file")
    size = log.stat().st_size
    d.send_signal(signal.SIGTTIN)
    wait_until(lambda: "scaling up to 3 workers" in d.stderr(), 5,
               msg="a later line on stderr")
    for ln in d.stderr().splitlines():
        assert LOG_LINE_RE.match(ln), ln
    assert log.stat().st_size == size, log.read_text()


def need_root(what):
    """Dropping privileges takes root.  make test runs as root (it installs
    packages), so not being root fails the test, never skips it."""
    if os.geteuid() != 0:
        pytest.fail("%s needs root: run the system tests as root, as make "
                    "test does" % what, pytrace=False)


def test_user_nobody(upperd):
    need_root("--user")
    nobody = pwd.getpwnam("nobody")
    d = upperd(user="nobody")
    for pid in d.worker_pids():
        st = proc_status(pid)
        assert st["Uid"].split() == [str(nobody.pw_uid)] * 4, st["Uid"]
        assert st["Gid"].split() == [str(nobody.pw_gid)] * 4, st["Gid"]
        # supplementary groups dropped too (no root group left)
        assert "0" not in st.get("Groups", "").split(), st["Groups"]
    msg = b"as nobody\n"
    assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()
    assert udp_roundtrip(d.udp_port, b"as nobody") == b"AS NOBODY"
    # replaced workers drop privileges too
    old = d.worker_pids()[0]
    os.kill(old, signal.SIGKILL)

    def respawned():
        ws = d.stats()["workers"]
        pids = [w["pid"] for w in ws]
        return pids if (old not in pids and
                        all(w["state"] == "running" for w in ws)) else None

    for pid in wait_until(respawned, 15, msg="respawn"):
        assert proc_status(pid)["Uid"].split() == [str(nobody.pw_uid)] * 4
    assert d.stop(signal.SIGTERM, 10) == 0


def test_user_unknown(tmp_path):
    need_root("--user")
    from conftest import free_port, run_expect_exit
    p, s = free_port(), free_port()
    r = run_expect_exit(["--tcp", "127.0.0.1:%d" % p, "--udp",
                         "127.0.0.1:%d" % p, "--stats", "127.0.0.1:%d" % s,
                         "--user", "no-such-user-upperd"])
    assert r.returncode in (1, 2)
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert "no-such-user-upperd" in r.stderr


def test_user_log_reopened_after_rotation(upperd):
    """With --user the log file is handed to that user, so USR1 after a
    logrotate-style rename can reopen (create) it after the drop."""
    need_root("--user")
    import shutil
    import tempfile
    nobody = pwd.getpwnam("nobody")
    top = tempfile.mkdtemp(prefix="upperd-user-")
    try:
        os.chmod(top, 0o777)  # nobody must be able to create the new file
        log = os.path.join(top, "upperd.log")
        d = upperd(user="nobody", log_to_file=False, log_file=log)
        assert os.stat(log).st_uid == nobody.pw_uid
        os.rename(log, log + ".1")
        os.kill(d.pid, signal.SIGUSR1)

        def reopened():
            try:
                with open(log, "rb") as f:
                    return b"reopened" in f.read()
            except FileNotFoundError:
                return False

        wait_until(reopened, 10, msg="log reopened as nobody")
        assert os.stat(log).st_uid == nobody.pw_uid
        assert d.stop(signal.SIGTERM, 10) == 0
    finally:
        shutil.rmtree(top, ignore_errors=True)


SCHED_OTHER, SCHED_BATCH = 0, 3


def sched_policy(pid):
    """The policy field of /proc/<pid>/stat (field 41, after the comm)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[38])


@pytest.mark.parametrize("opt,sup,wrk", [
    (None, SCHED_BATCH, SCHED_OTHER),      # auto: idle workers do not batch
    ("auto", SCHED_BATCH, SCHED_OTHER),
    ("batch", SCHED_BATCH, SCHED_BATCH),
    ("normal", SCHED_OTHER, SCHED_OTHER)])
def test_sched_policy_set_on_workers_and_supervisor(upperd, opt, sup, wrk):
    d = upperd(sched_policy=opt)
    pids = d.worker_pids()
    assert len(pids) == 2
    assert [sched_policy(p) for p in pids] == [wrk, wrk]
    assert sched_policy(d.pid) == sup
    msg = b"scheduled\n"
    assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()
    assert d.stop(signal.SIGTERM, 10) == 0


def test_sched_policy_auto_follows_load(upperd):
    """auto: workers switch to SCHED_BATCH while many clients keep them
    busy, and back to SCHED_OTHER once the clients go quiet."""
    import threading
    d = upperd()
    pids = d.worker_pids()
    stop = threading.Event()
    errors = []

    def client(i):
        try:
            with tcp_connect(d.tcp_port) as s:
                n = 0
                while not stop.is_set():
                    msg = b"busy %d %d\n" % (i, n)
                    s.sendall(msg)
                    if recv_exactly(s, len(msg)) != msg.upper():
                        errors.append(i)
                        return
                    n += 1
                    time.sleep(0.005)
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: all(sched_policy(p) == SCHED_BATCH for p in pids),
                   10, msg="workers batch under load")
        # and stay so while the load lasts (six ticks)
        for _ in range(30):
            assert [sched_policy(p) for p in pids] == [SCHED_BATCH] * 2
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors
    wait_until(lambda: all(sched_policy(p) == SCHED_OTHER for p in pids),
               10, msg="workers back to SCHED_OTHER when quiet")
    assert d.stop(signal.SIGTERM, 10) == 0


def test_sched_policy_reload(upperd, tmp_path):
    """HUP applies a changed policy to the supervisor and the new workers."""
    conf = tmp_path / "upperd.conf"
    conf.write_text("sched-policy = normal\n")
    d = upperd(config=str(conf))
    old = d.worker_pids()
    assert [sched_policy(p) for p in old + [d.pid]] == [SCHED_OTHER] * 3
    conf.write_text("sched-policy = batch\n")
    os.kill(d.pid, signal.SIGHUP)

    def replaced():
        pids = d.worker_pids()
        return pids if len(pids) == 2 and not set(pids) & set(old) else None

    new = wait_until(replaced, 15, msg="workers replaced after HUP")
    assert [sched_policy(p) for p in new + [d.pid]] == [SCHED_BATCH] * 3
    assert d.stop(signal.SIGTERM, 10) == 0
