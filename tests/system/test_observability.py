"""
Observability, end to end:

- the Grafana dashboards under dashboards/ are well formed, filter every
  query by $instance (and $worker where per worker), never rate() a sum(),
  and cover every metric family upperd exports;
- a real Prometheus (Debian's package), started here on a free loopback
  port with the shipped dashboards/prometheus.yml (target and intervals
  swapped), scrapes upperd under traffic and a worker crash, and EVERY
  PromQL expression of every dashboard returns data; promtool accepts the
  shipped scrape config and the live /metrics;
- the Grafana provisioning files agree with the dashboard and scrape config;
- the status page at / renders, in headless Chromium driven by
  playwright-core (status_page.mjs), the same workers /stats reports, and
  loads nothing from anywhere else;
- the connection-duration histogram counts connections of known durations
  in the right buckets.

Tools come from Debian (prometheus, chromium) and npm (playwright-core, put
in tests/system/node_modules here if missing).  Without a tool a test
fails, never skips: the Makefile's deps must provide it.
"""

import glob
import json
import math
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from conftest import (HERE, REPO, free_port, http_get, http_request,
                      need_tool, recv_exactly, recv_until_eof, tcp_connect,
                      stop_proc, tcp_roundtrip, udp_roundtrip, wait_until)

DASHBOARD_DIR = os.path.join(REPO, "dashboards")
SCRAPE_CONFIG = os.path.join(DASHBOARD_DIR, "prometheus.yml")
PROV_DS = os.path.join(DASHBOARD_DIR, "provisioning", "datasources",
                       "upperd.yml")
PROV_DASH = os.path.join(DASHBOARD_DIR, "provisioning", "dashboards",
                         "upperd.yml")
ARTIFACTS = os.path.join(HERE, "artifacts")
STATUS_PAGE_JS = os.path.join(HERE, "status_page.mjs")
CHROMIUM = "/usr/bin/chromium"

# Grafana's built-in variables, as Grafana would expand them for a short
# time range on a data source whose scrape interval is 1 s:
# $__rate_interval = max($__interval + scrape interval, 4 * scrape interval).
SCRAPE_INTERVAL_S = 1
RATE_INTERVAL = "5s"          # >= 4 scrapes
BUILTINS = {
    "__rate_interval": RATE_INTERVAL,
    "__interval": "2s",
    "__interval_ms": "2000",
    "__range": "60s",
    "__range_s": "60",
    "__range_ms": "60000",
}

# Families exported by upperd that the dashboard may leave out, and why.
NOT_ON_DASHBOARD = {
    # same value as upperd_start_time_seconds, which the Uptime panel uses
    "process_start_time_seconds",
}

# The metric names a dashboard expression may select, and which of them
# carry a worker label.
METRIC_RE = re.compile(
    r"(?<![\w:])(upperd_[a-z0-9_]+|process_[a-z0-9_]+|up|"
    r"scrape_duration_seconds)(?![\w:(])\s*(\{[^}]*\})?")
PER_WORKER_RE = re.compile(r"^upperd_(tcp|udp|worker)_")
# rate() and friends must take a plain selector over a Grafana interval.
RANGE_FUNC_RE = re.compile(r"\b(rate|irate|increase)\s*\(")
RANGE_ARG_RE = re.compile(
    r"\s*[a-zA-Z_:][\w:]*\s*\{[^}]*\}\s*\[\$__(rate_interval|range)\]\s*\)")
AGG_INSIDE_RATE_RE = re.compile(
    r"\b(?:rate|irate|increase|delta|idelta|deriv)\s*\(\s*"
    r"(?:sum|avg|min|max|count|topk|bottomk|quantile|stddev|stdvar)\b")


# --------------------------------------------------------------------------
# the dashboards, read statically

def dashboard_files():
    files = sorted(glob.glob(os.path.join(DASHBOARD_DIR, "**", "*.json"),
                             recursive=True))
    assert files, "no dashboard JSON under %s" % DASHBOARD_DIR
    return files


def load_dashboard(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def walk_panels(panels):
    """Every panel, rows' nested panels included."""
    for p in panels or []:
        yield p
        for q in walk_panels(p.get("panels")):
            yield q


def dashboard_exprs(dash):
    """(where, expr) for every PromQL expression in the dashboard: panel
    targets (nested rows included), annotations, and anything else that
    carries an "expr"."""
    found = []

    def visit(node, where):
        if isinstance(node, dict):
            title = node.get("title") or node.get("name")
            here = "%s > %s" % (where, title) if title else where
            if isinstance(node.get("expr"), str) and node["expr"].strip():
                found.append(("%s [%s]" % (here, node.get("refId", "?")),
                              node["expr"]))
            for k, v in node.items():
                if k != "templating":
                    visit(v, here)
        elif isinstance(node, list):
            for v in node:
                visit(v, where)

    visit(dash, "")
    return [(w.lstrip(" >"), e) for w, e in found]


def all_exprs():
    out = []
    for path in dashboard_files():
        name = os.path.relpath(path, REPO)
        for where, expr in dashboard_exprs(load_dashboard(path)):
            out.append(("%s: %s" % (name, where), expr))
    return out


def template_var(dash, name):
    for v in dash.get("templating", {}).get("list", []):
        if v.get("name") == name:
            return v
    raise AssertionError("dashboard %r has no %r variable" %
                         (dash.get("title"), name))


def var_query(v):
    q = v.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    return q or v.get("definition") or ""


def substitute(expr, values):
    """Expand Grafana variables ($v, ${v}, ${v:fmt}, [[v]]) the way Grafana
    would; unknown ones are left in place (and then caught)."""
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in values:
            return values[name]
        return m.group(0)
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", repl, expr)


def test_dashboard_structure():
    for path in dashboard_files():
        d = load_dashboard(path)
        name = os.path.relpath(path, REPO)
        assert d.get("title") and d.get("uid"), name
        assert 36 <= d.get("schemaVersion", 0) <= 41, name
        assert d.get("id") is None, "%s: an exported dashboard's id is null" \
            % name
        # importable: the data source is an input ...
        inputs = {i["name"]: i for i in d.get("__inputs", [])}
        assert "DS_PROMETHEUS" in inputs, name
        assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
        assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
        # ... and a variable, so provisioning works without an import step
        ds = template_var(d, "datasource")
        assert ds["type"] == "datasource" and ds["query"] == "prometheus"
        inst = template_var(d, "instance")
        assert inst["type"] == "query"
        assert re.fullmatch(r"label_values\(\s*upperd_build_info\s*,\s*"
                            r"instance\s*\)", var_query(inst)), var_query(inst)
        wk = template_var(d, "worker")
        assert wk["type"] == "query" and wk["multi"] and wk["includeAll"]
        assert re.fullmatch(r'label_values\(\s*upperd_worker_up\{\s*instance'
                            r'=~"\$instance"\s*\}\s*,\s*worker\s*\)',
                            var_query(wk)), var_query(wk)
        for v in (inst, wk):
            assert v["datasource"]["uid"] in ("${datasource}", "$datasource")

        ids = set()
        boxes = []
        panels = list(walk_panels(d["panels"]))
        assert len([p for p in panels if p.get("type") != "row"]) >= 10
        for p in panels:
            where = "%s: panel %r" % (name, p.get("title"))
            assert p.get("id") not in ids, "duplicate id: " + where
            ids.add(p.get("id"))
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, where
            for (t, o) in boxes:
                ox = g["x"] < o["x"] + o["w"] and o["x"] < g["x"] + g["w"]
                oy = g["y"] < o["y"] + o["h"] and o["y"] < g["y"] + g["h"]
                assert not (ox and oy), "%s overlaps %r" % (where, t)
            boxes.append((p.get("title"), g))
            if p.get("type") == "row":
                continue
            assert p["datasource"]["uid"] in ("${datasource}",
                                              "$datasource"), where
            assert p.get("targets"), "no query: " + where
            refids = [t["refId"] for t in p["targets"]]
            assert len(set(refids)) == len(refids), where
            for t in p["targets"]:
                assert t["datasource"]["uid"] in ("${datasource}",
                                                  "$datasource"), where


def test_dashboard_queries_rules():
    problems = []
    for where, expr in all_exprs():
        if AGG_INSIDE_RATE_RE.search(expr):
            problems.append("aggregation inside a rate: %s: %s" %
                            (where, expr))
        for m in RANGE_FUNC_RE.finditer(expr):
            if not RANGE_ARG_RE.match(expr, m.end()):
                problems.append(
                    "%s() must take name{...}[$__rate_interval] (or "
                    "[$__range] for increase): %s: %s" %
                    (m.group(1), where, expr))
            elif m.group(1) != "increase" and \
                    "[$__range]" in expr[m.end():].split(")")[0]:
                problems.append("rate over $__range: %s: %s" % (where, expr))
        sels = METRIC_RE.findall(expr)
        if not sels:
            problems.append("no upperd metric: %s: %s" % (where, expr))
        for metric, labels in sels:
            if 'instance=~"$instance"' not in labels:
                problems.append('%s not filtered by instance=~"$instance": '
                                '%s: %s' % (metric, where, expr))
            if PER_WORKER_RE.match(metric) and \
                    'worker=~"$worker"' not in labels:
                problems.append('%s not filtered by worker=~"$worker": '
                                '%s: %s' % (metric, where, expr))
        if re.search(r"\[\d+[smhdwy]\]", expr):
            problems.append("hard-coded range: %s: %s" % (where, expr))
    assert not problems, "\n".join(problems)
    # and the one-liner the issue asks for, literally
    for where, expr in all_exprs():
        flat = re.sub(r"\s+", "", expr)
        assert "rate(sum(" not in flat and "irate(sum(" not in flat, where


def test_dashboard_covers_every_metric_family(daemon):
    m = daemon.metrics()
    used = set()
    for _, expr in all_exprs():
        for metric, _ in METRIC_RE.findall(expr):
            used.add(re.sub(r"_(bucket|sum|count)$", "", metric)
                     if metric.startswith("upperd_tcp_connection_duration")
                     else metric)
    missing = sorted(set(m.type) - used - NOT_ON_DASHBOARD)
    assert not missing, "metric families on no dashboard panel: %s" % missing
    unknown = sorted(u for u in used - set(m.type)
                     if u not in ("up", "scrape_duration_seconds"))
    assert not unknown, "dashboard uses metrics upperd does not export: %s" \
        % unknown


# --------------------------------------------------------------------------
# scrape config and provisioning, read statically

def yaml_scalar(text, key):
    """Every value of `key: value` in a simple YAML file (comments off)."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].rstrip()
        m = re.match(r"^\s*(?:-\s+)?%s:\s*(.*?)\s*$" % re.escape(key), line)
        if m:
            out.append(m.group(1).strip("'\""))
    return out


def test_promtool_check_config():
    promtool = need_tool("promtool", "prometheus")
    promtool_check_config(promtool, SCRAPE_CONFIG)
    text = open(SCRAPE_CONFIG).read()
    assert yaml_scalar(text, "job_name") == ["upperd"]
    assert "127.0.0.1:9120" in text
    assert "5s" in yaml_scalar(text, "scrape_interval")


def test_grafana_provisioning_files():
    ds = open(PROV_DS).read()
    assert yaml_scalar(ds, "apiVersion") == ["1"]
    assert yaml_scalar(ds, "type") == ["prometheus"]
    uids = yaml_scalar(ds, "uid")
    assert len(uids) == 1
    for path in dashboard_files():
        var = template_var(load_dashboard(path), "datasource")
        assert var["current"]["value"] == uids[0], (
            "%s: the datasource variable's default %r is not the "
            "provisioned data source's uid %r" %
            (path, var["current"]["value"], uids[0]))
    # $__rate_interval is right only if Grafana knows the scrape interval
    job_interval = yaml_scalar(open(SCRAPE_CONFIG).read(),
                               "scrape_interval")[-1]
    assert yaml_scalar(ds, "timeInterval") == [job_interval]
    url = yaml_scalar(ds, "url")
    assert len(url) == 1 and url[0].startswith("http")

    dp = open(PROV_DASH).read()
    assert yaml_scalar(dp, "apiVersion") == ["1"]
    assert yaml_scalar(dp, "type") == ["file"]
    paths = yaml_scalar(dp, "path")
    assert len(paths) == 1 and paths[0].startswith("/"), paths
    # the comment tells where to put the JSON: that very folder
    assert paths[0] in dp.replace(paths[0], "", 1), \
        "the provider file should say where to copy the dashboard JSON"


# --------------------------------------------------------------------------
# a real Prometheus

class Prometheus:
    """Debian's prometheus on a free loopback port with a temporary config
    and data directory.  stop() kills it by pid."""

    def __init__(self, binary, tmpdir, config_text):
        self.port = free_port()
        self.dir = str(tmpdir)
        self.config = os.path.join(self.dir, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write(config_text)
        self.log_path = os.path.join(self.dir, "prometheus.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "--config.file=" + self.config,
             "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--storage.tsdb.retention.time=1h",
             "--web.listen-address=127.0.0.1:%d" % self.port,
             "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        self.base = "http://127.0.0.1:%d" % self.port

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]

    def get(self, path, params=None, timeout=5.0):
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()

    def api(self, path, params=None, post=None, timeout=10.0):
        """JSON of an /api/v1 call; an HTTP error's JSON body is returned
        too (it carries status "error" and the reason)."""
        url = self.base + "/api/v1/" + path
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        data = urllib.parse.urlencode(post).encode() if post else None
        try:
            with urllib.request.urlopen(url, data=data,
                                        timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return json.loads(body)
            except ValueError:
                return {"status": "error", "error": "HTTP %d: %r" %
                        (e.code, body[:300])}

    def query(self, expr):
        return self.api("query", post={"query": expr})

    def value(self, expr):
        """The single value of a scalar-valued query, or None."""
        doc = self.query(expr)
        if doc.get("status") != "success":
            return None
        res = doc["data"]["result"]
        if doc["data"]["resultType"] == "scalar":
            return float(res[1])
        if len(res) != 1:
            return None
        return float(res[0]["value"][1])

    def wait_ready(self, timeout=30.0):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited %s:\n%s" %
                                     (self.proc.returncode, self.log()))
            try:
                return self.get("/-/ready", timeout=1.0)[0] == 200
            except OSError:
                return False
        wait_until(ready, timeout=timeout, interval=0.1,
                   msg="prometheus /-/ready")

    def stop(self):
        stop_proc(self.proc)
        self._log.close()


def promtool_check_config(promtool, path):
    """promtool check config PATH passes; its output."""
    r = subprocess.run([promtool, "check", "config", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def scrape_config_for(stats_port):
    """The shipped scrape config, pointed at this upperd and scraping every
    second: the test also proves the shipped job works."""
    text = open(SCRAPE_CONFIG).read()
    text, n = re.subn(r"127\.0\.0\.1:9120", "127.0.0.1:%d" % stats_port, text)
    assert n >= 1, "no 127.0.0.1:9120 target in " + SCRAPE_CONFIG
    text = re.sub(r"(scrape_interval:\s*)\S+", r"\g<1>%ds" % SCRAPE_INTERVAL_S,
                  text)
    text = re.sub(r"(scrape_timeout:\s*)\S+", r"\g<1>%ds" % SCRAPE_INTERVAL_S,
                  text)
    return text


class Traffic(threading.Thread):
    """TCP connections (with lines, so lines/s has data) and UDP datagrams,
    one after the other, until stopped."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.halt = threading.Event()
        self.rounds = 0
        self.errors = []

    def run(self):
        while not self.halt.is_set() and len(self.errors) < 50:
            try:
                assert tcp_roundtrip(self.port, b"hello\nworld\n",
                                     timeout=5) == b"HELLO\nWORLD\n"
                assert udp_roundtrip(self.port, b"ping",
                                     timeout=1) == b"PING"
                self.rounds += 1
            except (OSError, AssertionError) as e:
                self.errors.append(repr(e))
            self.halt.wait(0.02)

    def stop(self):
        self.halt.set()
        self.join(20)


def test_dashboards_against_real_prometheus(upperd, tmp_path):
    prom_bin = need_tool("/usr/bin/prometheus", "prometheus")
    promtool = need_tool("promtool", "prometheus")
    d = upperd(workers=2)
    cfg = scrape_config_for(d.stats_port)
    (tmp_path / "check.yml").write_text(cfg)
    promtool_check_config(promtool, tmp_path / "check.yml")

    pdir = tmp_path / "prometheus"
    pdir.mkdir()
    prom = Prometheus(prom_bin, pdir, cfg)
    traffic = None
    held = []
    try:
        prom.wait_ready()
        instance = "127.0.0.1:%d" % d.stats_port

        def target_up():
            doc = prom.api("targets")
            ts = doc["data"]["activeTargets"]
            return [t for t in ts if t["labels"].get("instance") == instance
                    and t["health"] == "up"]
        tgt = wait_until(target_up, timeout=20, interval=0.1,
                         msg="the upperd target up in prometheus")
        assert tgt[0]["labels"]["job"] == "upperd"

        sel = 'instance="%s"' % instance
        traffic = Traffic(d.tcp_port)
        traffic.start()
        # Traffic scraped, then a worker crash under it: the restart panels
        # get data, and no counter may look reset to Prometheus.
        wait_until(lambda: (prom.value(
            'sum(upperd_tcp_connections_accepted_total{%s})' % sel) or 0) > 0,
            timeout=20, interval=0.2, msg="traffic scraped")
        w0 = d.stats()["workers"][0]
        os.kill(w0["pid"], signal.SIGKILL)
        wait_until(lambda: (lambda s: s["workers_running"] == 2 and
                            s["workers"][0]["restarts"] == 1 and
                            s["workers"][0]["state"] == "running")(
                                d.stats()),
                   timeout=15, msg="slot 0 replaced")
        # connections held open, for the active-connections panels
        for _ in range(2):
            c = tcp_connect(d.tcp_port)
            held.append(c)
            c.sendall(b"held\n")
            assert recv_exactly(c, 5) == b"HELD\n"
        conditions = {
            # enough scrapes that every rate window holds >= 4 samples
            "scrapes": ('count_over_time(up{%s}[1m])' % sel,
                        lambda v: v >= 6),
            "tcp rate": ('sum(rate(upperd_tcp_connections_accepted_total'
                         '{%s}[%s]))' % (sel, RATE_INTERVAL),
                         lambda v: v > 0),
            "udp rate": ('sum(rate(upperd_udp_datagrams_received_total'
                         '{%s}[%s]))' % (sel, RATE_INTERVAL),
                         lambda v: v > 0),
            "durations": ('sum(rate(upperd_tcp_connection_duration_seconds_'
                          'count{%s}[%s]))' % (sel, RATE_INTERVAL),
                          lambda v: v > 0),
            "crash seen": ('sum(upperd_worker_restarts_total{%s,'
                           'reason="crash"})' % sel, lambda v: v == 1),
            "active": ('sum(upperd_tcp_connections_active{%s})' % sel,
                       lambda v: v >= 2),
        }
        state = {}

        def have_data():
            for k, (q, ok) in conditions.items():
                v = prom.value(q)
                state[k] = v
                if v is None or not ok(v):
                    return False
            return True
        try:
            wait_until(have_data, timeout=30, interval=0.25,
                       msg="data in prometheus")
        except AssertionError as e:
            raise AssertionError("%s; conditions: %r; traffic errors: %r"
                                 % (e, state, traffic.errors[-5:]))
        assert traffic.is_alive() and traffic.rounds > 0, traffic.errors

        # Grafana's variables as the dashboard would have them: the
        # instance, and "All" workers, formatted as Grafana does for a
        # multi-value variable in a regex matcher.
        workers = prom.api("label/worker/values",
                           params={"match[]": "upperd_worker_up{%s}" % sel})
        assert workers["data"] == ["0", "1"], workers
        values = {"instance": instance,
                  "worker": "(" + "|".join(workers["data"]) + ")",
                  "datasource": "prometheus",
                  "DS_PROMETHEUS": "prometheus"}

        # the variables' own queries
        for path in dashboard_files():
            dash = load_dashboard(path)
            for v in dash["templating"]["list"]:
                if v["type"] != "query":
                    continue
                q = substitute(var_query(v), values)
                m = re.fullmatch(r"label_values\((?:(.+),)?\s*(\w+)\s*\)", q)
                assert m, "%s: variable %s: %r" % (path, v["name"], q)
                params = {"match[]": m.group(1).strip()} if m.group(1) \
                    else None
                got = prom.api("label/%s/values" % m.group(2), params=params)
                assert got["status"] == "success" and got["data"], \
                    "variable %s: %r -> %r" % (v["name"], q, got)
                if v["name"] == "instance":
                    assert instance in got["data"], got
                if v["name"] == "worker":
                    assert got["data"] == ["0", "1"], got

        # every expression of every dashboard
        failures = []
        results = {}
        exprs = all_exprs()
        assert len(exprs) >= 20, "only %d expressions?" % len(exprs)
        for where, expr in exprs:
            q = substitute(expr, values)
            if "$" in q:
                failures.append("%s: unexpanded variable in %r" % (where, q))
                continue
            doc = prom.query(q)
            if doc.get("status") != "success":
                failures.append("%s: %s\n    %s" % (where, doc.get("error"),
                                                    q))
            elif not doc["data"]["result"]:
                failures.append("%s: no data\n    %s" % (where, q))
            else:
                results[expr] = doc["data"]["result"]
        assert not failures, "%d of %d dashboard expressions failed:\n%s" % (
            len(failures), len(exprs), "\n".join(failures))

        # The values make sense, too.
        def values_of(res):
            return [float(r["value"][1]) for r in res]
        for expr, res in results.items():
            if expr.startswith("histogram_quantile("):
                v = values_of(res)
                assert v and all(math.isfinite(x) and 0 <= x <= 10
                                 for x in v), (expr, res)
            if re.match(r"sum\(rate\(upperd_(tcp_connections_accepted|"
                        r"udp_datagrams_received|tcp_lines_received)_total",
                        expr):
                assert values_of(res)[0] > 0, (expr, res)
            if re.match(r"sum by \(worker, reason\) \(increase\("
                        r"upperd_worker_restarts_total", expr):
                crash0 = [float(r["value"][1]) for r in res
                          if r["metric"] == {"worker": "0",
                                             "reason": "crash"}]
                assert crash0 and crash0[0] > 0, res

        # The crash reset no counter of its slot (they carry on across
        # the replacement): Prometheus sees no counter reset at all.
        doc = prom.query(
            '{%s, __name__=~"upperd_.+_total|'
            'upperd_tcp_connection_duration_seconds_(bucket|sum|count)"}'
            '[1m]' % sel)
        assert doc["status"] == "success", doc
        series = doc["data"]["result"]
        assert len(series) > 50, series
        went_down = []
        for ser in series:
            vals = [float(v) for _, v in ser["values"]]
            if any(b < a for a, b in zip(vals, vals[1:])):
                went_down.append((ser["metric"], vals))
        assert not went_down, "counters reset by the worker crash: %r" % \
            went_down

        # promtool on the live exposition, under traffic and after a crash
        st, _, body = http_get(d.stats_port, "/metrics")
        assert st == 200
        r = subprocess.run([promtool, "check", "metrics"], input=body,
                           capture_output=True, timeout=60)
        assert (r.returncode, r.stdout + r.stderr) == (0, b""), r
    finally:
        if traffic is not None:
            traffic.stop()
        for c in held:
            c.close()
        prom.stop()
    assert not traffic.is_alive()
    # a request in flight on the killed worker may fail; nothing else
    assert len(traffic.errors) <= 3, traffic.errors


# --------------------------------------------------------------------------
# the status page

def test_status_page_http_rules(daemon):
    """What test_counters does not cover already: HEAD / and the methods it
    does not try, on the status page."""
    st, h, body = http_get(daemon.stats_port, "/", method="HEAD")
    assert st == 200 and body == b""
    assert h["content-type"].split(";")[0].strip() == "text/html"
    for method in ("OPTIONS", "TRACE"):
        st, _, _ = http_request(daemon.stats_port, "/", method=method)
        assert st == 405, method
    for path in ("/index.html", "/status", "//"):
        st, _, _ = http_get(daemon.stats_port, path)
        assert st == 404, path


def test_status_page_self_contained(daemon):
    st, h, body = http_get(daemon.stats_port, "/")
    assert st == 200
    html = body.decode("utf-8")
    assert len(body) < 64 * 1024, "a small page"
    bad = []
    for pat in (r"""(?i)\bsrc\s*=""",        # any <script src>, <img src> ...
                r"""(?i)<link\b[^>]*\brel\s*=\s*["']?stylesheet""",
                r"""(?i)@import""",
                r"""(?i)url\(\s*["']?\s*(?:[a-z]+:)?//""",
                r"""(?i)\bhref\s*=\s*["']?\s*(?:https?:)?//""",
                r"""(?i)\b(?:fetch|open)\(\s*["'](?:https?:)?//""",
                r"""(?i)<(?:iframe|object|embed)\b"""):
        bad += re.findall(pat, html)
    assert not bad, "external or extra assets: %r" % bad
    assert "/stats" in html or "'stats'" in html


def ensure_playwright():
    """playwright-core in tests/system/node_modules (npm; it downloads no
    browser)."""
    if os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        return
    npm = need_tool("npm", "npm (with nodejs)")
    cmd = [npm, "ci" if os.path.exists(os.path.join(HERE,
                                                    "package-lock.json"))
           else "install", "--no-audit", "--no-fund", "--loglevel=error"]
    r = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True,
                       timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, "%s failed:\n%s%s" % (" ".join(cmd), r.stdout,
                                                    r.stderr)


def test_status_page_in_chromium(upperd, tmp_path):
    node = need_tool("node", "nodejs")
    need_tool(CHROMIUM, "chromium")
    ensure_playwright()
    d = upperd(workers=3)

    # Give the table something to show: a restart with its last exit, open
    # connections, UDP traffic.
    os.kill(d.stats()["workers"][1]["pid"], signal.SIGKILL)
    wait_until(lambda: (lambda s: s["workers_running"] == 3 and
                        s["workers"][1]["restarts"] == 1)(d.stats()),
               timeout=15, msg="slot 1 replaced")
    K = 4
    conns = []
    try:
        for i in range(K):
            s = tcp_connect(d.tcp_port)
            s.sendall(b"conn %d\n" % i)
            assert recv_exactly(s, 7) == b"CONN %d\n" % i
            conns.append(s)
        for _ in range(5):
            assert udp_roundtrip(d.udp_port, b"dgram") == b"DGRAM"
        wait_until(lambda: d.stats()["totals"]["tcp_connections_active"] == K,
                   timeout=10, msg="%d active connections in /stats" % K)

        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = os.path.join(ARTIFACTS, "status.png")
        if os.path.exists(shot):
            os.unlink(shot)
        url = "http://127.0.0.1:%d/" % d.stats_port
        env = dict(os.environ, TMPDIR=str(tmp_path), CHROMIUM=CHROMIUM)
        # The script bounds itself; should it hang anyway, SIGTERM lets
        # playwright close the browser it launched before node exits.
        p = subprocess.Popen([node, STATUS_PAGE_JS, url, "3", shot],
                             cwd=HERE, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        try:
            out, err = p.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                out, err = p.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate(timeout=15)
            raise AssertionError("status_page.mjs hung:\n%s" % err[-4000:])
        assert p.returncode == 0, "status_page.mjs failed:\n%s\n%s" % (
            err[-4000:], out[-2000:])
        page = json.loads(out)
        stats = d.stats()   # at rest: same as what the page drew
    finally:
        for s in conns:
            s.close()

    assert page["status"] == 200, page
    assert page["title"], page
    assert page["error_line"] == "", page["error_line"]
    assert not page["page_errors"], page["page_errors"]
    errors = [e for e in page["console_errors"]
              if not e["url"].endswith("/favicon.ico")]
    assert not errors, errors
    # it loads only from upperd, and refreshes from /stats
    foreign = [q for q in page["requests"] if not q.split(" ", 1)[1]
               .startswith(url)]
    assert not foreign, foreign
    assert sum(q == "GET " + url + "stats" for q in page["requests"]) >= 2, \
        page["requests"]

    summ = page["summary"]
    assert summ["pid"] == str(stats["pid"])
    assert summ["version"] == stats["version"]
    assert summ["workers_running"] == str(stats["workers_running"]) == "3"
    assert summ["workers_configured"] == str(stats["workers_configured"])
    assert summ["worker_restarts"] == str(stats["worker_restarts"]) == "1"

    rows = page["rows"]
    assert [r["data_slot"] for r in rows] == ["0", "1", "2"], rows
    active = 0
    for row, w in zip(rows, stats["workers"]):
        c = row["cells"]
        slot = w["slot"]
        assert c["slot"] == str(slot)
        assert c["pid"] == str(w["pid"]), (slot, c, w)
        assert c["state"] == w["state"] == "running", (slot, c, w)
        assert row["row_class"] == w["state"]
        assert c["restarts"] == str(w["restarts"]), (slot, c, w)
        assert c["tcp_connections_active"] == str(
            w["tcp_connections_active"]), (slot, c, w)
        assert c["last_exit"] == (w["last_exit"] or "-"), (slot, c, w)
        assert re.fullmatch(r"\d+[smhd]( \d+[smh])?", c["uptime"]), c
        for k, total in row["totals"].items():
            assert total == str(w[k]), (slot, k, total, w[k])
            assert re.fullmatch(r"\d+(\.\d)?[kMGT]?", c[k]), (slot, k, c[k])
        active += int(c["tcp_connections_active"])
    assert active == K
    assert rows[1]["cells"]["restarts"] == "1"
    assert rows[1]["cells"]["last_exit"] == "signal 9"

    # Without JavaScript (a text browser) it points at the data.
    assert "/stats" in page["nojs_text"] and "/metrics" in page["nojs_text"]
    assert "stats" in page["nojs_links"] and "metrics" in page["nojs_links"]

    with open(shot, "rb") as f:
        png = f.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


# --------------------------------------------------------------------------
# the connection-duration histogram

BOUNDS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
          "2.5", "5", "10", "+Inf"]
# Hold times, each well inside one default bucket: (0.01, 0.025],
# (0.25, 0.5], (1, 2.5].
HOLDS = [0.02, 0.02, 0.02, 0.35, 0.35, 1.3]
# How far the server's accept-to-close time may be from the client's
# connect-to-close time.
TOL = 0.015


def test_connection_duration_histogram(daemon):
    measured = [None] * len(HOLDS)
    errors = []

    def hold(i):
        try:
            t0 = time.monotonic()
            s = tcp_connect(daemon.tcp_port)
            try:
                s.sendall(b"x")          # the server has accepted it
                assert recv_exactly(s, 1) == b"X"
                left = HOLDS[i] - (time.monotonic() - t0)
                if left > 0:
                    time.sleep(left)
            finally:
                s.close()
            measured[i] = time.monotonic() - t0
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=hold, args=(i,))
               for i in range(len(HOLDS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    n = len(HOLDS)

    def all_counted():
        m = daemon.metrics()
        c = sum(m.by("upperd_tcp_connection_duration_seconds_count",
                     "worker").values())
        return m if c == n else None
    m = wait_until(all_counted, timeout=10,
                   msg="%d connections in the histogram" % n)

    buckets = {b: 0.0 for b in BOUNDS}
    for labels, v in m.all("upperd_tcp_connection_duration_seconds_bucket"):
        buckets[labels["le"]] += v
    total_sum = sum(m.by("upperd_tcp_connection_duration_seconds_sum",
                         "worker").values())
    report = "measured %s; buckets %s; sum %.4f" % (
        ["%.4f" % x for x in measured], buckets, total_sum)

    # Each bucket holds at least the connections surely below its bound
    # and at most those that could be.
    for b in BOUNDS:
        ub = math.inf if b == "+Inf" else float(b)
        lo = sum(1 for x in measured if x < ub - TOL)
        hi = sum(1 for x in measured if x <= ub + TOL)
        assert lo <= buckets[b] <= hi, "le=%s: %s" % (b, report)
    # and, as designed (holds well inside their buckets):
    assert buckets["0.01"] == 0, report
    assert buckets["0.05"] == 3, report
    assert buckets["0.25"] == 3, report
    assert buckets["0.5"] == 5, report
    assert buckets["1"] == 5, report
    assert buckets["2.5"] == 6 == buckets["+Inf"], report
    assert abs(total_sum - sum(measured)) <= n * TOL, report

    # /stats carries the same histogram
    doc = daemon.stats()
    h = doc["totals"]["tcp_connection_duration_seconds"]
    assert h["count"] == n
    assert {k: float(v) for k, v in h["buckets"].items()} == buckets
    assert abs(h["sum"] - total_sum) < 1e-6
    per = [w["tcp_connection_duration_seconds"]["count"]
           for w in doc["workers"]]
    assert sum(per) == n and all(
        w["tcp_connection_duration_seconds"]["count"] ==
        m.get("upperd_tcp_connection_duration_seconds_count",
              worker=str(w["slot"])) for w in doc["workers"])
    # nothing left open
    assert doc["totals"]["tcp_connections_active"] == 0


def test_one_request_per_stats_connection(daemon):
    """Every stats response says "Connection: close" and the server then
    closes, so each request line passes the gate's 400/414 check (a
    malformed request after a good one would otherwise reach
    libmicrohttpd, which closes some without an answer)."""
    for path in ("/metrics", "/stats", "/healthz", "/", "/nope"):
        with tcp_connect(daemon.stats_port) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GARBAGE\r\n\r\n" % path.encode())
            raw = recv_until_eof(s, timeout=5)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 "), raw[:80]
        assert b"\r\nConnection: close" in head, head
        length = int(re.search(rb"\r\nContent-Length: (\d+)", head).group(1))
        assert len(body) == length, (path, len(body), length)  # EOF after it
