"""engines_report.py RECORDS SVGDIR: the engine bench's table and curves.

Reads the JSON lines engines.sh wrote; prints the three-way table (best
of the repetitions per row and server, ratios to upper-ref of the same
run), the peers' latency beside upperd's, the curves as text, and writes
the curves' data and SVG pictures (gnuplot) into SVGDIR."""

import json
import os
import subprocess
import sys

NAMES = {"ref": "upper-ref (epoll)", "ref_uring": "upper-ref-uring",
         "epoll": "upperd epoll", "io_uring": "upperd io_uring",
         "memcached": "memcached -t 2", "redis": "Redis"}
ROWS = {"a": "(a) 50 conns depth 1", "b": "(b) 50 conns depth 16",
        "d": "(d) idle + 50 active", "e": "(e) UDP 4 sockets depth 32",
        "f": "(f) bulk ASCII, 1 conn"}


def load(path):
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip()]


def tput(r):
    b = r.get("r") or {}
    if r["kind"] == "rr":
        return b.get("rps", 0)
    return b.get("mb_per_s", 0) if b.get("mode") == "bulk" else \
        b.get("rps", 0)


def cpu_per_op(r):
    b = r.get("r")
    if not b:
        return None
    if r["kind"] == "rr":
        ops = b.get("all", 0)
    elif b.get("mode") == "bulk":
        ops = b["bytes_sent"] / 1e6
    else:
        ops = b["bytes_received"] / max(b["size"], 1)
    return r["cpu_s"] * 1e6 / ops if ops else None


def best(recs, row, server, **kw):
    c = [r for r in recs if r.get("row") == row and r["server"] == server
         and r.get("r") and all(r.get(k) == v for k, v in kw.items())]
    return max(c, key=tput) if c else None


def f(v, nd=2):
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{nd}f}"


def table(recs):
    servers = ["ref", "ref_uring", "epoll", "io_uring"]
    print("throughput (req/s; UDP datagrams/s; bulk MB/s) and server CPU "
          "per request (us; bulk: per MB), ratios to upper-ref")
    hdr = "%-28s" % "row" + "".join("%26s" % NAMES[s] for s in servers)
    print(hdr)
    print("-" * len(hdr))
    out = {}
    for row, title in ROWS.items():
        ref = best(recs, row, "ref")
        if not ref:
            continue
        t0, c0 = tput(ref), cpu_per_op(ref)
        cells, cpus = [], []
        for s in servers:
            r = best(recs, row, s)
            if not r:
                cells.append("%26s" % "-")
                continue
            t, c = tput(r), cpu_per_op(r)
            out.setdefault(row, {})[s] = {"tput": t, "cpu_per_op": c,
                                          "p99_us": (r["r"] or {}).get(
                                              "p99_us")}
            cells.append("%26s" % ("%s %.2fx" % (f(t), t / t0 if t0 else 0)))
            cpus.append("%26s" % ("%s us %.2fx" % (
                f(c), c / c0 if c and c0 else 0)))
        print("%-28s" % title + "".join(cells))
        print("%-28s" % "   CPU per op" + "".join(["%26s" % ""] * 0) +
              "".join(cpus))
    return out


def peers(recs):
    print()
    print("(a) 50 conns depth 1, the same load generator (peer-rr) for all:")
    print("%-22s %12s %8s %10s %8s %8s %6s" % (
        "server", "req/s", "vs ref", "CPU us/req", "p50 us", "p99 us",
        "fair"))
    ref = best(recs, "a", "ref")
    for s in ["ref", "ref_uring", "epoll", "io_uring", "memcached",
              "redis"]:
        r = best(recs, "a", s)
        if not r or not ref:
            continue
        b = r["r"]
        print("%-22s %12s %8.2f %10s %8s %8s %6s" % (
            NAMES[s], f(b["rps"]), b["rps"] / max(ref["r"]["rps"], 1),
            f(cpu_per_op(r)), f(b["p50_us"], 0), f(b["p99_us"], 0),
            f(b.get("fair"))))
    print("  fair: the least-served connection's replies over the mean "
          "(target >= 0.5)")


def curves(recs, svgdir):
    servers = ["ref", "ref_uring", "epoll", "io_uring"]
    os.makedirs(svgdir, exist_ok=True)
    for row, key, xlabel in (("conns", "conns", "active connections "
                              "(depth 1)"),
                             ("depth", "depth", "pipelining depth "
                              "(50 connections)")):
        xs = sorted({r[key] for r in recs if r.get("row") == row})
        if not xs:
            continue
        print()
        print("curve: %s" % xlabel)
        print("%8s" % key + "".join("%30s" % NAMES[s] for s in servers))
        dat = os.path.join(svgdir, "bench-%s.dat" % row)
        with open(dat, "w") as fo:
            fo.write("# %s " % key + " ".join(
                "%s_rps %s_p99" % (s, s) for s in servers) + "\n")
            for x in xs:
                line, cells = [str(x)], []
                for s in servers:
                    r = best(recs, row, s, **{key: x})
                    rps = r["r"]["rps"] if r else float("nan")
                    p99 = r["r"]["p99_us"] if r else float("nan")
                    line += [str(rps), str(p99)]
                    cells.append("%30s" % ("%s/s p99 %s us" % (
                        f(rps), f(p99, 0))))
                fo.write(" ".join(line) + "\n")
                print("%8d" % x + "".join(cells))
        plot(dat, svgdir, row, xlabel, servers)
    idle = [r for r in recs if r["kind"] == "idle"]
    if idle:
        print()
        print("curve: worker memory against idle connections")
        dat = os.path.join(svgdir, "bench-idle.dat")
        srv = [s for s in servers if any(r["server"] == s for r in idle)]
        ns = sorted({r["idle"] for r in idle})
        with open(dat, "w") as fo:
            fo.write("# idle " + " ".join("%s_kb" % s for s in srv) + "\n")
            for n in ns:
                row = [str(n)]
                cells = []
                for s in srv:
                    r = [x for x in idle if x["server"] == s and
                         x["idle"] == n]
                    kb = r[0]["rss_kb"] if r else float("nan")
                    per = ((r[0]["rss_kb"] - r[0]["base_kb"]) * 1024 /
                           r[0]["held"] if r and r[0]["held"] else None)
                    row.append(str(kb))
                    cells.append("%30s" % ("%s kB (%s B/conn, %d held)" % (
                        f(kb), f(per, 0), r[0]["held"] if r else 0)))
                fo.write(" ".join(row) + "\n")
                print("%8d" % n + "".join(cells))
        plot_idle(dat, svgdir, srv)


def gnuplot(script):
    try:
        subprocess.run(["gnuplot"], input=script.encode(), check=True,
                       timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        print("gnuplot failed: %s" % e)


def plot(dat, svgdir, row, xlabel, servers):
    lines_t = ", ".join(
        "'%s' using 1:%d with linespoints title '%s'" % (dat, 2 + 2 * i,
                                                        NAMES[s])
        for i, s in enumerate(servers))
    lines_p = ", ".join(
        "'%s' using 1:%d with linespoints title '%s'" % (dat, 3 + 2 * i,
                                                        NAMES[s])
        for i, s in enumerate(servers))
    gnuplot("""set terminal svg size 900,380 dynamic font 'sans,11' noenhanced
set output '%s/bench-%s.svg'
set multiplot layout 1,2
set logscale x
set key top left font ',9'
set xlabel '%s'
set ylabel 'requests/s'
set format y '%%.0s%%c'
plot %s
set logscale y
set ylabel 'p99 latency (us)'
set format y '%%g'
plot %s
unset multiplot
""" % (svgdir, row, xlabel, lines_t, lines_p))


def plot_idle(dat, svgdir, servers):
    lines = ", ".join(
        "'%s' using 1:($%d/1024) with linespoints title '%s'" % (
            dat, 2 + i, NAMES[s]) for i, s in enumerate(servers))
    gnuplot("""set terminal svg size 600,380 dynamic font 'sans,11' noenhanced
set output '%s/bench-idle.svg'
set key top left font ',9'
set xlabel 'idle connections'
set ylabel 'worker RSS (MiB)'
plot %s
""" % (svgdir, lines))


def main():
    recs = load(sys.argv[1])
    svgdir = sys.argv[2] if len(sys.argv) > 2 else "."
    meta = [r for r in recs if r["kind"] == "meta"]
    if meta:
        print("engine bench %s, load average at start %s" % (
            meta[0].get("date"), meta[0].get("loadavg")))
    out = table(recs)
    peers(recs)
    curves(recs, svgdir)
    with open(os.path.join(svgdir, "bench-engines.json"), "w") as fo:
        json.dump(out, fo, indent=1)


if __name__ == "__main__":
    main()
