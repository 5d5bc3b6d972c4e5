"""
The client bin/upper: TEXT over TCP and UDP, lines from standard input,
the interactive prompt on a terminal, and errors.
"""

import os
import pty
import select
import signal
import subprocess
import time

import pytest

from conftest import UPPER, free_port, ucase, wait_until

PROMPT = b"Input lowercase sentence:"


def upper(args, input=None, timeout=20):
    r = subprocess.run([UPPER] + list(args), input=input,
                       capture_output=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def port_args(d, udp=False):
    return (["--udp"] if udp else []) + ["--host", "127.0.0.1", "--port",
                                         str(d.tcp_port)]


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
def test_argument_words_come_back_uppercased(daemon, udp):
    rc, out, err = upper(port_args(daemon, udp) + ["hello", "world"])
    assert (rc, out, err) == (0, b"HELLO WORLD\n", b"")
    rc, out, err = upper(port_args(daemon, udp) + ["straße ǆ"])
    assert (rc, out, err) == (0, "STRASSE Ǆ\n".encode(), b"")


def test_text_counted_exactly(daemon):
    rc, out, err = upper(port_args(daemon) + ["abc"])
    assert rc == 0
    rc, out, err = upper(port_args(daemon, True) + ["abcd"])
    assert rc == 0

    def settled():
        t = daemon.stats()["totals"]
        return t if (t["tcp_connections_active"] == 0 and
                     t["udp_datagrams_sent"] == 1) else None

    t = wait_until(settled, 10)
    assert t["tcp_connections_accepted"] == 1
    assert t["tcp_bytes_received"] == 3
    assert t["tcp_bytes_sent"] == 3
    assert t["udp_bytes_received"] == 4
    assert t["udp_bytes_sent"] == 4


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
def test_stdin_lines(daemon, udp):
    lines = ["one", "two words", "straße", "", "ǆ last"]
    inp = "".join(l + "\n" for l in lines).encode()
    rc, out, err = upper(port_args(daemon, udp), input=inp)
    assert rc == 0, err
    assert err == b""
    assert out == "".join(l.upper() + "\n" for l in lines).encode()
    # no prompt when stdin is not a terminal
    assert PROMPT not in out


def test_stdin_last_line_without_newline(daemon):
    rc, out, err = upper(port_args(daemon), input=b"first\nlast")
    assert (rc, out, err) == (0, b"FIRST\nLAST\n", b"")


def test_stdin_many_lines(daemon):
    lines = ["line %d with ß" % i for i in range(500)]
    inp = "".join(l + "\n" for l in lines).encode()
    rc, out, err = upper(port_args(daemon), input=inp)
    assert rc == 0, err
    assert out == ucase(inp)


class PtyReader:
    """Reads the terminal's output; read_until() consumes up to and
    including the needle and keeps the rest for the next call."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b""

    def read_until(self, needle, timeout=10):
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %r within %ss; got %r" %
                                     (needle, timeout, self.buf))
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    b = os.read(self.fd, 4096)
                except OSError:  # EIO: the other side closed
                    b = b""
                if not b:
                    raise AssertionError("EOF before %r; got %r" %
                                         (needle, self.buf))
                self.buf += b
        head, _, self.buf = self.buf.partition(needle)
        return head + needle


@pytest.mark.parametrize("udp", [False, True], ids=["tcp", "udp"])
def test_interactive_prompt(daemon, udp):
    master, slave = pty.openpty()
    p = subprocess.Popen([UPPER] + port_args(daemon, udp), stdin=slave,
                         stdout=slave, stderr=slave, close_fds=True,
                         start_new_session=True)
    os.close(slave)
    try:
        t = PtyReader(master)
        t.read_until(PROMPT)
        os.write(master, b"hello pty\n")
        got = t.read_until(b"HELLO PTY")
        # the terminal echoes the input, lowercase, before the reply
        assert b"hello pty" in got
        # then the prompt again
        t.read_until(PROMPT)
        os.write(master, "straße\n".encode())
        t.read_until(b"STRASSE")
        t.read_until(PROMPT)
        os.write(master, b"\x04")  # ^D: end of input
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
        os.close(master)


def test_connection_refused():
    port = free_port()  # nothing listens there
    rc, out, err = upper(["--host", "127.0.0.1", "--port", str(port),
                          "hello"])
    assert rc == 1
    assert out == b""
    assert len(err.splitlines()) == 1 and err.endswith(b"\n"), err
    assert str(port).encode() in err


def test_udp_connection_refused():
    port = free_port()
    rc, out, err = upper(["--udp", "--host", "127.0.0.1", "--port",
                          str(port), "hello"])
    assert rc == 1
    assert len(err.splitlines()) == 1, err


def test_bad_usage():
    rc, out, err = upper(["--port", "notaport", "x"])
    assert rc == 2
    assert len(err.splitlines()) == 1, err


def test_long_input_does_not_deadlock(daemon):
    """A 16 MiB line (and a 16 MiB last line without a newline) larger than
    every socket buffer: the client must read replies while it sends, or
    both ends stall on full buffers."""
    big = b"a" * (16 << 20)
    rc, out, err = upper(port_args(daemon), input=b"x\n" + big + b"\ny\n" +
                         big, timeout=60)
    assert (rc, err) == (0, b"")
    assert out == b"X\n" + b"A" * (16 << 20) + b"\nY\n" + \
        b"A" * (16 << 20) + b"\n"
