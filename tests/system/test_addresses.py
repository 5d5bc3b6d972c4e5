"""
Several listening addresses (SPEC, "Several listening addresses"): --tcp
and --udp repeated or comma-separated, in the config file the key repeated
or a list; every address its own socket served by every worker; [::]:P
IPv6-only; the command line replaces the file's list; off only alone; the
ready line names every address; counters are not split by address.
"""

import re
import signal
import socket
import subprocess

import pytest

from conftest import (UPPERD, free_port, http_get,
                      run_expect_exit, tcp_roundtrip, ucase, wait_until)


def udp6_roundtrip(port, data, timeout=5.0):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(data, ("::1", port))
        return s.recv(65536)
    finally:
        s.close()


def udp4_roundtrip(port, data, host="127.0.0.1", timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(data, (host, port))
        return s.recv(65536)
    finally:
        s.close()


def refused(port, host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((host, port))
    except ConnectionRefusedError:
        return True
    finally:
        s.close()
    return False


def ready_line(d):
    found = wait_until(lambda: re.findall(r"ready: .*", d.log()), 5,
                       msg="the ready line")
    return found[0]


def test_tcp_and_udp_on_several_addresses(upperd):
    """Two more TCP and one more UDP address beside the harness's own; each
    answers, the ready line names all, the counters add up across them."""
    p6, q = free_port(), free_port()
    d = upperd(args=["--tcp", "[::1]:%d,127.0.0.1:%d" % (p6, q),
                     "--udp", "[::1]:%d" % p6])
    line = ready_line(d)
    assert ("tcp 127.0.0.1:%d [::1]:%d 127.0.0.1:%d," %
            (d.tcp_port, p6, q)) in line, line
    assert ("udp 127.0.0.1:%d [::1]:%d," % (d.udp_port, p6)) in line, line
    assert "2 workers," in line, line
    for host, port in (("127.0.0.1", d.tcp_port), ("::1", p6),
                       ("127.0.0.1", q)):
        data = ("straße via %s:%d" % (host, port)).encode()
        assert tcp_roundtrip(port, data, host=host) == ucase(data)
    assert udp4_roundtrip(d.udp_port, b"v4") == b"V4"
    assert udp6_roundtrip(p6, b"v6") == b"V6"
    t = wait_until(lambda: (lambda t: t if t["tcp_connections_accepted"]
                            == 3 else None)(d.stats()["totals"]), 5,
                   msg="3 connections counted")
    assert t["udp_datagrams_received"] == 2, t
    # A reload keeps every address.
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: len(re.findall(r"ready: ", d.log())) == 2, 10,
               msg="ready again after HUP")
    assert tcp_roundtrip(q, b"after") == b"AFTER"
    assert udp6_roundtrip(p6, b"after") == b"AFTER"


def test_one_worker_ready_line(upperd):
    d = upperd(workers=1)
    assert re.search(r"ready: 1 worker, tcp ", ready_line(d)), d.log()


def test_v6_wildcard_is_v6_only(upperd):
    """[::]:P alone serves IPv6 only; listing 127.0.0.1:P beside it serves
    both families on the same port."""
    p = free_port()
    d = upperd(args=["--tcp", "[::]:%d" % p])
    assert tcp_roundtrip(p, b"six", host="::1") == b"SIX"
    # The harness's own --tcp is on another port: nothing on 127.0.0.1:p.
    assert refused(p, "127.0.0.1")
    d.stop()
    d2 = upperd(args=["--tcp", "[::]:%d" % p, "--tcp", "127.0.0.1:%d" % p])
    assert tcp_roundtrip(p, b"four", host="127.0.0.1") == b"FOUR"
    assert tcp_roundtrip(p, b"six", host="::1") == b"SIX"
    d2.stop()


def start_with_file(tmp_path, text, *args):
    """upperd with only a config file (no harness --tcp/--udp) and args;
    waits for /healthz 200.  Returns (proc, stats port, stderr path)."""
    stats = free_port()
    conf = tmp_path / "upperd.conf"
    conf.write_text(text + "stats = 127.0.0.1:%d\nworkers = 1\n" % stats)
    err = open(tmp_path / "stderr", "wb")
    p = subprocess.Popen([UPPERD, "-c", str(conf)] + list(args),
                         stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    err.close()

    def up():
        assert p.poll() is None, (tmp_path / "stderr").read_text()
        return http_get(stats, "/healthz", timeout=1)[0] == 200
    try:
        wait_until(up, 15, msg="upperd ready")
    except BaseException:
        p.kill()
        p.wait(10)
        raise
    return p, stats, tmp_path / "stderr"


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    assert p.wait(15) == 0


def test_config_file_lists_and_command_line_replaces(tmp_path):
    a, b, c, u = free_port(), free_port(), free_port(), free_port()
    text = ("tcp = 127.0.0.1:%d\ntcp = 127.0.0.1:%d, [::1]:%d\n"
            "udp = 127.0.0.1:%d,[::1]:%d\n" % (a, b, b, u, u))
    p, _, err = start_with_file(tmp_path, text)
    try:
        for host, port in (("127.0.0.1", a), ("127.0.0.1", b), ("::1", b)):
            assert tcp_roundtrip(port, b"file", host=host) == b"FILE"
        assert udp4_roundtrip(u, b"x") == b"X"
        assert udp6_roundtrip(u, b"y") == b"Y"
    finally:
        stop(p)
    # The command line's --tcp replaces the file's whole list (not added
    # to it); the file's udp list stays.
    p, _, err = start_with_file(tmp_path, text, "--tcp", "127.0.0.1:%d" % c)
    try:
        assert tcp_roundtrip(c, b"cmd") == b"CMD"
        assert refused(a) and refused(b)
        assert udp6_roundtrip(u, b"y") == b"Y"
        assert ("tcp 127.0.0.1:%d, udp 127.0.0.1:%d [::1]:%d," % (c, u, u)
                in err.read_text()), err.read_text()
    finally:
        stop(p)
    # off in the file, an address on the command line: the latter wins.
    p, _, err = start_with_file(tmp_path, "udp = off\ntcp = off\n", "--tcp",
                                "127.0.0.1:%d" % c)
    try:
        assert tcp_roundtrip(c, b"on") == b"ON"
        assert "udp off," in err.read_text(), err.read_text()
    finally:
        stop(p)


@pytest.mark.parametrize("args,why", [
    (["--tcp", "off", "--tcp", "127.0.0.1:1"],
     "off cannot be combined with an address"),
    (["--udp", "127.0.0.1:1,off"], "off cannot be combined with an address"),
    (["--tcp", "127.0.0.1:1,127.0.0.1:1"], "an address is listed twice"),
    (["--tcp", "127.0.0.1:1,"], "expected off, IPV4:PORT or [IPV6]:PORT"),
    (["--tcp", ",".join("127.0.0.1:%d" % (i + 1) for i in range(17))],
     "at most 16 addresses"),
])
def test_bad_lists_are_usage_errors(args, why):
    r = run_expect_exit(args + ["--stats", "off"])
    assert r.returncode == 2, r
    lines = r.stderr.strip().split("\n")
    assert len(lines) == 1 and why in lines[0], r.stderr


def test_address_in_use_names_it():
    """The second of two addresses busy: exit 1 naming it, nothing left."""
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        free = free_port()
        r = run_expect_exit(["--tcp", "127.0.0.1:%d" % free, "--tcp",
                             "127.0.0.1:%d" % port, "--udp", "off",
                             "--stats", "off"])
        assert r.returncode == 1, r
        assert ("127.0.0.1:%d" % port) in r.stderr, r.stderr
        assert len(r.stderr.strip().split("\n")) == 1, r.stderr
        assert refused(free)
    finally:
        busy.close()
