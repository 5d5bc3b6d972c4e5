"""
Signals with no meaning to upperd (SPEC "Robustness details"): ALRM,
WINCH, PIPE, real-time signals and the like (and USR2 to a worker) never
end or disturb the supervisor or a worker, and the supervisor notes each
once at debug.  ALRM and USR2 used to kill the supervisor without a word,
leaving its pid file behind.
"""

import os
import signal

from conftest import (LOG_LINE_RE, pid_alive, proc_status, tcp_roundtrip,
                      udp_roundtrip, wait_until)

# USR2 upgrades the supervisor; to a worker it means nothing.
MEANINGLESS = (signal.SIGALRM, signal.SIGWINCH,
               signal.SIGPIPE, signal.SIGVTALRM, signal.SIGPROF,
               signal.SIGIO, signal.SIGPWR, signal.SIGSTKFLT, signal.SIGURG,
               signal.SIGXCPU, signal.SIGXFSZ, signal.SIGTSTP,
               signal.SIGRTMIN, signal.SIGRTMIN + 5, signal.SIGRTMAX)


def serves(d):
    """TCP, UDP and every endpoint answer as they should."""
    assert tcp_roundtrip(d.tcp_port, b"still here\n") == b"STILL HERE\n"
    assert udp_roundtrip(d.udp_port, b"and here") == b"AND HERE"
    assert d.healthz()[:3:2] == (200, b"ok")
    d.metrics()


def unstopped(pid):
    """pid lives and is neither stopped (TSTP) nor a zombie."""
    return pid_alive(pid) and proc_status(pid)["State"][0] in "RSD"


def debug_lines(d, signo):
    """The supervisor's debug lines about signal signo."""
    out = []
    for line in d.log().splitlines():
        m = LOG_LINE_RE.match(line)
        if (m and m.group(1) == "debug" and m.group(2) == "supervisor" and
                "signal %d " % signo in m.group(4)):
            out.append(line)
    return out


def test_meaningless_signals_to_the_supervisor(upperd, tmp_path):
    pf = tmp_path / "upperd.pid"
    d = upperd(log_level="debug", pid_file=str(pf))
    workers = sorted(d.worker_pids())
    for sig in MEANINGLESS:
        for _ in range(3):
            d.send_signal(sig)
        # the line is the readiness check that the signal was handled
        wait_until(lambda: debug_lines(d, sig), 5,
                   msg="a debug line for signal %d" % sig)
        assert d.alive(), d.diagnostics()
        serves(d)
    for sig in MEANINGLESS:
        assert len(debug_lines(d, sig)) == 1, debug_lines(d, sig)
    assert sorted(d.worker_pids()) == workers
    assert all(unstopped(p) for p in workers + [d.pid])
    assert pf.read_text() == "%d\n" % d.pid
    assert d.stats()["worker_restarts"] == 0
    assert d.stop(signal.SIGTERM, 10) == 0
    assert not pf.exists()


def test_meaningless_signals_to_the_workers(upperd):
    d = upperd(workers=2)
    workers = sorted(d.worker_pids())
    for sig in MEANINGLESS + (signal.SIGHUP, signal.SIGINT, signal.SIGTTIN,
                              signal.SIGTTOU, signal.SIGUSR2):
        for w in workers:
            os.kill(w, sig)
        serves(d)
        assert all(unstopped(p) for p in workers), sig
    # a stopped (TSTP) or killed worker would show up here, once its
    # heartbeat went stale or it was reaped
    doc = d.stats()
    assert sorted(w["pid"] for w in doc["workers"]) == workers
    assert doc["worker_restarts"] == 0
    assert all(w["state"] == "running" for w in doc["workers"])
    assert d.stop(signal.SIGTERM, 10) == 0
