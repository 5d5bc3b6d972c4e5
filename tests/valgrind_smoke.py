#!/usr/bin/python3
"""
valgrind_smoke.py: the system smoke of `make valgrind`.  upperd (supervisor
and every worker it forks) runs under memcheck; the script gives it TCP and
UDP traffic, scrapes every endpoint (and the 404/405/400 paths), sends HUP,
TTIN and TTOU, stops it with TERM (three times: over HTTP, over HTTPS with
Basic auth, 401s and plain HTTP to the TLS port included, and with the
io_uring engine), and then reads every process's memcheck
log: each one must end in "ERROR SUMMARY: 0 errors" (definite leaks count
as errors, --errors-for-leak-kinds=definite).  A process whose log has no
summary (it was killed, or crashed) is a failure too.

Usage: valgrind_smoke.py BIN_DIR OUT_DIR [SUPPRESSIONS]
Exit 0 when clean, 1 with the offending logs printed otherwise.

Memcheck slows the workers down tenfold or more, so the daemon gets a
generous --heartbeat-timeout and every step waits on a readiness check
(never a fixed sleep), bounded by STEP_TIMEOUT.
"""

import glob
import os
import re
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "system"))

from conftest import (children_of, free_port, http_get, http_raw,  # noqa
                      is_upperd, kill_pid, status_of, tcp_roundtrip, ucase,
                      udp_roundtrip, wait_until)
from test_stats_security import (Pki, basic, crypt_hash,  # noqa
                                 https_get, write)

STEP_TIMEOUT = 60.0
SUMMARY_RE = re.compile(r"ERROR SUMMARY: (\d+) errors")


class Smoke:
    """One upperd under memcheck.  With tls (a Pki), its stats endpoint
    is HTTPS with Basic auth, so libmicrohttpd's GnuTLS side, the
    certificate and users loading and their reload on HUP run too."""

    def __init__(self, bin_dir, out_dir, supp, tls=None, extra=()):
        self.out = out_dir
        self.tls = tls
        self.auth = {}
        os.makedirs(out_dir, exist_ok=True)
        for f in glob.glob(os.path.join(out_dir, "vg.*.log")):
            os.unlink(f)
        self.port = free_port()
        self.stats_port = free_port()
        vg = ["valgrind", "--tool=memcheck", "--trace-children=yes",
              "--error-exitcode=99", "--leak-check=full",
              "--errors-for-leak-kinds=definite",
              "--log-file=" + os.path.join(out_dir, "vg.%p.log")]
        if supp:
            vg.append("--suppressions=" + supp)
        self.cmd = vg + [
            os.path.join(bin_dir, "upperd"), "--workers", "2",
            "--tcp", "127.0.0.1:%d" % self.port,
            "--udp", "127.0.0.1:%d" % self.port,
            "--stats", "127.0.0.1:%d" % self.stats_port,
            "--heartbeat-timeout", "120", "--drain-timeout", "30",
            "--log-level", "debug",
            "--log-file", os.path.join(out_dir, "upperd.log")] + list(extra)
        if tls:
            cert, key = tls.server("srv")
            users = write(os.path.join(out_dir, "users"), "smoke:%s\n" %
                          crypt_hash("pw", "$6$"))
            self.cmd += ["--stats-tls-cert", cert, "--stats-tls-key", key,
                         "--stats-auth", users]
            self.auth = basic("smoke", "pw")
        self.err = open(os.path.join(out_dir, "upperd.stderr"), "wb")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                     stdout=self.err, stderr=self.err)
        self.seen = set()
        self.last = None

    def get(self, path, method="GET", headers=None):
        """(status, headers, body) over HTTP, or HTTPS with the
        credentials unless headers says otherwise."""
        if not self.tls:
            return http_get(self.stats_port, path, method=method,
                            timeout=20.0)
        return https_get(self.stats_port, path, self.tls.context(),
                         headers=self.auth if headers is None else headers,
                         timeout=20.0)

    def stats(self):
        import json
        st, _, body = self.get("/stats")
        assert st == 200, (st, body)
        doc = json.loads(body)
        self.seen.update(w["pid"] for w in doc["workers"] if w["pid"])
        return doc

    def healthy(self, n):
        """/healthz is 200 and n workers configured, all running, none
        draining."""
        if self.proc.poll() is not None:
            raise AssertionError("upperd exited: %s" % self.proc.returncode)
        try:
            st, _, _ = self.get("/healthz")
            if st != 200:
                return None
            doc = self.stats()
        except OSError:
            return None
        states = [w["state"] for w in doc["workers"]]
        self.last = (doc["workers_running"], states)
        # A slot retired by TTOU stays listed, "stopped" (its counters
        # carry on in totals).
        if (doc["workers_running"] == n and
                doc["workers_configured"] == n and
                states[:n] == ["running"] * n and
                all(st == "stopped" for st in states[n:])):
            return doc
        return None

    def wait_healthy(self, n, what):
        return wait_until(lambda: self.healthy(n), timeout=STEP_TIMEOUT,
                          interval=0.2, msg=what)

    def traffic(self):
        for data in (b"hello", "straße ǆ ﬁ".encode(), b"ab\xff\xc3cd",
                     b"line one\nline two\n" * 50):
            got = tcp_roundtrip(self.port, data, timeout=STEP_TIMEOUT)
            assert got == ucase(data), (data, got)
        bulk = os.urandom(64 * 1024)
        got = tcp_roundtrip(self.port, bulk, timeout=STEP_TIMEOUT,
                            chunks=[4096] * 15)
        assert got == ucase(bulk), "bulk reply differs"
        for data in (b"udp hello", b"", "ǆ".encode(), b"\xfe\xff"):
            got = udp_roundtrip(self.port, data, timeout=STEP_TIMEOUT)
            assert got == ucase(data), (data, got)

    def scrape(self):
        if self.tls:
            return self.scrape_tls()
        for path, want in (("/stats", 200), ("/metrics", 200),
                           ("/healthz", 200), ("/", 200), ("/nope", 404)):
            st, _, _ = http_get(self.stats_port, path, timeout=20.0)
            assert st == want, (path, st)
        st, _, _ = http_get(self.stats_port, "/stats", method="HEAD",
                            timeout=20.0)
        assert st == 200, ("HEAD", st)
        st, _, _ = http_get(self.stats_port, "/stats", method="POST",
                            timeout=20.0)
        assert st == 405, ("POST", st)
        for raw, want in ((b"GARBAGE\r\n\r\n", 400),
                          (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
                           414)):
            st = status_of(http_raw(self.stats_port, raw, timeout=20.0))
            assert st == want, (raw[:20], st)

    def scrape_tls(self):
        for path, want in (("/stats", 200), ("/metrics", 200),
                           ("/healthz", 200), ("/", 200), ("/nope", 404)):
            st, _, _ = self.get(path)
            assert st == want, (path, st)
        for headers in ({}, basic("smoke", "wrong"), basic("nobody", "pw")):
            st, _, _ = self.get("/metrics", headers=headers)
            assert st == 401, (headers, st)
        # plain HTTP to the HTTPS port: nothing comes back
        raw = http_raw(self.stats_port, b"GET /metrics HTTP/1.1\r\n"
                       b"Host: x\r\n\r\n", timeout=20.0)
        assert status_of(raw) is None, raw[:100]

    def signal_and_wait(self, sig, n, what, changed=True):
        before = {w["pid"] for w in self.stats()["workers"]}
        os.kill(self.proc.pid, sig)

        def done():
            doc = self.healthy(n)
            if doc is None:
                return None
            pids = {w["pid"] for w in doc["workers"]}
            return doc if not changed or not pids & before else None
        self.last = None
        try:
            wait_until(done, timeout=STEP_TIMEOUT, interval=0.2, msg=what)
        except AssertionError as e:
            raise AssertionError("%s; last running, states: %r" %
                                 (e, self.last))

    def run(self):
        self.wait_healthy(2, "ready")
        self.traffic()
        self.scrape()
        self.signal_and_wait(signal.SIGHUP, 2, "HUP replaces both workers")
        self.traffic()
        self.signal_and_wait(signal.SIGTTIN, 3, "TTIN adds one",
                             changed=False)
        self.signal_and_wait(signal.SIGTTOU, 2, "TTOU removes one",
                             changed=False)
        self.traffic()
        self.scrape()
        self.stats()
        os.kill(self.proc.pid, signal.SIGTERM)
        rc = self.proc.wait(timeout=STEP_TIMEOUT)
        assert rc == 0, "upperd exited %d (99: memcheck errors)" % rc

    def cleanup(self):
        if self.proc.poll() is None:
            self.seen.update(children_of(self.proc.pid))
            self.proc.kill()
            self.proc.wait(timeout=STEP_TIMEOUT)
        for pid in self.seen:
            if is_upperd(pid):
                kill_pid(pid)
        self.err.close()

    def check_logs(self):
        """Every process's memcheck log: a summary of 0 errors."""
        bad = []
        logs = sorted(glob.glob(os.path.join(self.out, "vg.*.log")))
        for path in logs:
            with open(path, errors="replace") as f:
                text = f.read()
            m = SUMMARY_RE.findall(text)
            if not m or int(m[-1]) != 0:
                bad.append((path, text))
        return logs, bad


def run_one(bin_dir, out_dir, supp, tls=None, extra=()):
    """Run one smoke; returns 0 when it and every log are clean."""
    t0 = time.monotonic()
    smoke = Smoke(bin_dir, out_dir, supp, tls, extra)
    failed = None
    try:
        smoke.run()
    except (AssertionError, OSError, socket.timeout,
            subprocess.TimeoutExpired) as e:
        failed = "smoke step failed: %s" % e
    finally:
        smoke.cleanup()
    logs, bad = smoke.check_logs()
    for path, text in bad:
        print("== %s\n%s" % (path, text[-6000:]))
    if failed:
        print(failed)
        with open(os.path.join(out_dir, "upperd.log"), errors="replace") as f:
            print(f.read()[-4000:])
    print("valgrind smoke%s: %d processes checked, %d with errors, %.0f s" %
          (" (HTTPS + auth)" if tls else " " + " ".join(extra), len(logs),
           len(bad), time.monotonic() - t0))
    return 1 if failed or bad or not logs else 0


def main():
    bin_dir, out_dir = sys.argv[1], sys.argv[2]
    supp = sys.argv[3] if len(sys.argv) > 3 else None
    rc = run_one(bin_dir, os.path.join(out_dir, "http"), supp)
    tls_dir = os.path.join(out_dir, "https")
    rc |= run_one(bin_dir, tls_dir, supp, Pki(os.path.join(tls_dir, "pki")))
    rc |= run_one(bin_dir, os.path.join(out_dir, "io_uring"), supp,
                  extra=("--io-engine", "io_uring"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
