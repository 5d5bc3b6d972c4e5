"""
Binary upgrade on USR2 (issue 11, SPEC "Binary upgrade (USR2)").

upperd is started from a copy of the binary under test in a temporary
directory; an upgrade replaces that file (rename over it, as a package
manager does) and sends USR2.  The new binaries are this build's objects
linked with another version stamp (make stamped VERSION=...), so /stats
tells the builds apart, plus one stamped with another state layout.

1. five upgrades in a row under 20 TCP request/response clients and a UDP
   client: no failed connect, no wrong byte, no connection cut, no UDP
   loss; /stats sampled all along never fails and never goes down, ends
   exactly at what the clients sent and received; restart history, pid,
   start time and pid file carry over; build_info names the new version.
2. every kind of failed upgrade leaves the old binary serving (health 200,
   same workers, same version) with upgrades.failed counted and one log
   line saying why; a good upgrade afterwards still works.
3. HUP, a second USR2 and TERM during an upgrade wait for it, then act.
4. SIGKILL of the supervisor during an upgrade leaves no process behind
   holding the ports.
5. every listening address (--tcp/--udp given twice) carries over.
6. under systemd: activated sockets carry over; RELOADING=1, READY=1.
"""

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

import conftest
from conftest import (BIN_DIR, REPO, UPPERD, free_port, http_get, pid_alive,
                      port_is_free, run_expect_exit, tcp_roundtrip,
                      udp_roundtrip, wait_until)
from test_systemd import notify  # noqa: F401 (the fixture)
from lifecycle_load import (Load, StatsSampler, get_stats, log_matches,
                            pid_gone, wait_roundtrips)

NEW_A = "0.1.1-test"
NEW_B = "0.1.2-test"
BAD_LAYOUT = "0.1.9-layout99"
NO_RESTARTS = {"crash": 0, "hung": 0, "recycle": 0, "reload": 0}


# --------------------------------------------------------------------------
# the binaries

def _stamp(out_dir, version, layout=None):
    """Link this build's objects with another version (and state layout)
    into out_dir/upperd; bounded, and a failure fails the test."""
    san = os.path.realpath(BIN_DIR).endswith(os.path.join("asan", "bin"))
    cmd = ["make", "-s", "-C", REPO, "stamped", "STAMP_DIR=" + out_dir,
           "VERSION=" + version]
    if layout is not None:
        cmd.append("STATE_LAYOUT=%d" % layout)
    if san:
        cmd.append("SAN=1")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=600)
    assert r.returncode == 0, r.stdout.decode(errors="replace")[-4000:]
    path = os.path.join(out_dir, "upperd")
    v = subprocess.run([path, "--version"], stdout=subprocess.PIPE,
                       timeout=30).stdout.decode()
    assert version in v, v
    return path


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    d = tmp_path_factory.mktemp("builds")
    return {
        NEW_A: _stamp(str(d / "a"), NEW_A),
        NEW_B: _stamp(str(d / "b"), NEW_B),
        BAD_LAYOUT: _stamp(str(d / "bad"), BAD_LAYOUT, layout=99),
    }


def install(src, dst, mode=0o755):
    """Replace dst the way a package manager does: a new file renamed over
    the old path (the running image's file is never written)."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, mode)
    os.replace(tmp, dst)


def install_script(dst, text):
    tmp = dst + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dst)


@pytest.fixture
def exe(tmp_path, monkeypatch):
    """The path upperd is started from: a copy of the binary under test.
    conftest's UPPERD points there, so its pid checks know the processes."""
    path = str(tmp_path / "sbin" / "upperd")
    os.makedirs(os.path.dirname(path))
    install(UPPERD, path)
    monkeypatch.setattr(conftest, "UPPERD", path)
    return path


# --------------------------------------------------------------------------
# helpers

def pid_file_names(path, pid):
    with open(path) as f:
        return f.read().strip() == str(pid)


def upgraded(d, ok, version, old_pids):
    """/stats once upgrades.ok == ok, the version is the new one and every
    configured slot runs a worker that is not one of old_pids."""
    def check():
        doc = get_stats(d.stats_port)
        if doc["upgrades"]["ok"] != ok or doc["version"] != version:
            return None
        ws = [w for w in doc["workers"] if w["slot"] <
              doc["workers_configured"]]
        if all(w["state"] == "running" and w["pid"] and
               w["pid"] not in old_pids for w in ws):
            return doc
        return None
    return wait_until(check, 30, msg="upgrade %d to %s" % (ok, version))


def serves(d):
    msg = b"still serving\n"
    return tcp_roundtrip(d.tcp_port, msg) == msg.upper()


class UdpClient(threading.Thread):
    """One datagram at a time, each tagged with a sequence number, so a
    reply that comes late is told apart from a wrong one.  A datagram with
    no reply within 2 s is a loss."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop_evt = threading.Event()
        self.sent = self.received = self.lost = 0
        self.bytes_out = self.bytes_in = 0
        self.wrong = []
        self.crashed = None

    def run(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2.0)
        seq = 0
        try:
            while not self.stop_evt.is_set():
                seq += 1
                msg = b"datagram %d of the upgrade test" % seq
                s.sendto(msg, ("127.0.0.1", self.port))
                self.sent += 1
                self.bytes_out += len(msg)
                while True:
                    try:
                        reply = s.recv(2048)
                    except socket.timeout:
                        self.lost += 1
                        break
                    self.bytes_in += len(reply)
                    if reply == msg.upper():
                        self.received += 1
                        break
                    if not reply.startswith(b"DATAGRAM "):
                        self.wrong.append((seq, reply))
                        break
                    # a late reply to an earlier datagram: keep waiting
                self.stop_evt.wait(0.002)
        except Exception as e:
            self.crashed = repr(e)
        finally:
            s.close()

    def stop(self):
        self.stop_evt.set()
        self.join(10)
        assert not self.is_alive()


# --------------------------------------------------------------------------
# 1. five upgrades under load

def test_five_upgrades_under_load(upperd, exe, builds, tmp_path):
    pid_path = str(tmp_path / "upperd.pid")
    d = upperd(workers=2, pid_file=pid_path)
    first = get_stats(d.stats_port)
    start_time = first["start_time_seconds"]
    # some history for slot 0 before the upgrades: a crash
    os.kill(first["workers"][0]["pid"], signal.SIGKILL)
    doc = wait_until(lambda: (lambda x: x if x["workers_running"] == 2 and
                              x["workers"][0]["restarts"] == 1 else None)(
        get_stats(d.stats_port)), 15, msg="slot 0 respawned")
    seen = {w["pid"] for w in doc["workers"]}
    seen.add(first["workers"][0]["pid"])

    sampler = StatsSampler(d.stats_port, interval=0.05)
    sampler.start()
    load = Load(d.tcp_port, 20, seed=11, timeout=10.0,
                per_conn=lambda i: None if i < 10 else 25).start()
    udp = UdpClient(d.udp_port)
    udp.start()
    versions = [NEW_A, NEW_B, NEW_A, NEW_B, NEW_A]
    try:
        wait_roundtrips(load, 1000)
        for k, version in enumerate(versions):
            install(builds[version], exe)
            os.kill(d.pid, signal.SIGUSR2)
            doc = upgraded(d, k + 1, version, seen)
            seen.update(w["pid"] for w in doc["workers"])
            assert doc["pid"] == d.pid
            assert pid_file_names(pid_path, d.pid)
            m = d.metrics()
            assert m.get("upperd_build_info", version=version) == 1
            assert m.get("upperd_upgrades_total", result="ok") == k + 1
            assert m.get("upperd_upgrades_total", result="failed") == 0
            wait_roundtrips(load, 1000)
    finally:
        load.stop()
        udp.stop()
        sampler.stop()

    summary = load.summary() + " udp sent=%d received=%d lost=%d" % (
        udp.sent, udp.received, udp.lost)
    print("upgrade under load:", summary)
    assert load.collect("connect_failures") == [], summary
    assert load.collect("wrong") == [], summary
    assert load.collect("cut") == [], summary
    assert load.collect("stalls") == [], summary
    assert [c.crashed for c in load.clients if c.crashed] == []
    # the 10 long-lived connections lived through all 5 upgrades
    assert [c.connects for c in load.clients[:10]] == [1] * 10, summary
    assert udp.crashed is None and udp.wrong == [], (udp.crashed, udp.wrong)
    # one datagram in flight at a time never fills a socket buffer, and
    # every worker shares the one UDP socket: nothing may be lost
    assert udp.lost == 0, summary
    assert udp.sent > 50, summary

    # every scrape during the upgrades was answered; nothing went down
    assert sampler.errors == [], sampler.errors[:5]
    assert sampler.decreases == [], sampler.decreases[:5]
    assert sampler.samples >= 10

    def at_rest():
        x = get_stats(d.stats_port)
        if x["totals"]["tcp_connections_active"] or any(
                w["state"] != "running" for w in x["workers"]):
            return None
        return x
    doc = wait_until(at_rest, 20, msg="daemon at rest")
    t = doc["totals"]
    assert t["tcp_connections_accepted"] == load.total("connects")
    assert t["tcp_bytes_received"] == load.total("bytes_out")
    assert t["tcp_bytes_sent"] == load.total("bytes_in")
    assert t["tcp_lines_received"] == load.total("roundtrips")
    assert t["udp_datagrams_received"] == udp.sent
    assert t["udp_datagrams_sent"] == udp.received
    assert t["udp_bytes_received"] == udp.bytes_out
    assert t["udp_bytes_sent"] == udp.bytes_in

    # history, identity and uptime carried over
    assert doc["pid"] == d.pid and d.alive()
    assert doc["start_time_seconds"] == start_time
    assert doc["upgrades"] == {"ok": 5, "failed": 0}
    assert doc["version"] == NEW_A
    by_slot = {w["slot"]: w for w in doc["workers"]}
    assert by_slot[0]["restarts_by_reason"] == dict(NO_RESTARTS, crash=1,
                                                    reload=5)
    assert by_slot[1]["restarts_by_reason"] == dict(NO_RESTARTS, reload=5)
    assert doc["worker_restarts"] == 11
    assert pid_file_names(pid_path, d.pid)
    # and still locked by it: a second upperd names it and leaves the file
    p = free_port()
    r = run_expect_exit(["--pid-file", pid_path, "--tcp", "127.0.0.1:%d" % p,
                         "--udp", "127.0.0.1:%d" % p,
                         "--stats", "127.0.0.1:%d" % free_port()])
    assert r.returncode == 1, r.stderr
    assert "already running as pid %d" % d.pid in r.stderr, r.stderr
    assert pid_file_names(pid_path, d.pid)
    log = d.log()
    assert len(log_matches(log, r"^upgraded from upperd \S+ to upperd "
                                r"\S+, pid %d" % d.pid)) == 5, log
    assert log_matches(log, r"upgrade .* failed") == [], log
    assert d.stop() == 0
    assert not os.path.exists(pid_path)


# --------------------------------------------------------------------------
# 2. failed upgrades

PROBE_CRASH = """#!/usr/bin/python3
import os, signal
os.write(int(os.environ["UPPERD_UPGRADE_PIPE"]), b"ready\\n")
os.kill(os.getpid(), signal.SIGSEGV)
"""


# says ready, then removes itself: the supervisor's own execve then fails
PROBE_VANISH = """#!/usr/bin/python3
import os, sys
os.write(int(os.environ["UPPERD_UPGRADE_PIPE"]), b"ready\\n")
os.unlink(sys.argv[0])
"""


def test_failed_upgrades_leave_the_old_binary_serving(upperd, exe, builds,
                                                      tmp_path):
    d = upperd(workers=2, heartbeat_timeout=2)
    before = get_stats(d.stats_port)
    pids = {w["pid"] for w in before["workers"]}
    child_pid_file = str(tmp_path / "probe-child.pid")
    cases = [
        ("missing", lambda: os.unlink(exe), "No such file or directory"),
        ("not executable", lambda: install(builds[NEW_A], exe, 0o644),
         "not executable"),
        ("exits 1", lambda: install_script(exe, "#!/bin/sh\nexit 1\n"),
         "exited with status 1 without saying ready"),
        ("hangs", lambda: install_script(
            exe, "#!/bin/sh\nsleep 600 &\necho $! > %s\nwait\n" %
            child_pid_file), "not ready within 2s"),
        ("crashes after ready", lambda: install_script(exe, PROBE_CRASH),
         "killed by signal 11 after saying ready"),
        ("gone when executed", lambda: install_script(exe, PROBE_VANISH),
         "execve: No such file or directory"),
        ("incompatible layout", lambda: install(builds[BAD_LAYOUT], exe),
         "state layout 1, this build reads layout 99"),
    ]
    for k, (name, prepare, why) in enumerate(cases):
        prepare()
        t0 = time.monotonic()
        os.kill(d.pid, signal.SIGUSR2)
        doc = wait_until(lambda: (lambda x: x if x["upgrades"]["failed"] ==
                                  k + 1 else None)(get_stats(d.stats_port)),
                         15, msg="failed upgrade %d (%s)" % (k + 1, name))
        assert time.monotonic() - t0 < 10, name
        assert doc["upgrades"]["ok"] == 0, name
        assert doc["version"] == before["version"], name
        assert {w["pid"] for w in doc["workers"]} == pids, name
        assert doc["pid"] == d.pid and d.alive(), name
        st, _, body = http_get(d.stats_port, "/healthz")
        assert (st, body) == (200, b"ok"), name
        assert serves(d), name
        lines = log_matches(d.log(), r"^upgrade to (\S+) failed, upperd "
                                     r"\S+ serves on: (.*)$")
        assert len(lines) == k + 1, (name, d.log())
        assert lines[-1].group(1) == exe, lines[-1].group(0)
        assert why in lines[-1].group(2), (name, lines[-1].group(0))

    # the hung probe's own child went with it (killed as a group)
    with open(child_pid_file) as f:
        child = int(f.read())
    wait_until(lambda: pid_gone(child), 5, msg="hung probe's child gone")
    # nothing but the workers is left among the supervisor's children
    assert set(conftest.children_of(d.pid)) == pids

    # and a good binary still upgrades, the failures counted on
    install(builds[NEW_A], exe)
    os.kill(d.pid, signal.SIGUSR2)
    doc = upgraded(d, 1, NEW_A, pids)
    assert doc["upgrades"] == {"ok": 1, "failed": len(cases)}
    m = d.metrics()
    assert m.get("upperd_upgrades_total", result="failed") == len(cases)


# --------------------------------------------------------------------------
# 3. HUP, USR2 and TERM during an upgrade

def gated_probe(exe, target, gate):
    """A new executable whose probe waits until the file `gate` exists
    before it runs the real binary: the window in which the signals
    arrive, held open by the test however slow the machine is."""
    install_script(exe, '#!/bin/sh\nif [ -n "$UPPERD_UPGRADE_PROBE" ]; then\n'
                   '  while [ ! -e %s ]; do sleep 0.02; done\nfi\n'
                   'exec %s "$@"\n' % (gate, target))


def wait_log(d, pattern, n):
    return wait_until(lambda: len(log_matches(d.log(), pattern)) >= n, 15,
                      msg="%d log lines %r" % (n, pattern))


def test_signals_during_an_upgrade_wait_for_it(upperd, exe, builds,
                                               tmp_path):
    cfg = tmp_path / "upperd.conf"
    cfg.write_text("workers = 2\n")
    d = upperd(workers=None, config=str(cfg))
    pids = {w["pid"] for w in get_stats(d.stats_port)["workers"]}

    # HUP and a second USR2 while the probe runs: the upgrade finishes,
    # then the reload applies (3 workers), then the second upgrade runs
    gate = tmp_path / "gate1"
    gated_probe(exe, builds[NEW_A], gate)
    os.kill(d.pid, signal.SIGUSR2)
    wait_log(d, r"^upgrade: trying ", 1)
    cfg.write_text("workers = 3\n")
    os.kill(d.pid, signal.SIGHUP)
    wait_log(d, r"upgrade in progress: HUP waits", 1)
    os.kill(d.pid, signal.SIGUSR2)
    wait_log(d, r"upgrade in progress: USR2 waits", 1)
    # nothing happened yet: the same workers, no reload
    doc = get_stats(d.stats_port)
    assert doc["workers_configured"] == 2 and doc["upgrades"]["ok"] == 0
    assert {w["pid"] for w in doc["workers"]} == pids
    gate.write_text("")
    doc = upgraded(d, 2, NEW_A, pids)
    assert doc["workers_configured"] == 3
    assert doc["upgrades"] == {"ok": 2, "failed": 0}
    log = d.log()
    order = [m.group(0) for m in log_matches(
        log, r"^(upgraded from|reloading:|upgrade: trying)")]
    assert order == ["upgrade: trying", "upgraded from", "reloading:",
                     "upgrade: trying", "upgraded from"], log

    # TERM during an upgrade: it completes, then the graceful stop
    gate = tmp_path / "gate2"
    gated_probe(exe, builds[NEW_B], gate)
    os.kill(d.pid, signal.SIGUSR2)
    wait_log(d, r"^upgrade: trying ", 3)
    os.kill(d.pid, signal.SIGTERM)
    wait_log(d, r"upgrade in progress: TERM waits", 1)
    assert d.alive() and http_get(d.stats_port, "/healthz")[0] == 200
    gate.write_text("")
    assert d.wait_exit(30) == 0
    log = d.log()
    order = [m.group(0) for m in log_matches(
        log, r"^(upgraded from upperd \S+ to upperd [^\s,]+|shutting down)")]
    assert order[-2:] == ["upgraded from upperd %s to upperd %s" %
                          (NEW_A, NEW_B), "shutting down"], log


# --------------------------------------------------------------------------
# 4. SIGKILL during an upgrade

def test_sigkill_during_an_upgrade_leaves_nothing(upperd, exe, tmp_path):
    d = upperd(workers=2, heartbeat_timeout=60)
    workers = {w["pid"] for w in get_stats(d.stats_port)["workers"]}
    # a probe that hangs (exec: the probe process itself sleeps)
    install_script(exe, "#!/bin/sh\nexec sleep 600\n")
    os.kill(d.pid, signal.SIGUSR2)
    wait_log(d, r"^upgrade: trying ", 1)
    probe = wait_until(lambda: set(conftest.children_of(d.pid)) - workers,
                       10, msg="the probe process")
    assert len(probe) == 1
    (probe,) = probe
    os.kill(d.pid, signal.SIGKILL)
    d.wait_exit(10)
    wait_until(lambda: all(not pid_alive(p) or pid_gone(p)
                           for p in workers | {probe}), 10,
               msg="workers and probe gone")
    wait_until(lambda: port_is_free(d.tcp_port) and
               port_is_free(d.stats_port), 10, msg="ports free")


# --------------------------------------------------------------------------
# 5. several listening addresses

def test_upgrade_keeps_every_listening_address(upperd, exe, builds):
    p2 = free_port("127.0.0.2")
    d = upperd(workers=1, args=["--tcp", "127.0.0.2:%d" % p2,
                                "--udp", "127.0.0.2:%d" % p2])
    pids = {w["pid"] for w in get_stats(d.stats_port)["workers"]}
    install(builds[NEW_B], exe)
    os.kill(d.pid, signal.SIGUSR2)
    upgraded(d, 1, NEW_B, pids)
    for host, port in (("127.0.0.1", d.tcp_port), ("127.0.0.2", p2)):
        msg = b"served at %s\n" % host.encode()
        assert tcp_roundtrip(port, msg, host=host) == msg.upper()
        assert udp_roundtrip(port, msg, host=host) == msg.upper()
    ready = log_matches(d.log(), r"^upperd %s ready: .*127\.0\.0\.2:%d" %
                        (NEW_B, p2))
    assert len(ready) == 1, d.log()


# --------------------------------------------------------------------------
# 6. under systemd: socket activation and the notify protocol

def test_upgrade_under_systemd(notify, exe, builds, tmp_path):
    """Sockets passed by systemd (LISTEN_FDS) carry over like bound ones;
    RELOADING=1 when an upgrade starts, READY=1 once the new binary's
    workers serve (or at once when it failed); the pid never changes, so
    no MAINPID= naming another process."""
    from test_systemd import WRAPPER, dgram, listener, sequence
    t, u, st = listener(), dgram(), listener()
    ports = [s.getsockname()[1] for s in (t, u, st)]
    log_path = str(tmp_path / "upperd.log")
    env = dict(os.environ, LISTEN_FDS="3", LISTEN_FDNAMES="tcp:udp:stats",
               NOTIFY_SOCKET=notify.env)
    cmd = ([sys.executable, "-c", WRAPPER, "3"] +
           [str(s.fileno()) for s in (t, u, st)] +
           [exe, "--log-file", log_path, "--workers", "2"])
    with open(str(tmp_path / "upperd.stderr"), "wb") as err:
        proc = subprocess.Popen(cmd, env=env, pass_fds=[s.fileno() for s in
                                                         (t, u, st)],
                                stdin=subprocess.DEVNULL, stdout=err,
                                stderr=err)
    for s in (t, u, st):
        s.close()  # upperd holds its own copies
    try:
        notify.wait("READY")
        pids = {w["pid"] for w in get_stats(ports[2])["workers"]}
        install(builds[NEW_A], exe)
        os.kill(proc.pid, signal.SIGUSR2)
        notify.wait("RELOADING")
        notify.wait("READY", 2)
        doc = get_stats(ports[2])
        assert doc["upgrades"]["ok"] == 1 and doc["version"] == NEW_A
        assert doc["pid"] == proc.pid
        assert not pids & {w["pid"] for w in doc["workers"]}
        assert tcp_roundtrip(ports[0], b"activated") == b"ACTIVATED"
        assert udp_roundtrip(ports[1], b"activated") == b"ACTIVATED"
        # a failed one: RELOADING, then READY again at once
        install_script(exe, "#!/bin/sh\nexit 1\n")
        os.kill(proc.pid, signal.SIGUSR2)
        notify.wait("RELOADING", 2)
        notify.wait("READY", 3)
        assert get_stats(ports[2])["upgrades"] == {"ok": 1, "failed": 1}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    notify.wait("STOPPING")
    seq = [k for k in sequence(notify) if k != "STATUS"]
    assert seq == ["READY", "RELOADING", "READY", "RELOADING", "READY",
                   "STOPPING"], seq
    assert all(m["MAINPID"] == str(proc.pid) for _, m in
               notify.with_key("MAINPID")), notify.all()
    with open(log_path) as f:
        log = f.read()
    assert len(log_matches(log, r"^upgraded from upperd ")) == 1, log
    assert conftest.SANITIZER_MARKERS[0] not in log
