"""
upperd under systemd, with the test playing systemd (SPEC, "Running under
systemd"): a NOTIFY_SOCKET datagram socket the test binds and reads
(READY/STATUS, RELOADING+MONOTONIC_USEC then READY on HUP, STOPPING, the
WATCHDOG=1 cadence and its stop when the supervisor's loop stops), socket
activation of TCP, UDP and stats through a small exec wrapper that puts the
sockets on fds 3.. and sets LISTEN_PID to its own pid before exec'ing
upperd, and the bad inputs: a wrong socket, a missing notify socket, a
WATCHDOG_USEC that is not a number.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import (UPPERD, assert_no_sanitizer, free_port, http_get,
                      tcp_roundtrip, udp_roundtrip, wait_until)


class Notify:
    """systemd's side of the notify protocol: an abstract datagram socket
    whose messages a thread collects as (monotonic time, {key: value})."""

    def __init__(self):
        self.name = "upperd-test-%d-%d" % (os.getpid(), id(self))
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.settimeout(0.2)
        self.msgs = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    @property
    def env(self):
        return "@" + self.name

    def _read(self):
        while self.running:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(l.split("=", 1) for l in
                          data.decode().split("\n") if "=" in l)
            with self.lock:
                self.msgs.append((time.monotonic(), fields))

    def all(self):
        with self.lock:
            return list(self.msgs)

    def with_key(self, key):
        return [(t, m) for t, m in self.all() if key in m]

    def wait(self, key, count=1, timeout=15, value=None):
        def got():
            hits = [(t, m) for t, m in self.with_key(key)
                    if value is None or re.search(value, m[key])]
            return hits if len(hits) >= count else None
        return wait_until(got, timeout, msg="%d x %s%s (got %r)" %
                          (count, key, "~" + value if value else "",
                           [m for _, m in self.all()
                            if "WATCHDOG" not in m][-8:]))

    def close(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def notify():
    n = Notify()
    yield n
    n.close()


def sequence(n):
    """The notify messages but the watchdog pings, as their first key."""
    out = []
    for _, m in n.all():
        for k in ("READY", "RELOADING", "STOPPING", "STATUS", "MAINPID"):
            if k in m:
                out.append(k)
                break
    return out


def test_notify_sequence(upperd, notify, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", notify.env)
    d = upperd(workers=2)
    _, ready = notify.wait("READY")[0]
    assert ready["READY"] == "1"
    assert re.match(r"^2/2 workers running, 0 TCP connections open, "
                    r"\d+ requests/s$", ready["STATUS"]), ready
    # STATUS follows what happens: one connection held open.
    s = socket.create_connection(("127.0.0.1", d.tcp_port), timeout=5)
    try:
        s.sendall(b"x")
        assert s.recv(1) == b"X"
        notify.wait("STATUS", value=r"1 TCP connections open")
    finally:
        s.close()
    before = time.monotonic()
    d.send_signal(signal.SIGHUP)
    t_rel, rel = notify.wait("RELOADING")[0]
    after = time.monotonic()
    assert rel["RELOADING"] == "1"
    usec = int(rel["MONOTONIC_USEC"])
    assert before * 1e6 <= usec <= after * 1e6, (before, usec, after)
    t_ready2, _ = notify.wait("READY", 2)[1]
    assert t_ready2 >= t_rel
    assert re.search(r"ready: 2 workers", d.log())
    d.stop()
    notify.wait("STOPPING")
    seq = sequence(notify)
    assert seq[0] == "READY", seq
    seq = [k for k in seq if k != "STATUS"]
    assert seq == ["READY", "RELOADING", "READY", "STOPPING"], seq
    # STATUS= lines at most once a second
    st = [t for t, m in notify.all() if list(m) == ["STATUS"]]
    assert all(b - a >= 0.9 for a, b in zip(st, st[1:])), st


def test_watchdog_cadence_and_stuck_loop(upperd, notify, monkeypatch):
    """WATCHDOG_USEC=2s: pings well within every 1 s (half of it; they
    come every ~0.5 s, so a loaded machine's delays still fit); none while
    the supervisor is stopped (its loop does not turn), again after CONT."""
    monkeypatch.setenv("NOTIFY_SOCKET", notify.env)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    d = upperd(workers=1)
    pings = notify.wait("WATCHDOG", 6)
    times = [t for t, _ in pings]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) <= 1.0, gaps
    os.kill(d.pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        # The measurement itself: an interval with no ping expected.
        time.sleep(1.5)
        during = [t for t, _ in notify.with_key("WATCHDOG")
                  if t > stopped_at + 0.05]
    finally:
        os.kill(d.pid, signal.SIGCONT)
    assert during == [], during
    n = len(notify.with_key("WATCHDOG"))
    notify.wait("WATCHDOG", n + 2, timeout=5)


def test_watchdog_pid_of_another_process(upperd, notify, monkeypatch):
    """WATCHDOG_PID names someone else: the watchdog is not ours."""
    monkeypatch.setenv("NOTIFY_SOCKET", notify.env)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    d = upperd(workers=1)
    notify.wait("READY")
    # Three whole ping intervals after readiness with not one ping.
    t = time.monotonic()
    wait_until(lambda: time.monotonic() - t > 0.6, 2)
    assert notify.with_key("WATCHDOG") == []
    assert "warn" not in d.log(), d.log()


def warn_lines(text):
    return [l for l in text.split("\n") if re.search(r"\bwarn\b", l)]


def test_watchdog_usec_not_a_number(upperd, notify, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", notify.env)
    monkeypatch.setenv("WATCHDOG_USEC", "soon")
    d = upperd(workers=1)
    notify.wait("READY")
    w = warn_lines(d.log())
    assert len(w) == 1 and 'WATCHDOG_USEC="soon"' in w[0], d.log()
    assert tcp_roundtrip(d.tcp_port, b"ok") == b"OK"
    t = time.monotonic()
    wait_until(lambda: time.monotonic() - t > 0.5, 2)
    assert notify.with_key("WATCHDOG") == []


def test_notify_socket_missing(upperd, monkeypatch, tmp_path):
    path = str(tmp_path / "no-such-socket")
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    d = upperd(workers=1)
    w = warn_lines(d.log())
    assert len(w) == 1 and path in w[0] and "not notifying" in w[0], d.log()
    assert tcp_roundtrip(d.tcp_port, b"ok") == b"OK"
    assert udp_roundtrip(d.udp_port, b"ok") == b"OK"


def test_notify_socket_abstract_nobody(upperd, monkeypatch):
    """An abstract socket nobody bound: found out at the first message,
    one warn line, serving goes on."""
    monkeypatch.setenv("NOTIFY_SOCKET", "@upperd-test-nobody-%d" % os.getpid())
    d = upperd(workers=1)
    wait_until(lambda: warn_lines(d.log()), 5, msg="the warn line")
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: len(re.findall("ready: ", d.log())) == 2, 10)
    w = warn_lines(d.log())
    assert len(w) == 1 and "not notifying" in w[0], d.log()


# --------------------------------------------------------------------------
# socket activation

# The exec wrapper: moves the sockets it is given (as fd numbers in argv)
# to 3, 4, ... and execs upperd with LISTEN_PID set to its own pid, as
# systemd does between fork and exec.
WRAPPER = r"""
import fcntl, os, sys
n = int(sys.argv[1])
src = [int(x) for x in sys.argv[2:2 + n]]
high = [fcntl.fcntl(f, fcntl.F_DUPFD_CLOEXEC, 100) for f in src]
for i, f in enumerate(high):
    os.dup2(f, 3 + i)
for f in high + [f for f in src if not 3 <= f < 3 + n]:
    os.close(f)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2 + n], sys.argv[2 + n:])
"""


def listener(family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 0))
    s.listen(64)
    return s


def dgram(family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((host, 0))
    return s


class Activated:
    """upperd started through the wrapper with socks on fds 3.. and
    LISTEN_FDNAMES from names (None: not set)."""

    def __init__(self, tmp_path, socks, names, args, fds_env=None,
                 stats_port=None, wait=True):
        self.log_path = str(tmp_path / "upperd.log")
        self.err_path = str(tmp_path / "upperd.stderr")
        env = dict(os.environ, LISTEN_FDS=fds_env or str(len(socks)))
        env.pop("NOTIFY_SOCKET", None)
        if names is not None:
            env["LISTEN_FDNAMES"] = ":".join(names)
        fds = [s.fileno() for s in socks]
        cmd = ([sys.executable, "-c", WRAPPER, str(len(fds))] +
               [str(f) for f in fds] +
               [UPPERD, "--log-file", self.log_path] + list(args))
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, env=env, pass_fds=fds,
                                         stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err)
        self.stats_port = stats_port
        if wait:
            self.wait_ready()

    def wait_ready(self):
        def up():
            assert self.proc.poll() is None, self.diag()
            return re.search(r"ready: ", self.log())
        wait_until(up, 15, msg="ready line")

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def diag(self):
        with open(self.err_path) as f:
            return "log:\n%s\nstderr:\n%s" % (self.log(), f.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("no exit after TERM\n" + self.diag())


@pytest.fixture
def activated(tmp_path):
    started = []

    def start(*a, **kw):
        d = tmp_path / ("a%d" % len(started))
        d.mkdir()
        u = Activated(d, *a, **kw)
        started.append(u)
        return u
    yield start
    for u in started:
        if u.proc.poll() is None:
            u.proc.kill()
            u.proc.wait(10)
    for u in started:
        assert_no_sanitizer(u.diag())


def refused(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=3).close()
    except ConnectionRefusedError:
        return True
    return False


def udp6(port, data):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.settimeout(5)
    try:
        s.sendto(data, ("::1", port))
        return s.recv(65536)
    finally:
        s.close()


def test_socket_activation_tcp_udp_stats(activated):
    """Named tcp and stats, an unnamed IPv6 listener (TCP) and an unnamed
    datagram socket (UDP): all served, none of the configured addresses
    bound, and still so after a reload."""
    t4, t6, u4, st = (listener(), listener(socket.AF_INET6, "::1"), dgram(),
                      listener())
    cfg_port, cfg_stats = free_port(), free_port()
    names = ["tcp", "x-other", "unknown", "stats"]
    try:
        a = activated([t4, t6, u4, st], names,
                      ["--tcp", "127.0.0.1:%d" % cfg_port,
                       "--udp", "127.0.0.1:%d" % cfg_port,
                       "--stats", "127.0.0.1:%d" % cfg_stats, "-w", "2"])
        p4, p6 = t4.getsockname()[1], t6.getsockname()[1]
        pu, ps = u4.getsockname()[1], st.getsockname()[1]
    finally:
        for s in (t4, t6, u4, st):
            s.close()  # upperd holds its own copies
    assert http_get(ps, "/healthz")[0] == 200
    assert tcp_roundtrip(p4, b"four") == b"FOUR"
    assert tcp_roundtrip(p6, b"six", host="::1") == b"SIX"
    assert udp_roundtrip(pu, b"dgram") == b"DGRAM"
    assert refused(cfg_port) and refused(cfg_stats)
    line = re.search(r"ready: .*", a.log()).group(0)
    assert ("tcp 127.0.0.1:%d [::1]:%d, udp 127.0.0.1:%d, stats "
            "http://127.0.0.1:%d/" % (p4, p6, pu, ps)) in line, line
    assert warn_lines(a.log()) == [], a.log()
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(re.findall("ready: ", a.log())) == 2, 10)
    assert tcp_roundtrip(p6, b"again", host="::1") == b"AGAIN"
    assert udp_roundtrip(pu, b"again") == b"AGAIN"
    assert a.stop() == 0


def test_socket_activation_partial(activated):
    """Only a UDP socket passed (no names): TCP and stats bind their
    configured addresses."""
    u6 = dgram(socket.AF_INET6, "::1")
    tport, sport = free_port(), free_port()
    try:
        a = activated([u6], None, ["--tcp", "127.0.0.1:%d" % tport,
                                   "--stats", "127.0.0.1:%d" % sport])
        pu = u6.getsockname()[1]
    finally:
        u6.close()
    assert udp6(pu, b"six") == b"SIX"
    assert tcp_roundtrip(tport, b"bound") == b"BOUND"
    assert http_get(sport, "/healthz")[0] == 200
    assert a.stop() == 0


def test_socket_activation_bad_sockets(activated, tmp_path):
    """A Unix socket and a TCP listener named udp: one warn line each,
    both unused; the good one is served and UDP binds as configured."""
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(tmp_path / "u.sock"))
    unix.listen(1)
    wrong, good = listener(), listener()
    uport = free_port()
    try:
        a = activated([unix, wrong, good], ["tcp", "udp", "tcp"],
                      ["--udp", "127.0.0.1:%d" % uport, "--stats", "off"])
        pw, pg = wrong.getsockname()[1], good.getsockname()[1]
    finally:
        for s in (unix, wrong, good):
            s.close()
    w = warn_lines(a.log())
    assert len(w) == 2, a.log()
    assert "fd 3 (tcp): not an IPv4 or IPv6 socket" in w[0], w
    assert "fd 4 (udp): named udp but a stream socket" in w[1], w
    assert tcp_roundtrip(pg, b"good") == b"GOOD"
    assert refused(pw)  # closed, not served
    assert udp_roundtrip(uport, b"bound") == b"BOUND"
    assert a.stop() == 0


def test_socket_activation_malformed_listen_fds(activated):
    tport = free_port()
    t = listener()
    try:
        a = activated([t], None, ["--tcp", "127.0.0.1:%d" % tport,
                                  "--udp", "off", "--stats", "off"],
                      fds_env="many")
    finally:
        t.close()
    w = warn_lines(a.log())
    assert len(w) == 1 and "LISTEN_FDS" in w[0], a.log()
    assert tcp_roundtrip(tport, b"bound") == b"BOUND"
    assert a.stop() == 0


def test_socket_activation_nothing_to_serve(activated, tmp_path):
    """Only an unusable socket and both kinds off: exit 2, one warn line
    and the one error line."""
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unix.bind(str(tmp_path / "d.sock"))
    try:
        a = activated([unix], None, ["--tcp", "off", "--udp", "off",
                                     "--stats", "off"], wait=False)
        rc = a.proc.wait(15)
    finally:
        unix.close()
    assert rc == 2, a.diag()
    with open(a.err_path) as f:
        err = f.read()
    assert err.strip().split("\n") == [
        "upperd: both --tcp and --udp are off: nothing to serve"], err
    assert len(warn_lines(a.log())) == 1, a.log()
