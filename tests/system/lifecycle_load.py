"""
Helpers for test_lifecycle.py: load clients that check every reply byte,
a /stats sampler that checks counters never go down, a chaos killer, and
small /proc helpers (signal consumption, pid liveness).

Everything generic (starting the daemon, wait_until, HTTP/TCP helpers) comes
from conftest.py; only what the lifecycle tests need on top lives here.
"""

import json
import os
import random
import re
import socket
import threading
import time

from conftest import (COUNTERS, GAUGES, LOG_LINE_RE, http_get, is_upperd,
                      ppid_of, proc_status, wait_until)

# Counters that must never go down (the gauge excepted).
MONOTONIC = tuple(c for c in COUNTERS if c not in GAUGES)

LOWER = "abcdefghijklmnopqrstuvwxyz     "


# --------------------------------------------------------------------------
# /proc helpers

def signal_pending(pid, sig):
    """True while sig is pending (not yet consumed) for process pid.  The
    supervisor blocks its signals and reads them from a signalfd, so a
    signal leaves ShdPnd exactly when the supervisor reads it, and it acts
    on it before it answers its next HTTP request."""
    st = proc_status(pid)
    bit = 1 << (int(sig) - 1)
    return bool(int(st.get("ShdPnd", "0"), 16) & bit or
                int(st.get("SigPnd", "0"), 16) & bit)


def signal_and_wait_consumed(pid, sig, timeout=5.0):
    """Send sig to pid and wait (bounded) until the process has read it."""
    os.kill(pid, sig)
    wait_until(lambda: not signal_pending(pid, sig), timeout,
               msg="pid %d to consume signal %d" % (pid, sig))


def pid_gone(pid):
    """True once pid does not exist or is a zombie (dead, not yet reaped)."""
    try:
        st = proc_status(pid)
    except OSError:
        return True
    return st.get("State", "").startswith(("Z", "X"))


# --------------------------------------------------------------------------
# /stats helpers

def get_stats(port, timeout=5.0):
    st, _, body = http_get(port, "/stats", timeout=timeout)
    assert st == 200, (st, body[:200])
    return json.loads(body)


def slot_of(doc, slot):
    ws = [w for w in doc["workers"] if w["slot"] == slot]
    assert len(ws) == 1, ("slot %d listed %d times" % (slot, len(ws)), doc)
    return ws[0]


def brief(doc):
    """A compact view of a /stats document for assertion messages."""
    return {
        "configured": doc.get("workers_configured"),
        "running": doc.get("workers_running"),
        "workers": [(w["slot"], w["pid"], w["state"], w["restarts_by_reason"],
                     w["last_exit"]) for w in doc.get("workers", [])],
    }


def counter_decreases(prev, cur):
    """Every counter that went down between two /stats documents, in totals
    and per slot (a slot's counters carry on across its workers)."""
    bad = []
    for k in MONOTONIC:
        if cur["totals"][k] < prev["totals"][k]:
            bad.append("totals.%s %d -> %d" % (k, prev["totals"][k],
                                               cur["totals"][k]))
    before = {w["slot"]: w for w in prev["workers"]}
    for w in cur["workers"]:
        p = before.get(w["slot"])
        if p is None:
            continue
        for k in MONOTONIC:
            if w[k] < p[k]:
                bad.append("slot %d %s %d -> %d" % (w["slot"], k, p[k],
                                                    w[k]))
    return bad


class StatsSampler(threading.Thread):
    """GET /stats every `interval` seconds until stopped; records every
    counter decrease between consecutive samples and every failed fetch."""

    def __init__(self, port, interval=0.1):
        super().__init__(daemon=True)
        self.port = port
        self.interval = interval
        self.stop_evt = threading.Event()
        self.samples = 0
        self.decreases = []   # (sample index, [descriptions])
        self.errors = []      # (time, repr)
        self.last = None

    def run(self):
        prev = None
        while not self.stop_evt.is_set():
            try:
                doc = get_stats(self.port, timeout=5.0)
            except Exception as e:  # recorded, the test decides
                self.errors.append((time.monotonic(), repr(e)))
            else:
                self.samples += 1
                if prev is not None:
                    bad = counter_decreases(prev, doc)
                    if bad:
                        self.decreases.append((self.samples, bad))
                prev = doc
                self.last = doc
            self.stop_evt.wait(self.interval)

    def stop(self):
        self.stop_evt.set()
        self.join(15)
        assert not self.is_alive(), "stats sampler did not stop"


# --------------------------------------------------------------------------
# load clients

class Client(threading.Thread):
    """One TCP client doing request/response without pause: a random
    lowercase line with '\\n', then read until the whole uppercase reply is
    there, checking every byte as it arrives.

    per_conn: close and reconnect after that many round trips (None: keep
    one connection for the whole run).
    chaos: a connection closed or reset by the server mid-request is
    expected (a killed worker): count it and reconnect.  Otherwise it is a
    failure ("cut").
    Failures are recorded, never raised: the test asserts on them."""

    def __init__(self, port, stop_evt, seed, per_conn=None, chaos=False,
                 timeout=10.0, host="127.0.0.1"):
        super().__init__(daemon=True)
        self.port = port
        self.host = host
        self.stop_evt = stop_evt
        self.rng = random.Random(seed)
        self.per_conn = per_conn
        self.chaos = chaos
        self.timeout = timeout
        self.connects = 0
        self.roundtrips = 0
        self.bytes_out = 0       # request bytes written
        self.bytes_in = 0        # reply bytes read
        self.resets = 0          # chaos: connection lost mid-request
        self.connect_failures = []
        self.wrong = []
        self.cut = []            # connection lost although it should not be
        self.stalls = []         # no (complete) reply within timeout
        self.crashed = None      # an unexpected exception in the client

    def failures(self):
        return (self.connect_failures + self.wrong + self.cut + self.stalls +
                ([self.crashed] if self.crashed else []))

    def _line(self):
        n = self.rng.randint(1, 120)
        return ("".join(self.rng.choice(LOWER) for _ in range(n)) +
                "\n").encode()

    def _connect(self):
        try:
            s = socket.create_connection((self.host, self.port),
                                         timeout=self.timeout)
        except OSError as e:
            self.connect_failures.append((time.monotonic(), repr(e)))
            return None
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(self.timeout)
        self.connects += 1
        return s

    def _lost(self, what):
        if self.chaos:
            self.resets += 1
        else:
            self.cut.append((time.monotonic(), what))

    def _roundtrip(self, s):
        """One request/response; returns True if the connection is still
        usable."""
        line = self._line()
        want = line.upper()
        try:
            s.sendall(line)
            self.bytes_out += len(line)
        except OSError as e:
            self._lost("send: %r after %d round trips on this connection" %
                       (e, self._on_conn))
            return False
        got = b""
        deadline = time.monotonic() + self.timeout
        while len(got) < len(want):
            left = deadline - time.monotonic()
            if left <= 0:
                self.stalls.append((time.monotonic(), "got %r of %r" %
                                    (got, want)))
                return False
            s.settimeout(left)
            try:
                b = s.recv(len(want) - len(got))
            except socket.timeout:
                continue
            except OSError as e:
                self._lost("recv: %r with %d of %d reply bytes" %
                           (e, len(got), len(want)))
                return False
            if not b:
                self._lost("EOF with %d of %d reply bytes" % (len(got),
                                                              len(want)))
                return False
            got += b
            self.bytes_in += len(b)
            if got != want[:len(got)]:
                self.wrong.append((time.monotonic(), "sent %r got %r" %
                                   (line, got)))
                return False
        self.roundtrips += 1
        return True

    def run(self):
        s = None
        self._on_conn = 0
        try:
            while not self.stop_evt.is_set():
                if s is None:
                    s = self._connect()
                    self._on_conn = 0
                    if s is None:
                        self.stop_evt.wait(0.05)
                        continue
                if not self._roundtrip(s):
                    s.close()
                    s = None
                    continue
                self._on_conn += 1
                if self.per_conn and self._on_conn >= self.per_conn:
                    s.close()
                    s = None
        except Exception as e:
            self.crashed = (time.monotonic(), repr(e))
        finally:
            if s is not None:
                s.close()


class Load:
    """A group of Clients started together and stopped together."""

    def __init__(self, port, n, seed=1, timeout=10.0, chaos=False,
                 per_conn=None):
        self.stop_evt = threading.Event()
        if not callable(per_conn):
            pc = per_conn
            per_conn = lambda i: pc  # noqa: E731
        self.clients = [Client(port, self.stop_evt, seed * 1000 + i,
                               per_conn=per_conn(i), chaos=chaos,
                               timeout=timeout) for i in range(n)]

    def start(self):
        for c in self.clients:
            c.start()
        return self

    def stop(self, timeout=45.0):
        self.stop_evt.set()
        deadline = time.monotonic() + timeout
        for c in self.clients:
            c.join(max(0.0, deadline - time.monotonic()))
        alive = [c for c in self.clients if c.is_alive()]
        assert not alive, "%d load clients still running" % len(alive)

    def total(self, attr):
        return sum(getattr(c, attr) for c in self.clients)

    def collect(self, attr):
        out = []
        for i, c in enumerate(self.clients):
            out += [(i,) + tuple(x) for x in getattr(c, attr)]
        return sorted(out, key=lambda x: x[1])

    def summary(self):
        return ("connects=%d roundtrips=%d resets=%d connect_failures=%d "
                "wrong=%d cut=%d stalls=%d crashed=%d" % (
                    self.total("connects"), self.total("roundtrips"),
                    self.total("resets"),
                    len(self.collect("connect_failures")),
                    len(self.collect("wrong")), len(self.collect("cut")),
                    len(self.collect("stalls")),
                    sum(1 for c in self.clients if c.crashed)))


def wait_roundtrips(load, n, timeout=10.0):
    """Wait until the load has completed at least n more round trips."""
    start = load.total("roundtrips")
    wait_until(lambda: load.total("roundtrips") >= start + n, timeout,
               msg="%d round trips (%s)" % (n, load.summary()))


# --------------------------------------------------------------------------
# logs

def log_events(text):
    """Parsed log lines: (level, process, pid, message)."""
    out = []
    for line in text.splitlines():
        m = LOG_LINE_RE.match(line)
        if m:
            out.append((m.group(1), m.group(2), int(m.group(3)),
                        m.group(4)))
    return out


def log_matches(text, pattern):
    """re.search results of pattern on every message, in order."""
    rx = re.compile(pattern)
    return [m for _, _, _, msg in log_events(text)
            for m in [rx.search(msg)] if m]


def safe_kill(pid, sig, parent):
    """Signal pid only if it is still an upperd child of parent (so a
    recycled pid is never hit).  Returns True if the signal was sent."""
    if not is_upperd(pid) or ppid_of(pid) != parent:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True
