"""
The locked pid file (SPEC "Robustness details"): held with a lock while
upperd runs; a second upperd with the same --pid-file exits 1 naming the
running pid and leaves the file alone (it used to overwrite it, and
delete it on exit while the first still ran); a stale file, whose process
is gone and which nobody locks, is taken over.
"""

import fcntl
import os
import signal
import subprocess

import conftest
from conftest import free_port, pid_alive


def second_instance(pf):
    """A second upperd on other ports, with the same pid file."""
    return conftest.run_expect_exit(
        ["--tcp", "127.0.0.1:%d" % free_port(), "--udp", "off",
         "--stats", "off", "--workers", "1", "--pid-file", str(pf)])


def locked(pf):
    """True if some process holds a lock on pf (a flock we cannot take)."""
    with open(pf) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def holds_then_removes(d, pf, what=None):
    """d wrote its pid to pf and holds the lock; a SIGTERM stops it
    cleanly and removes pf."""
    assert pf.read_text() == "%d\n" % d.pid, what
    assert locked(pf)
    assert d.stop(signal.SIGTERM, 10) == 0
    assert not pf.exists()

def test_pid_file_is_locked_while_running(upperd, tmp_path):
    pf = tmp_path / "upperd.pid"
    holds_then_removes(upperd(pid_file=str(pf)), pf)


def test_second_instance_names_the_running_pid(upperd, tmp_path):
    pf = tmp_path / "upperd.pid"
    d = upperd(pid_file=str(pf))
    st = os.stat(pf)
    for _ in range(2):
        r = second_instance(pf)
        assert r.returncode == 1, r
        lines = r.stderr.splitlines()
        assert len(lines) == 1, lines
        assert str(d.pid) in lines[0] and str(pf) in lines[0], lines
    # the file is the same, untouched, and still locked
    assert pf.read_text() == "%d\n" % d.pid
    assert (os.stat(pf).st_ino, os.stat(pf).st_mtime_ns) == \
        (st.st_ino, st.st_mtime_ns)
    assert locked(pf)
    assert d.healthz()[0] == 200
    assert d.stop(signal.SIGTERM, 10) == 0
    assert not pf.exists()


def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen(["true"])
    p.wait(timeout=10)
    assert not pid_alive(p.pid)
    return p.pid


def test_stale_pid_file_is_taken_over(upperd, tmp_path):
    for stale in ("%d\n" % dead_pid(), "", "garbage", "99999999999999\n"):
        pf = tmp_path / "upperd.pid"
        pf.write_text(stale)
        holds_then_removes(upperd(pid_file=str(pf)), pf, stale)


def test_second_instance_after_the_first_stopped_starts(upperd, tmp_path):
    """A stop releases the lock: the next start is not refused."""
    pf = tmp_path / "upperd.pid"
    d = upperd(pid_file=str(pf))
    assert d.stop(signal.SIGTERM, 10) == 0
    e = upperd(pid_file=str(pf))
    assert pf.read_text() == "%d\n" % e.pid
    assert e.stop(signal.SIGTERM, 10) == 0
