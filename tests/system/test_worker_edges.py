"""
Edge cases of one worker's event loop, each once a real bug: an idle
expiry racing the connection's own input in one epoll batch, a draining
worker's stale UDP registration, accept(2) running out of fds, and
--idle-timeout cutting a reply that is still being taken.

Orderings that depend on timing are made deterministic from outside: a
worker is held with SIGSTOP (always continued in `finally`) while the
kernel queues the events of interest, and the test then checks, through
/proc, that they really are queued before it lets the worker go.  Every
other wait is a bounded poll.  Processes come from conftest's upperd
fixture and are signalled only through safe_kill.
"""

import os
import resource
import signal
import socket
import threading
import time

from conftest import recv_exactly, tcp_connect, udp_roundtrip, wait_until
from lifecycle_load import get_stats, log_events, safe_kill, slot_of


# --------------------------------------------------------------------------
# /proc helpers

def fds_of(pid, kind):
    """The fd numbers of pid whose link starts with kind, e.g.
    "anon_inode:[timerfd]" or "socket:"."""
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith(kind):
                out.append(int(fd))
        except OSError:
            pass
    return out


def timer_ticks(pid):
    """Expirations of the worker's timerfd not yet read by it."""
    fd, = fds_of(pid, "anon_inode:[timerfd]")
    with open("/proc/%d/fdinfo/%d" % (pid, fd)) as f:
        for line in f:
            if line.startswith("ticks:"):
                return int(line.split()[1])
    raise AssertionError("no ticks: in timerfd fdinfo")


def tcp_rx_queue(server_port, client_port):
    """Bytes queued, unread, on the server side of the loopback connection
    server_port <- client_port (from /proc/net/tcp)."""
    want = ("%04X" % server_port, "%04X" % client_port)
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            local, remote = p[1].split(":")[1], p[2].split(":")[1]
            if (local, remote) == want:
                return int(p[4].split(":")[1], 16)
    return 0


def cpu_seconds(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def accept_warnings(d):
    return [m for lvl, _, _, m in log_events(d.log())
            if lvl == "warn" and "accept4" in m]


def assert_serves(d, n=3):
    """n fresh connections each get their reply."""
    for i in range(n):
        s = tcp_connect(d.tcp_port, timeout=5)
        try:
            msg = b"fresh %d\n" % i
            s.sendall(msg)
            assert recv_exactly(s, len(msg), 5) == msg.upper()
        finally:
            s.close()


# --------------------------------------------------------------------------
# 1. idle expiry and the connection's input in one epoll batch

def test_idle_expiry_and_input_in_one_batch(upperd):
    """The worker wakes to a batch holding a timer tick, which finds the
    connection past --idle-timeout, followed by that connection's input.
    The input is handled first, so the connection is not idle: it gets its
    reply, and nothing is closed twice (once the tick closed it and the
    input event then closed the freed struct again: the active gauge
    wrapped below zero and the worker refused every connection after)."""
    d = upperd(workers=1, idle_timeout=1)
    wpid = slot_of(get_stats(d.stats_port), 0)["pid"]
    v = tcp_connect(d.tcp_port, timeout=5)
    try:
        wait_until(lambda: get_stats(d.stats_port)["totals"]
                   ["tcp_connections_active"] == 1, 5, msg="accepted")
        accepted_by = time.monotonic()
        assert safe_kill(wpid, signal.SIGSTOP, d.pid)
        try:
            # The tick becomes ready first, then the input arrives; both
            # wait in the ready list in that order.
            wait_until(lambda: timer_ticks(wpid) > 0, 2, msg="a tick")
            v.sendall(b"late")
            cport = v.getsockname()[1]
            wait_until(lambda: tcp_rx_queue(d.tcp_port, cport) == 4, 2,
                       msg="the input queued at the worker")
            # Deliberate: the connection must be past the timeout when the
            # worker looks at it.
            time.sleep(max(0.0, accepted_by + 1.2 - time.monotonic()))
        finally:
            safe_kill(wpid, signal.SIGCONT, d.pid)
        assert recv_exactly(v, 4, 5) == b"LATE"
    finally:
        v.close()
    wait_until(lambda: get_stats(d.stats_port)["totals"]
               ["tcp_connections_active"] == 0, 5, msg="closed once")
    assert_serves(d)
    # the worker sees assert_serves' closes a wakeup after the client
    t = wait_until(lambda: (lambda t: t if t["tcp_connections_active"] == 0
                            else None)(get_stats(d.stats_port)["totals"]),
                   5, msg="fresh connections closed")
    assert t["tcp_connections_active"] == 0, t
    assert t["tcp_connections_rejected"] == 0, t
    assert slot_of(get_stats(d.stats_port), 0)["pid"] == wpid


# --------------------------------------------------------------------------
# 2. a draining worker and the shared UDP socket

def test_draining_worker_leaves_udp_alone(upperd):
    """After a reload the old workers drain their TCP connections.  They
    closed their UDP fd, but the socket lives on in the other processes,
    so an epoll registration left behind kept waking them: recvmmsg(-1)
    failed with EBADF in a loop (a CPU each, udp_errors by the million)
    and took exclusive wakeups from the new workers, stalling replies."""
    d = upperd(workers=2, drain_timeout=20)
    held = [tcp_connect(d.tcp_port, timeout=5) for _ in range(6)]
    try:
        for s in held:
            s.sendall(b"x")
            assert recv_exactly(s, 1, 5) == b"X"
        old = [w["pid"] for w in get_stats(d.stats_port)["workers"]]
        nsock = {p: len(fds_of(p, "socket:")) for p in old}
        os.kill(d.pid, signal.SIGHUP)
        wait_until(lambda: all(w["pid"] not in old and w["state"] ==
                               "running" for w in
                               get_stats(d.stats_port)["workers"]),
                   10, msg="new workers running")
        draining = [p for p in old if os.path.exists("/proc/%d" % p)]
        assert draining, "no old worker kept a connection"
        # Draining has begun once an old worker has closed the listener
        # and the UDP socket and holds only its clients.
        for p in draining:
            wait_until(lambda: len(fds_of(p, "socket:")) == nsock[p] - 2, 5,
                       msg="worker %d to close the shared sockets" % p)
        e0 = get_stats(d.stats_port)["totals"]["udp_errors"]
        c0 = {p: cpu_seconds(p) for p in draining}
        end = time.monotonic() + 1.0
        i = 0
        while time.monotonic() < end:
            msg = b"ping %d" % i
            t = time.monotonic()
            assert udp_roundtrip(d.udp_port, msg, timeout=2) == msg.upper()
            assert time.monotonic() - t < 0.5, "reply took %.2fs" % (
                time.monotonic() - t)
            i += 1
        spent = {p: cpu_seconds(p) - c0[p] for p in draining}
        errors = get_stats(d.stats_port)["totals"]["udp_errors"] - e0
        assert errors == 0, "udp_errors +%d" % errors
        assert all(s < 0.3 for s in spent.values()), spent
    finally:
        for s in held:
            s.close()


# --------------------------------------------------------------------------
# 3. accept(2) out of fds

def test_emfile_pauses_accepting(upperd):
    """A worker out of fds stops accepting for a moment instead of
    retrying accept4 at once (a CPU spent and a warning per failure, some
    250,000 lines a second), warns once per episode, and serves the
    clients that waited once fds are free again."""
    d = upperd(workers=1, max_conns=1000)
    wpid = slot_of(get_stats(d.stats_port), 0)["pid"]
    old = resource.prlimit(wpid, resource.RLIMIT_NOFILE)
    clients = []
    try:
        # Room for exactly two more fds above the highest one open.
        top = max(int(fd) for fd in os.listdir("/proc/%d/fd" % wpid))
        resource.prlimit(wpid, resource.RLIMIT_NOFILE, (top + 3, old[1]))
        clients = [tcp_connect(d.tcp_port, timeout=5) for _ in range(6)]
        wait_until(lambda: accept_warnings(d), 5,
                   msg="accept4 to fail")
        c0 = cpu_seconds(wpid)
        # Deliberate observation window: what a retry loop would log.
        time.sleep(1.0)
        spent = cpu_seconds(wpid) - c0
        warned = len(accept_warnings(d))
        assert warned == 1, "%d accept4 warnings" % warned
        assert spent < 0.3, "worker spent %.2fs of CPU in 1 s" % spent
    finally:
        resource.prlimit(wpid, resource.RLIMIT_NOFILE, old)
    try:
        for i, s in enumerate(clients):
            msg = b"waited %d\n" % i
            s.sendall(msg)
            assert recv_exactly(s, len(msg), 5) == msg.upper()
    finally:
        for s in clients:
            s.close()
    t = get_stats(d.stats_port)["totals"]
    assert t["tcp_connections_accepted"] == 6, t
    assert t["tcp_connections_rejected"] == 0, t
    assert len(accept_warnings(d)) == 1, d.log()


# --------------------------------------------------------------------------
# 4. --idle-timeout and a reply still being taken

def test_idle_timeout_spares_a_reply_being_read(upperd):
    """A client sends a large request and takes the reply slowly but
    steadily.  The worker stops reading it while the reply is pending, so
    the client "sends nothing" for longer than --idle-timeout, yet it is
    not idle: it is taking our reply (like nginx's send_timeout).  It was
    cut mid-reply by a reset.  The worker's own writes are no measure:
    the kernel's send buffer holds seconds of this client's reading, so
    the worker may not write to it for longer than the timeout."""
    d = upperd(workers=1, idle_timeout=1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect(("127.0.0.1", d.tcp_port))
    req = b"abcdefgh\n" * ((4 << 20) // 9)

    def writer():
        try:
            s.sendall(req)
        except OSError:
            pass  # we close with most of it unsent

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    got = bytearray()
    try:
        # About 80 KB/s for 3 s, three times the timeout; every read
        # gets something, so the client is never idle for long.
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            b = s.recv(4096)
            assert b, "EOF after %d bytes" % len(got)
            got += b
            time.sleep(0.05)
    finally:
        s.close()
        t.join(5)
    assert bytes(got) == req[:len(got)].upper()
    assert get_stats(d.stats_port)["totals"]["tcp_idle_timeouts"] == 0


def test_idle_timeout_still_closes_a_client_that_takes_nothing(upperd):
    """The other side of the test above: a client that sends a large
    request and never reads its reply is still idle, pending output or
    not, and is closed within twice the timeout (plus a tick)."""
    d = upperd(workers=1, idle_timeout=1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect(("127.0.0.1", d.tcp_port))

    def writer():
        try:
            s.sendall(b"x" * (4 << 20))
        except OSError:
            pass  # closed by the server, or by us at the end

    t = threading.Thread(target=writer, daemon=True)
    try:
        t.start()
        wait_until(lambda: get_stats(d.stats_port)["totals"]
                   ["tcp_bytes_received"] > 0, 5, msg="the request read")
        start = time.monotonic()
        wait_until(lambda: get_stats(d.stats_port)["totals"]
                   ["tcp_idle_timeouts"] == 1, 5, msg="an idle timeout")
        assert time.monotonic() - start < 3.0
    finally:
        s.close()
        t.join(5)
