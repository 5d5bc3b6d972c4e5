"""
Counters and the HTTP endpoints: exact values after known traffic in /stats
and /metrics (per worker and in totals), promtool's verdict, /healthz,
404/405/HEAD, malformed and oversized requests.
"""

import json
import os
import socket
import subprocess

import pytest

from conftest import (COUNTERS, GAUGES, REASONS, http_get, http_raw,
                      http_request, need_tool, status_of, tcp_roundtrip,
                      ucase, udp_roundtrip, wait_until)

DEFAULT_BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                   "1", "2.5", "5", "10", "+Inf"]

# Known traffic: N TCP connections, M UDP datagrams, replies of a different
# length than the requests (ß -> SS) so sent and received are told apart.
TCP_MSGS = [
    b"hello\n",
    b"two\nlines\n",
    b"no newline at all",
    "straße\nǆ\n".encode(),
    b"x" * 5000 + b"\n" + b"y" * 3000,
    b"\n\n\n",
]
UDP_MSGS = [
    b"hello",
    b"",
    "straße ﬃ".encode(),
    b"a" * 1400,
    b"\xff\xfe bad",
    b"ok",
    b"z",
]


def send_known_traffic(d):
    for m in TCP_MSGS:
        exp = ucase(m)
        assert tcp_roundtrip(d.tcp_port, m, len(exp)) == exp
    for m in UDP_MSGS:
        assert udp_roundtrip(d.udp_port, m) == ucase(m)
    return {
        "tcp_connections_accepted": len(TCP_MSGS),
        "tcp_connections_active": 0,
        "tcp_connections_rejected": 0,
        "tcp_idle_timeouts": 0,
        "tcp_bytes_received": sum(len(m) for m in TCP_MSGS),
        "tcp_bytes_sent": sum(len(ucase(m)) for m in TCP_MSGS),
        "tcp_lines_received": sum(m.count(b"\n") for m in TCP_MSGS),
        "udp_datagrams_received": len(UDP_MSGS),
        "udp_datagrams_sent": len(UDP_MSGS),
        "udp_bytes_received": sum(len(m) for m in UDP_MSGS),
        "udp_bytes_sent": sum(len(ucase(m)) for m in UDP_MSGS),
        "udp_errors": 0,
    }


def totals_of(doc):
    return {k: doc["totals"][k] for k in COUNTERS}


def wait_settled(d, expected, timeout=10):
    """Wait until /stats totals equal expected (the last sends and the
    connection closes may still be in flight), then return the document;
    on timeout, fail showing the difference."""
    last = {}

    def ok():
        doc = d.stats()
        last["doc"] = doc
        return doc if totals_of(doc) == expected else None

    try:
        return wait_until(ok, timeout, msg="totals == expected")
    except AssertionError:
        assert totals_of(last["doc"]) == expected
        raise


def test_stats_document_at_start(daemon):
    doc = daemon.stats()
    assert doc["version"] == "0.1.0"
    assert doc["pid"] == daemon.pid
    assert isinstance(doc["uptime_seconds"], (int, float))
    assert 0 <= doc["uptime_seconds"] < 60
    assert doc["workers_configured"] == 2
    assert doc["workers_running"] == 2
    assert doc["worker_restarts"] == 0
    assert totals_of(doc) == {k: 0 for k in COUNTERS}
    assert [w["slot"] for w in doc["workers"]] == [0, 1]
    pids = set()
    for w in doc["workers"]:
        assert w["state"] == "running"
        assert w["restarts"] == 0
        assert w["restarts_by_reason"] == {r: 0 for r in REASONS}
        assert w["last_exit"] is None
        assert isinstance(w["started_at"], (int, float))
        assert w["started_at"] > 1.6e9
        for k in COUNTERS:
            assert w[k] == 0, k
        pids.add(w["pid"])
        # workers are children of the supervisor
        with open("/proc/%d/status" % w["pid"]) as f:
            ppid = [ln for ln in f if ln.startswith("PPid:")][0]
        assert int(ppid.split()[1]) == daemon.pid
    assert len(pids) == 2 and daemon.pid not in pids


def test_exact_counters_stats(daemon):
    expected = send_known_traffic(daemon)
    doc = wait_settled(daemon, expected)
    # the sum over workers is the total, counter by counter
    for k in COUNTERS:
        assert sum(w[k] for w in doc["workers"]) == doc["totals"][k], k
    # and it stays exact: nothing is counted later or twice
    assert totals_of(daemon.stats()) == expected


def test_exact_counters_metrics(daemon):
    expected = send_known_traffic(daemon)
    doc = wait_settled(daemon, expected)
    m = daemon.metrics()
    for k in COUNTERS:
        name = "upperd_%s" % k if k in GAUGES else "upperd_%s_total" % k
        per = m.by(name, "worker")
        assert sorted(per) == ["0", "1"], (name, per)
        assert sum(per.values()) == expected[k], (name, per)
        for w in doc["workers"]:
            assert per[str(w["slot"])] == w[k], (name, w["slot"])
    # the connection-duration histogram counted every connection
    counts = m.by("upperd_tcp_connection_duration_seconds_count", "worker")
    assert sum(counts.values()) == len(TCP_MSGS)
    for slot in ("0", "1"):
        buckets = {l["le"]: v for l, v in
                   m.all("upperd_tcp_connection_duration_seconds_bucket")
                   if l["worker"] == slot}
        assert sorted(buckets, key=lambda x: float(x)) == DEFAULT_BUCKETS
        vals = [buckets[b] for b in DEFAULT_BUCKETS]
        assert vals == sorted(vals), "buckets must be cumulative"
        assert buckets["+Inf"] == counts[slot]
    assert m.get("upperd_workers_configured") == 2
    assert m.get("upperd_workers_running") == 2
    assert m.get("upperd_build_info", version="0.1.0") == 1
    assert m.by("upperd_worker_up", "worker") == {"0": 1, "1": 1}


def test_every_label_set_from_the_start(daemon):
    m = daemon.metrics()
    for k in COUNTERS:
        name = "upperd_%s" % k if k in GAUGES else "upperd_%s_total" % k
        assert m.by(name, "worker") == {"0": 0, "1": 0}, name
        assert name in m.help and m.type.get(name) == (
            "gauge" if k in GAUGES else "counter"), name
    for slot in ("0", "1"):
        for r in REASONS:
            assert m.get("upperd_worker_restarts_total", worker=slot,
                         reason=r) == 0, (slot, r)
        for b in DEFAULT_BUCKETS:
            assert m.get("upperd_tcp_connection_duration_seconds_bucket",
                         worker=slot, le=b) == 0
        assert m.get("upperd_tcp_connection_duration_seconds_count",
                     worker=slot) == 0
        assert m.get("upperd_tcp_connection_duration_seconds_sum",
                     worker=slot) == 0
        assert m.get("upperd_worker_up", worker=slot) == 1
        assert m.get("upperd_worker_cpu_seconds_total", worker=slot) >= 0
        assert m.get("upperd_worker_resident_memory_bytes",
                     worker=slot) > 0
    assert len(m.all("upperd_worker_restarts_total")) == 8
    assert m.type["upperd_tcp_connection_duration_seconds"] == "histogram"
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "process_start_time_seconds",
                 "process_max_fds", "process_virtual_memory_bytes",
                 "upperd_start_time_seconds", "upperd_workers_configured",
                 "upperd_workers_running"):
        assert len(m.all(name)) == 1, name
    assert m.get("process_resident_memory_bytes") > 0
    assert m.get("process_open_fds") > 0
    assert m.get("process_max_fds") > 0
    # every family has HELP and TYPE
    for name, labels, _ in m.samples:
        fam = m.family_of(name)
        assert fam in m.help, "no HELP for %s" % fam
        assert fam in m.type, "no TYPE for %s" % fam


def promtool_check(text):
    promtool = need_tool("promtool", "prometheus")
    r = subprocess.run([promtool, "check", "metrics"], input=text,
                       capture_output=True, timeout=60)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def test_promtool_check_metrics(daemon):
    st, _, body = http_get(daemon.stats_port, "/metrics")
    assert st == 200
    assert promtool_check(body) == (0, "")
    send_known_traffic(daemon)
    st, _, body = http_get(daemon.stats_port, "/metrics")
    assert promtool_check(body) == (0, "")


def test_content_types(daemon):
    st, h, body = http_get(daemon.stats_port, "/stats")
    assert st == 200
    assert h["content-type"].split(";")[0].strip() == "application/json"
    json.loads(body)
    st, h, body = http_get(daemon.stats_port, "/metrics")
    assert st == 200
    assert h["content-type"].replace(" ", "").startswith(
        "text/plain;version=0.0.4")
    st, h, body = http_get(daemon.stats_port, "/")
    assert st == 200
    assert h["content-type"].split(";")[0].strip() == "text/html"
    assert b"<html" in body.lower()
    assert b"/stats" in body
    # self-contained: no external scripts or stylesheets
    low = body.lower()
    assert b"src=\"http" not in low and b"href=\"http" not in low


def test_healthz_says_ok(daemon):
    st, h, body = http_get(daemon.stats_port, "/healthz")
    assert st == 200
    assert body in (b"ok", b"ok\n")


@pytest.mark.parametrize("path", ["/nope", "/stats/x", "/metricsx",
                                  "/healthz/", "/favicon.ico", "/..%2f"])
def test_unknown_path_is_404(daemon, path):
    st, _, _ = http_get(daemon.stats_port, path)
    assert st == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/stats", "/metrics", "/healthz", "/"])
def test_write_method_is_405(daemon, method, path):
    st, _, _ = http_request(daemon.stats_port, path, method=method,
                            body=b"x=1")
    assert st == 405


@pytest.mark.parametrize("path", ["/stats", "/metrics", "/healthz"])
def test_head_gets_headers_without_body(daemon, path):
    st, h, body = http_get(daemon.stats_port, path, method="HEAD")
    assert st == 200
    assert body == b""
    # on the wire too: headers and nothing after them
    raw = http_raw(daemon.stats_port,
                   b"HEAD " + path.encode() + b" HTTP/1.0\r\n\r\n",
                   timeout=5)
    assert status_of(raw) == 200
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep and rest == b"", raw


def assert_still_fine(d):
    st, _, body = http_get(d.stats_port, "/healthz")
    assert (st, body.strip()) == (200, b"ok")
    assert d.stats()["workers_running"] == 2
    assert udp_roundtrip(d.udp_port, b"fine") == b"FINE"
    assert d.alive()


@pytest.mark.parametrize("payload", [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /stats HTTP/1.1\r\nNo colon here\r\n\r\n",
    b"\x00\x01\x02\xff\r\n\r\n",
], ids=["garbage", "no-uri", "bad-header", "binary"])
def test_malformed_request(daemon, payload):
    raw = http_raw(daemon.stats_port, payload, timeout=5)
    st = status_of(raw)
    assert st is not None and 400 <= st < 500, raw[:300]
    assert_still_fine(daemon)


@pytest.mark.parametrize("kind", ["header", "uri", "many-headers"])
def test_oversized_request(daemon, kind):
    big = b"a" * (100 * 1024)
    if kind == "header":
        payload = (b"GET /stats HTTP/1.1\r\nHost: x\r\nX-Big: " + big +
                   b"\r\n\r\n")
    elif kind == "uri":
        payload = b"GET /" + big + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    else:
        payload = (b"GET /stats HTTP/1.1\r\nHost: x\r\n" +
                   b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 50)
                            for i in range(3000)) + b"\r\n")
    raw = http_raw(daemon.stats_port, payload, timeout=10)
    st = status_of(raw)
    assert st in (400, 413, 414, 431), raw[:300]
    assert_still_fine(daemon)


def test_lines_counted_in_bulk(daemon):
    """tcp_lines_received over megabytes (the worker counts newlines many
    bytes per step; dense and sparse newlines, odd lengths)."""
    import random
    rnd = random.Random(1234)
    data = (bytes(rnd.choice(b"ab\n") for _ in range(1_000_003)) +
            b"\n" * 70_001 + b"c" * 4099 + b"\n")
    assert tcp_roundtrip(daemon.tcp_port, data, timeout=30) == ucase(data)

    def counted():
        t = daemon.stats()["totals"]
        return t if t["tcp_connections_active"] == 0 else None

    t = wait_until(counted, 10, msg="connection closed")
    assert t["tcp_lines_received"] == data.count(b"\n")
    assert t["tcp_bytes_received"] == len(data)
