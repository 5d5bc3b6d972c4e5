"""
Bad input of every kind: command-line flags, config files, ports in use,
garbage bytes, huge writes, a client that never reads, the largest UDP
datagram, and a flood of garbage on the HTTP port.
"""

import hashlib
import os
import random
import select
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import (UPPERD, children_of, free_port, http_get, http_raw,
                      is_upperd, port_is_free, recv_exactly, recv_until_eof,
                      rss_kib, run_expect_exit, status_of, tcp_connect,
                      tcp_roundtrip, ucase, udp_roundtrip, wait_until,
                      assert_no_sanitizer)


def addr_args():
    p, s = free_port(), free_port()
    return p, s, ["--tcp", "127.0.0.1:%d" % p, "--udp", "127.0.0.1:%d" % p,
                  "--stats", "127.0.0.1:%d" % s]


def assert_one_line(text):
    assert_no_sanitizer(text)
    lines = text.splitlines()
    assert len(lines) == 1 and text.endswith("\n"), \
        "want exactly one line on stderr, got %r" % text
    assert lines[0].strip(), text
    return lines[0]


def assert_nothing_left(p, s):
    """Nothing serves or holds the ports."""
    wait_until(lambda: port_is_free(p) and port_is_free(s), 3,
               msg="ports %d and %d free" % (p, s))


# (extra args, words of which at least one must appear in the message)
BAD_FLAGS = [
    (["--bogus"], ["bogus"]),
    (["-Z"], ["Z"]),
    (["--workers", "0"], ["workers", "0"]),
    (["--workers", "abc"], ["workers", "abc"]),
    (["--workers", "1025"], ["workers", "1025"]),
    (["--workers", "-1"], ["workers", "-1"]),
    (["--workers", "2x"], ["workers", "2x"]),
    (["--workers"], ["workers"]),
    (["--case", "foo"], ["case", "foo"]),
    (["--tcp", "garbage"], ["tcp", "garbage"]),
    (["--tcp", "127.0.0.1:99999"], ["tcp", "99999"]),
    (["--udp", "127.0.0.1"], ["udp", "127.0.0.1"]),
    (["--stats", "nonsense:port"], ["stats", "nonsense"]),
    (["--log-level", "loud"], ["log-level", "log_level", "loud"]),
    (["--sched-policy", "fifo"], ["sched-policy", "fifo"]),
    (["--max-conns", "many"], ["max-conns", "max_conns", "many"]),
    (["--idle-timeout", "soon"], ["idle-timeout", "idle_timeout", "soon"]),
    (["--drain-timeout", "-5"], ["drain-timeout", "drain_timeout", "-5"]),
    (["extra"], ["extra"]),
]


@pytest.mark.parametrize("extra,words", BAD_FLAGS,
                         ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_is_one_line_and_exit_2(extra, words):
    p, s, args = addr_args()
    r = run_expect_exit(args + extra)
    assert r.returncode == 2, (r.returncode, r.stderr)
    line = assert_one_line(r.stderr)
    assert any(w.lower() in line.lower() for w in words), line
    assert r.stdout == ""
    assert_nothing_left(p, s)


def test_help_and_version():
    r = run_expect_exit(["--help"])
    assert r.returncode == 0
    assert "--workers" in r.stdout and "--tcp" in r.stdout
    r = run_expect_exit(["-V"])
    assert r.returncode == 0
    assert "0.1.0" in r.stdout
    r = run_expect_exit(["--version"])
    assert r.returncode == 0
    assert "0.1.0" in r.stdout


@pytest.mark.parametrize("content", [
    "bogus = 1\n",
    "workers = abc\n",
    "workers = 0\n",
    "case = shouting\n",
    "# fine\nworkers = 2\nthis line has no equals sign\n",
], ids=["unknown-key", "bad-value", "zero-workers", "bad-case", "no-equals"])
def test_bad_config_file(tmp_path, content):
    conf = tmp_path / "upperd.conf"
    conf.write_text(content)
    p, s, args = addr_args()
    r = run_expect_exit(args + ["--config", str(conf)])
    assert r.returncode == 2, (r.returncode, r.stderr)
    line = assert_one_line(r.stderr)
    assert str(conf) in line or "upperd.conf" in line, line
    assert_nothing_left(p, s)


def test_missing_config_file(tmp_path):
    conf = tmp_path / "missing.conf"
    p, s, args = addr_args()
    r = run_expect_exit(args + ["-c", str(conf)])
    assert r.returncode == 2, (r.returncode, r.stderr)
    line = assert_one_line(r.stderr)
    assert "missing.conf" in line, line
    assert_nothing_left(p, s)


def test_good_config_file_and_override(upperd, tmp_path):
    conf = tmp_path / "good.conf"
    conf.write_text("# upperd settings\n\nworkers = 1\ncase = ascii\n"
                    "  log-level = debug\n")
    d = upperd(workers=None, config=str(conf))
    doc = d.stats()
    assert doc["workers_configured"] == 1
    assert udp_roundtrip(d.udp_port, "straße".encode()) == "STRAßE".encode()
    # the command line wins over the file
    d2 = upperd(workers=3, config=str(conf))
    assert d2.stats()["workers_configured"] == 3


@pytest.mark.parametrize("which", ["tcp", "udp", "stats"])
def test_port_in_use(which):
    p, s, args = addr_args()
    if which == "tcp":
        hog = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        hog.bind(("127.0.0.1", p))
        hog.listen(1)
    elif which == "udp":
        hog = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        hog.bind(("127.0.0.1", p))
    else:
        hog = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        hog.bind(("127.0.0.1", s))
        hog.listen(1)
    try:
        r = run_expect_exit(args)
        assert r.returncode == 1, (r.returncode, r.stderr)
        line = assert_one_line(r.stderr)
        assert str(s if which == "stats" else p) in line, line
    finally:
        hog.close()
    assert_nothing_left(p, s)


# "Valid UTF-8 uppercased, invalid bytes unchanged", spelled out.
SPELLED_OUT = [
    (b"a\xffb", b"A\xffB"),
    ("straße".encode(), b"STRASSE"),
    (b"\xe2\x82x", b"\xe2\x82X"),                      # truncated
    (b"\xed\xa0\x80a", b"\xed\xa0\x80A"),              # surrogate
    (b"\xc0\xafz", b"\xc0\xafZ"),                      # overlong
    (b"\xf4\x90\x80\x80q", b"\xf4\x90\x80\x80Q"),      # > U+10FFFF
    (b"\x00\xc3\xa9\x00", b"\x00\xc3\x89\x00"),
    # invalid bytes never merge with neighbours into something valid
    (b"\xc3\xc3\xa9", b"\xc3\xc3\x89"),
]


def test_invalid_utf8_through_upperd_as_spelled_out(daemon):
    """upperd gives the spelled-out answers over UDP and TCP, and so does
    the oracle (ucase) the other tests compare upperd with; on random
    bytes upperd agrees with the oracle, which round-trips every byte
    string through its decode and encode."""
    for data, want in SPELLED_OUT:
        assert ucase(data) == want, data
        assert udp_roundtrip(daemon.udp_port, data) == want, data
    stream = b"".join(d + b"\n" for d, _ in SPELLED_OUT)
    exp = b"".join(w + b"\n" for _, w in SPELLED_OUT)
    assert tcp_roundtrip(daemon.tcp_port, stream, len(exp)) == exp
    rnd = random.Random(7)
    for _ in range(200):
        b = bytes(rnd.randrange(256) for _ in range(64))
        assert b.decode("utf-8", "surrogateescape").encode(
            "utf-8", "surrogateescape") == b
        assert udp_roundtrip(daemon.udp_port, b) == ucase(b), b


def test_garbage_bytes_tcp(daemon):
    rnd = random.Random(20261121)
    data = bytes(rnd.randrange(256) for _ in range(64 * 1024))
    assert b"\x00" in data
    # random segment sizes so sequences get split across reads
    chunks = [rnd.randrange(1, 4096) for _ in range(60)]
    exp = ucase(data)
    got = tcp_roundtrip(daemon.tcp_port, data, len(exp), timeout=30,
                        chunks=chunks)
    assert got == exp
    # the connection survived and the service is fine
    assert udp_roundtrip(daemon.udp_port, b"ok") == b"OK"


def test_garbage_bytes_udp(daemon):
    rnd = random.Random(42)
    for _ in range(50):
        data = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 2000)))
        assert udp_roundtrip(daemon.udp_port, data) == ucase(data)


def test_10mib_without_newline(daemon):
    rnd = random.Random(10)
    unit = ("abcdefghijklmnopqrstuvwxyz straße ǆ " * 64).encode()
    data = unit * (10 * 1024 * 1024 // len(unit) + 1)
    data = data[:10 * 1024 * 1024]
    assert b"\n" not in data
    exp = ucase(data)
    s = tcp_connect(daemon.tcp_port, timeout=60)
    err = []

    def send():
        try:
            off = 0
            while off < len(data):
                n = rnd.randrange(1, 256 * 1024)
                s.sendall(data[off:off + n])
                off += n
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=send, daemon=True)
    t.start()
    try:
        got = recv_exactly(s, len(exp), timeout=90)
    finally:
        t.join(30)
        s.close()
    assert not err
    assert len(got) == len(exp)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(exp).hexdigest()


def test_client_that_never_reads(upperd):
    """One client sends and never reads; the worker must stop reading from
    it (so its send blocks) and keep serving another client; memory stays
    bounded.  One worker, so both clients share it."""
    d = upperd(workers=1)
    pid = d.worker_pids()[0]
    rss0 = rss_kib(pid)
    hog = tcp_connect(d.tcp_port)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    hog.setblocking(False)
    chunk = b"never read me " * 4681  # ~64 KiB
    sent = 0
    blocked = False
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            try:
                sent += hog.send(chunk)
                continue
            except BlockingIOError:
                pass
            # not writable for a whole second: the server stopped reading
            _, w, _ = select.select([], [hog], [], 1.0)
            if not w:
                blocked = True
                break
        assert blocked, "sent %d bytes in 20 s and the socket never " \
            "blocked" % sent
        assert sent < 512 * 1024 * 1024
        # another client on the same worker is served correctly
        for i in range(20):
            msg = ("other client %d straße\n" % i).encode()
            exp = ucase(msg)
            assert tcp_roundtrip(d.tcp_port, msg, len(exp)) == exp
            assert udp_roundtrip(d.udp_port, msg) == exp
        grew = rss_kib(pid) - rss0
        assert grew < 64 * 1024, "worker RSS grew by %d KiB" % grew
        assert d.worker_pids() == [pid], "worker was replaced"
    finally:
        hog.close()
    wait_until(lambda: d.stats()["totals"]["tcp_connections_active"] == 0,
               10, msg="the hog's connection closed")
    msg = b"after the hog\n"
    assert tcp_roundtrip(d.tcp_port, msg, len(msg)) == msg.upper()


def test_largest_udp_datagram(daemon):
    data = bytes(ord("a") + i % 26 for i in range(65507))
    reply = udp_roundtrip(daemon.udp_port, data, bufsize=70000)
    assert len(reply) == 65507
    assert reply == data.upper()
    # multi-byte text of the maximum size
    data = "ß".encode() * (65506 // 2) + b"x"
    assert len(data) == 65507
    assert udp_roundtrip(daemon.udp_port, data, bufsize=70000) == ucase(data)


def test_300_datagrams_each_answered(daemon):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    try:
        for i in range(300):
            msg = b"datagram %d" % i
            s.sendto(msg, ("127.0.0.1", daemon.udp_port))
            reply, _ = s.recvfrom(2048)
            assert reply == msg.upper()
    finally:
        s.close()


def test_http_garbage_flood(daemon):
    """Garbage, half requests and idle connections on the stats port do not
    break it, nor the service."""
    rnd = random.Random(99)
    workers = daemon.worker_pids()
    idle = []
    try:
        for i in range(150):
            c = socket.create_connection(("127.0.0.1", daemon.stats_port),
                                         timeout=5)
            kind = i % 3
            if kind == 0:
                try:
                    c.sendall(bytes(rnd.randrange(256)
                                    for _ in range(rnd.randrange(1, 3000))))
                except OSError:
                    pass
                c.close()
            elif kind == 1:
                c.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\n")  # never ends
                idle.append(c)
            else:
                idle.append(c)  # connects and says nothing
        # while those are open, the endpoints answer promptly
        t0 = time.monotonic()
        st, _, body = http_get(daemon.stats_port, "/healthz", timeout=5)
        assert (st, body.strip()) == (200, b"ok")
        doc = daemon.stats()
        assert doc["workers_running"] == 2
        assert daemon.metrics().get("upperd_workers_running") == 2
        assert time.monotonic() - t0 < 5
        for i in range(20):
            raw = http_raw(daemon.stats_port, b"\xff" * 64 + b"\r\n\r\n",
                           timeout=5)
    finally:
        for c in idle:
            c.close()
    assert daemon.alive()
    assert daemon.worker_pids() == workers
    assert udp_roundtrip(daemon.udp_port, b"still") == b"STILL"
    st, _, body = http_get(daemon.stats_port, "/healthz")
    assert st == 200


# --------------------------------------------------------------------------
# Classes added with the fuzzing round (README "Bad input"): each names
# what is sent, what must come of it, and that the service is undisturbed.

@pytest.mark.parametrize("kind", ["directory", "nul", "long-value",
                                  "config-key", "endless"])
def test_config_file_that_is_not_a_config(tmp_path, kind):
    """A directory, a NUL byte, an over-long value, a "config" key inside
    the file, and a file that never ends (/dev/zero: it was read forever):
    one line naming the file, exit 2, promptly."""
    if kind == "directory":
        conf = str(tmp_path)
    elif kind == "endless":
        conf = "/dev/zero"
    else:
        conf = str(tmp_path / "upperd.conf")
        with open(conf, "wb") as f:
            f.write({"nul": b"workers = 2\x00\n",
                     "long-value": b"user = " + b"a" * 100000 + b"\n",
                     "config-key": b"config = /etc/other.conf\n"}[kind])
    p, s, args = addr_args()
    t0 = time.monotonic()
    r = run_expect_exit(args + ["-c", conf], timeout=10)
    assert r.returncode == 2, (r.returncode, r.stderr)
    line = assert_one_line(r.stderr)
    assert conf in line, line
    assert time.monotonic() - t0 < 10
    assert_nothing_left(p, s)


def test_upgrade_fd_variable_that_is_no_number():
    """UPPERD_UPGRADE_FD left in the environment with a non-number: it was
    fd 0 to atoi, and upperd waited on standard input for a state.  Now
    one line and exit 1, whatever standard input holds."""
    p, s, args = addr_args()
    env = dict(os.environ, UPPERD_UPGRADE_FD="abc")
    proc = subprocess.Popen([UPPERD] + args, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    try:
        out, err = proc.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        raise AssertionError("upperd waited with UPPERD_UPGRADE_FD=abc")
    assert proc.returncode == 1, (proc.returncode, err)
    line = assert_one_line(err.decode("utf-8", "replace"))
    assert "UPPERD_UPGRADE_FD" in line, line
    assert_nothing_left(p, s)


def test_listen_pid_of_another_process_is_ignored(upperd):
    """LISTEN_FDS meant for another process (LISTEN_PID not ours): upperd
    binds its configured addresses and serves."""
    old = {k: os.environ.get(k) for k in ("LISTEN_PID", "LISTEN_FDS")}
    os.environ.update(LISTEN_PID="1", LISTEN_FDS="3")
    try:
        d = upperd(workers=1)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert tcp_roundtrip(d.tcp_port, b"bound") == b"BOUND"
    assert udp_roundtrip(d.udp_port, b"bound") == b"BOUND"


def test_http_two_host_headers_is_400(daemon):
    """RFC 9112 3.2: more than one Host line is a 400 (it was a 200), in
    HTTP/1.1 and 1.0 alike; one Host is still served."""
    for version in (b"1.1", b"1.0"):
        raw = http_raw(daemon.stats_port, b"GET /healthz HTTP/" + version +
                       b"\r\nHost: a\r\nhost: b\r\n\r\n")
        assert status_of(raw) == 400, raw[:200]
    raw = http_raw(daemon.stats_port,
                   b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status_of(raw) == 200, raw[:200]


@pytest.mark.parametrize("payload,want", [
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
    (bytes.fromhex("16030100a5010000a10303") + b"\x00" * 100, 400),
    (b"POST /stats HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
     405),
    (b"POST /stats HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
     b"\r\n5\r\nhello\r\n0\r\n\r\n", 405),
    (b"PUT /metrics HTTP/1.1\r\nHost: a\r\n"
     b"Content-Length: 99999999999999999999\r\n\r\n", 413),
    (b"GET /healthz HTTP/1.1\r\nHost a\r\nno colon here\r\n\r\n", 400),
], ids=["http2-preface", "http3", "tls-hello", "post-body", "chunked-body",
        "huge-content-length", "header-without-colon"])
def test_http_other_protocols_and_bodies(daemon, payload, want):
    """Other protocols and request bodies on the plain stats port get
    their 4xx/5xx, and the endpoint and the service go on."""
    workers = daemon.worker_pids()
    raw = http_raw(daemon.stats_port, payload)
    assert status_of(raw) == want, raw[:300]
    st, _, body = http_get(daemon.stats_port, "/healthz")
    assert (st, body) == (200, b"ok")
    assert daemon.worker_pids() == workers


def test_tcp_resets_and_empty_connections(daemon):
    """Clients that reset mid-stream (SO_LINGER 0 with a reply unread) and
    clients that connect and close at once: the workers stay, every
    connection is counted and none stays open."""
    workers = daemon.worker_pids()
    before = daemon.stats()["totals"]["tcp_connections_accepted"]
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", daemon.tcp_port),
                                     timeout=5)
        s.sendall(b"x" * 100000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
        s.close()
    for _ in range(200):
        socket.create_connection(("127.0.0.1", daemon.tcp_port),
                                 timeout=5).close()
    assert tcp_roundtrip(daemon.tcp_port, b"after") == b"AFTER"

    def settled():
        t = daemon.stats()["totals"]
        return (t["tcp_connections_accepted"] - before == 251 and
                t["tcp_connections_active"] == 0)
    wait_until(settled, 10, msg="251 connections counted, none open")
    assert daemon.worker_pids() == workers


def test_udp_reply_to_a_closed_port(daemon):
    """Datagrams whose sender is gone when the reply leaves (ICMP port
    unreachable comes back): the workers go on answering."""
    workers = daemon.worker_pids()
    for _ in range(100):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(b"gone" * 25, ("127.0.0.1", daemon.udp_port))
        u.close()
    wait_until(lambda: daemon.stats()["totals"]["udp_datagrams_received"]
               >= 100, 10, msg="the 100 datagrams received")
    assert udp_roundtrip(daemon.udp_port, b"still here") == b"STILL HERE"
    assert daemon.worker_pids() == workers


def test_max_conns_rejects_and_counts(upperd):
    """Past --max-conns a new connection is closed at once and counted in
    tcp_connections_rejected, not in accepted; the open ones still work."""
    d = upperd(workers=1, max_conns=3)
    held = [tcp_connect(d.tcp_port) for _ in range(3)]
    try:
        for i, s in enumerate(held):
            s.sendall(b"c%d" % i)
            assert recv_exactly(s, 2) == b"C%d" % i
        extra = tcp_connect(d.tcp_port)
        try:
            extra.sendall(b"x")
        except OSError:
            pass
        try:
            got = recv_until_eof(extra, timeout=10)
        except ConnectionResetError:
            # "x" reached the socket after the worker closed it: the
            # kernel answers with a reset instead of end-of-file
            got = b""
        assert got == b""
        extra.close()
        t = wait_until(lambda: (lambda t: t if t["tcp_connections_rejected"]
                                else None)(d.stats()["totals"]), 5,
                       msg="the rejection counted")
        assert t["tcp_connections_rejected"] == 1, t
        assert t["tcp_connections_accepted"] == 3, t
        held[0].sendall(b"ok")
        assert recv_exactly(held[0], 2) == b"OK"
    finally:
        for s in held:
            s.close()


def test_hup_burst_settles(daemon):
    """Twenty HUPs at once: upperd settles on the configured workers, all
    serving, with no process left over."""
    for _ in range(20):
        daemon.send_signal(signal.SIGHUP)

    def settled():
        doc = daemon.stats()
        kids = children_of(daemon.pid)
        return (doc["workers_running"] == 2 and len(kids) == 2 and
                [w["state"] for w in doc["workers"]] == ["running"] * 2)
    wait_until(settled, 60, interval=0.2, msg="2 workers after 20 HUPs")
    assert tcp_roundtrip(daemon.tcp_port, b"calm") == b"CALM"
    assert daemon.alive()


def test_ttou_never_below_one(upperd):
    d = upperd(workers=1)
    pid = d.worker_pids()
    for k in range(1, 4):  # one at a time: pending signals merge
        d.send_signal(signal.SIGTTOU)
        wait_until(lambda: d.log().count("TTOU ignored") == k, 10,
                   msg="refused TTOU %d logged" % k)
    doc = d.stats()
    assert doc["workers_configured"] == 1 and doc["workers_running"] == 1
    assert d.worker_pids() == pid
    assert udp_roundtrip(d.udp_port, b"one") == b"ONE"


def test_hup_with_config_file_removed(upperd, tmp_path):
    """The config file gone at reload: a rejected reload, logged, the
    running workers kept."""
    conf = tmp_path / "upperd.conf"
    conf.write_text("workers = 2\n")
    d = upperd(workers=None, config=str(conf))
    pids = d.worker_pids()
    conf.unlink()
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: any("reload failed" in ln and "upperd.conf" in ln
                           for ln in d.log().splitlines()), 10,
               msg="the reload refused, naming the file")
    assert d.alive()
    assert d.worker_pids() == pids
    assert tcp_roundtrip(d.tcp_port, b"kept") == b"KEPT"
