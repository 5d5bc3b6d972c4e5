"""
Defects found by the adversarial review of the second round, each pinned
by a test that failed before its fix.

1. USR2 during the lame duck of a graceful stop (--shutdown-delay) used to
   upgrade, and the new image forgot the stop: upperd served on forever
   after TERM, /healthz back at 200.  (A HUP there was ignored without a
   word; now it says so.)
2. Over TLS the gate hands a connection to libmicrohttpd with its
   ClientHello, before its request: clients that finish the handshake and
   then trickle their head filled libmicrohttpd's connection limit (or the
   fd limit, with no waiter left to shed) and every scrape, /healthz
   included, was refused for as long as the flood lasted.
3. LISTEN_FDS naming more fds than systemd (or a hostile environment)
   passed: the log file and the pid file, opened before the sockets were
   adopted, took those numbers and were closed as "not an IPv4 or IPv6
   socket": every later log line was lost and the pid file unlocked.
4. --check-config said "configuration ok" for --tcp off --udp off, which
   a start refuses (exit 2, nothing to serve).
5. With --user, the log file is opened as root and then handed to that
   user with fchown: a symlink the user put in its log directory made
   root append to, and give the user, any file of root's (a local root
   escalation, as nginx's CVE-2016-1247).
6. --stats-auth took "alice:secret<NUL>junk" for alice's password
   "secret": libmicrohttpd hands credentials over as C strings, cut at
   the NUL.
7. Two HUPs in a row under load reset connections: a replacement forked
   by the first reload, superseded by the second, was SIGKILLed, but it
   had already accepted connections (it serves before the supervisor sees
   it ready).  SPEC: a reload refuses and cuts none.
8. Over TLS the gate cannot read the request line, and libmicrohttpd
   answered a 100-byte method with 405 and a 9,000-byte target with 404,
   where SPEC (and the plain endpoint) give 400 and 414.
9. A binary installed again while the first was being tried (the probe
   can take up to --heartbeat-timeout) was executed unprobed at the point
   of no return: a broken one took the service down.
10. With --user and a pid file in a directory only root may write, the
    unprivileged supervisor could not unlink it at exit and left its pid
    there, for logrotate's postrotate to signal whatever process gets
    that pid next.  It is emptied now (the snippet skips an empty file).
11. make uninstall PREFIX="/opt/my upperd" ran rm -f /opt/my (the path
    split at the space: a file there was deleted), and make install made
    directories under the current one; both refuse such paths now.
"""

import base64
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

import conftest
from conftest import (REPO, UPPERD, http_get, http_request, run_expect_exit,
                      tcp_roundtrip, wait_until)
from lifecycle_load import (get_stats, log_matches,
                            signal_and_wait_consumed)
from test_stats_security import Pki, crypt_hash, https_get, start


@pytest.fixture
def exe(tmp_path, monkeypatch):
    """upperd started from a copy of the binary under test, so that an
    upgrade (if one happened) would find an executable at its path."""
    path = str(tmp_path / "sbin" / "upperd")
    os.makedirs(os.path.dirname(path))
    shutil.copyfile(UPPERD, path)
    os.chmod(path, 0o755)
    monkeypatch.setattr(conftest, "UPPERD", path)
    return path


# --------------------------------------------------------------------------
# 1. USR2 during the lame duck

def test_usr2_in_the_lame_duck_neither_upgrades_nor_cancels_the_stop(
        upperd, exe):
    d = upperd(workers=1, shutdown_delay=2)
    pids = set(d.worker_pids())
    t0 = time.monotonic()
    signal_and_wait_consumed(d.pid, signal.SIGTERM)
    assert http_get(d.stats_port, "/healthz")[2] == b"draining"
    signal_and_wait_consumed(d.pid, signal.SIGUSR2)
    signal_and_wait_consumed(d.pid, signal.SIGHUP)
    # still the lame duck: serving, healthz 503, the same worker
    msg = b"lame duck\n"
    assert tcp_roundtrip(d.tcp_port, msg) == msg.upper()
    st, _, body = http_get(d.stats_port, "/healthz")
    assert (st, body) == (503, b"draining"), d.diagnostics()
    doc = get_stats(d.stats_port)
    assert doc["upgrades"] == {"ok": 0, "failed": 0}, d.diagnostics()
    assert set(w["pid"] for w in doc["workers"] if w["pid"]) == pids
    # and the stop goes on: exit 0 once the delay is over
    assert d.wait_exit(15) == 0, d.diagnostics()
    assert time.monotonic() - t0 >= 2
    assert log_matches(d.log(), r"^upgrade: stopping, USR2 ignored"), \
        d.log()
    # the HUP too, and says so
    assert log_matches(d.log(), r"^reload: stopping, HUP ignored"), d.log()
    assert not log_matches(d.log(), r"^reloading:"), d.log()


# --------------------------------------------------------------------------
# 2. a TLS flood of handshaken clients trickling their request

class TlsTrickle:
    """Threads that keep `want` TLS connections open to port, each past
    its handshake and in the middle of a request head, sending one more
    header line every 2 s (libmicrohttpd's idle timeout is 10 s), and
    reconnecting whatever the server closes."""

    def __init__(self, port, want, threads=6):
        self.port = port
        self.want = want
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.open = 0
        self.threads = [threading.Thread(target=self.run, args=(
            want // threads + 1,), daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        try:
            t = self.ctx.wrap_socket(s)
            t.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            return t
        except (OSError, ssl.SSLError):
            s.close()
            raise

    def run(self, n):
        socks, last = [], time.monotonic()
        while not self.stop.is_set():
            if len(socks) < n:
                try:
                    socks.append(self.connect())
                    with self.lock:
                        self.open += 1
                except (OSError, ssl.SSLError):
                    self.stop.wait(0.01)
            else:
                self.stop.wait(0.05)
            if time.monotonic() - last >= 2:
                last = time.monotonic()
                kept = []
                for t in socks:
                    try:
                        t.sendall(b"X-Trickle: 1\r\n")
                        kept.append(t)
                    except (OSError, ssl.SSLError):
                        t.close()
                socks = kept
        for t in socks:
            t.close()

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)
            assert not t.is_alive()


def wrap_upperd(path, monkeypatch, script):
    """The upperd fixture starts upperd through the shell script at path,
    script with %s for upperd's path."""
    path.write_text("#!/bin/sh\n" + script % UPPERD + "\n")
    path.chmod(0o755)
    monkeypatch.setattr(conftest, "UPPERD", str(path))

def test_tls_trickling_flood_does_not_lock_scrapes_out(upperd, tmp_path,
                                                       monkeypatch):
    # 400 fds: the flood reaches the fd limit in seconds, not minutes
    # (the default hard limit here is 20,000; libmicrohttpd's TLS
    # connection limit, 2,048, is reached the same way, only slower)
    wrap_upperd(tmp_path / "upperd-400", monkeypatch,
                'ulimit -n 400 || exit 99\nexec %s "$@"')
    pki = Pki(tmp_path / "pki")
    cert, key = pki.server("srv")
    ctx = pki.context()
    d = start(upperd, cert, key, ctx=ctx, workers=1)
    flood = TlsTrickle(d.stats_port, 450)
    try:
        # as many as the fd limit allows (about 386 of 400 are left)
        wait_until(lambda: flood.open >= 380, 120,
                   msg="380 TLS connections opened")
        for _ in range(5):
            t0 = time.monotonic()
            st, _, body = https_get(d.stats_port, "/healthz", ctx,
                                    timeout=5)
            assert (st, body) == (200, b"ok")
            assert time.monotonic() - t0 < 2.0
            st, _, body = https_get(d.stats_port, "/metrics", ctx,
                                    timeout=5)
            assert st == 200 and b"upperd_build_info" in body
    finally:
        flood.close()
    assert d.alive()


# --------------------------------------------------------------------------
# 3. LISTEN_FDS claiming fds that were never passed

def test_listen_fds_never_takes_the_log_or_pid_file(upperd, tmp_path,
                                                    monkeypatch):
    # LISTEN_PID names upperd (the wrapper's pid, kept by exec) and
    # LISTEN_FDS claims two fds; none is open (Popen closes them)
    wrap_upperd(tmp_path / "activated", monkeypatch,
                'LISTEN_PID=$$ LISTEN_FDS=2 exec %s "$@"')
    pid_file = str(tmp_path / "upperd.pid")
    d = upperd(workers=1, pid_file=pid_file)
    wait_until(lambda: "ready: 1 worker" in d.log(), 10,
               msg="the ready line in the log file")
    # what is wrong is named: the fds claimed are not open
    assert re.search(r"warn .*LISTEN_FDS or LISTEN_FDNAMES malformed "
                     r"\(Bad file descriptor\)", d.log()), d.log()
    # the pid file is still locked: a second upperd is refused
    r = run_expect_exit(["--pid-file", pid_file, "--tcp", "127.0.0.1:0",
                         "--udp", "off", "--stats", "off"])
    assert r.returncode == 1 and str(d.pid) in r.stderr, r.stderr
    # and logging goes on into the file
    os.kill(d.pid, signal.SIGHUP)
    wait_until(lambda: "reloading: replacing workers" in d.log(), 10,
               msg="the reload line in the log file")


# --------------------------------------------------------------------------
# 4. --check-config and a start agree on "nothing to serve"

def test_check_config_refuses_what_a_start_refuses(tmp_path):
    cfg = tmp_path / "upperd.conf"
    cfg.write_text("tcp = off\nudp = off\nstats = off\n")
    start = run_expect_exit(["-c", str(cfg)])
    check = run_expect_exit(["--check-config", "-c", str(cfg)])
    assert start.returncode == 2, start.stderr
    assert (check.returncode, check.stderr) == (2, start.stderr)
    assert start.stderr == ("upperd: both --tcp and --udp are off: "
                            "nothing to serve\n")


# --------------------------------------------------------------------------
# 5. --user: the log file is never reached through the user's symlink

def test_user_cannot_get_roots_files_through_a_log_symlink(tmp_path):
    assert os.geteuid() == 0, "--user needs root: run the tests as root"
    nobody = pwd.getpwnam("nobody")
    logdir = tmp_path / "log"  # the --user account's own log directory
    logdir.mkdir()
    os.chown(str(logdir), nobody.pw_uid, nobody.pw_gid)
    victim = tmp_path / "root-only"
    victim.write_text("root's secret\n")
    victim.chmod(0o600)
    log = logdir / "upperd.log"
    os.symlink(str(victim), str(log))
    os.lchown(str(log), nobody.pw_uid, nobody.pw_gid)
    r = run_expect_exit(["--user", "nobody", "--log-file", str(log),
                         "--tcp", "127.0.0.1:0", "--udp", "off",
                         "--stats", "off", "-w", "1"])
    st = os.stat(str(victim))
    assert (st.st_uid, st.st_gid) == (0, 0), "the user got root's file"
    assert victim.read_text() == "root's secret\n"
    assert r.returncode == 1, r
    assert r.stderr == ("upperd: cannot open log file %s: Too many levels "
                        "of symbolic links\n" % log), r.stderr
    # a plain file there is still handed over (USR1 reopens it)
    os.unlink(str(log))
    d = conftest.Upperd(str(tmp_path), workers=1, log_to_file=False,
                        args=["--user", "nobody", "--log-file", str(log)])
    try:
        wait_until(lambda: "ready: 1 worker" in log.read_text(), 10,
                   msg="the ready line")
        assert os.stat(str(log)).st_uid == nobody.pw_uid
    finally:
        assert d.cleanup() == []


# --------------------------------------------------------------------------
# 6. Basic credentials with a NUL in them

def test_basic_auth_with_a_nul_is_not_the_password(upperd, tmp_path):
    users = tmp_path / "users"
    users.write_text("alice:%s\n" % crypt_hash("secret", "$6$"))
    d = start(upperd, auth=str(users), workers=1)

    def status(cred):
        tok = base64.b64encode(cred).decode()
        return http_request(d.stats_port, "/metrics",
                            headers={"Authorization": "Basic " + tok})[0]
    assert status(b"alice:secret") == 200
    for cred in (b"alice:secret\0junk", b"alice:secret\0", b"alice\0:secret",
                 b"alice\0x:secret", b"alice:secre"):
        assert status(cred) == 401, cred
    assert status(b"alice:secret") == 200


# --------------------------------------------------------------------------
# 7. a HUP that supersedes a starting replacement cuts nothing

def test_double_hup_under_load_cuts_no_connection(upperd):
    d = upperd(workers=2, drain_timeout=5)
    stop = threading.Event()
    lock = threading.Lock()
    done, errors = [0], []

    def client():
        i = 0
        while not stop.is_set():
            i += 1
            msg = b"request %d during reloads\n" % i
            try:
                reply = tcp_roundtrip(d.tcp_port, msg)
                ok = reply == msg.upper()
            except (OSError, AssertionError) as e:
                ok, reply = False, repr(e)
            with lock:
                done[0] += 1
                if not ok:
                    errors.append(reply)

    threads = [threading.Thread(target=client, daemon=True)
               for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(10):
            signal_and_wait_consumed(d.pid, signal.SIGHUP)
            signal_and_wait_consumed(d.pid, signal.SIGHUP)
            wait_until(lambda: d.healthz()[0] == 200, 30,
                       msg="every replacement serving")
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert done[0] > 100
    assert errors == [], (len(errors), done[0], errors[:5])
    assert "superseded before it served" in d.log(), d.log()


# --------------------------------------------------------------------------
# 8. over-long method and target over TLS

def tls_status(port, ctx, request):
    """The status code of the answer to a raw request over TLS."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            t.sendall(request)
            data = b""
            while b"\r\n" not in data:
                chunk = t.recv(4096)
                if not chunk:
                    break
                data += chunk
    return int(data.split(b" ")[1]) if data else None


def test_tls_long_method_is_400_long_target_414(upperd, tmp_path):
    pki = Pki(tmp_path / "pki")
    cert, key = pki.server("srv")
    ctx = pki.context()
    d = start(upperd, cert, key, ctx=ctx, workers=1)
    for req, want in (
            (b"A" * 100 + b" / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
             414),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200)):
        assert tls_status(d.stats_port, ctx, req) == want, req[:40]


# --------------------------------------------------------------------------
# 9. the file executed is the file the probe ran

def test_upgrade_refuses_a_file_replaced_while_it_was_tried(upperd, exe,
                                                            tmp_path):
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    d = upperd(workers=1)
    pids = set(d.worker_pids())
    # the new binary's probe installs the broken file over the path, then
    # answers the handshake as the real binary would
    tmp = exe + ".new"
    with open(tmp, "w") as f:
        f.write('#!/bin/sh\nif [ -n "$UPPERD_UPGRADE_PROBE" ]; then\n'
                '  cp %s %s.swap && mv %s.swap %s\nfi\nexec %s "$@"\n' %
                (broken, exe, exe, exe, UPPERD))
    os.chmod(tmp, 0o755)
    os.replace(tmp, exe)
    os.kill(d.pid, signal.SIGUSR2)
    doc = wait_until(lambda: (lambda x: x if x["upgrades"]["failed"] else
                              None)(get_stats(d.stats_port)), 15,
                     msg="the upgrade refused")
    assert doc["upgrades"] == {"ok": 0, "failed": 1}
    assert d.alive() and set(d.worker_pids()) == pids
    assert http_get(d.stats_port, "/healthz")[0] == 200
    assert log_matches(d.log(), r"^upgrade to .* failed, upperd \S+ serves "
                       r"on: it was replaced while it was being tried$"), \
        d.log()


# --------------------------------------------------------------------------
# 10. --user: a pid file upperd cannot remove names no process

def test_user_pid_file_left_empty_when_it_cannot_be_removed(upperd,
                                                            tmp_path):
    assert os.geteuid() == 0, "--user needs root: run the tests as root"
    run = tmp_path / "run"  # root's, as /run/upperd without the unit
    run.mkdir()
    run.chmod(0o755)
    pid_file = run / "upperd.pid"
    d = upperd(workers=1, user="nobody", pid_file=str(pid_file))
    assert pid_file.read_text().strip() == str(d.pid)
    assert d.stop(signal.SIGTERM, 15) == 0
    assert not pid_file.exists() or pid_file.read_text() == "", \
        pid_file.read_text()
    assert "cannot remove pid file %s, left empty" % pid_file in d.log()


# --------------------------------------------------------------------------
# 11. make uninstall with a space in a path

def test_uninstall_with_a_space_in_prefix_removes_nothing(tmp_path):
    mine = tmp_path / "my"  # what "PREFIX=<tmp>/my dir" would split off
    mine.write_text("not upperd's\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    r = subprocess.run(["make", "-s", "-C", REPO, "uninstall",
                        "PREFIX=%s/my dir" % tmp_path,
                        "SYSCONFDIR=%s/etc" % tmp_path], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120)
    out = r.stdout.decode(errors="replace")
    assert mine.exists(), out
    assert r.returncode != 0, out
    assert "a path with a space is not supported" in out, out
