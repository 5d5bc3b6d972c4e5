#!/usr/bin/env python3
"""Oracle for tests/unit/test_upcase.c: what Python's str.upper() says.

The SPEC defines unicode mode as Python 3's str.upper() on valid UTF-8 with
every other byte passed through unchanged.  The test runs this at test time
so the expectation always comes from the interpreter, never from a table
checked into the tree.

  upcase_oracle.py codepoints
      every code point but the surrogates, in order
  upcase_oracle.py fuzz SEED COUNT
      COUNT random byte strings biased towards broken UTF-8; expected =
      bytes.decode('utf-8', 'surrogateescape').upper()
           .encode('utf-8', 'surrogateescape')
      (surrogateescape turns each undecodable byte into its own lone
      surrogate, which has no case, and back: "invalid bytes unchanged")

Output on stdout: one text line "unidata=X python=Y\\n", then records of
u32 little-endian length + input bytes, u32 length + expected bytes.
"""
import random
import struct
import sys
import unicodedata

# Characters worth splitting and breaking: special casing, titlecase,
# 2/3/4-byte forms, supplementary cased letters, and no-case scripts.
INTERESTING = ("ßǆǅǄŉǰΐΰՇﬀﬃﬗᾀᾷῒẞıİſµͅ" "ÿĳ" "ⓐａｚ" "𐐨𐓘𞤢𖹠" "日本語한글"
               "😀€" "\u0000\u007f\u0080\u07ff\u0800\uffff\U00010000"
               "\U0010ffff")


def record(out, data, expected):
    out.write(struct.pack("<I", len(data)) + data)
    out.write(struct.pack("<I", len(expected)) + expected)


def upper_bytes(data):
    s = data.decode("utf-8", "surrogateescape")
    return s.upper().encode("utf-8", "surrogateescape")


def codepoints(out):
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        s = chr(c)
        record(out, s.encode(), s.upper().encode())


def piece(rng):
    kind = rng.randrange(8)
    if kind == 0:
        return bytes([rng.randrange(0x80, 0x100)])
    if kind == 1:
        return rng.choice(INTERESTING).encode()[:-1]   # truncated
    if kind == 2:
        return bytes([rng.randrange(0x100)])
    if kind == 3:
        return chr(rng.randrange(0x80, 0x110000)).encode(
            "utf-8", "surrogatepass")                  # may be a surrogate
    if kind == 4:
        return rng.choice("abcxyz AZ{`@\n").encode()
    return rng.choice(INTERESTING).encode()


def fuzz(out, seed, count):
    rng = random.Random(seed)
    for _ in range(count):
        n = rng.choice((1, 2, 3, 5, 10, 40, 200))
        data = b"".join(piece(rng) for _ in range(rng.randrange(n + 1)))
        record(out, data, upper_bytes(data))


def main():
    out = sys.stdout.buffer
    out.write(("unidata=%s python=%s\n" % (
        unicodedata.unidata_version, sys.version.split()[0])).encode())
    if sys.argv[1:2] == ["codepoints"]:
        codepoints(out)
    elif sys.argv[1:2] == ["fuzz"] and len(sys.argv) == 4:
        fuzz(out, int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit("usage: upcase_oracle.py codepoints | fuzz SEED COUNT")
    out.flush()


if __name__ == "__main__":
    main()
