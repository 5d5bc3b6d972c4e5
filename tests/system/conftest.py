"""
System-test harness for upperd: starts the real binary ($UPPERD_BIN/upperd)
on free loopback ports, waits for /healthz (never a fixed sleep), and kills
everything it started by pid at teardown.

Only the standard library and pytest are used.  Every socket has a timeout,
every subprocess a bounded wait.
"""

import errno
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN_DIR = os.environ.get("UPPERD_BIN", os.path.join(REPO, "bin"))
UPPERD = os.path.join(BIN_DIR, "upperd")
UPPER = os.path.join(BIN_DIR, "upper")
# make check's second pass: every upperd the suite starts uses this engine
# (first on the command line, so a test's own --io-engine still wins).
IO_ENGINE = os.environ.get("UPPERD_IO_ENGINE", "")
ENGINE_ARGS = ["--io-engine", IO_ENGINE] if IO_ENGINE else []

# How long a freshly started daemon may take to answer /healthz 200.  Under
# the sanitizer build start-up is slower, so this is generous but bounded.
READY_TIMEOUT = 15.0
POLL = 0.02

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")

# One log line: optional timestamp (log files carry one), then
# "level process[pid]: message".
LOG_LINE_RE = re.compile(
    r"^(?:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z? )?"
    r"(error|warn|info|debug) (supervisor|worker \d+)\[(\d+)\]: (.+)$")

COUNTERS = (
    "tcp_connections_accepted", "tcp_connections_active",
    "tcp_connections_rejected", "tcp_idle_timeouts", "tcp_bytes_received",
    "tcp_bytes_sent", "tcp_lines_received", "udp_datagrams_received",
    "udp_datagrams_sent", "udp_bytes_received", "udp_bytes_sent",
    "udp_errors",
)
GAUGES = ("tcp_connections_active",)
REASONS = ("crash", "hung", "recycle", "reload")


# --------------------------------------------------------------------------
# generic helpers

def wait_until(predicate, timeout=10.0, interval=POLL, msg=None):
    """Poll predicate() until it returns something truthy; return that.
    Raise AssertionError (with msg and the last value) after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except Exception as e:  # a transient error counts as "not yet"
            last = e
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s "
                                 "(last: %r)" % (timeout, msg or predicate,
                                                 last))
        time.sleep(interval)


def ucase(data):
    """The oracle for unicode mode: valid UTF-8 uppercased exactly as
    Python's str.upper(), every byte that is not valid UTF-8 unchanged.
    surrogateescape maps each undecodable byte to a lone surrogate
    U+DC80..U+DCFF, which str.upper() leaves alone and the encoder turns
    back into the same byte (test_bad_input checks this on known cases)."""
    return data.decode("utf-8", "surrogateescape").upper().encode(
        "utf-8", "surrogateescape")


def acase(data):
    """The oracle for ascii mode: a-z only."""
    return data.translate(bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz",
                                          b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def need_tool(name, package):
    """The path of a program a test needs.  make test installs it (the
    Makefile's DEB_TEST lists package); a missing one fails the test, never
    skips it: a suite that skips what it cannot run passes without
    testing."""
    found = (name if os.path.isabs(name) and os.access(name, os.X_OK)
             else shutil.which(name))
    if not found:
        pytest.fail("%s not found: install %s (make test does, from the "
                    "Makefile's DEB_TEST)" % (name, package), pytrace=False)
    return found


def port_is_free(port, host="127.0.0.1"):
    """True if both a TCP listener and a UDP socket can bind host:port."""
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((host, port))
        t.listen(1)
        u.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        t.close()
        u.close()


_port_lock = threading.Lock()
_ports_given = set()


def free_port(host="127.0.0.1"):
    """A port free for TCP (kernel-chosen) that is also free for UDP, and
    not handed out before in this session."""
    with _port_lock:
        for _ in range(200):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port in _ports_given:
                continue
            if port_is_free(port, host):
                _ports_given.add(port)
                return port
    raise RuntimeError("no free port found")


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("State:"):
                    return not line.split()[1] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return False
    return False


def proc_status(pid):
    """/proc/<pid>/status as a dict of field -> raw value string."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def ppid_of(pid):
    try:
        return int(proc_status(pid).get("PPid", "0"))
    except OSError:
        return 0


def children_of(pid):
    """Live (non-zombie) direct children of pid, by scanning /proc."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = proc_status(int(d))
        except OSError:
            continue
        if st.get("PPid") == str(pid) and not st.get("State", "").startswith(
                ("Z", "X")):
            kids.append(int(d))
    return kids


def is_upperd(pid):
    """True if pid is alive and runs the upperd binary under test (guards
    against killing an unrelated process that reused a pid)."""
    if not pid_alive(pid):
        return False
    try:
        exe = os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return False
    exe = exe.replace(" (deleted)", "")
    return os.path.realpath(exe) == os.path.realpath(UPPERD)


def rss_kib(pid):
    """VmRSS of pid in KiB."""
    return int(proc_status(pid)["VmRSS"].split()[0])


def kill_pid(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_proc(proc, sig=signal.SIGTERM, timeout=15.0, kill_timeout=10.0):
    """Stop a Popen child of ours: sig, then SIGKILL if it has not exited
    within timeout seconds (a stuck child must not outlive the test)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=kill_timeout)


# --------------------------------------------------------------------------
# HTTP, TCP and UDP clients

def http_request(port, path, method="GET", timeout=5.0, host="127.0.0.1",
                 body=None, headers=None):
    """One HTTP/1.1 request; returns (status, headers dict lowercased,
    body bytes)."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        return r.status, hdrs, data
    finally:
        c.close()


def http_get(port, path, method="GET", timeout=5.0):
    return http_request(port, path, method=method, timeout=timeout)


def http_raw(port, payload, timeout=5.0, host="127.0.0.1"):
    """Send raw bytes to the HTTP port (from a thread, so a server that
    answers early is still read) and return everything it answers until it
    closes or timeout."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.settimeout(timeout)

    def sender():
        try:
            s.sendall(payload)
        except OSError:
            pass

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    got = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not b:
                break
            got += b
            # A complete response with a body length we can see: stop.
            head, sep, rest = got.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if m and len(rest) >= int(m.group(1)):
                    break
    finally:
        t.join(timeout)
        s.close()
    return got


def status_of(raw):
    """The status code of a raw HTTP response, or None."""
    m = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(m.group(1)) if m else None


def tcp_connect(port, timeout=10.0, host="127.0.0.1", nodelay=True):
    s = socket.create_connection((host, port), timeout=timeout)
    s.settimeout(timeout)
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exactly(s, n, timeout=10.0):
    """Read exactly n bytes from s or raise AssertionError saying what came."""
    got = bytearray()
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("timed out: got %d of %d bytes: %r" %
                                 (len(got), n, bytes(got[-200:])))
        s.settimeout(left)
        try:
            b = s.recv(min(n - len(got), 1 << 20))
        except socket.timeout:
            continue
        if not b:
            raise AssertionError("EOF after %d of %d bytes: %r" %
                                 (len(got), n, bytes(got[-200:])))
        got += b
    return bytes(got)


def recv_until_eof(s, timeout=10.0, limit=1 << 30):
    got = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no EOF within %.1fs; got %d bytes: %r" %
                                 (timeout, len(got), bytes(got[-200:])))
        s.settimeout(left)
        try:
            b = s.recv(1 << 20)
        except socket.timeout:
            continue
        if not b:
            return bytes(got)
        got += b
        if len(got) > limit:
            raise AssertionError("more than %d bytes" % limit)


def tcp_roundtrip(port, data, reply_len=None, timeout=10.0, chunks=None,
                  host="127.0.0.1"):
    """Connect, send data (from a thread, optionally as the given list of
    chunk sizes), and read the reply: exactly reply_len bytes if given (then
    close), else half-close and read to EOF.  Returns the reply bytes."""
    s = tcp_connect(port, timeout=timeout, host=host)
    err = []

    def sender():
        try:
            if chunks:
                off = 0
                for n in chunks:
                    s.sendall(data[off:off + n])
                    off += n
                s.sendall(data[off:])
            else:
                s.sendall(data)
            if reply_len is None:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        if reply_len is None:
            got = recv_until_eof(s, timeout)
        else:
            got = recv_exactly(s, reply_len, timeout)
    finally:
        t.join(timeout)
        s.close()
    assert not err, "send failed: %r" % err
    return got


def udp_roundtrip(port, data, timeout=5.0, host="127.0.0.1", bufsize=65536,
                  with_addr=False):
    """One datagram out, one datagram back."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(data, (host, port))
        reply, addr = s.recvfrom(bufsize)
    finally:
        s.close()
    return (reply, addr) if with_addr else reply


# --------------------------------------------------------------------------
# Prometheus text parsing

_SAMPLE_RE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*'
                       r'(?:,|$)')


class Metrics:
    """A parsed Prometheus text exposition."""

    def __init__(self, text):
        self.text = text
        self.samples = []  # (name, labels dict, float)
        self.help = {}
        self.type = {}
        for ln, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] == "HELP":
                    self.help[parts[2]] = parts[3] if len(parts) > 3 else ""
                elif len(parts) >= 4 and parts[1] == "TYPE":
                    self.type[parts[2]] = parts[3].strip()
                continue
            m = _SAMPLE_RE.match(line)
            if not m:
                raise AssertionError("line %d not a sample: %r" % (ln, line))
            name, lab, val = m.group(1), m.group(2), m.group(3)
            labels = {}
            if lab:
                pos = 0
                lab = lab.rstrip(",")
                while pos < len(lab):
                    lm = _LABEL_RE.match(lab, pos)
                    if not lm:
                        raise AssertionError("bad labels line %d: %r" %
                                             (ln, line))
                    labels[lm.group(1)] = lm.group(2)
                    pos = lm.end()
            self.samples.append((name, labels, float(val)))

    def all(self, name):
        return [(l, v) for n, l, v in self.samples if n == name]

    def get(self, name, **labels):
        found = [v for n, l, v in self.samples if n == name and l == labels]
        if len(found) != 1:
            raise KeyError("%s%r: %d samples" % (name, labels, len(found)))
        return found[0]

    def by(self, name, label):
        """{label value: sample value} for a family with one label."""
        out = {}
        for l, v in self.all(name):
            assert label in l, (name, l)
            assert l[label] not in out, ("duplicate", name, l)
            out[l[label]] = v
        return out

    def family_of(self, sample_name):
        for suf in ("_bucket", "_count", "_sum"):
            if sample_name.endswith(suf):
                base = sample_name[:-len(suf)]
                if self.type.get(base) in ("histogram", "summary"):
                    return base
        return sample_name


# --------------------------------------------------------------------------
# the daemon

def opts_to_args(opts):
    """Keyword options to command-line flags: workers=2 -> --workers 2,
    drain_timeout=1 -> --drain-timeout 1; True -> bare flag; None -> none."""
    args = []
    for k, v in opts.items():
        if v is None or v is False:
            continue
        flag = "--" + k.replace("_", "-")
        if v is True:
            args.append(flag)
        else:
            args += [flag, str(v)]
    return args


class Upperd:
    """One running upperd started by the test."""

    def __init__(self, tmpdir, args=(), log_to_file=True, workers=2,
                 ready=True, **opts):
        self.tmpdir = str(tmpdir)
        self.tcp_port = free_port()
        self.udp_port = self.tcp_port
        self.stats_port = free_port()
        self.log_path = os.path.join(self.tmpdir, "upperd.log")
        self.stderr_path = os.path.join(self.tmpdir, "upperd.stderr")
        self.stdout_path = os.path.join(self.tmpdir, "upperd.stdout")
        self.seen_pids = set()
        self.stopped = False
        self.returncode = None
        cmd = [UPPERD] + ENGINE_ARGS + [
               "--tcp", "127.0.0.1:%d" % self.tcp_port,
               "--udp", "127.0.0.1:%d" % self.udp_port,
               "--stats", "127.0.0.1:%d" % self.stats_port]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        if log_to_file:
            cmd += ["--log-file", self.log_path]
        cmd += opts_to_args(opts)
        cmd += list(args)
        self.cmd = cmd
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err)
        self.pid = self.proc.pid
        if ready:
            self.wait_ready()

    # -- start-up ------------------------------------------------------
    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    "upperd exited with %s before ready\n%s" %
                    (self.proc.returncode, self.diagnostics()))
            try:
                st, _, body = http_get(self.stats_port, "/healthz",
                                       timeout=1.0)
                last = (st, body)
                if st == 200:
                    self.stats()  # record worker pids
                    return
            except OSError as e:
                last = e
            time.sleep(POLL)
        raise AssertionError("upperd not ready within %.0fs (last %r)\n%s" %
                             (timeout, last, self.diagnostics()))

    # -- observation ---------------------------------------------------
    def stats(self):
        st, hdrs, body = http_get(self.stats_port, "/stats")
        assert st == 200, (st, body)
        doc = json.loads(body)
        for w in doc.get("workers", []):
            if w.get("pid"):
                self.seen_pids.add(int(w["pid"]))
        return doc

    def metrics(self):
        st, hdrs, body = http_get(self.stats_port, "/metrics")
        assert st == 200, (st, body)
        return Metrics(body.decode("utf-8"))

    def healthz(self):
        return http_get(self.stats_port, "/healthz", timeout=2.0)

    def worker_pids(self):
        return [int(w["pid"]) for w in self.stats()["workers"] if w["pid"]]

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def diagnostics(self):
        return ("--- command: %s\n--- log:\n%s\n--- stderr:\n%s" %
                (" ".join(self.cmd), self.log()[-6000:],
                 self.stderr()[-6000:]))

    def alive(self):
        return self.proc.poll() is None

    # -- stopping ------------------------------------------------------
    def send_signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait_exit(self, timeout):
        """Wait for the supervisor to exit; returns its status or raises
        AssertionError."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("upperd pid %d still running after %.1fs\n%s"
                                 % (self.pid, timeout, self.diagnostics()))
        self.stopped = True
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Send sig and wait (bounded) for the exit status."""
        self.send_signal(sig)
        return self.wait_exit(timeout)

    def cleanup(self):
        """Kill what is left: the supervisor (TERM, bounded wait, KILL) and
        any worker it ever listed or that is still its child.  Returns a
        list of problems to report (non-zero exit after TERM)."""
        problems = []
        try:
            self.seen_pids.update(children_of(self.pid))
        except OSError:
            pass
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                rc = self.proc.wait(timeout=10)
                if rc != 0:
                    problems.append("exit status %s after SIGTERM" % rc)
            except subprocess.TimeoutExpired:
                problems.append("did not exit within 10s of SIGTERM")
                self.proc.kill()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    problems.append("did not die of SIGKILL")
        for pid in sorted(self.seen_pids):
            if pid != self.pid and is_upperd(pid):
                kill_pid(pid)
        self._err.close()
        self._out.close()
        return problems

    def sanitizer_report(self):
        text = self.stderr() + "\n" + self.log()
        for m in SANITIZER_MARKERS:
            if m in text:
                return text
        return None


@pytest.fixture
def upperd(tmp_path):
    """Factory: upperd(**opts) starts a daemon (workers=2 unless given) and
    returns an Upperd; all are stopped and checked at teardown."""
    started = []
    n = [0]

    def start(**opts):
        n[0] += 1
        d = tmp_path / ("upperd%d" % n[0])
        d.mkdir()
        u = Upperd(d, **opts)
        started.append(u)
        return u

    yield start
    failures = []
    for u in started:
        problems = u.cleanup()
        rep = u.sanitizer_report()
        if rep:
            failures.append("sanitizer report from %s:\n%s" %
                            (" ".join(u.cmd), rep[-8000:]))
        if problems:
            failures.append("upperd %s: %s\n%s" %
                            (u.pid, "; ".join(problems), u.diagnostics()))
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


@pytest.fixture
def daemon(upperd):
    """A default daemon: 2 workers, free loopback ports, log to a file."""
    return upperd()


def run_expect_exit(args, timeout=8.0, input=None):
    """Run upperd with args expecting it to exit by itself.  If it is still
    running after timeout, it and its children are killed and the test
    fails.  Returns CompletedProcess with text stdout/stderr."""
    p = subprocess.Popen([UPPERD] + ENGINE_ARGS + list(args),
                         stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kids = children_of(p.pid)
        p.kill()
        for k in kids:
            if is_upperd(k):
                kill_pid(k)
        out, err = p.communicate(timeout=10)
        raise AssertionError("upperd %r still running after %.0fs; "
                             "stderr: %r" % (args, timeout, err[-2000:]))
    return subprocess.CompletedProcess(p.args, p.returncode,
                                       out.decode("utf-8", "replace"),
                                       err.decode("utf-8", "replace"))


def assert_no_sanitizer(text):
    for m in SANITIZER_MARKERS:
        assert m not in text, text[-8000:]
