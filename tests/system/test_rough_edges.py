"""
Rough edges an operator meets (issue 10, item 8): a TTOU at one worker is
said, not swallowed; log lines on standard error carry a timestamp like
the log file's, except on journald's stream (JOURNAL_STREAM), which stamps
them itself; after a HUP storm, replacements superseded before they served
are logged as such, not as "stopped (signal 9)", which reads like a crash.
"""

import os
import re
import signal
import subprocess
import time

from conftest import (LOG_LINE_RE, UPPERD, free_port, http_get,
                      tcp_roundtrip, wait_until)

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


def test_ttou_at_one_worker_is_logged(upperd):
    d = upperd(workers=2)
    d.send_signal(signal.SIGTTOU)
    wait_until(lambda: "scaling down to 1 worker, retiring worker 1"
               in d.log(), 5, msg="scaled down")
    d.send_signal(signal.SIGTTOU)
    line = wait_until(lambda: re.findall(r".*TTOU ignored.*", d.log()), 5,
                      msg="the refused TTOU logged")
    assert len(line) == 1 and " warn supervisor[" in line[0], d.log()
    assert "already at 1 worker" in line[0], line
    assert tcp_roundtrip(d.tcp_port, b"one") == b"ONE"


def start_on_stderr(tmp_path, env_extra=None, journal=False):
    """upperd logging to stderr (a file); with journal=True, JOURNAL_STREAM
    names that very file, as systemd does for a service's stderr."""
    err_path = tmp_path / "stderr"
    err = open(err_path, "wb")
    st = os.fstat(err.fileno())
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    if journal:
        env["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
    env.update(env_extra or {})
    stats = free_port()
    p = subprocess.Popen([UPPERD, "-w", "1", "--tcp",
                          "127.0.0.1:%d" % free_port(), "--udp", "off",
                          "--stats", "127.0.0.1:%d" % stats],
                         env=env, stdin=subprocess.DEVNULL, stdout=err,
                         stderr=err)
    err.close()
    try:
        wait_until(lambda: p.poll() is None and
                   http_get(stats, "/healthz", timeout=1)[0] == 200, 15,
                   msg="ready")
        p.send_signal(signal.SIGTERM)
        assert p.wait(15) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    return err_path.read_text().strip().split("\n")


def test_stderr_lines_are_stamped(tmp_path):
    lines = start_on_stderr(tmp_path)
    assert len(lines) >= 3, lines  # ready, shutting down, exiting
    for ln in lines:
        assert STAMP.match(ln) and LOG_LINE_RE.match(ln), ln


def test_journal_stream_lines_are_not_stamped(tmp_path):
    lines = start_on_stderr(tmp_path, journal=True)
    assert len(lines) >= 3, lines
    for ln in lines:
        assert not STAMP.match(ln) and LOG_LINE_RE.match(ln), ln


def test_other_journal_stream_still_stamped(tmp_path):
    """JOURNAL_STREAM naming another file (stderr redirected since)."""
    lines = start_on_stderr(tmp_path, {"JOURNAL_STREAM": "1:1"})
    assert all(STAMP.match(ln) for ln in lines), lines


def test_hup_storm_superseded_not_signal_9(upperd):
    """A HUP that arrives while the previous reload's replacements have
    not yet taken over (they swap in on the next 100 ms tick) supersedes
    them: logged as such, never as a worker stopped by signal 9."""
    d = upperd(workers=2)
    for _ in range(20):
        n = d.log().count("reloading: replacing workers")
        d.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while d.log().count("reloading: replacing workers") == n:
            assert time.monotonic() < deadline, d.log()
            time.sleep(0.001)
        d.send_signal(signal.SIGHUP)
        if wait_until(lambda: d.log().count("reloading: replacing") >= n + 2,
                      5) and "superseded before it served" in d.log():
            break
    log = d.log()
    assert re.search(r"worker \d replacement pid \d+ superseded before it "
                     r"served", log), log
    wait_until(lambda: all(w["state"] == "running" for w in
                           d.stats()["workers"]) and
               len(d.stats()["workers"]) == 2, 10, msg="settled")
    assert tcp_roundtrip(d.tcp_port, b"calm") == b"CALM"
    assert "signal 9" not in d.log(), d.log()
