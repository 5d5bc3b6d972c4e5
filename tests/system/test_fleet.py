"""
The fleet test (issue 12): several upperd behind real HAProxy and nginx,
rolled, reloaded and killed while clients check every byte, monitored by a
real Prometheus with the shipped rules.

Three upperd "hosts" on 127.0.0.2, 127.0.0.3 and 127.0.0.4 (same ports),
each with --shutdown-delay 2.  HAProxy and nginx run as this test's own
children, in the foreground, from deploy/haproxy/haproxy.cfg and
deploy/nginx/nginx.conf with only addresses, ports and run-time paths
(admin socket, logs, pid file) changed.  Prometheus scrapes every instance
and HAProxy every second with deploy/prometheus/ (its evaluation interval
1 s, and UpperdInstanceDown's "for" scaled from 1 m to 2 s so the test
need not wait a minute).

Clients: 20 TCP through HAProxy, 10 TCP through nginx, one UDP through
nginx.  Each TCP client opens a connection, does ROUNDS round trips of
mixed UTF-8 (each reply compared byte for byte with Python's upper()),
half-closes and reads to EOF, and starts again.  Meanwhile:

1. rolling restart: each instance in turn gets TERM (lame duck 2 s, then
   drain) and is started again once it has exited;
2. each instance is HUP-reloaded;
3. HAProxy is reloaded (USR2 to its master, -W mode: seamless);
4. one supervisor is SIGKILLed (the clients are held at a round-trip
   boundary for that instant, so what it had open is known exactly) and,
   once Prometheus' UpperdInstanceDown fires for it, started again.

Required: no failed connect and no wrong byte through either balancer in
any phase; connections cut only at the SIGKILL, exactly as many as that
instance had open; HAProxy takes a lame-duck instance out before it stops
accepting; at rest, what every upperd process counted over its life
equals what the clients sent and received, and Prometheus' fleet sums equal
the instances' /stats; every alerting and recording rule evaluates without
error, UpperdInstanceDown fired for the killed instance and resolved; every
expression of the fleet dashboard returns data for all three instances.

The figures are printed (pytest -s shows them).
"""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

from conftest import (UPPERD, free_port, http_request, pid_alive,
                      port_is_free, recv_exactly, stop_proc, ucase,
                      wait_until)
from test_deploy import (ALERTS, RULES, haproxy_config,
                         nginx_config, prometheus_config, tool)
from test_observability import (DASHBOARD_DIR, Prometheus, dashboard_exprs,
                                load_dashboard, promtool_check_config,
                                substitute)

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
WORKERS = 2
LAME_DUCK_S = 2
DRAIN_S = 15
TCP_HAPROXY_CLIENTS = 20
TCP_NGINX_CLIENTS = 10
ROUNDS = 10         # round trips per connection (fewer connections:
                    # each leaves a TIME-WAIT port behind for 60 s)
THINK_S = 0.02      # pause between round trips: the machine is shared
FLEET_DASHBOARD = os.path.join(DASHBOARD_DIR, "upperd-fleet.json")

WORDS = ["straße", "ǆemal", "hello", "ﬃx", "ünïcödé", "résumé", "ascii",
         "ıi", "σς", "world"]


def ports_free_on_all(kind_udp):
    """A port free for TCP (and UDP if kind_udp) on every host."""
    for _ in range(200):
        s = socket.socket()
        s.bind((HOSTS[0], 0))
        port = s.getsockname()[1]
        s.close()
        ok = True
        for h in HOSTS:
            if kind_udp:
                ok = ok and port_is_free(port, h)
            else:
                t = socket.socket()
                try:
                    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    t.bind((h, port))
                except OSError:
                    ok = False
                finally:
                    t.close()
        if ok:
            return port
    raise RuntimeError("no port free on all hosts")


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
            except OSError:
                continue
            fields = st[st.rindex(")") + 2:].split()
            if int(fields[1]) == pid and fields[0] not in "ZX":
                out.append(int(d))
    return out


def exe_of(pid):
    try:
        return os.path.realpath(os.readlink("/proc/%d/exe" % pid)
                                .replace(" (deleted)", ""))
    except OSError:
        return None


def kill_if(pid, exe, sig=signal.SIGKILL):
    """Kill pid if it still runs exe (never a recycled pid)."""
    if exe_of(pid) == os.path.realpath(exe):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------
# the processes

class Instance:
    """One upperd "host": its address is fixed, its process may change."""

    def __init__(self, tmpdir, idx, host, port, stats_port):
        self.idx, self.host, self.port = idx, host, port
        self.stats_port = stats_port
        self.target = "%s:%d" % (host, stats_port)
        self.dir = os.path.join(tmpdir, "upperd%d" % idx)
        os.makedirs(self.dir)
        self.proc = None
        self.lifetimes = []      # final /stats totals of each process
        self.pids = set()
        self.n = 0

    def start(self):
        self.n += 1
        self.log_path = os.path.join(self.dir, "upperd.%d.log" % self.n)
        self.err = open(os.path.join(self.dir, "stderr.%d" % self.n), "wb")
        self.proc = subprocess.Popen(
            [UPPERD, "--tcp", "%s:%d" % (self.host, self.port),
             "--udp", "%s:%d" % (self.host, self.port),
             "--stats", self.target, "--workers", str(WORKERS),
             "--shutdown-delay", str(LAME_DUCK_S),
             "--drain-timeout", str(DRAIN_S), "--log-file", self.log_path],
            stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err)
        self.pids.add(self.proc.pid)

    def get(self, path, timeout=2.0):
        return http_request(self.stats_port, path, host=self.host,
                            timeout=timeout)

    def stats(self):
        st, _, body = self.get("/stats")
        assert st == 200, (st, body)
        doc = json.loads(body)
        self.pids.update(w["pid"] for w in doc["workers"] if w["pid"])
        return doc

    def healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError("upperd %s exited %s:\n%s" % (
                self.target, self.proc.returncode, self.log()))
        try:
            return self.get("/healthz", timeout=1)[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout=20):
        wait_until(self.healthy, timeout=timeout, interval=0.02,
                   msg="upperd %s ready" % self.target)
        self.stats()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def cleanup(self):
        if self.proc is not None:
            stop_proc(self.proc, signal.SIGQUIT, timeout=10)
        for pid in self.pids:
            kill_if(pid, UPPERD)


class Daemon:
    """HAProxy or nginx in the foreground, our child; stop() by pid."""

    def __init__(self, argv, log_path):
        self.exe = argv[0]
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log)
        self.seen = set()

    def workers(self):
        kids = children(self.proc.pid)
        self.seen.update(kids)
        return kids

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def stop(self):
        self.workers()
        stop_proc(self.proc)
        for pid in self.seen:
            kill_if(pid, self.exe)
        self._log.close()


# --------------------------------------------------------------------------
# the clients

class Tally:
    """What the clients did, by phase."""

    def __init__(self):
        self.lock = threading.Lock()
        self.phase = "start"
        self.by_phase = {}
        self.problems = []   # (phase, client, what)

    def add(self, **kw):
        self.add_in(self.phase, **kw)

    def add_in(self, phase, **kw):
        with self.lock:
            d = self.by_phase.setdefault(phase, {})
            for k, v in kw.items():
                d[k] = d.get(k, 0) + v

    def problem(self, client, what):
        with self.lock:
            self.problems.append((self.phase, client, what,
                                  round(time.monotonic(), 3)))
            d = self.by_phase.setdefault(self.phase, {})
            kind = what.split(":")[0]
            d[kind] = d.get(kind, 0) + 1

    def total(self, key):
        with self.lock:
            return sum(d.get(key, 0) for d in self.by_phase.values())

    def in_phase(self, phase, key):
        with self.lock:
            return self.by_phase.get(phase, {}).get(key, 0)


class Gate:
    """Holds every client at a round-trip boundary on demand."""

    def __init__(self, n):
        self.n = n
        self.cond = threading.Condition()
        self.closed = False
        self.parked = 0

    def point(self, stop):
        with self.cond:
            if not self.closed:
                return
            self.parked += 1
            self.cond.notify_all()
            while self.closed and not stop.is_set():
                self.cond.wait(0.1)
            self.parked -= 1

    def close(self, timeout=15):
        with self.cond:
            self.closed = True
            end = time.monotonic() + timeout
            while self.parked < self.n:
                left = end - time.monotonic()
                assert left > 0, "only %d of %d clients parked" % (
                    self.parked, self.n)
                self.cond.wait(left)

    def open(self):
        with self.cond:
            self.closed = False
            self.cond.notify_all()


def payload(rng, name, k):
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
    tail = b"\xff\xfe" if rng.random() < 0.1 else b""  # not UTF-8: as is
    return ("%s %d %s\n" % (name, k, words)).encode() + tail + b"\n"


def tcp_client(name, port, tally, gate, stop, seed):
    rng = random.Random(seed)
    k = 0
    while not stop.is_set():
        gate.point(stop)
        if stop.is_set():
            break
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError as e:
            tally.problem(name, "connect_fail: %r" % e)
            stop.wait(0.05)
            continue
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tally.add(connects=1)
        ok = True
        try:
            for r in range(ROUNDS):
                data = payload(rng, name, k)
                k += 1
                want = ucase(data)
                try:
                    s.sendall(data)
                    got = recv_exactly(s, len(want), timeout=10)
                except (OSError, AssertionError) as e:
                    tally.problem(name, "cut: round %d: %r" % (r, e))
                    ok = False
                    stop.wait(0.05)
                    break
                if got != want:
                    tally.problem(name, "wrong: %r != %r" % (got, want))
                    ok = False
                    break
                tally.add(round_trips=1, tcp_sent=len(data),
                          tcp_recv=len(got), lines=data.count(b"\n"))
                if r < ROUNDS - 1:
                    # parked here, the connection stays open: it is one
                    # the SIGKILL may cut
                    gate.point(stop)
                    stop.wait(THINK_S)
            if ok:
                # the textbook end: half-close, the server closes after
                s.shutdown(socket.SHUT_WR)
                s.settimeout(10)
                try:
                    rest = s.recv(1024)
                except OSError as e:
                    tally.problem(name, "cut: at EOF: %r" % e)
                else:
                    if rest:
                        tally.problem(name, "wrong: after EOF %r" % rest)
                    else:
                        tally.add(closed_clean=1)
        finally:
            s.close()


def udp_client(name, port, tally, gate, stop, seed):
    rng = random.Random(seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", port))
    sent = {}       # seq -> expected reply
    phase_of = {}   # seq -> the phase it was sent in
    replied = set()
    timed_out = set()

    def take(reply):
        if reply == b"":
            # nginx's answer when the instance it chose is down (see
            # deploy/nginx/nginx.conf): the current datagram is lost
            tally.add_in(phase_of[seq], udp_empty=1)
            return seq
        m = re.match(rb"DGRAM (\d+) ", reply)
        n = int(m.group(1)) if m else -1
        if n not in sent:
            tally.problem(name, "wrong: unknown reply %r" % reply[:80])
        elif reply != sent[n]:
            tally.problem(name, "wrong: %r != %r" % (reply, sent[n]))
        elif n in replied:
            tally.problem(name, "wrong: reply twice for %d" % n)
        else:
            replied.add(n)
            tally.add(udp_replies=1, udp_sent_bytes=len(data_of[n]),
                      udp_recv_bytes=len(reply))
            if n in timed_out:      # late, not lost
                tally.add_in(phase_of[n], udp_lost=-1)
        return n

    data_of = {}
    seq = 0
    try:
        while not stop.is_set():
            gate.point(stop)
            if stop.is_set():
                break
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(
                0, 20)))
            data = ("dgram %d %s" % (seq, words)).encode()
            data_of[seq] = data
            sent[seq] = ucase(data)
            phase_of[seq] = tally.phase
            s.send(data)
            tally.add(udp_sent=1)
            end = time.monotonic() + 1.0
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    timed_out.add(seq)
                    tally.add_in(phase_of[seq], udp_lost=1)
                    break
                s.settimeout(left)
                try:
                    if take(s.recv(65536)) == seq:
                        break
                except socket.timeout:
                    continue
                except OSError:   # ICMP from nginx's side: retry
                    tally.add(udp_errors=1)
                    stop.wait(0.05)
                    break
            seq += 1
            stop.wait(THINK_S)
        # late replies
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            s.settimeout(max(0.01, end - time.monotonic()))
            try:
                take(s.recv(65536))
            except (socket.timeout, OSError):
                pass
    finally:
        s.close()


# --------------------------------------------------------------------------
# HAProxy's view

def haproxy_status(prom_port):
    """{server: "UP"|"DOWN"|...} from HAProxy's exporter."""
    st, _, body = http_request(prom_port, "/metrics?scope=server",
                               timeout=2)
    assert st == 200
    out = {}
    for m in re.finditer(r'^haproxy_server_status\{proxy="upperd",'
                         r'server="(\w+)",state="(\w+)"\} 1$',
                         body.decode(), re.M):
        out[m.group(1)] = m.group(2)
    return out


def haproxy_counter(prom_port, name):
    st, _, body = http_request(prom_port, "/metrics?scope=backend",
                               timeout=2)
    m = re.search(r'^%s\{proxy="upperd"\} (\S+)$' % name, body.decode(),
                  re.M)
    return float(m.group(1)) if m else None


# --------------------------------------------------------------------------

def prometheus_rules(pdir):
    """The shipped rule files, UpperdInstanceDown's "for" scaled 1m -> 2s."""
    shutil.copy(RULES, os.path.join(pdir, os.path.basename(RULES)))
    text = open(ALERTS).read()
    scaled, n = re.subn(r'(expr: up\{job="upperd"\} == 0\n\s+for:) 1m',
                        r"\1 2s", text)
    assert n == 1
    with open(os.path.join(pdir, os.path.basename(ALERTS)), "w") as f:
        f.write(scaled)


def test_fleet(tmp_path):
    for t in ("haproxy", "nginx", "promtool"):
        tool(t)
    prom_bin = tool("prometheus")
    tmp = str(tmp_path)
    port = ports_free_on_all(True)
    stats_port = ports_free_on_all(False)
    while stats_port == port:
        stats_port = ports_free_on_all(False)
    fronts = {k: free_port() for k in ("haproxy", "hprom", "ntcp", "nudp")}

    insts = [Instance(tmp, i + 1, h, port, stats_port)
             for i, h in enumerate(HOSTS)]
    daemons = []
    prom = None
    stop = threading.Event()
    threads = []
    figures = {}
    try:
        for inst in insts:
            inst.start()
        for inst in insts:
            inst.wait_ready()

        # HAProxy, master-worker, foreground
        hdir = os.path.join(tmp, "haproxy")
        os.makedirs(hdir)
        hcfg = os.path.join(hdir, "haproxy.cfg")
        with open(hcfg, "w") as f:
            f.write(haproxy_config(HOSTS, port, stats_port,
                                   fronts["haproxy"], fronts["hprom"], hdir))
        r = subprocess.run([tool("haproxy"), "-c", "-f", hcfg],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        hap = Daemon([tool("haproxy"), "-W", "-db", "-f", hcfg, "-p",
                      os.path.join(hdir, "haproxy.pid")],
                     os.path.join(hdir, "haproxy.log"))
        daemons.append(hap)

        # nginx, foreground
        ndir = os.path.join(tmp, "nginx")
        os.makedirs(ndir)
        ncfg = os.path.join(ndir, "nginx.conf")
        with open(ncfg, "w") as f:
            f.write(nginx_config(HOSTS, port, fronts["ntcp"], fronts["nudp"],
                                 ndir))
        ngx = Daemon([tool("nginx"), "-p", ndir, "-c", ncfg, "-g",
                      "daemon off; pid %s/nginx.pid;" % ndir],
                     os.path.join(ndir, "nginx.stderr"))
        daemons.append(ngx)

        # Prometheus with the shipped config and rules
        pdir = os.path.join(tmp, "prometheus")
        os.makedirs(pdir)
        prometheus_rules(pdir)
        pcfg = prometheus_config([i.target for i in insts],
                                 "127.0.0.1:%d" % fronts["hprom"])
        with open(os.path.join(pdir, "check.yml"), "w") as f:
            f.write(pcfg)
        promtool_check_config(tool("promtool"),
                              os.path.join(pdir, "check.yml"))
        prom = Prometheus(prom_bin, pdir, pcfg)

        wait_until(lambda: hap.proc.poll() is None and set(
            haproxy_status(fronts["hprom"]).values()) == {"UP"} and len(
            haproxy_status(fronts["hprom"])) == 3, timeout=20,
            interval=0.05, msg="HAProxy up with 3 servers UP")

        # bytes that reach upperd other than the clients': this probe and
        # the connections held during the drains below
        extra = {"sent": 0, "recv": 0, "lines": 0, "accepted": 0}

        def nginx_ready():
            assert ngx.proc.poll() is None, ngx.log()
            try:
                s = socket.create_connection(
                    ("127.0.0.1", fronts["ntcp"]), timeout=1)
            except OSError:
                return False    # not listening: nothing reached upperd
            try:
                s.sendall(b"probe\n")
                assert recv_exactly(s, 6, timeout=5) == b"PROBE\n"
            finally:
                s.close()
            for k, v in (("sent", 6), ("recv", 6), ("lines", 1),
                         ("accepted", 1)):
                extra[k] += v
            return True
        wait_until(nginx_ready, timeout=20, msg="nginx listening")
        prom.wait_ready()

        def targets_up():
            ts = prom.api("targets")["data"]["activeTargets"]
            return sum(t["health"] == "up" for t in ts) == 4
        wait_until(targets_up, timeout=30, interval=0.2,
                   msg="prometheus scraping 3 upperd and HAProxy")

        # the clients
        tally = Tally()
        n_clients = TCP_HAPROXY_CLIENTS + TCP_NGINX_CLIENTS + 1
        gate = Gate(n_clients)
        for i in range(TCP_HAPROXY_CLIENTS):
            threads.append(threading.Thread(
                target=tcp_client, args=("h%d" % i, fronts["haproxy"], tally,
                                         gate, stop, i), daemon=True))
        for i in range(TCP_NGINX_CLIENTS):
            threads.append(threading.Thread(
                target=tcp_client, args=("n%d" % i, fronts["ntcp"], tally,
                                         gate, stop, 100 + i), daemon=True))
        threads.append(threading.Thread(
            target=udp_client, args=("u", fronts["nudp"], tally, gate, stop,
                                     999), daemon=True))
        t_start = time.monotonic()
        tally.phase = "warmup"
        for t in threads:
            t.start()
        wait_until(lambda: tally.total("round_trips") > 200 and
                   tally.total("udp_replies") > 10, timeout=30,
                   msg="traffic flowing")

        # 1. rolling restart
        tally.phase = "rolling"
        out_times = []
        for k, inst in enumerate(insts):
            held = socket.create_connection((inst.host, inst.port),
                                            timeout=5)
            held.sendall(b"held\n")
            assert recv_exactly(held, 5) == b"HELD\n"
            extra["sent"] += 5
            extra["recv"] += 5
            extra["lines"] += 1
            extra["accepted"] += 1
            server = "upperd%d" % (k + 1)
            t0 = time.monotonic()
            inst.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: haproxy_status(fronts["hprom"]).get(server)
                       == "DOWN", timeout=10, interval=0.01,
                       msg="HAProxy takes %s out" % server)
            out_times.append(time.monotonic() - t0)
            # the drain: only the held connection left, counters final
            wait_until(lambda: inst.stats()["state"] == "draining" and
                       inst.stats()["totals"]["tcp_connections_active"]
                       == 1, timeout=DRAIN_S, interval=0.05,
                       msg="%s drained to the held connection" % server)
            inst.lifetimes.append(inst.stats()["totals"])
            held.close()
            assert inst.proc.wait(timeout=DRAIN_S + 5) == 0, inst.log()
            inst.start()
            inst.wait_ready()
            wait_until(lambda: haproxy_status(fronts["hprom"]).get(server)
                       == "UP", timeout=15, interval=0.05,
                       msg="HAProxy takes %s back" % server)
        figures["haproxy_out_s"] = out_times
        assert all(t < LAME_DUCK_S for t in out_times), out_times

        # 2. HUP each
        tally.phase = "hup"
        for inst in insts:
            before = inst.stats()
            inst.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: (lambda d: all(
                w["restarts_by_reason"]["reload"] ==
                b["restarts_by_reason"]["reload"] + 1 and
                w["state"] == "running" for w, b in zip(
                    d["workers"], before["workers"])))(inst.stats()),
                timeout=20, interval=0.05,
                msg="%s reloaded" % inst.target)
        # traffic through the reloaded fleet
        mark = tally.total("round_trips")
        wait_until(lambda: tally.total("round_trips") > mark + 100,
                   timeout=20, msg="traffic after the reloads")

        # 3. HAProxy reload (master-worker: USR2, listeners passed on)
        tally.phase = "haproxy-reload"
        old = set(hap.workers())
        assert old
        hap.proc.send_signal(signal.SIGUSR2)
        wait_until(lambda: set(hap.workers()) - old, timeout=15,
                   interval=0.05, msg="a new HAProxy worker")
        wait_until(lambda: not (set(hap.workers()) & old), timeout=30,
                   interval=0.05, msg="the old HAProxy worker gone")
        assert hap.proc.poll() is None, hap.log()
        mark = tally.total("round_trips")
        wait_until(lambda: tally.total("round_trips") > mark + 100,
                   timeout=20, msg="traffic after the HAProxy reload")

        # 4. SIGKILL one supervisor, with the clients held still
        victim = insts[1]
        vserver = "upperd2"
        gate.close()
        tally.phase = "kill"
        last = victim.stats()
        open_conns = last["totals"]["tcp_connections_active"]
        victim.lifetimes.append(last["totals"])
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=10)
        t_kill = time.monotonic()
        # its workers die of the supervisor's death (PDEATHSIG); until the
        # last one is gone its sockets still take connections, which the
        # death then cuts too: those were open on it as well
        wpids = [w["pid"] for w in last["workers"] if w["pid"]]
        wait_until(lambda: not any(pid_alive(p) for p in wpids),
                   timeout=10, interval=0.001, msg="the workers gone")
        gate.open()

        def alert_state():
            res = prom.api("alerts")["data"]["alerts"]
            return [a["state"] for a in res
                    if a["labels"]["alertname"] == "UpperdInstanceDown" and
                    a["labels"]["instance"] == victim.target]
        wait_until(lambda: "firing" in alert_state(), timeout=30,
                   interval=0.1, msg="UpperdInstanceDown firing for %s" %
                   victim.target)
        figures["alert_fired_after_s"] = time.monotonic() - t_kill
        mark = tally.total("round_trips")
        wait_until(lambda: tally.total("round_trips") > mark + 100,
                   timeout=20, msg="traffic with one instance down")
        victim.start()
        victim.wait_ready()
        wait_until(lambda: alert_state() == [], timeout=30, interval=0.1,
                   msg="UpperdInstanceDown resolved")
        wait_until(lambda: haproxy_status(fronts["hprom"]).get(vserver)
                   == "UP", timeout=15, interval=0.05,
                   msg="HAProxy takes %s back" % vserver)
        tally.phase = "after"
        mark = tally.total("round_trips")
        wait_until(lambda: tally.total("round_trips") > mark + 100,
                   timeout=20, msg="traffic after the restart")

        # the fleet dashboard, all instances selected, under traffic, once
        # the restarted instance has filled a rate window ($__rate_interval
        # is 5 s here) with scrapes
        wait_until(lambda: prom.value(
            'count_over_time(up{instance="%s"}[5s]) >= 4 and '
            'min_over_time(up{instance="%s"}[5s]) == 1' % (
                victim.target, victim.target)), timeout=15, interval=0.2,
            msg="a full rate window of %s" % victim.target)
        # as Grafana expands "All" of a multi-value variable in a regex
        # matcher: each value regex-escaped, inside a PromQL string
        values = {"instance": "(" + "|".join(
            re.escape(i.target).replace("\\", "\\\\")
            for i in insts) + ")",
            "worker": "(" + "|".join(str(w) for w in range(WORKERS)) + ")",
            "datasource": "prometheus", "DS_PROMETHEUS": "prometheus"}
        failures = []
        dash = load_dashboard(FLEET_DASHBOARD)
        exprs = dashboard_exprs(dash)
        assert len(exprs) >= 15
        for where, expr in exprs:
            q = substitute(expr, values)
            doc = prom.query(q)
            if doc.get("status") != "success" or not doc["data"]["result"]:
                failures.append("%s: %s -> %s" % (where, q, doc))
                continue
            res = doc["data"]["result"]
            got = {r["metric"].get("instance") for r in res}
            if got != {None} and got != {i.target for i in insts}:
                failures.append("%s: instances %s" % (where, got))
            if where.split(" > ")[-1].startswith("Imbalance"):
                v = float(res[0]["value"][1])
                if not 1 <= v < 3:   # max over mean of three
                    failures.append("%s: %r" % (where, v))
        assert not failures, "\n".join(failures)
        # at rest
        stop.set()
        for t in threads:
            t.join(20)
        assert not any(t.is_alive() for t in threads)
        figures["duration_s"] = time.monotonic() - t_start
        wait_until(lambda: all(i.stats()["totals"]["tcp_connections_active"]
                               == 0 for i in insts), timeout=10,
                   msg="every connection closed")
        now = [i.stats() for i in insts]

        # --- the clients' view --------------------------------------
        figures["connections"] = tally.total("connects")
        figures["round_trips"] = tally.total("round_trips")
        figures["datagrams_sent"] = tally.total("udp_sent")
        figures["datagrams_answered"] = tally.total("udp_replies")
        figures["cuts_at_sigkill"] = tally.in_phase("kill", "cut")
        figures["open_on_killed"] = open_conns
        figures["by_phase"] = tally.by_phase
        figures["haproxy_retries"] = haproxy_counter(
            fronts["hprom"], "haproxy_backend_retry_warnings_total")
        figures["haproxy_redispatches"] = haproxy_counter(
            fronts["hprom"], "haproxy_backend_redispatch_warnings_total")
        figures["datagrams_lost"] = tally.total("udp_lost")
        figures["datagrams_empty_from_nginx"] = tally.total("udp_empty")
        with open(os.path.join(ndir, "upperd.log")) as f:
            nlog = f.read().splitlines()
        figures["nginx_tcp_refused_tries"] = sum(
            l.count(",") for l in nlog if " TCP " in l)
        # one error line per datagram an instance refused (a UDP session
        # may carry many datagrams, so the access log cannot tell)
        with open(os.path.join(ndir, "error.log")) as f:
            nginx_udp_refused = sum(
                1 for l in f if "recv() failed (111: Connection refused) "
                "while proxying and reading from upstream, udp client" in l)
        print("\nfleet figures: " + json.dumps(figures, indent=1,
                                               sort_keys=True))

        bad = [p for p in tally.problems
               if not (p[0] == "kill" and p[2].startswith("cut"))]
        assert not bad, "failed connects, wrong bytes or cuts outside the " \
            "SIGKILL: %r\nnginx's failed sessions:\n%s\nnginx's errors:\n%s" \
            % (bad[:20], "\n".join(l for l in nlog if " TCP 200 " not in l
                                   and " UDP 200 " not in l)[-3000:],
               "\n".join(l for l in open(os.path.join(ndir, "error.log"))
                         if "[error]" in l)[-3000:])
        assert tally.total("connect_fail") == 0
        assert tally.total("wrong") == 0
        assert figures["cuts_at_sigkill"] == open_conns, (
            "cut %d, the killed instance had %d open (killed at %.3f): %r" %
            (figures["cuts_at_sigkill"], open_conns, t_kill,
             [p for p in tally.problems if p[0] == "kill"]))
        assert open_conns > 0, "the SIGKILL cut nothing: nothing open?"
        # UDP: every empty reply is one nginx sent for a datagram that met
        # a stopped instance (its error log says so), only while one was
        # stopped; the rest were all answered right
        assert tally.total("udp_empty") == nginx_udp_refused
        for ph, d in tally.by_phase.items():
            if ph not in ("rolling", "kill"):
                assert not d.get("udp_empty") and not d.get("udp_lost"), \
                    (ph, d)
        for ph in ("warmup", "rolling", "hup", "haproxy-reload", "kill",
                   "after"):
            assert tally.in_phase(ph, "round_trips") > 0, ph

        # --- what every upperd process counted, against the clients --
        lives = [t for i in insts for t in i.lifetimes] + \
            [d["totals"] for d in now]

        def server(key):
            return sum(t[key] for t in lives)
        assert server("tcp_bytes_received") == tally.total("tcp_sent") + \
            extra["sent"]
        assert server("tcp_bytes_sent") == tally.total("tcp_recv") + \
            extra["recv"]
        assert server("tcp_lines_received") == tally.total("lines") + \
            extra["lines"]
        assert server("tcp_connections_accepted") == \
            tally.total("connects") + extra["accepted"]
        assert server("udp_datagrams_received") == \
            server("udp_datagrams_sent") == tally.total("udp_replies")
        assert server("udp_bytes_received") == tally.total("udp_sent_bytes")
        assert server("udp_bytes_sent") == tally.total("udp_recv_bytes")
        assert server("tcp_connections_rejected") == 0

        # --- Prometheus ------------------------------------------------
        fleet_now = sum(d["totals"]["tcp_bytes_received"] for d in now)
        wait_until(lambda: prom.value(
            'sum(upperd_tcp_bytes_received_total{job="upperd"})') ==
            fleet_now, timeout=10, interval=0.2,
            msg="prometheus' fleet sum = the /stats totals")
        for key in ("tcp_bytes_sent", "tcp_connections_accepted",
                    "udp_datagrams_received"):
            assert prom.value('sum(upperd_%s_total{job="upperd"})' % key) \
                == sum(d["totals"][key] for d in now), key
        assert prom.value("job:upperd_instances_up:sum") == 3
        assert prom.value("job:upperd_instances:count") == 3
        assert prom.value("job:upperd_workers_running:sum") == \
            3 * WORKERS
        rates = prom.query("instance:upperd_tcp_connections_accepted:"
                           "rate1m")["data"]["result"]
        assert len(rates) == 3 and all(float(r["value"][1]) > 0
                                       for r in rates), rates
        # every rule evaluated, none in error
        groups = prom.api("rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        assert len(rules) >= 20, len(rules)
        errs = [(r["name"], r.get("lastError")) for r in rules
                if r["health"] != "ok" or r.get("lastError")]
        assert not errs, errs
        # the down instance showed in the recorded history too (fewer, if
        # a scrape of another one timed out on this busy machine)
        doc = prom.query('min_over_time(job:upperd_instances_up:sum[5m])')
        assert float(doc["data"]["result"][0]["value"][1]) <= 2

        for d in daemons:
            assert d.proc.poll() is None, d.log()
    finally:
        stop.set()
        for t in threads:
            t.join(20)
        if prom is not None:
            prom.stop()
        for d in daemons:
            d.stop()
        for inst in insts:
            inst.cleanup()
