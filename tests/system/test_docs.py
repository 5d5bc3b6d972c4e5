"""
The manuals in docs/ are the complete reference (SPEC, "Installing"), so
they are checked against the binaries rather than against a list kept
here: every option `upperd --help` prints must be described in upperd(8),
every config key (an option taking a value) in upperd.conf(5) and in the
sample deploy/upperd.conf, every metric family a live /metrics serves and
every key of a live /stats in upperd(8), and every option of `upper --help`
and `upper-bench --help` in its page.  `mandoc -T lint` and groff (what
man(1) uses) must report nothing, and the README must link only to files
inside the repository.

Pages are rendered with mandoc (-T ascii, overstrike removed) and searched
section by section, so an option named only in passing elsewhere does not
count as documented.
"""

import os
import re
import subprocess

import pytest

from conftest import BIN_DIR, REPO, UPPERD, http_get

DOCS = os.path.join(REPO, "docs")
PAGES = ("upperd.8", "upperd.conf.5", "upper.1", "upper-bench.1")

# An option line of a --help text: "  -c, --config FILE   ..." or
# "      --udp      ...".  The metavar (upper case) says it takes a value.
HELP_OPT_RE = re.compile(
    r"^\s+(?:(-[A-Za-z]),\s+)?(--[a-z][a-z0-9-]*)(?:[ =]([A-Z][A-Z0-9:_|]*))?",
    re.M)
# A section heading of a rendered page: flush left, upper case.
SECTION_RE = re.compile(r"^([A-Z][A-Z ]+)$", re.M)


def run(argv, timeout=30):
    return subprocess.run(argv, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def render(page):
    """The page as plain text, one line per output line."""
    p = run(["mandoc", "-T", "ascii", "-O", "width=78",
             os.path.join(DOCS, page)])
    assert p.returncode == 0, p.stderr
    return re.sub(r".\x08", "", p.stdout)


def sections(page):
    """{SECTION NAME: its text} of a rendered page."""
    text = render(page)
    heads = list(SECTION_RE.finditer(text))
    out = {}
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        out[m.group(1).strip()] = text[m.end():end]
    return out


def has_word(text, word):
    """word appears in text, not as part of a longer option or name."""
    return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])",
                     text) is not None


def help_options(binary):
    """[(short or None, --long, metavar or None)] from `binary --help`."""
    p = run([os.path.join(BIN_DIR, binary), "--help"], timeout=10)
    assert p.returncode == 0, (binary, p.returncode, p.stderr)
    opts = HELP_OPT_RE.findall(p.stdout)
    assert len(opts) >= 4, (binary, p.stdout)  # the regex still matches
    return [(s or None, l, m or None) for s, l, m in opts]


def config_keys():
    """Every long option of upperd that takes a value, but --config."""
    return [l[2:] for _, l, m in help_options("upperd")
            if m is not None and l != "--config"]


# ---------------------------------------------------------------------------
# lint

def test_mandoc_lint_is_clean():
    """mandoc -T lint, style level included, reports nothing.  Only
    "referenced manual not found" is left out: it depends on which manuals
    the host has installed, not on the source; instead every Xr to one of
    ours must name a page that docs/ holds."""
    paths = [os.path.join(DOCS, p) for p in PAGES]
    p = run(["mandoc", "-T", "lint", "-W", "style"] + paths)
    problems = [line for line in p.stderr.splitlines() + p.stdout.splitlines()
                if line.strip()
                and "referenced manual not found" not in line
                and "outdated mandoc.db" not in line]
    assert problems == [], "\n".join(problems)
    for page in PAGES:
        with open(os.path.join(DOCS, page)) as f:
            src = f.read()
        for name, sec in re.findall(r"^\.Xr (\S+) (\d)", src, re.M):
            if name.startswith("upper"):
                assert "%s.%s" % (name, sec) in PAGES, (page, name, sec)


def test_groff_renders_without_warnings():
    """man(1) renders with groff (man-db), not mandoc: every warning on."""
    for page in PAGES:
        p = run(["groff", "-mandoc", "-Tutf8", "-ww", "-z",
                 os.path.join(DOCS, page)])
        assert p.returncode == 0 and p.stderr == "", (page, p.stderr)


# ---------------------------------------------------------------------------
# options and keys

def test_every_upperd_option_is_in_upperd_8():
    opts_text = sections("upperd.8")["OPTIONS"]
    missing = []
    for short, long_, _ in help_options("upperd"):
        if not has_word(opts_text, long_):
            missing.append(long_)
        if short and not has_word(opts_text, short):
            missing.append(short)
    assert missing == [], "upperd(8) OPTIONS lacks %s" % missing


def test_every_option_upperd_8_describes_exists():
    """The other way: an option the page describes (a tag line of
    OPTIONS) that upperd --help does not list is a stale entry."""
    opts_text = sections("upperd.8")["OPTIONS"]
    described = set(re.findall(r"^ {5}(?:-\w [^,]*, )?(--[a-z][a-z0-9-]*)",
                               opts_text, re.M))
    assert len(described) >= 10, described
    known = {l for _, l, _ in help_options("upperd")}
    assert described - known == set(), sorted(described - known)


def test_every_config_key_is_in_upperd_conf_5():
    keys_text = sections("upperd.conf.5")["KEYS"]
    missing = [k for k in config_keys()
               if not re.search(r"^\s+" + re.escape(k) + r" = ", keys_text,
                                re.M)]
    assert missing == [], "upperd.conf(5) KEYS lacks %s" % missing


def test_every_config_key_is_in_the_sample_config():
    """deploy/upperd.conf shows every key (commented out, at its
    default), and nothing it names is unknown to upperd."""
    with open(os.path.join(REPO, "deploy", "upperd.conf")) as f:
        sample = f.read()
    shown = set(re.findall(r"^#?([a-z][a-z0-9-]*) = ", sample, re.M))
    keys = set(config_keys())
    assert keys - shown == set(), "sample config lacks %s" % (keys - shown)


@pytest.mark.parametrize("binary,page", [("upper", "upper.1"),
                                         ("upper-bench", "upper-bench.1")])
def test_every_tool_option_is_in_its_page(binary, page):
    text = render(page)
    missing = [l for _, l, _ in help_options(binary) if not has_word(text, l)]
    assert missing == [], "%s lacks %s" % (page, missing)


# ---------------------------------------------------------------------------
# what a live upperd serves

def test_every_metric_family_is_in_upperd_8(daemon):
    secs = sections("upperd.8")
    st, _, body = http_get(daemon.stats_port, "/metrics")
    assert st == 200
    families = re.findall(r"^# TYPE (\S+) ", body.decode(), re.M)
    assert "upperd_worker_up" in families  # the scrape is the real thing
    missing = [f for f in families if not has_word(secs["METRICS"], f)]
    assert missing == [], "upperd(8) METRICS lacks %s" % missing
    # and the other way: a family the page lists (one per tag line) that
    # upperd does not serve is a stale entry.
    listed = set(re.findall(r"^ {5}((?:upperd|process)_[a-z_]+)",
                            secs["METRICS"], re.M))
    assert len(listed) >= 20, listed
    assert listed - set(families) == set(), (
        "upperd(8) METRICS lists families /metrics lacks: %s" %
        sorted(listed - set(families)))


def test_every_stats_key_is_in_upperd_8(daemon):
    keys = set()

    def walk(v, parent=None):
        if isinstance(v, dict):
            for k, sub in v.items():
                if parent != "buckets":  # those keys are bucket bounds
                    keys.add(k)
                walk(sub, k)
        elif isinstance(v, list):
            for sub in v:
                walk(sub, parent)

    walk(daemon.stats())
    assert "tcp_connections_accepted" in keys
    text = sections("upperd.8")["STATS DOCUMENT"]
    missing = sorted(k for k in keys if not has_word(text, k))
    assert missing == [], "upperd(8) STATS DOCUMENT lacks %s" % missing


# ---------------------------------------------------------------------------
# the README

def test_readme_links_stay_inside_the_repository():
    """Every relative link of README.md names a file of the checkout, and
    none leaves it (a clone or an installed system has nothing beside)."""
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    assert "../" not in readme
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    assert targets, "the README links to nothing at all"
    for t in targets:
        if re.match(r"[a-z]+:", t):
            continue
        assert os.path.exists(os.path.join(REPO, t)), t
