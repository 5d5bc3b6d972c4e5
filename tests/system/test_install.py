"""
make install / make uninstall (SPEC, "Installing"), into a temporary
DESTDIR: the layout under PREFIX and SYSCONFDIR, unit files naming the
installed binary and config and passing `systemd-analyze verify`, a
logrotate snippet logrotate accepts, a sample config that is never
overwritten and survives uninstall once edited, and nothing else left
behind by uninstall.  systemd is not PID 1 here, so one test plays its
part for the installed units: the sockets the .socket units describe
(names and types as written there), the service's ExecStart=, and its
Type=notify readiness.
"""

import filecmp
import os
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest

from conftest import (BIN_DIR, REPO, assert_no_sanitizer, http_get,
                      tcp_roundtrip, udp_roundtrip, wait_until)
from test_systemd import WRAPPER

MAKE_TIMEOUT = 600  # install builds first if bin/ is out of date
# Installed under share/upperd/<last name>.
SHARE_TREES = ("dashboards", "deploy/prometheus", "deploy/haproxy",
               "deploy/nginx", "deploy/kubernetes")


def make_env():
    """The environment for a sub-make: without the MAKEFLAGS of a make
    that runs this suite (SAN=1 would leak into it)."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(k, None)
    return env


def make(target, destdir, **vars_):
    """make target, installing the build under test (the sanitizer one in
    the ASan pass)."""
    argv = ["make", "--no-print-directory", "-C", REPO, target,
            "DESTDIR=%s" % destdir]
    if os.path.realpath(BIN_DIR) == os.path.realpath(
            os.path.join(REPO, "build", "asan", "bin")):
        argv.append("SAN=1")
    argv += ["%s=%s" % kv for kv in sorted(vars_.items())]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=MAKE_TIMEOUT, env=make_env())
    assert p.returncode == 0, (argv, p.stdout[-4000:], p.stderr[-4000:])
    return p.stdout


def tree(root):
    """Every file and symlink under root, as paths relative to it."""
    out = set()
    for d, _, files in os.walk(root):
        for f in files:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out


def expected_files(prefix, sysconfdir):
    p, e = prefix.lstrip("/"), sysconfdir.lstrip("/")
    files = {
        p + "/sbin/upperd",
        p + "/bin/upper",
        p + "/bin/upper-bench",
        p + "/share/man/man8/upperd.8",
        p + "/share/man/man5/upperd.conf.5",
        p + "/share/man/man1/upper.1",
        p + "/share/man/man1/upper-bench.1",
        e + "/upperd/upperd.conf",
        e + "/logrotate.d/upperd",
    }
    for u in os.listdir(os.path.join(REPO, "deploy", "systemd")):
        files.add(p + "/lib/systemd/system/" + u)
    # dashboards, and the Prometheus scrape example with its rules
    for tree in SHARE_TREES:
        top = os.path.join(REPO, tree)
        for d, _, fs in os.walk(top):
            for f in fs:
                rel = os.path.relpath(os.path.join(d, f), top)
                files.add("%s/share/upperd/%s/%s" %
                          (p, os.path.basename(tree), rel))
    return files


LAYOUTS = [
    pytest.param({}, "/usr/local", "/etc", id="defaults"),
    pytest.param({"PREFIX": "/opt/up", "SYSCONFDIR": "/opt/up/etc"},
                 "/opt/up", "/opt/up/etc", id="prefix-sysconfdir"),
]


@pytest.mark.parametrize("vars_,prefix,sysconfdir", LAYOUTS)
def test_install_layout_and_uninstall(tmp_path, vars_, prefix, sysconfdir):
    dest = str(tmp_path / "dest")
    make("install", dest, **vars_)
    got = tree(dest)
    want = expected_files(prefix, sysconfdir)
    assert got == want, ("missing %s, unexpected %s" %
                         (sorted(want - got), sorted(got - want)))
    root = dest + prefix
    for b in ("sbin/upperd", "bin/upper", "bin/upper-bench"):
        assert os.access(os.path.join(root, b), os.X_OK), b
    v = subprocess.run([root + "/sbin/upperd", "--version"],
                       capture_output=True, text=True, timeout=10)
    assert v.returncode == 0 and "0." in v.stdout + v.stderr, v
    conf = dest + sysconfdir + "/upperd/upperd.conf"
    assert filecmp.cmp(conf, os.path.join(REPO, "deploy", "upperd.conf"),
                       shallow=False)
    unit = open(root + "/lib/systemd/system/upperd.service").read()
    assert re.search(r"^ExecStart=%s/sbin/upperd -c %s/upperd/upperd.conf "
                     % (re.escape(prefix), re.escape(sysconfdir)), unit,
                     re.M), unit
    assert "/usr/sbin" not in unit or prefix == "/usr"
    for f in ("prometheus/prometheus.yml", "prometheus/upperd.rules.yml",
              "prometheus/upperd.alerts.yml", "dashboards/upperd.json"):
        assert os.path.isfile(root + "/share/upperd/" + f), f

    make("uninstall", dest, **vars_)
    assert tree(dest) == set(), sorted(tree(dest))
    assert not os.path.exists(dest + sysconfdir + "/upperd")


def test_edited_config_is_kept(tmp_path):
    """A second install keeps an edited config (and logrotate snippet);
    uninstall removes everything else and leaves them."""
    dest = str(tmp_path / "dest")
    make("install", dest)
    conf = dest + "/etc/upperd/upperd.conf"
    rot = dest + "/etc/logrotate.d/upperd"
    edited = "# mine\nworkers = 3\n"
    with open(conf, "w") as f:
        f.write(edited)
    out = make("install", dest)
    assert "keeping existing" in out, out
    assert open(conf).read() == edited
    make("uninstall", dest)
    assert tree(dest) == {"etc/upperd/upperd.conf"}, sorted(tree(dest))
    assert open(conf).read() == edited
    assert not os.path.exists(rot)


def test_units_pass_systemd_analyze_verify(tmp_path):
    """systemd-analyze verify (no systemd as PID 1 needed) on the units
    as installed, with the binary's path moved into the DESTDIR (verify
    wants it to exist) and man: links resolved by the installed pages."""
    dest = str(tmp_path / "dest")
    make("install", dest, PREFIX="/usr")
    unitdir = dest + "/usr/lib/systemd/system"
    check = tmp_path / "units"
    check.mkdir()
    names = sorted(os.listdir(unitdir))
    assert "upperd.service" in names and "upperd.socket" in names
    for n in names:
        text = open(os.path.join(unitdir, n)).read()
        text = text.replace("/usr/sbin/upperd", dest + "/usr/sbin/upperd")
        (check / n).write_text(text)
    env = dict(os.environ, MANPATH=dest + "/usr/share/man")
    p = subprocess.run(["systemd-analyze", "verify"] +
                       [str(check / n) for n in names],
                       capture_output=True, text=True, timeout=120, env=env,
                       cwd=str(check))
    # verify exits 0 on a typo it ignores (an unknown Type=), so any
    # output at all counts as a failure.
    assert p.returncode == 0 and p.stdout + p.stderr == "", (
        p.returncode, p.stdout, p.stderr)


def test_unit_check_commands_accept_the_installed_config(tmp_path):
    """The service's ExecStartPre= and first ExecReload= (upperd
    --check-config on the installed config) succeed as installed, and
    fail, exit 2, once the config is broken: a reload would be refused."""
    dest = str(tmp_path / "dest")
    make("install", dest)
    unit = open(dest + "/usr/local/lib/systemd/system/upperd.service").read()
    cmds = re.findall(r"^Exec(?:StartPre|Reload)=(.*--check-config.*)$",
                      unit, re.M)
    assert len(cmds) == 2, unit

    def run_cmd(cmd):
        argv = [dest + a if a.startswith(("/usr/local/", "/etc/")) else a
                for a in cmd.split()]
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=30)

    for cmd in cmds:
        p = run_cmd(cmd)
        assert p.returncode == 0, (cmd, p.stderr)
        assert p.stderr.strip().endswith("configuration ok"), p.stderr
    with open(dest + "/etc/upperd/upperd.conf", "a") as f:
        f.write("workers = many\n")
    p = run_cmd(cmds[1])
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "workers" in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr


# What the service unit promises (issue 10): readiness, checked reloads,
# watchdog, restart, a system user and the hardening.
UNIT_PROMISES = (
    r"^Type=notify$", r"^ExecStartPre=\S+/upperd --check-config ",
    r"^ExecReload=\S+/upperd --check-config .*\nExecReload=\S*kill -HUP "
    r"\$MAINPID$", r"^WatchdogSec=\d+", r"^Restart=on-failure$",
    r"^User=upperd$", r"^NoNewPrivileges=yes$", r"^ProtectSystem=strict$",
    r"^ProtectHome=yes$", r"^PrivateTmp=yes$", r"^CapabilityBoundingSet=$",
    r"^LimitNOFILE=\d+$", r"^RuntimeDirectory=upperd$",
    r"^ExecStart=\S+/upperd .*--pid-file /run/upperd/")
# systemd-analyze security's exposure, 0-100 (it prints tenths: 2.8 = 28);
# measured at 2.8 ("OK") with the shipped unit.
EXPOSURE_MAX = 30


def test_service_unit_keeps_its_promises(tmp_path):
    dest = str(tmp_path / "dest")
    make("install", dest, PREFIX="/usr")
    path = dest + "/usr/lib/systemd/system/upperd.service"
    unit = open(path).read()
    broken = [p for p in UNIT_PROMISES if not re.search(p, unit, re.M)]
    assert broken == [], broken
    local = tmp_path / "upperd.service"
    local.write_text(unit.replace("/usr/sbin/upperd",
                                  dest + "/usr/sbin/upperd"))
    p = subprocess.run(["systemd-analyze", "security", "--offline=true",
                        "--threshold=%d" % EXPOSURE_MAX, str(local)],
                       capture_output=True, text=True, timeout=120,
                       cwd=str(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "Overall exposure level" in p.stdout, p.stdout[-2000:]


def test_logrotate_accepts_the_snippet(tmp_path):
    dest = str(tmp_path / "dest")
    make("install", dest)
    snippet = dest + "/etc/logrotate.d/upperd"
    text = open(snippet).read()
    assert re.search(r"postrotate.*kill -USR1", text, re.S), text
    p = subprocess.run(["logrotate", "--debug", "--state",
                        str(tmp_path / "state"), snippet],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "error" not in (p.stdout + p.stderr).lower(), p.stderr


# --------------------------------------------------------------------------
# the installed units, with the test playing systemd (test_systemd's
# WRAPPER: what systemd does between fork and exec for socket activation)


def unit_settings(path):
    """[(key, value)] of a unit file's settings, in file order."""
    out = []
    for line in open(path):
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            k, _, v = line.partition("=")
            out.append((k.strip(), v.strip()))
    return out


class NotifySocket:
    """systemd's end of the notify protocol: an abstract datagram socket
    whose messages a thread collects."""

    def __init__(self):
        self.name = "upperd-install-test-%d" % os.getpid()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.settimeout(0.2)
        self.msgs = []
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while self.running:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            except OSError:
                return
            self.msgs.append(dict(l.split("=", 1) for l in data.split("\n")
                                  if "=" in l))

    def got(self, key):
        return [m for m in list(self.msgs) if key in m]

    def close(self):
        self.running = False
        self.thread.join(2)
        self.sock.close()


def test_installed_units_socket_activate_upperd(tmp_path):
    """Bind what upperd.socket, upperd-udp.socket and upperd-stats.socket
    describe (on loopback ephemeral ports instead of their addresses),
    named by their FileDescriptorName=, and run upperd.service's ExecStart=
    with them: READY=1 comes on the notify socket, and TCP, UDP and the
    stats endpoint all answer on the passed sockets, none on a bound one."""
    dest = str(tmp_path / "dest")
    make("install", dest, PREFIX="/usr")
    unitdir = dest + "/usr/lib/systemd/system"
    svc = dict(unit_settings(unitdir + "/upperd.service"))
    assert svc["Type"] == "notify"
    socks, names, ports = [], [], {}
    for unit in sorted(n for n in os.listdir(unitdir)
                       if n.endswith(".socket")):
        st = unit_settings(os.path.join(unitdir, unit))
        d = dict(st)
        assert d.get("Service", "upperd.service") == "upperd.service", unit
        for k, _ in st:
            if k not in ("ListenStream", "ListenDatagram"):
                continue
            kind = socket.SOCK_STREAM if k == "ListenStream" \
                else socket.SOCK_DGRAM
            s = socket.socket(socket.AF_INET, kind)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            if kind == socket.SOCK_STREAM:
                s.listen(64)
            socks.append(s)
            names.append(d.get("FileDescriptorName", unit))
            ports[d.get("FileDescriptorName", unit)] = s.getsockname()[1]
    assert sorted(names) == ["stats", "tcp", "udp"], names

    pidfile = str(tmp_path / "run" / "upperd.pid")  # RuntimeDirectory=
    os.mkdir(tmp_path / "run")
    argv = []
    for a in svc["ExecStart"].split():
        a = a.replace("/run/upperd/", str(tmp_path / "run") + "/")
        argv.append(dest + a if a.startswith(("/usr/", "/etc/")) else a)
    assert pidfile in argv, argv
    log = str(tmp_path / "upperd.log")
    argv += ["--workers", "2", "--log-file", log]
    fds = [s.fileno() for s in socks]
    notify = NotifySocket()
    env = dict(os.environ, NOTIFY_SOCKET="@" + notify.name,
               LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=":".join(names))
    err = open(tmp_path / "upperd.stderr", "wb")
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, str(len(fds))] +
                            [str(f) for f in fds] + argv, env=env,
                            pass_fds=fds, stdin=subprocess.DEVNULL,
                            stdout=err, stderr=err)
    try:
        wait_until(lambda: proc.poll() is None and notify.got("READY"),
                   timeout=20, msg="READY=1 (log: %s)" % log)
        for s in socks:
            s.close()  # upperd holds its own copies now
        assert tcp_roundtrip(ports["tcp"], b"unit\n") == b"UNIT\n"
        assert udp_roundtrip(ports["udp"], b"unit") == b"UNIT"
        st, _, body = http_get(ports["stats"], "/healthz")
        assert (st, body) == (200, b"ok")
        ready = [l for l in open(log) if " ready: " in l][-1]
        for kind in ("tcp", "udp"):
            assert re.search(r"%s [^,]*:%d\b" % (kind, ports[kind]),
                             ready), ready
        assert ":12000" not in ready and ":9120" not in ready, ready
        assert open(pidfile).read().strip() == str(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
        assert notify.got("STOPPING")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        notify.close()
        err.close()
        for s in socks:
            s.close()
    assert_no_sanitizer(open(tmp_path / "upperd.stderr").read() +
                        open(log).read())
