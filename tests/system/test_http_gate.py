"""
The stats endpoint's gate (supervisor/http_gate.c), which accepts stats
connections itself, holds each until its request has arrived and answers
the malformed ones before libmicrohttpd sees them: what a slow, partial,
bursty or closing client must not do to the supervisor, and what every
client is owed (an answer, then a clean close).
"""

import os
import socket
import time

from conftest import (recv_until_eof, status_of, tcp_connect)

GOOD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def cpu_seconds(pid):
    """User + system CPU time of pid so far, from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_over(pid, seconds):
    """CPU seconds pid uses over a measuring window of the given length."""
    c0 = cpu_seconds(pid)
    time.sleep(seconds)  # a measuring window, not a wait for readiness
    return cpu_seconds(pid) - c0


def test_partial_request_does_not_spin(daemon):
    """A request line still arriving, and one whose client went away, cost
    the supervisor nothing while they wait (they were level-triggered and
    only peeked at: epoll reported them ready in a loop, 100% CPU until the
    gate's deadline)."""
    held = tcp_connect(daemon.stats_port)
    held.sendall(b"GET /sta")
    gone = tcp_connect(daemon.stats_port)
    gone.sendall(b"GET /metr")
    gone.close()
    used = cpu_over(daemon.pid, 1.0)
    assert used < 0.25, "supervisor used %.2f s of CPU in 1 s" % used
    # the held one is still served once its request is complete
    held.sendall(b"ts HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = recv_until_eof(held, timeout=5)
    held.close()
    assert status_of(raw) == 200, raw[:80]


def test_half_closed_partial_request_dropped(daemon):
    """A client that sends part of a request line and shuts down its side
    can never finish it: the connection is closed at once, not kept (and
    polled) until the gate's deadline."""
    s = tcp_connect(daemon.stats_port)
    s.sendall(b"GET /st")
    s.shutdown(socket.SHUT_WR)
    try:
        got = recv_until_eof(s, timeout=3)
    except ConnectionResetError:
        got = b""
    s.close()
    assert got == b""
    assert daemon.healthz()[0] == 200
