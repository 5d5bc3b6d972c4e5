"""
make deb (SPEC, "Installing"): the Debian package is built from a copy of
the tree, passes lintian with no error, installs with dpkg -i (creating
the system user upperd), its /usr/sbin/upperd accepts the shipped config
with --check-config and serves on loopback as the user upperd, and
dpkg --purge leaves the machine as it was: no file, unit link or user of
the package left.

This test installs a package on the machine running it, as root (as the
suite's `make test` does with apt-get).  Every step is bounded in time;
the daemon it starts is stopped by its pid, and the package is purged
whatever fails.
"""

import glob
import os
import pwd
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import (BIN_DIR, REPO, free_port, http_get, tcp_roundtrip,
                      wait_until)
from test_install import make_env

PKG = "upperd"
# The package is built from the source the same way whatever build or
# engine the suite runs with: the Makefile runs this file in the plain pass
# only.
# Where the package puts things, or leaves traces of its units and user.
WATCHED = ("/etc", "/lib/systemd", "/usr/lib/systemd", "/usr/sbin",
           "/usr/bin", "/usr/share/man", "/usr/share/doc", "/usr/share",
           "/var/lib/systemd", "/var/log", "/run")
DPKG_LOCK_WAIT = 300  # another apt-get may hold the dpkg lock that long


def run(argv, timeout, env=None, check=True):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout, env=env)
    if check:
        assert p.returncode == 0, (argv, p.returncode, p.stdout[-4000:],
                                   p.stderr[-4000:])
    return p


def dpkg(*args):
    """dpkg, waiting (bounded) while another package manager holds its
    lock instead of failing on a busy machine."""
    deadline = time.monotonic() + DPKG_LOCK_WAIT
    while True:
        p = run(["dpkg"] + list(args), timeout=DPKG_LOCK_WAIT, check=False)
        locked = "lock" in p.stderr and ("held by" in p.stderr or
                                          "locked" in p.stderr)
        if not locked or time.monotonic() > deadline:
            assert p.returncode == 0, (args, p.stdout[-4000:],
                                       p.stderr[-4000:])
            return p
        time.sleep(1)  # the lock holder is not ours to watch


def installed():
    p = run(["dpkg-query", "-W", "-f=${Status}", PKG], timeout=30,
            check=False)
    return p.returncode == 0 and "installed" in p.stdout.split()


def machine_state():
    """What of the package can be seen: every path with "upper" in its
    name under the watched trees, and the user and group."""
    paths = set()
    for top in WATCHED:
        for d, dirs, files in os.walk(top):
            # /usr/share/man and the like are walked on their own
            dirs[:] = [x for x in dirs if os.path.join(d, x) not in WATCHED
                       and not os.path.join(d, x).startswith("/proc")]
            for n in dirs + files:
                if "upper" in n:
                    paths.add(os.path.join(d, n))
    ids = set()
    for db in ("passwd", "group"):
        p = run(["getent", db, PKG], timeout=10, check=False)
        if p.returncode == 0:
            ids.add((db, p.stdout.strip()))
    return paths, ids


@pytest.fixture
def clean_machine():
    """The state before, with any package left by an interrupted run of
    this test purged first; purges again at the end whatever happened."""
    if installed():
        dpkg("--purge", PKG)
    before = machine_state()
    assert not any(db == "passwd" for db, _ in before[1]), (
        "a user %s exists without the package: the test cannot tell "
        "what it changes" % PKG)
    yield before
    if installed():
        dpkg("--purge", PKG)


def build_deb(out):
    p = run(["make", "--no-print-directory", "-C", REPO, "deb",
             "DEB_OUT=%s" % out], timeout=1200, env=make_env())
    debs = glob.glob(os.path.join(out, "upperd_*.deb"))
    assert len(debs) == 1, (os.listdir(out), p.stdout[-2000:])
    return debs[0]


def version_of_checkout():
    """What the checkout's upperd reports: debian/changelog must keep
    up with it."""
    p = run([os.path.join(BIN_DIR, "upperd"), "--version"], timeout=10)
    return p.stdout.split()[-1]


def start_as_upperd(tcp, stats, log):
    """/usr/sbin/upperd on loopback ports as the package's user, with the
    shipped config; returns the Popen."""
    u = pwd.getpwnam(PKG)
    argv = ["setpriv", "--reuid=%d" % u.pw_uid, "--regid=%d" % u.pw_gid,
            "--clear-groups", "--no-new-privs", "--",
            "/usr/sbin/upperd", "-c", "/etc/upperd/upperd.conf",
            "--workers", "2", "--tcp", "127.0.0.1:%d" % tcp,
            "--udp", "127.0.0.1:%d" % tcp, "--stats", "127.0.0.1:%d" % stats]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)


def test_deb_builds_lints_installs_runs_and_purges(tmp_path, clean_machine):
    before = clean_machine
    out = tmp_path / "deb"
    out.mkdir()
    status_before = run(["git", "-C", REPO, "status", "--porcelain",
                         "--ignored"], timeout=30).stdout
    deb = build_deb(str(out))
    # The build happened in a copy: the checkout has nothing new.
    assert run(["git", "-C", REPO, "status", "--porcelain", "--ignored"],
               timeout=30).stdout == status_before

    info = run(["dpkg-deb", "--field", deb, "Package", "Version"],
               timeout=30).stdout
    assert "Package: upperd" in info
    version = version_of_checkout()
    assert re.search(r"^Version: %s(-|$)" % re.escape(version), info,
                     re.M), info
    lint = run(["lintian", "--fail-on", "error", deb], timeout=600,
               check=False)
    errors = [ln for ln in lint.stdout.splitlines() if ln.startswith("E:")]
    assert lint.returncode == 0 and errors == [], lint.stdout + lint.stderr

    dpkg("-i", deb)
    u = pwd.getpwnam(PKG)
    assert u.pw_uid < 1000 and u.pw_shell.endswith("nologin"), u
    conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", PKG],
                    timeout=30).stdout
    assert "/etc/upperd/upperd.conf" in conffiles, conffiles
    v = run(["/usr/sbin/upperd", "--version"], timeout=10).stdout
    assert v.split() == ["upperd", version], v
    unit = open("/lib/systemd/system/upperd.service").read()
    assert re.search(r"^ExecStart=/usr/sbin/upperd ", unit, re.M), unit
    assert re.search(r"^User=upperd$", unit, re.M), unit

    # The installed manuals are found by man(1).
    for name, sec in (("upperd", "8"), ("upperd.conf", "5"), ("upper", "1"),
                      ("upper-bench", "1")):
        w = run(["man", "-w", sec, name], timeout=30).stdout.strip()
        assert w == "/usr/share/man/man%s/%s.%s.gz" % (sec, name, sec), w
    page = run(["man", "-P", "cat", "8", "upperd"], timeout=60,
               env=dict(os.environ, MANWIDTH="80")).stdout
    assert "--check-config" in page and "upperd_worker_up" in page

    # What the unit's ExecStartPre and ExecReload run, as its user.
    u_ids = ["setpriv", "--reuid=%d" % u.pw_uid, "--regid=%d" % u.pw_gid,
             "--clear-groups", "--"]
    chk = run(u_ids + ["/usr/sbin/upperd", "--check-config", "-c",
                       "/etc/upperd/upperd.conf"], timeout=30, check=False)
    assert chk.returncode == 0, chk.stderr
    assert chk.stderr.strip().endswith("configuration ok"), chk.stderr


    tcp, stats = free_port(), free_port()
    with open(tmp_path / "upperd.log", "wb") as log:
        proc = start_as_upperd(tcp, stats, log)
        try:
            wait_until(lambda: proc.poll() is None and
                       http_get(stats, "/healthz", timeout=1.0)[0] == 200,
                       timeout=20, msg="installed upperd ready")
            assert tcp_roundtrip(tcp, b"hello deb\n") == b"HELLO DEB\n"
            st, _, body = http_get(stats, "/healthz")
            assert (st, body) == (200, b"ok")
            with open("/proc/%d/status" % proc.pid) as f:
                uid_line = [ln for ln in f if ln.startswith("Uid:")][0]
            assert uid_line.split()[1:] == [str(u.pw_uid)] * 4, uid_line
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=40) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    logtext = open(tmp_path / "upperd.log").read()
    assert "ready" in logtext, logtext

    dpkg("--purge", PKG)
    assert not installed()
    after = machine_state()
    assert after == before, ("left behind: %s; gone: %s" % (
        sorted(after[0] - before[0]) + sorted(after[1] - before[1]),
        sorted(before[0] - after[0]) + sorted(before[1] - after[1])))
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", tcp), timeout=1).close()
