"""
Defects found by the adversarial review of the second round, each pinned
by a test that failed before its fix.

1. USR2 during the lame duck of a graceful stop (--shutdown-delay) used to
   upgrade, and the new image forgot the stop: upperd served on forever
   after TERM, /healthz back at 200.
"""

import os
import shutil
import signal
import time

import pytest

import conftest
from conftest import UPPERD, http_get, tcp_roundtrip, wait_until
from lifecycle_load import (get_stats, log_matches,
                            signal_and_wait_consumed)


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
