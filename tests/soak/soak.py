#!/usr/bin/python3
"""
soak.py: make soak.  upperd runs SOAK_S seconds (default 600) under a mix
of everything it serves while its workers are killed and replaced, and the
script watches for what only long runs show: memory or fds that grow,
replies that are wrong, connects that fail, counters that drift.

Load (threads, each with its own counts): TCP request/response on kept
connections, pipelined bursts, bulk streams read back concurrently, UDP
datagrams, slow readers (the server must stop reading from them, not
buffer), idle connections held open, and /stats, /metrics, /healthz and /
scraped at 10 Hz.  Chaos: a worker SIGKILLed every few seconds, a HUP every
30 s, TTIN and TTOU in turn every 20 s.  Once a second every upperd
process's RSS and open fds are sampled from /proc.

At the end the chaos stops, idle clients close, and a rest phase with a
fixed workload checks that the counters moved by exactly what its clients
sent and received.  The report prints start (after warm-up) / end / max of
the supervisor's and the workers' RSS and fds, wrong bytes, failed
connects, connections cut by kills (expected), and client counts against
/stats totals.  Exit 1 when a target is missed: RSS or fds end above start
+ 5 %, a wrong byte, a failed connect, a counter off at rest, or totals
that ever went down.

Usage: soak.py BIN_DIR [SECONDS]     (SOAK_S in the environment also works)
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "system"))

from conftest import (COUNTERS, GAUGES, children_of, free_port,  # noqa
                      http_get, is_upperd, kill_pid, stop_proc, ucase)

WORKERS = 2
TIMEOUT = 30.0  # any single client wait; workers may be in backoff
WARMUP_S = 30.0  # start figures are taken after this (or 10 % of the run)
WINDOW_S = 30.0  # start and end are the floor of such a window
TEXT_STR = ("The quick brown fox, straße, élan, ǆemal; jumps over 12 lazy "
            "dogs\n")
TEXT = TEXT_STR.encode()


class Counts:
    """What one client thread did; summed at the end."""
    FIELDS = ("tcp_conns", "tcp_sent", "tcp_recv", "tcp_lines", "udp_sent",
              "udp_recv", "udp_bytes_sent", "udp_bytes_recv", "wrong_bytes",
              "failed_connects", "cut", "udp_lost", "udp_late", "scrapes",
              "scrape_errors")

    def __init__(self):
        for f in self.FIELDS:
            setattr(self, f, 0)

    def add(self, other):
        for f in self.FIELDS:
            setattr(self, f, getattr(self, f) + getattr(other, f))


class Soak:
    def __init__(self, bin_dir, seconds):
        self.seconds = seconds
        self.port = free_port()
        self.stats_port = free_port()
        self.tmp = tempfile.mkdtemp(prefix="upperd-soak.")
        self.log_path = os.path.join(self.tmp, "upperd.log")
        cmd = [os.path.join(bin_dir, "upperd"), "--workers", str(WORKERS),
               "--tcp", "127.0.0.1:%d" % self.port,
               "--udp", "127.0.0.1:%d" % self.port,
               "--stats", "127.0.0.1:%d" % self.stats_port,
               "--idle-timeout", "0", "--drain-timeout", "10",
               "--log-file", self.log_path]
        self.err = open(os.path.join(self.tmp, "upperd.stderr"), "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=self.err, stderr=self.err)
        self.stop = threading.Event()  # chaos and load stop
        self.lock = threading.Lock()
        self.counts = []
        self.seen = set()
        self.samples = []  # (t, sup_rss, sup_fds, wrk_rss_max, wrk_fds_max)
        self.totals_went_down = []
        self.kills = self.hups = self.ttin = self.ttou = 0
        self.idle = []
        self.examples = []
        self.loaded_samples = 0

    # -- the daemon ---------------------------------------------------
    def stats(self):
        st, _, body = http_get(self.stats_port, "/stats", timeout=TIMEOUT)
        if st != 200:
            raise OSError("/stats answered %d" % st)
        doc = json.loads(body)
        self.seen.update(w["pid"] for w in doc["workers"] if w["pid"])
        return doc

    def wait_rest(self, timeout=120.0):
        """Every configured worker running, none draining or starting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                doc = self.stats()
                st = [w["state"] for w in doc["workers"]]
                n = doc["workers_configured"]
                if (doc["workers_running"] == n and
                        st[:n] == ["running"] * n and
                        all(s == "stopped" for s in st[n:])):
                    return doc
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise AssertionError("upperd not at rest within %.0f s" % timeout)

    def new_counts(self):
        c = Counts()
        with self.lock:
            self.counts.append(c)
        return c

    # -- clients ------------------------------------------------------
    def connect(self, c):
        try:
            s = socket.create_connection(("127.0.0.1", self.port),
                                         timeout=TIMEOUT)
        except OSError:
            c.failed_connects += 1
            return None
        s.settimeout(TIMEOUT)
        c.tcp_conns += 1
        return s

    def wrong(self, got, want):
        """Bytes of got that differ from the same place in want; the
        first few cases are kept for the report."""
        n = min(len(got), len(want))
        if got[:n] == want[:n] and len(got) <= len(want):
            return 0
        bad = sum(1 for i in range(n) if got[i] != want[i])
        first = next((i for i in range(n) if got[i] != want[i]), n)
        with self.lock:
            if len(self.examples) < 5:
                self.examples.append(
                    (threading.current_thread().name, len(got), len(want),
                     first, got[max(0, first - 8):first + 24],
                     want[max(0, first - 8):first + 24]))
        return bad + max(0, len(got) - len(want))

    def exchange(self, c, s, data):
        """Send data, read its reply in full; False if the connection
        was cut (a worker killed under it)."""
        want = ucase(data)
        try:
            s.sendall(data)
            c.tcp_sent += len(data)
            c.tcp_lines += data.count(b"\n")
            got = b""
            while len(got) < len(want):
                b = s.recv(len(want) - len(got))
                if not b:
                    break
                got += b
        except OSError:
            got = None
        if got is None or len(got) < len(want):
            c.cut += 1
            if got:
                c.tcp_recv += len(got)
                c.wrong_bytes += self.wrong(got, want)
            return False
        c.tcp_recv += len(got)
        c.wrong_bytes += self.wrong(got, want)
        return True

    def rr_client(self, lines):
        """Request/response (lines=1) or pipelined bursts (lines>1)."""
        c = self.new_counts()
        rnd = random.Random()
        s = None
        while not self.stop.is_set():
            if s is None and (s := self.connect(c)) is None:
                time.sleep(0.1)
                continue
            # whole characters only: a request ending inside one gets
            # its reply when the character completes, not before
            data = TEXT * lines if lines > 1 else \
                TEXT_STR[:rnd.randint(1, len(TEXT_STR))].encode()
            if not self.exchange(c, s, data) or rnd.random() < 0.02:
                s.close()
                s = None
            if lines > 1:
                time.sleep(0.05)
        if s is not None:
            s.close()

    def bulk_client(self):
        """64 KiB at a time on one connection, read back concurrently."""
        c = self.new_counts()
        # random bytes, invalid UTF-8 included, ending in a newline so no
        # character straddles two blocks of the stream
        rnd = random.Random(7)
        block = bytes(rnd.getrandbits(8) for _ in range(65535)) + b"\n"
        while not self.stop.is_set():
            s = self.connect(c)
            if s is None:
                time.sleep(0.1)
                continue
            for _ in range(16):
                if self.stop.is_set() or not self.bulk_once(c, s, block):
                    break
            s.close()

    def bulk_once(self, c, s, block):
        want = ucase(block)
        got = bytearray()
        err = []

        def reader():
            try:
                while len(got) < len(want):
                    b = s.recv(65536)
                    if not b:
                        return
                    got.extend(b)
            except OSError as e:
                err.append(e)
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        try:
            s.sendall(block)
            c.tcp_sent += len(block)
            c.tcp_lines += block.count(b"\n")
        except OSError:
            pass
        t.join(TIMEOUT)
        c.tcp_recv += len(got)
        c.wrong_bytes += self.wrong(bytes(got), want)
        if len(got) < len(want):
            c.cut += 1
            return False
        return True

    def slow_reader(self):
        """Sends much more than it reads: the server must stop reading
        from it rather than buffer; it reads 4 KiB every 100 ms."""
        c = self.new_counts()
        while not self.stop.is_set():
            s = self.connect(c)
            if s is None:
                time.sleep(0.1)
                continue
            data = TEXT * 4000  # ~280 KB per round
            want = ucase(data)
            got = bytearray()
            s.setblocking(False)
            off = 0
            deadline = time.monotonic() + TIMEOUT * 4
            ok = True
            while len(got) < len(want) and not self.stop.is_set():
                if time.monotonic() > deadline:
                    ok = False
                    break
                if off < len(data):
                    try:
                        n = s.send(data[off:off + 65536])
                        off += n
                        c.tcp_sent += n
                        c.tcp_lines += data[off - n:off].count(b"\n")
                    except BlockingIOError:
                        pass
                    except OSError:
                        ok = False
                        break
                time.sleep(0.1)
                try:
                    b = s.recv(4096)
                    if not b:
                        ok = False
                        break
                    got.extend(b)
                except BlockingIOError:
                    pass
                except OSError:
                    ok = False
                    break
            c.tcp_recv += len(got)
            c.wrong_bytes += self.wrong(bytes(got), want)
            if not ok:
                c.cut += 1
            s.close()

    def idle_keeper(self, n):
        """n connections that never send; re-opened if cut."""
        c = self.new_counts()
        while not self.stop.is_set():
            self.idle = [x for x in self.idle if self.idle_alive(x)]
            while len(self.idle) < n and not self.stop.is_set():
                s = self.connect(c)
                if s is None:
                    break
                s.setblocking(False)
                self.idle.append(s)
            self.stop.wait(1.0)
        for s in self.idle:
            s.close()
        self.idle = []

    @staticmethod
    def idle_alive(s):
        try:
            if s.recv(1) == b"":
                s.close()
                return False
        except BlockingIOError:
            return True
        except OSError:
            s.close()
            return False
        return True

    def udp_client(self):
        c = self.new_counts()
        rnd = random.Random()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2.0)
        seq = 0
        while not self.stop.is_set():
            # a numbered datagram: a reply that comes after its wait ran
            # out is told apart from the next one's
            seq += 1
            tag = b"#%d " % seq
            data = tag + TEXT[:rnd.randint(0, len(TEXT))]
            s.sendto(data, ("127.0.0.1", self.port))
            c.udp_sent += 1
            c.udp_bytes_sent += len(data)
            try:
                while True:
                    got, _ = s.recvfrom(65536)
                    c.udp_recv += 1
                    c.udp_bytes_recv += len(got)
                    if got.startswith(tag):
                        break
                    c.udp_late += 1
                c.wrong_bytes += self.wrong(got, ucase(data))
            except socket.timeout:
                c.udp_lost += 1
            time.sleep(0.002)
        s.close()

    def scraper(self):
        c = self.new_counts()
        paths = ("/metrics", "/stats", "/healthz", "/")
        prev = None
        i = 0
        while not self.stop.is_set():
            t0 = time.monotonic()
            path = paths[i % len(paths)]
            i += 1
            try:
                st, _, body = http_get(self.stats_port, path, timeout=5.0)
                c.scrapes += 1
                if path == "/stats" and st == 200:
                    tot = json.loads(body)["totals"]
                    if prev is not None:
                        down = [k for k in COUNTERS if k not in GAUGES
                                and tot[k] < prev[k]]
                        if down:
                            self.totals_went_down.append(down)
                    prev = tot
                elif st not in (200, 503):
                    c.scrape_errors += 1
            except (OSError, ValueError):
                c.scrape_errors += 1
            self.stop.wait(max(0.0, 0.1 - (time.monotonic() - t0)))

    # -- chaos and sampling -------------------------------------------
    def chaos(self):
        rnd = random.Random(1)
        t0 = time.monotonic()
        next_kill, next_hup, next_scale = 4.0, 30.0, 20.0
        grow = True
        while not self.stop.is_set():
            t = time.monotonic() - t0
            try:
                if t >= next_kill:
                    next_kill += 4.0
                    doc = self.stats()
                    pids = [w["pid"] for w in doc["workers"]
                            if w["state"] == "running" and w["pid"]]
                    if pids:
                        kill_pid(rnd.choice(pids))
                        self.kills += 1
                if t >= next_hup:
                    next_hup += 30.0
                    os.kill(self.proc.pid, signal.SIGHUP)
                    self.hups += 1
                if t >= next_scale:
                    next_scale += 20.0
                    os.kill(self.proc.pid,
                            signal.SIGTTIN if grow else signal.SIGTTOU)
                    if grow:
                        self.ttin += 1
                    else:
                        self.ttou += 1
                    grow = not grow
            except (OSError, ValueError):
                pass
            self.stop.wait(0.2)

    @staticmethod
    def rss_fds(pid):
        try:
            with open("/proc/%d/status" % pid) as f:
                rss = next(int(ln.split()[1]) for ln in f
                           if ln.startswith("VmRSS:"))
            fds = len(os.listdir("/proc/%d/fd" % pid))
            return rss, fds
        except (OSError, StopIteration):
            return None

    def sampler(self, done):
        """Once a second: the supervisor's RSS and fds, the largest
        worker RSS, and the fds a worker process holds beyond the open
        connections, on average: (all worker fds - tcp_connections_active
        of the totals) / worker processes.  Connections come and go with
        the clients, and a draining worker's still count for its slot, so
        only that overhead shows what could leak."""
        t0 = time.monotonic()
        while not done.is_set():
            try:
                active = self.stats()["totals"]["tcp_connections_active"]
            except (OSError, ValueError):
                active = None
            sup = self.rss_fds(self.proc.pid)
            wrk = [x for x in (self.rss_fds(p)
                               for p in children_of(self.proc.pid)) if x]
            if sup and wrk and active is not None:
                self.samples.append((time.monotonic() - t0, sup[0], sup[1],
                                     max(r for r, _ in wrk),
                                     (sum(f for _, f in wrk) - active) /
                                     len(wrk)))
            done.wait(1.0)

    # -- the rest phase -------------------------------------------------
    def rest_check(self):
        """A fixed workload at rest: the totals must move by exactly what
        its clients counted."""
        doc = self.wait_rest()
        deadline = time.monotonic() + 60
        while doc["totals"]["tcp_connections_active"] != 0:
            if time.monotonic() > deadline:
                raise AssertionError("connections still open at rest")
            time.sleep(0.2)
            doc = self.stats()
        before = doc["totals"]
        c = Counts()
        for i in range(50):
            s = self.connect(c)
            if s is None:
                continue
            for k in range(1 + i % 5):
                self.exchange(c, s, TEXT * (1 + k))
            s.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(TIMEOUT)
        for i in range(200):
            data = TEXT[:i % len(TEXT)]
            u.sendto(data, ("127.0.0.1", self.port))
            c.udp_sent += 1
            c.udp_bytes_sent += len(data)
            got, _ = u.recvfrom(65536)
            c.udp_recv += 1
            c.udp_bytes_recv += len(got)
        u.close()
        want = {"tcp_connections_accepted": c.tcp_conns,
                "tcp_bytes_received": c.tcp_sent,
                "tcp_bytes_sent": c.tcp_recv,
                "tcp_lines_received": c.tcp_lines,
                "udp_datagrams_received": c.udp_sent,
                "udp_datagrams_sent": c.udp_recv,
                "udp_bytes_received": c.udp_bytes_sent,
                "udp_bytes_sent": c.udp_bytes_recv}
        deadline = time.monotonic() + 30
        while True:
            after = self.stats()["totals"]
            got = {k: after[k] - before[k] for k in want}
            if got == want and after["tcp_connections_active"] == 0:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return c, want, got

    # -- the run ------------------------------------------------------
    def run(self):
        self.wait_rest(60.0)
        sampling = threading.Event()
        threads = [threading.Thread(target=self.sampler, args=(sampling,))]
        load = ([(self.rr_client, (1,))] * 4 + [(self.rr_client, (50,))] +
                [(self.bulk_client, ())] + [(self.slow_reader, ())] * 2 +
                [(self.idle_keeper, (100,)), (self.udp_client, ()),
                 (self.scraper, ()), (self.chaos, ())])
        threads += [threading.Thread(target=f, args=a, name=f.__name__)
                    for f, a in load]
        t0 = time.monotonic()
        for t in threads:
            t.daemon = True
            t.start()
        while time.monotonic() - t0 < self.seconds and \
                self.proc.poll() is None:
            time.sleep(1.0)
        # the figures end here: what follows is the load winding down
        self.loaded_samples = len(self.samples)
        self.stop.set()
        for t in threads[1:]:
            t.join(TIMEOUT * 5)
        rest = self.rest_check()
        sampling.set()
        threads[0].join(5)
        return rest

    def cleanup(self):
        self.stop.set()
        if self.proc.poll() is None:
            self.seen.update(children_of(self.proc.pid))
        stop_proc(self.proc, timeout=30, kill_timeout=30)
        for pid in self.seen:
            if is_upperd(pid):
                kill_pid(pid)
        self.err.close()


def figures(samples, col, warm):
    """start and end: the lowest value of the first and of the last
    WINDOW_S seconds after warm-up (a leak lifts that floor, a sample
    taken while clients open and close connections only lifts one
    reading); max over everything after warm-up."""
    after = [s for s in samples if s[0] >= warm] or samples
    first = [s[col] for s in after if s[0] < after[0][0] + WINDOW_S]
    last = [s[col] for s in after if s[0] > after[-1][0] - WINDOW_S]
    return min(first), min(last), max(s[col] for s in after)


def report(soak, rest, elapsed):
    total = Counts()
    for c in soak.counts:
        total.add(c)
    rc, want, got = rest
    fails = []
    warm = min(WARMUP_S, soak.seconds / 10)
    print("soak: %.0f s, %d worker kills, %d HUPs, %d TTIN, %d TTOU" %
          (elapsed, soak.kills, soak.hups, soak.ttin, soak.ttou))
    print("%-22s %10s %10s %10s" % ("after %.0f s warm-up" % warm,
                                    "start", "end", "max"))
    names = ("supervisor RSS KiB", "supervisor fds", "worker RSS KiB (max)",
             "worker fds - conns")  # per process, on average
    for i, name in enumerate(names, start=1):
        start, end, top = figures(soak.samples[:soak.loaded_samples], i,
                                  warm)
        print("%-22s %10.1f %10.1f %10.1f" % (name, start, end, top))
        # fds come in ones: one more than start is within the target
        slack = 1 if "fds" in name else 0
        if end > start * 1.05 + slack:
            fails.append("%s grew: %d -> %d" % (name, start, end))
    print("client traffic: %d TCP connections, %d bytes sent, %d received, "
          "%d lines; UDP %d/%d datagrams (%d not answered within 2 s, %d "
          "answered late); %d scrapes, %d scrape errors" %
          (total.tcp_conns, total.tcp_sent, total.tcp_recv, total.tcp_lines,
           total.udp_sent, total.udp_recv, total.udp_lost, total.udp_late,
           total.scrapes, total.scrape_errors))
    print("wrong bytes: %d; failed connects: %d; connections cut by "
          "kills: %d" % (total.wrong_bytes, total.failed_connects,
                         total.cut))
    final = soak.stats()["totals"]
    print("server totals at end: accepted %d, bytes received %d, sent %d; "
          "udp received %d, sent %d" %
          (final["tcp_connections_accepted"], final["tcp_bytes_received"],
           final["tcp_bytes_sent"], final["udp_datagrams_received"],
           final["udp_datagrams_sent"]))
    print("whole run: TCP connections opened %d, server accepted %d; UDP "
          "datagrams sent %d, server received %d" %
          (total.tcp_conns + rc.tcp_conns,
           final["tcp_connections_accepted"], total.udp_sent + rc.udp_sent,
           final["udp_datagrams_received"]))
    print("rest phase: counters moved by %s; clients counted %s" %
          ("exactly that" if got == want else got, want))
    for ex in soak.examples:
        print("wrong reply (%s): %d of %d bytes, first wrong at %d: got %r, "
              "want %r" % ex)
    if total.wrong_bytes:
        fails.append("%d wrong bytes" % total.wrong_bytes)
    if total.failed_connects:
        fails.append("%d failed connects" % total.failed_connects)
    if got != want:
        fails.append("counters off at rest")
    if soak.totals_went_down:
        fails.append("totals went down: %r" % soak.totals_went_down[:3])
    return fails


def main():
    bin_dir = sys.argv[1]
    seconds = float(sys.argv[2] if len(sys.argv) > 2 else
                    os.environ.get("SOAK_S", "600"))
    soak = Soak(bin_dir, seconds)
    t0 = time.monotonic()
    fails = []
    try:
        rest = soak.run()
        fails = report(soak, rest, time.monotonic() - t0)
    except (AssertionError, OSError) as e:
        fails.append("soak failed: %s" % e)
    finally:
        soak.cleanup()
    if soak.proc.returncode not in (0, None):
        fails.append("upperd exited %s" % soak.proc.returncode)
    for f in fails:
        print("FAIL: " + f)
    if fails:
        print("log: " + soak.log_path)
    print("soak: %s" % ("FAILED" if fails else "ok"))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
