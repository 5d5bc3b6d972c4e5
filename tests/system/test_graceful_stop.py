"""
Graceful stop as load balancers see it (SPEC, "Load balancers and graceful
stop"):

- from the first moment of a TERM or INT, /healthz answers 503 "draining"
  and /stats says "state": "draining" while open connections finish;
- --shutdown-delay S: a lame duck first.  /healthz is 503 "draining" and
  /stats "state" is "lame_duck" at once, yet new TCP connections and UDP
  datagrams are still served for S seconds; then the drain begins (new
  connections refused, open ones served to the end);
- a second TERM during the lame duck starts the drain at once; QUIT ends
  everything at once; HUP during the lame duck changes nothing;
- the option and config key: range 0-86400, bad values exit 2 with one
  line.
"""

import os
import signal
import socket
import time

import pytest

from conftest import (http_get, recv_exactly, run_expect_exit, tcp_connect,
                      udp_roundtrip, wait_until)


def state(d):
    return d.stats()["state"]


def healthz(d):
    st, _, body = http_get(d.stats_port, "/healthz", timeout=2)
    return st, body


def refused(port):
    """True when a new TCP connection to port is refused."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except ConnectionRefusedError:
        return True
    s.close()
    return False


def echo(s, data):
    s.sendall(data)
    assert recv_exactly(s, len(data)) == data.upper()


def test_running_state_and_healthz(daemon):
    assert state(daemon) == "running"
    assert healthz(daemon) == (200, b"ok")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_drain_says_draining_at_once(upperd, sig):
    d = upperd(workers=2, drain_timeout=20)
    held = tcp_connect(d.tcp_port)
    echo(held, b"before\n")
    try:
        d.send_signal(sig)
        # the very first answer after the signal is already 503
        t0 = time.monotonic()
        wait_until(lambda: healthz(d) == (503, b"draining"), timeout=2,
                   msg="/healthz 503 draining")
        assert time.monotonic() - t0 < 1.0
        assert state(d) == "draining"
        wait_until(lambda: refused(d.tcp_port), timeout=5,
                   msg="new connections refused")
        # the open connection is still served, and /healthz stays 503
        echo(held, b"during the drain\n")
        assert healthz(d) == (503, b"draining")
    finally:
        held.close()
    assert d.wait_exit(15) == 0


def test_shutdown_delay_lame_duck(upperd):
    d = upperd(workers=2, shutdown_delay=2, drain_timeout=20)
    held = tcp_connect(d.tcp_port)
    echo(held, b"held\n")
    try:
        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)
        wait_until(lambda: healthz(d) == (503, b"draining"), timeout=2,
                   msg="/healthz 503 draining in the lame duck")
        assert time.monotonic() - t0 < 1.0
        doc = d.stats()
        assert doc["state"] == "lame_duck"
        assert doc["workers_running"] == 2
        assert all(w["state"] == "running" for w in doc["workers"])
        # still accepting and serving, TCP and UDP, for the whole delay
        served = 0
        while time.monotonic() - t0 < 1.6:
            c = tcp_connect(d.tcp_port)
            echo(c, b"new client %d\n" % served)
            c.close()
            assert udp_roundtrip(d.udp_port, b"dgram %d" % served) == \
                b"DGRAM %d" % served
            served += 1
        assert served >= 5, served
        assert state(d) == "lame_duck"
        # then the drain: refused, the held connection still served
        wait_until(lambda: refused(d.tcp_port), timeout=5,
                   msg="drain after the delay")
        lame = time.monotonic() - t0
        assert 1.9 <= lame <= 3.5, lame
        assert state(d) == "draining"
        echo(held, b"still here\n")
        assert "lame duck for 2s" in d.log()
    finally:
        held.close()
    assert d.wait_exit(15) == 0


def test_second_term_ends_the_lame_duck(upperd):
    d = upperd(workers=1, shutdown_delay=60)
    d.send_signal(signal.SIGTERM)
    wait_until(lambda: state(d) == "lame_duck", timeout=5, msg="lame duck")
    assert not refused(d.tcp_port)
    t0 = time.monotonic()
    d.send_signal(signal.SIGTERM)
    assert d.wait_exit(10) == 0
    assert time.monotonic() - t0 < 5
    assert "lame duck cut short" in d.log()


def test_quit_skips_the_lame_duck(upperd):
    d = upperd(workers=2, shutdown_delay=60)
    t0 = time.monotonic()
    d.send_signal(signal.SIGQUIT)
    assert d.wait_exit(10) == 0
    assert time.monotonic() - t0 < 5
    assert "lame duck" not in d.log()


def test_quit_during_the_lame_duck(upperd):
    d = upperd(workers=2, shutdown_delay=60)
    d.send_signal(signal.SIGTERM)
    wait_until(lambda: state(d) == "lame_duck", timeout=5, msg="lame duck")
    t0 = time.monotonic()
    d.send_signal(signal.SIGQUIT)
    assert d.wait_exit(10) == 0
    assert time.monotonic() - t0 < 5


def test_hup_during_the_lame_duck_changes_nothing(upperd):
    d = upperd(workers=2, shutdown_delay=60)
    pids = sorted(d.worker_pids())
    d.send_signal(signal.SIGTERM)
    wait_until(lambda: state(d) == "lame_duck", timeout=5, msg="lame duck")
    d.send_signal(signal.SIGHUP)
    d.send_signal(signal.SIGTTIN)   # scaling is still served: harmless
    # HUP is read before the TTIN it was sent before: once the new worker
    # shows, the HUP has been handled
    wait_until(lambda: d.stats()["workers_configured"] == 3, timeout=5,
               msg="TTIN handled")
    doc = d.stats()
    assert doc["state"] == "lame_duck"
    assert sorted(w["pid"] for w in doc["workers"][:2]) == pids
    assert all(w["restarts"] == 0 for w in doc["workers"])
    assert "reloading" not in d.log()
    d.send_signal(signal.SIGQUIT)
    assert d.wait_exit(10) == 0


def test_crash_in_the_lame_duck_is_respawned(upperd):
    """The lame duck keeps serving fully: a worker that dies is replaced."""
    d = upperd(workers=2, shutdown_delay=60)
    d.send_signal(signal.SIGTERM)
    wait_until(lambda: state(d) == "lame_duck", timeout=5, msg="lame duck")
    victim = d.stats()["workers"][0]["pid"]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: (lambda w: w["pid"] not in (None, victim) and
                        w["state"] == "running")(d.stats()["workers"][0]),
               timeout=10, msg="slot 0 respawned during the lame duck")
    assert state(d) == "lame_duck"
    assert healthz(d) == (503, b"draining")
    d.send_signal(signal.SIGQUIT)
    assert d.wait_exit(10) == 0


def test_config_key_and_status_page(upperd, tmp_path):
    conf = tmp_path / "upperd.conf"
    conf.write_text("shutdown-delay = 86400\n")
    d = upperd(workers=1, config=str(conf))
    st, _, body = http_get(d.stats_port, "/")
    assert st == 200
    html = body.decode()
    assert 'id="state"' in html and "'state'" in html
    d.send_signal(signal.SIGTERM)
    wait_until(lambda: state(d) == "lame_duck", timeout=5, msg="lame duck")
    d.send_signal(signal.SIGQUIT)
    assert d.wait_exit(10) == 0


@pytest.mark.parametrize("value", ["-1", "86401", "abc", "1.5", ""])
def test_bad_shutdown_delay(value):
    r = run_expect_exit(["--shutdown-delay", value, "--tcp", "off",
                         "--udp", "off", "--stats", "off"])
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "shutdown-delay" in lines[0], r.stderr


def test_help_names_the_option():
    r = run_expect_exit(["--help"])
    assert r.returncode == 0
    assert "--shutdown-delay S" in r.stdout + r.stderr
