"""
The transformation, end to end: Unicode full case mapping over TCP and UDP,
characters split across TCP segments, invalid bytes and NULs passing
through, ascii mode, empty datagrams, and the TCP half-close.
"""

import random
import select
import socket
import time

import pytest

from conftest import (acase, recv_exactly, recv_until_eof, tcp_connect,
                      tcp_roundtrip, ucase, udp_roundtrip, wait_until)

# (input, exact expected output): the expectations are written out, not
# only computed, and checked against Python's str.upper() too.
UNICODE_CASES = [
    ("straße", "STRASSE"),
    ("ǆ", "Ǆ"),
    ("ǅ", "Ǆ"),
    ("αβγ δέλτα ωμέγα", "ΑΒΓ ΔΈΛΤΑ ΩΜΈΓΑ"),
    ("\u0390", "\u0399\u0308\u0301"),                      # U+0390 -> 3 code points
    ("привет, мир", "ПРИВЕТ, МИР"),
    ("中文字符 日本語 한국어", "中文字符 日本語 한국어"),
    ("emoji 😀 ok 🎉", "EMOJI 😀 OK 🎉"),
    ("ﬁne ﬂow", "FINE FLOW"),       # ligatures expand
    ("և", "ԵՒ"),
    ("ŉ", "ʼN"),
    ("𐐨𐐩", "𐐀𐐁"),                  # Deseret, 4-byte UTF-8
    ("café crème", "CAFÉ CRÈME"),
    ("ÿ", "Ÿ"),
    ("ı i", "I I"),
]


def test_upperd_agrees_with_oracle_and_cases(daemon):
    """The written-out cases hold for str.upper() and for the oracle
    (ucase); upperd then answers as the oracle does on a random mixture
    of the cases, ASCII and invalid bytes, in one TCP stream cut at random
    points and half-closed (a character may straddle any two reads)."""
    for s, want in UNICODE_CASES:
        assert s.upper() == want, (s, s.upper(), want)
        assert ucase(s.encode()) == want.encode()
    rnd = random.Random(20261206)
    parts = ([s.encode() for s, _ in UNICODE_CASES] + INVALID +
             [b" ", b"\n", b"plain ascii words "])
    data = b"".join(rnd.choice(parts) for _ in range(3000))
    chunks = [rnd.randrange(1, 97) for _ in range(400)]
    got = tcp_roundtrip(daemon.tcp_port, data, None, timeout=30,
                        chunks=chunks)
    assert got == ucase(data)


@pytest.mark.parametrize("text,want", UNICODE_CASES,
                         ids=[c[1].encode("unicode_escape").decode()[:20]
                              for c in UNICODE_CASES])
def test_unicode_tcp(daemon, text, want):
    data = text.encode() + b"\n"
    exp = want.encode() + b"\n"
    assert tcp_roundtrip(daemon.tcp_port, data, len(exp)) == exp


def test_unicode_udp(daemon):
    for text, want in UNICODE_CASES:
        assert udp_roundtrip(daemon.udp_port, text.encode()) == \
            want.encode(), text


def test_unicode_all_in_one_stream(daemon):
    data = "\n".join(s for s, _ in UNICODE_CASES).encode() * 20
    exp = "\n".join(w for _, w in UNICODE_CASES).encode() * 20
    assert tcp_roundtrip(daemon.tcp_port, data, len(exp)) == exp


# Characters to split, with their uppercase.
SPLIT_CHARS = [
    ("é", "É"),          # 2 bytes
    ("ß", "SS"),         # 2 bytes, grows
    ("ǆ", "Ǆ"),          # 2 bytes
    ("ⓐ", "Ⓐ"),          # 3 bytes
    ("ﬃ", "FFI"),        # 3 bytes -> 3 ASCII
    ("𐐨", "𐐀"),         # 4 bytes
]


def split_cases():
    for ch, up in SPLIT_CHARS:
        b = ch.encode()
        for cut in range(1, len(b)):
            yield pytest.param(ch, up, cut, id="%s-%d" % (
                ch.encode("unicode_escape").decode(), cut))


@pytest.mark.parametrize("ch,up,cut", list(split_cases()))
def test_split_multibyte_tcp(daemon, ch, up, cut):
    """The first part of a character goes in one segment, after text the
    server must answer at once; only once that answer is back (so the
    server has surely read the partial character) the rest follows."""
    b = ch.encode()
    s = tcp_connect(daemon.tcp_port)
    try:
        s.sendall(b"abc" + b[:cut])
        assert recv_exactly(s, 3) == b"ABC"
        # Nothing of the incomplete character may be sent on its own.
        r, _, _ = select.select([s], [], [], 0.2)
        assert not r, "server sent %r before the character was complete" \
            % s.recv(100)
        s.sendall(b[cut:] + b"xyz")
        exp = up.encode() + b"XYZ"
        assert recv_exactly(s, len(exp)) == exp
    finally:
        s.close()


def test_split_every_byte(daemon):
    """A multi-byte text sent one byte per segment; after each byte the
    test waits until the server has answered every complete character so
    far, so each byte really arrives in a read of its own."""
    import codecs
    text = "straße ǆ ⓐ 𐐨 ΐ привет ﬃ ok\n".encode()
    exp = ucase(text)
    dec = codecs.getincrementaldecoder("utf-8")()
    done = ""
    s = tcp_connect(daemon.tcp_port)
    got = b""
    try:
        for i in range(len(text)):
            s.sendall(text[i:i + 1])
            done += dec.decode(text[i:i + 1])
            want = done.upper().encode()
            while len(got) < len(want):
                got += recv_exactly(s, len(want) - len(got))
            assert got == want
    finally:
        s.close()
    assert got == exp


INVALID = [
    b"abc\xffdef",
    b"\xc3(abc",              # bad continuation
    b"x\xe2\x28\xa1y",        # bad 3-byte
    b"sur\xed\xa0\x80rogate",  # UTF-16 surrogate encoded
    b"big\xf4\x90\x80\x80end",  # beyond U+10FFFF
    b"over\xc0\xaflong",      # overlong '/'
    b"over\xe0\x80\xafthree",  # overlong 3-byte
    b"\x80\x80lone",          # lone continuation bytes
    b"trunc\xe2\x82x",        # truncated then ASCII
    b"\xfe\xff\xf8\xfc",      # never valid
    b"mix\xc3\xa9\xffa\xc3\x9fb\xe2",  # valid é, ß around invalid
]


def test_invalid_bytes_through_upperd_as_spelled_out(daemon):
    """Spelled out: the invalid bytes stay, the valid text around them is
    uppercased, by upperd and by the oracle the other tests use."""
    for data, want in [
            (b"abc\xffdef", b"ABC\xffDEF"),
            (b"trunc\xe2\x82x", b"TRUNC\xe2\x82X"),
            (b"sur\xed\xa0\x80rogate", b"SUR\xed\xa0\x80ROGATE"),
            (b"mix\xc3\xa9\xffa\xc3\x9fb\xe2", b"MIX\xc3\x89\xffASSB\xe2")]:
        assert ucase(data) == want, data
        assert udp_roundtrip(daemon.udp_port, data) == want, data
        assert tcp_roundtrip(daemon.tcp_port, data, None) == want, data


def test_invalid_bytes_tcp(daemon):
    for data in INVALID:
        exp = ucase(data + b"\n")
        assert tcp_roundtrip(daemon.tcp_port, data + b"\n", len(exp)) == \
            exp, data


def test_invalid_bytes_udp(daemon):
    for data in INVALID:
        assert udp_roundtrip(daemon.udp_port, data) == ucase(data), data


def test_invalid_bytes_keep_connection(daemon):
    """Invalid input never breaks the connection: the same connection
    goes on answering."""
    s = tcp_connect(daemon.tcp_port)
    try:
        for data in INVALID:
            s.sendall(data + b"\n")
            exp = ucase(data + b"\n")
            assert recv_exactly(s, len(exp)) == exp
        s.sendall(b"still here\n")
        assert recv_exactly(s, 11) == b"STILL HERE\n"
    finally:
        s.close()


def test_truncated_at_eof_tcp(daemon):
    """An incomplete character at the end of the stream is still answered
    (every byte received is answered) when the client half-closes."""
    data = b"abc\xe2\x82"
    assert tcp_roundtrip(daemon.tcp_port, data) == b"ABC\xe2\x82"


def test_nul_bytes_pass_through(daemon):
    data = b"a\x00b\x00\x00c\x00\xc3\xa9\x00"
    exp = b"A\x00B\x00\x00C\x00\xc3\x89\x00"
    assert tcp_roundtrip(daemon.tcp_port, data, len(exp)) == exp
    assert udp_roundtrip(daemon.udp_port, data) == exp
    assert udp_roundtrip(daemon.udp_port, b"\x00" * 100) == b"\x00" * 100


def test_ascii_mode_maps_only_a_to_z(upperd):
    d = upperd(case="ascii")
    cases = [
        ("café", "CAFé"),
        ("straße", "STRAßE"),
        ("ǆ привет", "ǆ привет"),
        ("hello, world 123", "HELLO, WORLD 123"),
    ]
    for text, want in cases:
        data = text.encode()
        assert acase(data) == want.encode()
        assert udp_roundtrip(d.udp_port, data) == want.encode()
        assert tcp_roundtrip(d.tcp_port, data + b"\n",
                             len(want.encode()) + 1) == want.encode() + b"\n"
    raw = bytes(range(256))
    assert udp_roundtrip(d.udp_port, raw) == acase(raw)
    assert tcp_roundtrip(d.tcp_port, raw) == acase(raw)


def test_empty_udp_datagram(daemon):
    reply, addr = udp_roundtrip(daemon.udp_port, b"", with_addr=True)
    assert reply == b""
    assert addr == ("127.0.0.1", daemon.udp_port)
    # and the service carries on
    assert udp_roundtrip(daemon.udp_port, b"after") == b"AFTER"


def test_half_close_gets_everything_then_eof(daemon):
    """The client sends a lot, shuts down its sending side without having
    read anything: it gets every byte back, then EOF."""
    data = (b"half close line \xc3\x9f\n" * 20000)  # ~440 KB
    exp = ucase(data)
    s = tcp_connect(daemon.tcp_port, timeout=30)
    try:
        import threading
        err = []

        def send():
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                err.append(e)

        t = threading.Thread(target=send, daemon=True)
        t.start()
        got = recv_until_eof(s, timeout=30)
        t.join(10)
        assert not err
    finally:
        s.close()
    assert len(got) == len(exp)
    assert got == exp


def test_half_close_immediately(daemon):
    """shutdown(SHUT_WR) right after connecting: EOF, no data."""
    s = tcp_connect(daemon.tcp_port)
    try:
        s.shutdown(socket.SHUT_WR)
        assert recv_until_eof(s, timeout=10) == b""
    finally:
        s.close()


def test_no_newline_needed(daemon):
    s = tcp_connect(daemon.tcp_port)
    try:
        s.sendall(b"hello")
        assert recv_exactly(s, 5) == b"HELLO"
        s.sendall(b" again")
        assert recv_exactly(s, 6) == b" AGAIN"
    finally:
        s.close()
