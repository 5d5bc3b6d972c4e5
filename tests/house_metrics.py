#!/usr/bin/env python3
"""
house_metrics.py: the shape of the C tree at a git commit, for issue 14's
closing note: files per folder, the functions one folder defines and
another calls, function length (median and maximum) for the daemon and the
tools, and the comment share.

    tests/house_metrics.py [COMMIT...]      (default HEAD; run in the repo)

It reads the files from git (`git show COMMIT:path`), so any two commits
compare without a checkout.  The parse is a regex over the house style
(.clang-format, KNF): a definition's name starts a line, "name(", right
under its return type, and its body ends at the first "}" in column 0.

  function length  lines from the name line to the closing brace;
  comment share    non-blank lines that carry a comment (a line of a block
                   comment, or code with a comment after it) over non-blank
                   lines, in .c and .h files;
  crossing calls   a call (name followed by "(" in a function body,
                   outside comments and strings) in one folder to a
                   non-static function defined in another, marked down,
                   SIDEWAYS or UP by the README's layers (common, then
                   supervisor and workers, then tools); tests/ is left out
                   (a unit test calls the module it tests by design).
"""

import re
import statistics
import subprocess
import sys
from collections import Counter, defaultdict

DAEMON = ("common", "supervisor", "workers")
TOOLS = ("tools",)
DEF_RE = re.compile(r"^([A-Za-z_]\w*)\(")
CALL_RE = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "defined",
            "__attribute__", "__has_feature", "offsetof", "_Alignof"}


def git(*args):
    return subprocess.run(("git",) + args, check=True, capture_output=True,
                          text=True).stdout


def c_files(commit):
    names = git("ls-tree", "-r", "--name-only", commit).split("\n")
    return sorted(n for n in names if n.endswith((".c", ".h")))


def folder(path):
    return path.rsplit("/", 1)[0] if "/" in path else "."


def top(path):
    return path.split("/", 1)[0]


def strip_code(text):
    """(code, flags): text with comments and string and character literals
    blanked (newlines kept), and per line whether it carried a comment."""
    out, flags = [], [False]
    i, n, state = 0, len(text), None
    while i < n:
        c = text[i]
        if c == "\n":
            out.append(c)
            flags.append(state == "block")
            if state == "line":
                state = None
            i += 1
            continue
        if state in ("block", "line"):
            flags[-1] = True
            if state == "block" and text.startswith("*/", i):
                state = None
                i += 2
            else:
                i += 1
            out.append(" ")
            continue
        if state in ('"', "'"):
            if c == "\\":
                out.append("  ")
                i += 2
                continue
            if c == state:
                state = None
            out.append(c if state is None else " ")
            i += 1
            continue
        if text.startswith("/*", i) or text.startswith("//", i):
            state = "block" if text[i + 1] == "*" else "line"
            flags[-1] = True
            out.append("  ")
            i += 2
            continue
        if c in "\"'":
            state = c
        out.append(c)
        i += 1
    return "".join(out), flags


def definitions(path, code):
    """[(name, static, first line, length)] of the functions defined."""
    lines = code.split("\n")
    found = []
    for k, ln in enumerate(lines):
        m = DEF_RE.match(ln)
        if not m or m.group(1) in KEYWORDS or ln.rstrip().endswith(";"):
            continue
        end = k
        while end < len(lines) and not lines[end].startswith("}"):
            if lines[end].rstrip().endswith(";") and "{" not in \
                    "".join(lines[k:end + 1]):
                end = -1  # a prototype, not a definition
                break
            end += 1
        if end < 0 or end >= len(lines):
            continue
        head = lines[k - 1] if k > 0 else ""
        found.append((m.group(1), "static" in head, k, end - k + 1))
    return found


def measure(commit):
    files = c_files(commit)
    comment_lines, nonblank = Counter(), Counter()
    defs, bodies = {}, defaultdict(list)
    lengths = defaultdict(list)
    longest = {}
    for p in files:
        text = git("show", "%s:%s" % (commit, p))
        code, flags = strip_code(text)
        for raw, has_comment in zip(text.split("\n"), flags):
            if raw.strip():
                nonblank[top(p)] += 1
                comment_lines[top(p)] += has_comment
        lines = code.split("\n")
        for name, static, line, length in definitions(p, code):
            bodies[p].append("\n".join(lines[line + 1:line + length]))
            group = ("daemon" if top(p) in DAEMON else
                     "tools" if top(p) in TOOLS else None)
            if group:
                lengths[group].append(length)
                if length > longest.get(group, ("", 0))[1]:
                    longest[group] = ("%s (%s)" % (name, p), length)
            if not static and top(p) != "tests":
                defs.setdefault(name, p)
    crossing = defaultdict(set)
    sites = Counter()
    for p in files:
        if top(p) == "tests":
            continue
        for body in bodies[p]:
            for m in CALL_RE.finditer(body):
                home = defs.get(m.group(1))
                if home is None or folder(home) == folder(p):
                    continue
                crossing[(folder(p), folder(home))].add(m.group(1))
                sites[(folder(p), folder(home))] += 1
    return files, lengths, longest, crossing, sites, comment_lines, nonblank


# The layers the README draws: a call may only go down.
LAYER = {"common": 0, "supervisor": 1, "workers": 1, "tools": 2}


def direction(src, dst):
    a, b = LAYER.get(top(src)), LAYER.get(top(dst))
    if a is None or b is None:
        return "?"
    return "down" if a > b else "SIDEWAYS" if a == b else "UP"


def report(commit):
    files, lengths, longest, crossing, sites, com, nonblank = measure(commit)
    sha = git("rev-parse", "--short", commit).strip()
    print("== %s (%s)" % (commit, sha))
    per = Counter(folder(p) for p in files)
    print("C files per folder: " + ", ".join(
        "%s %d" % (f, n) for f, n in sorted(per.items())))
    for group in ("daemon", "tools"):
        ls = lengths[group]
        if ls:
            print("%s functions: %d, length median %g, max %d: %s" % (
                group, len(ls), statistics.median(ls), longest[group][1],
                longest[group][0]))
    parts = [("daemon", DAEMON), ("tools", TOOLS), ("include", ("include",)),
             ("tests", ("tests",))]
    shares = []
    for label, tops in parts + [("all", None)]:
        c = sum(v for k, v in com.items() if tops is None or k in tops)
        n = sum(v for k, v in nonblank.items() if tops is None or k in tops)
        if n:
            shares.append("%s %.1f%% (%d/%d)" % (label, 100.0 * c / n, c, n))
    print("comment share: " + ", ".join(shares))
    print("calls crossing folders (caller -> callee: sites, functions):")
    if not crossing:
        print("  none")
    for (src, dst) in sorted(crossing):
        names = sorted(crossing[(src, dst)])
        print("  %s -> %s (%s): %d sites, %d functions: %s" % (
            src, dst, direction(src, dst), sites[(src, dst)], len(names),
            " ".join(names)))
    print()


def main(argv):
    for commit in argv[1:] or ["HEAD"]:
        report(commit)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
