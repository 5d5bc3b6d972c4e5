#!/usr/bin/env python3
"""report.py: turn run_bench.sh's records into the benchmark table.

Reads the JSON-lines records (one per measured run, plus the scrape and
idle-memory notes), keeps the best run of each scenario and server (highest
throughput; its latency and CPU go with it), prints the table with the
upperd/reference ratios and issue 4's targets, and writes a JSON summary.

usage: report.py RECORDS.jsonl SUMMARY.json
"""
import json
import sys

SCENARIOS = [
    # key, label, throughput unit, targets
    ("a", "(a) 50 conns depth 1", "req/s", {"tput": 1.0, "p99": 1.1}),
    ("a2", "(a) server on 1 own CPU", "req/s", {}),
    ("b", "(b) 50 conns depth 16", "req/s", {"tput": 1.0}),
    ("c", "(c) 1 conn, 1 shared CPU", "req/s", {"p50": 1.05}),
    ("c2", "(c) 1 conn, own CPUs", "req/s", {}),
    ("d", "(d) idle + 50 active", "req/s", {"tput": 1.0}),
    ("e", "(e) UDP 4 sockets depth 32", "dgram/s", {"tput": 1.0}),
    ("f", "(f) bulk ASCII, 1 conn", "MB/s", {"tput": 0.95}),
    ("g", "(g) bulk mixed UTF-8", "MB/s", {"abs_mbs": 300}),
]


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def tput(run):
    b = run.get("bench") or {}
    return b.get("mb_per_s", 0) if b.get("mode") == "bulk" else \
        b.get("rps", 0)


def cpu_per_op(run):
    """Server CPU microseconds per request (per MB in bulk) over the whole
    run, warmup and grace included, as /proc counts it."""
    b = run.get("bench")
    if not b:
        return None
    if b["mode"] == "bulk":
        ops = b["bytes_sent"] / 1e6
    else:
        ops = b["bytes_received"] / max(b["size"], 1)
    return run["cpu_s"] * 1e6 / ops if ops else None


def best(runs, scenario, server):
    cand = [r for r in runs if r["scenario"] == scenario and
            r["server"] == server and r.get("bench")]
    return max(cand, key=tput) if cand else None


def ratio(a, b):
    return b / a if a else None


def fmt(v, nd=1):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{nd}f}"


def verdict(ok):
    return "ok" if ok else "MISS"


def held(run):
    """Connections each server process held once the bench had connected
    (open fds then, minus before the run)."""
    if not run or not run.get("fds_before") or not run.get("fds_during"):
        return None
    if len(run["fds_before"]) != len(run["fds_during"]):
        return None
    return [a - b for a, b in zip(run["fds_during"], run["fds_before"])]


def split(run):
    """Connections each worker accepted during the run."""
    if not run or not run.get("accepted_before") or \
            not run.get("accepted_after"):
        return None
    return [a - b for a, b in zip(run["accepted_after"],
                                  run["accepted_before"])]


def comparison(runs, summary):
    hdr = (f"{'scenario':<28} {'ref':>11} {'upperd':>11} {'ratio':>6}  "
           f"{'p50 us ref/upd':>16} {'ratio':>5}  {'p99 us ref/upd':>17} "
           f"{'ratio':>5}  {'CPU us/op ref/upd':>18} {'ratio':>5}  target")
    print(hdr)
    print("-" * len(hdr))
    for key, label, unit, targets in SCENARIOS:
        r, u = best(runs, key, "ref"), best(runs, key, "upperd")
        if not r or not u:
            print(f"{label:<28} (no result)")
            continue
        rb, ub = r["bench"], u["bench"]
        tr = ratio(tput(r), tput(u))
        p50 = ratio(rb["p50_us"], ub["p50_us"])
        p99 = ratio(rb["p99_us"], ub["p99_us"])
        cr, cu = cpu_per_op(r), cpu_per_op(u)
        cpu = ratio(cr, cu)
        notes = []
        if "tput" in targets:
            notes.append(f"tput>={targets['tput']}x "
                         f"{verdict(tr is not None and tr >= targets['tput'])}")
        if "p99" in targets and rb["mode"] != "bulk":
            notes.append(f"p99<={targets['p99']}x "
                         f"{verdict(p99 is not None and p99 <= targets['p99'])}")
        if "p50" in targets:
            notes.append(f"p50<={targets['p50']}x "
                         f"{verdict(p50 is not None and p50 <= targets['p50'])}")
        if "abs_mbs" in targets:
            notes.append(f">={targets['abs_mbs']} MB/s "
                         f"{verdict(tput(u) >= targets['abs_mbs'])}")
        errs = rb["errors"] + ub["errors"]
        if errs or rb["connect_failures"] or ub["connect_failures"]:
            notes.append(f"ERRORS ref {rb['errors']} upperd {ub['errors']}")
        lat = rb["mode"] != "bulk"
        print(f"{label:<28} {fmt(tput(r)):>11} {fmt(tput(u)):>11} "
              f"{fmt(tr, 2):>6}  "
              f"{(fmt(rb['p50_us']) + '/' + fmt(ub['p50_us'])) if lat else '-':>16} "
              f"{fmt(p50, 2) if lat else '-':>5}  "
              f"{(fmt(rb['p99_us']) + '/' + fmt(ub['p99_us'])) if lat else '-':>17} "
              f"{fmt(p99, 2) if lat else '-':>5}  "
              f"{fmt(cr, 2) + '/' + fmt(cu, 2):>18} {fmt(cpu, 2):>5}  "
              f"{'; '.join(notes)}")
        summary["scenarios"][key] = {
            "label": label, "unit": unit,
            "ref": pick(rb, cr), "upperd": pick(ub, cu),
            "throughput_ratio": tr, "p50_ratio": p50, "p99_ratio": p99,
            "cpu_per_op_ratio": cpu, "upperd_accepted_split": split(u)}
    print("  throughput in req/s (UDP: datagrams/s; bulk: input MB/s);"
          " CPU us/op = server CPU (all its processes) per request, per MB"
          " in bulk")
    for key in ("a", "b", "d"):
        parts = []
        for srv in ("ref", "upperd"):
            h = held(best(runs, key, srv))
            if h:
                parts.append(f"{srv} {h}")
        if parts:
            print(f"  connections per server process in the best ({key}) "
                  f"runs: {'; '.join(parts)}")
    setups = {srv: max((r.get("setup_s", 0) for r in runs
                        if r["scenario"] == "d" and r["server"] == srv),
                       default=None) for srv in ("ref", "upperd")}
    if setups["ref"] is not None:
        print(f"  (d) connect + accept of the idle connections took up to "
              f"{setups['ref']} s (ref) and {setups['upperd']} s (upperd)")


def pick(b, cpu):
    keys = ("rps", "mb_per_s", "p50_us", "p90_us", "p99_us", "p999_us",
            "max_us", "requests", "errors", "lost", "late",
            "connect_failures")
    d = {k: b[k] for k in keys}
    d["cpu_us_per_op"] = cpu
    return d


OTHER_CONFIGS = [
    # server, label, summary key
    ("upperd1", "upperd --workers 1", "one_worker"),
    ("upperdn", "upperd --sched-policy normal", "sched_normal"),
]


def other_configs(runs, summary):
    """(a)/(b) on other upperd configurations against the reference runs
    taken beside them (rep > 100)."""
    for srv, label, key in OTHER_CONFIGS:
        for sc in ("a", "b"):
            u = best(runs, sc, srv)
            cand = [r for r in runs if r["scenario"] == sc and
                    r["server"] == "ref" and r["rep"] > 100 and
                    r.get("bench")]
            r = max(cand, key=tput) if cand else None
            if not u or not r:
                continue
            rr = ratio(tput(r), tput(u))
            cr = ratio(cpu_per_op(r), cpu_per_op(u))
            print(f"({sc}) {label}: {fmt(tput(u))} req/s against ref "
                  f"{fmt(tput(r))} {held(r)}: {fmt(rr, 2)}x; CPU us/op "
                  f"{fmt(cpu_per_op(u), 2)} / {fmt(cpu_per_op(r), 2)} "
                  f"({fmt(cr, 2)}x); p50 us {fmt(u['bench']['p50_us'])} / "
                  f"{fmt(r['bench']['p50_us'])}; p99 us "
                  f"{fmt(u['bench']['p99_us'])} / "
                  f"{fmt(r['bench']['p99_us'])}")
            summary.setdefault(key, {})[sc] = {
                "ref_rps": tput(r), "upperd_rps": tput(u), "ratio": rr,
                "cpu_ratio": cr, "p50_us": u["bench"]["p50_us"],
                "p99_us": u["bench"]["p99_us"]}


def balance(runs, summary):
    for srv, n in (("upperd", 2), ("upperd4", 4)):
        r = best(runs, "churn", srv)
        s = split(r)
        if not s or sum(s) == 0:
            print(f"balance, {n} workers: no data")
            continue
        mean = sum(s) / len(s)
        mm = max(s) / mean
        print(f"balance, {n} workers, 1000 short connections: accepted "
              f"{s}, max/mean {mm:.2f} (target <= 1.2: {verdict(mm <= 1.2)})"
              f"; {fmt(r['bench']['rps'])} conn/s")
        summary["balance"][str(n)] = {"accepted": s, "max_over_mean": mm}


def scrape(runs, recs, summary):
    plain = [r for r in runs if r["scenario"] == "a_noscrape"]
    with_ = [r for r in runs if r["scenario"] == "a_scrape"]
    if not plain or not with_:
        return
    p, w = max(map(tput, plain)), max(map(tput, with_))
    got = [x["result"] for x in recs if x["kind"] == "scrape" and
           x.get("result")]
    hz = sum(g["scrapes"] for g in got) / max(sum(g["seconds"] for g in got),
                                               1e-9) if got else 0
    cp = min(filter(None, map(cpu_per_op, plain)), default=None)
    cw = min(filter(None, map(cpu_per_op, with_)), default=None)
    rr = ratio(p, w)
    print(f"scrape: (a) {fmt(p)} req/s without, {fmt(w)} with /metrics at "
          f"{hz:.0f} Hz: {fmt(rr, 3)}x (target >= 0.97: "
          f"{verdict(rr is not None and rr >= 0.97)}); CPU us/req "
          f"{fmt(cp, 2)} -> {fmt(cw, 2)}")
    summary["scrape"] = {"without_rps": p, "with_rps": w, "ratio": rr,
                         "scrape_hz": hz, "cpu_us_per_req_without": cp,
                         "cpu_us_per_req_with": cw}


def idle(runs, recs, summary):
    m = [x for x in recs if x["kind"] == "idle_mem"]
    wo, wi = best(runs, "idle_without", "upperd_idle"), \
        best(runs, "idle_with", "upperd_idle")
    if not m:
        return
    m = m[0]
    n = max(m["held"] - 50, 1)
    per = (m["rss_after_kb"] - m["rss_before_kb"]) * 1024 / n
    per_anon = (m["anon_after_kb"] - m["anon_before_kb"]) * 1024 / n
    rr = ratio(tput(wo), tput(wi)) if wo and wi else None
    if m.get("asked", m["target"]) > m["target"]:
        print(f"idle: {m['asked']} idle connections asked, "
              f"{m['target']} tried: the hard fd limit is {m['fd_limit']} "
              f"per process and 2 workers hold them")
    print(f"idle: {m['held'] - 50} of {m['target']} idle connections held "
          f"by 2 workers: {per:.0f} B RSS each ({per_anon:.0f} B anonymous)"
          f" (target <= 1024: {verdict(per <= 1024)}); workers RSS "
          f"{m['rss_before_kb']} -> {m['rss_after_kb']} kB")
    if rr is not None:
        print(f"idle: (a) {fmt(tput(wo))} req/s without, {fmt(tput(wi))} "
              f"with them held: {fmt(rr, 3)}x (target >= 0.95: "
              f"{verdict(rr >= 0.95)})")
    for a in (x for x in recs if x["kind"] == "idle_mem_all"):
        n = max(a["held"] - 50, 1)
        per = (a["rss_after_kb"] - a["rss_before_kb"]) * 1024 / n
        print(f"idle: {a['held'] - 50} of {a['target']} idle connections "
              f"held by {a['workers']} workers: {per:.0f} B RSS each "
              f"(connected and accepted in {a['setup_s']} s)")
        summary["idle_all"] = dict(a, bytes_per_conn=per)
    summary["idle"] = dict(m, bytes_per_conn=per, anon_bytes_per_conn=per_anon,
                           without_rps=tput(wo) if wo else None,
                           with_rps=tput(wi) if wi else None, ratio=rr)


def main():
    recs = load(sys.argv[1])
    runs = [r for r in recs if r["kind"] == "run"]
    meta = next((r for r in recs if r["kind"] == "meta"), {})
    summary = {"meta": meta, "scenarios": {}, "balance": {}, "runs": runs}
    if meta.get("ref_vs_ref"):
        print("ref vs ref: the upperd column is a second upper-ref; the "
              "ratios show this machine's noise")
    print(f"best of {meta.get('reps')} runs each (bulk: two more), {meta.get('warmup')} s "
          f"warmup + {meta.get('duration')} s measured; {meta.get('cpus')} "
          f"CPUs; (d) holds {meta.get('idle_d')} idle connections; load "
          f"average at start {meta.get('loadavg_start')}")
    comparison(runs, summary)
    print()
    other_configs(runs, summary)
    balance(runs, summary)
    scrape(runs, recs, summary)
    idle(runs, recs, summary)
    bad = [r for r in runs if r.get("rc") or not r.get("bench")]
    if bad:
        print(f"\n{len(bad)} runs reported errors or failed:",
              ", ".join(f"{r['scenario']}/{r['server']}" for r in bad))
    with open(sys.argv[2], "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\nsummary: {sys.argv[2]}")


if __name__ == "__main__":
    main()
