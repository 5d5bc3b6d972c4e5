"""
The files under deploy/, checked by the tools that will run them and by
what they promise each other:

- HAProxy (`haproxy -c`), nginx (`nginx -t` with a temporary prefix and
  its log paths moved there), Prometheus (`promtool check config`,
  `promtool check rules`, `promtool test rules`);
- every alert has a summary, a description, a runbook line in the README
  and a unit test that fires it and one that keeps it silent;
- every metric a rule or alert reads is one upperd exports (or the one
  the binary-upgrade work adds);
- HAProxy's check timing takes a lame-duck instance out well within the
  shutdown delay the files recommend;
- the Kubernetes manifests (no cluster here) pass schema validation
  (kubernetes-models from npm: the Kubernetes API's OpenAPI schemas and
  the Prometheus Operator's CRDs, compiled to validators; kubeschema/),
  and, parsed with python3-yaml, agree with each other and with the
  ConfigMap's upperd.conf, which the real upperd accepts.

Helpers here (substituting addresses, starting HAProxy / nginx /
Prometheus from these files) are shared with test_fleet.py.  A missing
tool fails the test: `make test` installs them (Makefile, DEB_TEST).
"""

import json
import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import HERE, REPO, UPPERD, free_port, http_get, wait_until

try:
    import yaml
except ImportError:  # reported by the tests that need it
    yaml = None

DEPLOY = os.path.join(REPO, "deploy")
HAPROXY_CFG = os.path.join(DEPLOY, "haproxy", "haproxy.cfg")
NGINX_CONF = os.path.join(DEPLOY, "nginx", "nginx.conf")
PROM_DIR = os.path.join(DEPLOY, "prometheus")
PROM_CFG = os.path.join(PROM_DIR, "prometheus.yml")
RULES = os.path.join(PROM_DIR, "upperd.rules.yml")
ALERTS = os.path.join(PROM_DIR, "upperd.alerts.yml")
ALERT_TESTS = os.path.join(PROM_DIR, "upperd.alerts.test.yml")
K8S = os.path.join(DEPLOY, "kubernetes")
KUBESCHEMA = os.path.join(HERE, "kubeschema")
# npm installs the validators here, outside the source tree (make deb and
# git skip build/)
KUBESCHEMA_RUN = os.path.join(REPO, "build", "kubeschema")
README = os.path.join(REPO, "README.md")

# The example instances the files name, in order, and their ports.
INSTANCES = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
HAPROXY_HOST = "10.0.0.10"
SERVICE_PORT = 12000
STATS_PORT = 9120
HAPROXY_STATS_PORT = 8404
# What --shutdown-delay the HAProxy file tells operators to use.
RECOMMENDED_DELAY_S = 5

# Metrics a rule may read that upperd does not export (yet): the binary
# upgrade work adds upperd_upgrades_total{result} (SPEC, "Binary upgrade").
PENDING_METRICS = {"upperd_upgrades_total"}


def tool(name):
    """The tool's path; a missing one fails the test (make test installs
    it)."""
    path = shutil.which(name) or (
        "/usr/sbin/" + name if os.access("/usr/sbin/" + name, os.X_OK)
        else None)
    if path is None:
        pytest.fail("%s not found: `make deps` installs it (Makefile, "
                    "DEB_TEST)" % name, pytrace=False)
    return path


def need_yaml():
    if yaml is None:
        pytest.fail("python3-yaml missing: `make deps` installs it",
                    pytrace=False)
    return yaml


def run(cmd, timeout=60, **kw):
    return subprocess.run(cmd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def substitute(text, mapping):
    """Replace each key of mapping (an exact string) by its value, every
    key being required to occur: the test breaks loudly if a deploy file
    stops naming what the test swaps.  Longest keys first, so
    "10.0.0.11:9120" goes before "10.0.0.11"."""
    for k in sorted(mapping, key=len, reverse=True):
        if k not in text:
            raise AssertionError("%r not found in the deploy file" % k)
    pattern = re.compile("|".join(re.escape(k) for k in
                                  sorted(mapping, key=len, reverse=True)))
    return pattern.sub(lambda m: mapping[m.group(0)], text)


def haproxy_config(hosts, tcp_port, stats_port, front_port, prom_port,
                   rundir):
    """deploy/haproxy/haproxy.cfg with only addresses, ports and runtime
    paths replaced: the instances at hosts (each serving tcp_port, its
    stats on stats_port), the frontend on 127.0.0.1:front_port, the
    exporter on 127.0.0.1:prom_port, the admin socket in rundir."""
    m = {"bind :%d" % SERVICE_PORT: "bind 127.0.0.1:%d" % front_port,
         "bind :%d" % HAPROXY_STATS_PORT: "bind 127.0.0.1:%d" % prom_port,
         "check port %d" % STATS_PORT: "check port %d" % stats_port,
         "/run/haproxy/admin.sock": os.path.join(rundir, "admin.sock")}
    for ex, h in zip(INSTANCES, hosts):
        m["%s:%d" % (ex, SERVICE_PORT)] = "%s:%d" % (h, tcp_port)
    return substitute(read(HAPROXY_CFG), m)


def nginx_config(hosts, tcp_port, front_tcp, front_udp, logdir):
    """deploy/nginx/nginx.conf with the instances at hosts:tcp_port (TCP
    and UDP), listening on 127.0.0.1:front_tcp and :front_udp, logs in
    logdir."""
    m = {"listen %d;" % SERVICE_PORT: "listen 127.0.0.1:%d;" % front_tcp,
         "listen %d udp;" % SERVICE_PORT:
             "listen 127.0.0.1:%d udp;" % front_udp,
         "/var/log/nginx/": logdir.rstrip("/") + "/"}
    for ex, h in zip(INSTANCES, hosts):
        m["%s:%d" % (ex, SERVICE_PORT)] = "%s:%d" % (h, tcp_port)
    return substitute(read(NGINX_CONF), m)


def prometheus_config(targets, haproxy_target, interval_s=1):
    """deploy/prometheus/prometheus.yml scraping targets (host:port of each
    instance's stats) and HAProxy's exporter, every interval_s seconds,
    alerts evaluated as often, no Alertmanager."""
    m = {"%s:%d" % (ex, STATS_PORT): t for ex, t in zip(INSTANCES, targets)}
    m["%s:%d" % (HAPROXY_HOST, HAPROXY_STATS_PORT)] = haproxy_target
    text = substitute(read(PROM_CFG), m)
    text = re.sub(r"(scrape_interval:\s*)\S+", r"\g<1>%ds" % interval_s, text)
    text = re.sub(r"(scrape_timeout:\s*)\S+", r"\g<1>%ds" % interval_s, text)
    text = re.sub(r"(evaluation_interval:\s*)\S+", r"\g<1>%ds" % interval_s,
                  text)
    # no Alertmanager runs here; alerts are read from Prometheus' API
    text = re.sub(r"\nalerting:\n(?:[ #].*\n)+", "\n", text)
    assert "alertmanagers" not in text
    return text


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return list(need_yaml().safe_load_all(f))


def alert_rules():
    doc = load_yaml(ALERTS)[0]
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def recording_rules():
    doc = load_yaml(RULES)[0]
    return [r for g in doc["groups"] for r in g["rules"] if "record" in r]


def duration_s(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    assert m, text
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600,
                                None: 0.001}[m.group(2)]


# --------------------------------------------------------------------------
# HAProxy

def test_haproxy_config_valid():
    r = run([tool("haproxy"), "-c", "-f", HAPROXY_CFG])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Configuration file is valid" in r.stdout + r.stderr


def test_haproxy_config_promises():
    text = read(HAPROXY_CFG)
    conf = re.sub(r"#.*", "", text)
    for must in (r"^\s*balance\s+leastconn\s*$",
                 r"^\s*option\s+httpchk\s+GET\s+/healthz\s*$",
                 r"^\s*retries\s+\d+\s*$",
                 r"^\s*option\s+redispatch\b",
                 r"^\s*stats\s+socket\s+\S+.*\bexpose-fd\s+listeners\b",
                 r"^\s*http-request\s+use-service\s+prometheus-exporter\b",
                 r"^\s*mode\s+tcp\s*$"):
        assert re.search(must, conf, re.M), must
    servers = re.findall(r"^\s*server\s+(\S+)\s+(\S+)", conf, re.M)
    assert [a for _, a in servers] == ["%s:%d" % (h, SERVICE_PORT)
                                       for h in INSTANCES]
    ds = re.search(r"^\s*default-server\s+(.*)$", conf, re.M).group(1)
    assert re.search(r"\bcheck port %d\b" % STATS_PORT, ds), ds
    opt = dict(re.findall(r"\b(inter|fastinter|fall|rise)\s+(\S+)", ds))
    tmo = duration_s(re.search(r"^\s*timeout\s+check\s+(\S+)", conf,
                               re.M).group(1))
    # Worst case from TERM to DOWN: the next check comes within "inter",
    # then (fall - 1) more at "fastinter", each taking at most the check
    # timeout.  It must be well inside the recommended shutdown delay,
    # and inside the 2 s the fleet test uses.
    worst = (duration_s(opt["inter"]) + (int(opt["fall"]) - 1) *
             duration_s(opt["fastinter"]) + int(opt["fall"]) * tmo)
    assert worst < 2 * 1.5 and worst < RECOMMENDED_DELAY_S / 1.5, (opt, tmo)
    assert "--shutdown-delay %d" % RECOMMENDED_DELAY_S in text
    assert int(opt["rise"]) >= 2


# --------------------------------------------------------------------------
# nginx

def test_nginx_config_valid(tmp_path):
    """nginx -t on the shipped file, in a temporary prefix with its log
    paths moved there (nothing written outside tmp_path)."""
    conf = substitute(read(NGINX_CONF),
                      {"/var/log/nginx/": str(tmp_path) + "/"})
    (tmp_path / "nginx.conf").write_text(conf)
    r = run([tool("nginx"), "-t", "-p", str(tmp_path), "-c",
             str(tmp_path / "nginx.conf"),
             "-g", "pid %s;" % (tmp_path / "nginx.pid")])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "test is successful" in r.stderr, r.stderr


def test_nginx_config_promises():
    conf = re.sub(r"#.*", "", read(NGINX_CONF))
    assert re.search(r"^\s*load_module\s+\S*ngx_stream_module\.so;", conf,
                     re.M)
    assert re.search(r"^\s*listen\s+%d\s+udp;" % SERVICE_PORT, conf, re.M)
    assert re.search(r"^\s*listen\s+%d;" % SERVICE_PORT, conf, re.M)
    assert re.search(r"^\s*proxy_responses\s+1;", conf, re.M)
    assert re.search(r"^\s*proxy_half_close\s+on;", conf, re.M)
    ups = re.findall(r"upstream\s+(\w+)\s*\{([^}]*)\}", conf)
    assert len(ups) == 2, ups
    for name, body in ups:
        servers = re.findall(r"^\s*server\s+(\S+)\s+(.*);", body, re.M)
        assert [a for a, _ in servers] == ["%s:%d" % (h, SERVICE_PORT)
                                           for h in INSTANCES], name
        for _, params in servers:
            assert re.search(r"\bmax_fails=\d+", params), (name, params)
            assert re.search(r"\bfail_timeout=\d+s", params), (name, params)


# --------------------------------------------------------------------------
# Prometheus

def test_promtool_check_config():
    r = run([tool("promtool"), "check", "config", PROM_CFG])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 rule files found" in r.stdout + r.stderr, r.stdout + r.stderr


def test_promtool_check_rules():
    r = run([tool("promtool"), "check", "rules", RULES, ALERTS])
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "%d rules found" % len(recording_rules()) in out, out
    assert "%d rules found" % len(alert_rules()) in out, out


def test_promtool_test_rules():
    r = run([tool("promtool"), "test", "rules", ALERT_TESTS], cwd=PROM_DIR)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


def test_promtool_test_rules_can_fail(tmp_path):
    """The unit tests catch a broken rule: with UpperdInstanceDown firing
    at once (no "for:"), they fail."""
    for name in os.listdir(PROM_DIR):
        shutil.copy(os.path.join(PROM_DIR, name), tmp_path / name)
    broken = re.sub(r"(expr: up\{job=\"upperd\"\} == 0\n\s+for:) 1m",
                    r"\1 0m", read(ALERTS))
    assert broken != read(ALERTS)
    (tmp_path / "upperd.alerts.yml").write_text(broken)
    r = run([tool("promtool"), "test", "rules", "upperd.alerts.test.yml"],
            cwd=str(tmp_path))
    assert r.returncode != 0 and "UpperdInstanceDown" in r.stdout + \
        r.stderr, r.stdout + r.stderr


def test_every_alert_documented_and_unit_tested():
    alerts = alert_rules()
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names)) >= 8, names
    for want in ("UpperdInstanceDown", "UpperdWorkersBelowConfigured",
                 "UpperdSlotCrashLooping", "UpperdWorkerHung",
                 "UpperdConnectionsRejected", "UpperdIdleTimeoutsSurging",
                 "UpperdUpgradeFailed", "UpperdScrapeSlow"):
        assert want in names, want
    for a in alerts:
        ann = a.get("annotations", {})
        assert ann.get("summary") and ann.get("description"), a["alert"]
        assert a.get("labels", {}).get("severity") in ("page", "ticket")
    tests = load_yaml(ALERT_TESTS)[0]
    fired, silent = set(), set()
    for t in tests["tests"]:
        for c in t.get("alert_rule_test", []):
            (fired if c.get("exp_alerts") else silent).add(c["alertname"])
    assert set(names) <= fired, "no firing case: %s" % (set(names) - fired)
    assert set(names) <= silent, "no silent case: %s" % (set(names) - silent)
    # the README's runbook: a line naming each alert
    readme = read(README)
    sec = readme.split("## Running several instances", 1)
    assert len(sec) == 2, "README has no 'Running several instances'"
    for n in names:
        assert re.search(r"^\s*[|*-].*\b%s\b" % n, sec[1], re.M), \
            "no runbook line for %s in the README" % n


def test_rules_read_only_metrics_upperd_exports(upperd):
    """Every metric name in a rule is exported by upperd (or by Prometheus
    itself, or pending from the upgrade work), so no alert silently
    watches nothing."""
    d = upperd(workers=1)
    st, _, body = http_get(d.stats_port, "/metrics")
    assert st == 200
    exported = set(re.findall(r"^# TYPE (\S+) ", body.decode(), re.M))
    names = set()
    for r in alert_rules() + recording_rules():
        for n in re.findall(r"(?<![\w:])([a-z_]+)(?=\s*[{\[])", r["expr"]):
            names.add(n)
    assert names, "no metric found in the rules"
    base = {re.sub(r"_(bucket|sum|count)$", "", n) if
            n.startswith("upperd_tcp_connection_duration") else n
            for n in names}
    unknown = base - exported - PENDING_METRICS - {
        "up", "scrape_duration_seconds"}
    assert not unknown, "rules read metrics upperd does not export: %s" % \
        sorted(unknown)
    used = {n for n in base if n.startswith("upperd_")}
    assert len(used) >= 8, used


# --------------------------------------------------------------------------
# Kubernetes

def k8s_objects():
    objs = {}
    for name in sorted(os.listdir(K8S)):
        if not name.endswith(".yaml"):
            continue
        for doc in load_yaml(os.path.join(K8S, name)):
            if doc is None:
                continue
            assert doc.get("apiVersion") and doc.get("kind"), name
            key = doc["kind"]
            assert key not in objs, "two %s" % key
            objs[key] = doc
    return objs


def parse_conf(text):
    conf = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            k, _, v = line.partition("=")
            conf[k.strip()] = v.strip()
    return conf


def subset(small, big):
    return all(big.get(k) == v for k, v in small.items())


def test_kubernetes_manifests(tmp_path):
    objs = k8s_objects()
    for kind in ("Deployment", "Service", "ConfigMap", "PodMonitor",
                 "Kustomization"):
        assert kind in objs, kind
    dep, svc, cm, pm = (objs["Deployment"], objs["Service"],
                        objs["ConfigMap"], objs["PodMonitor"])
    files = {f for f in os.listdir(K8S) if f.endswith(".yaml")}
    assert set(objs["Kustomization"]["resources"]) == files - {
        "kustomization.yaml"}

    spec = dep["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert subset(spec["selector"]["matchLabels"], pod_labels)
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    ports = {p["name"]: p for p in c["ports"]}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    for k in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][k]), k

    # the ConfigMap is what upperd reads
    (vol,) = [v for v in pod["volumes"] if "configMap" in v]
    assert vol["configMap"]["name"] == cm["metadata"]["name"]
    (mnt,) = [m for m in c["volumeMounts"] if m["name"] == vol["name"]]
    argv = c.get("command", []) + c.get("args", [])
    cfg_path = argv[argv.index("--config") + 1]
    assert os.path.dirname(cfg_path) == mnt["mountPath"]
    key = os.path.basename(cfg_path)
    conf = parse_conf(cm["data"][key])

    # the ports upperd listens on are the container's
    for opt, name, proto in (("tcp", "upper-tcp", "TCP"),
                             ("udp", "upper-udp", "UDP"),
                             ("stats", "stats", "TCP")):
        addr, _, port = conf[opt].rpartition(":")
        assert addr == "0.0.0.0", (opt, conf[opt])
        assert ports[name]["containerPort"] == int(port), opt
        assert ports[name].get("protocol", "TCP") == proto, opt

    # probes: ready = /healthz, on the stats port
    rp = c["readinessProbe"]["httpGet"]
    assert rp["path"] == "/healthz" and rp["port"] == "stats"
    assert c["readinessProbe"]["failureThreshold"] == 1
    lp = c["livenessProbe"]
    assert lp["httpGet"]["port"] == "stats"
    assert lp["httpGet"]["path"] != "/healthz"
    # the lame duck outlasts the readiness probe noticing it ...
    delay = int(conf.get("shutdown-delay", 0))
    drain = int(conf.get("drain-timeout", 30))
    notice = (c["readinessProbe"]["periodSeconds"] *
              c["readinessProbe"]["failureThreshold"] +
              c["readinessProbe"]["timeoutSeconds"])
    pre_stop = c.get("lifecycle", {}).get("preStop")
    assert delay > notice or pre_stop, (delay, notice)
    # ... and the kubelet's SIGKILL never cuts the drain
    assert pod["terminationGracePeriodSeconds"] > delay + drain
    # workers pinned to the CPU limit (else: one per CPU of the node)
    assert int(conf["workers"]) <= int(float(c["resources"]["limits"]["cpu"]))

    # the Service sends TCP and UDP to those ports of those pods
    assert subset(svc["spec"]["selector"], pod_labels)
    protos = set()
    for p in svc["spec"]["ports"]:
        tp = ports[p["targetPort"]]
        assert tp["protocol"] == p["protocol"], p
        protos.add(p["protocol"])
    assert protos == {"TCP", "UDP"}

    # the PodMonitor scrapes those pods' stats port, as job "upperd"
    assert subset(pm["spec"]["selector"]["matchLabels"], pod_labels)
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    assert ep["port"] == "stats" and ep["path"] == "/metrics"
    assert pod_labels[pm["spec"]["jobLabel"]] == "upperd"

    # and the real upperd accepts the ConfigMap's file as it is (only the
    # addresses moved to free loopback ports)
    path = tmp_path / key
    path.write_text(cm["data"][key])
    tcp, st_port = free_port(), free_port()
    p = subprocess.Popen([UPPERD, "--config", str(path),
                          "--tcp", "127.0.0.1:%d" % tcp,
                          "--udp", "127.0.0.1:%d" % tcp,
                          "--stats", "127.0.0.1:%d" % st_port],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        wait_until(lambda: p.poll() is not None or
                   http_get(st_port, "/healthz", timeout=1)[0] == 200,
                   timeout=15, msg="upperd with the ConfigMap's file ready")
        assert p.poll() is None, p.communicate(timeout=5)
        st, _, body = http_get(st_port, "/stats")
        assert json.loads(body)["workers_configured"] == int(conf["workers"])
        p.send_signal(signal.SIGQUIT)   # QUIT skips the lame duck
        p.wait(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
        out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err


def kubeschema():
    """build/kubeschema with kubeschema/'s package files, validate.mjs and
    its node_modules (npm ci, from the lock file); returns its path."""
    os.makedirs(KUBESCHEMA_RUN, exist_ok=True)
    fresh = False
    for name in ("package.json", "package-lock.json", "validate.mjs"):
        src, dst = os.path.join(KUBESCHEMA, name), \
            os.path.join(KUBESCHEMA_RUN, name)
        if not os.path.exists(dst) or read(src) != read(dst):
            shutil.copy(src, dst)
            fresh = fresh or name != "validate.mjs"
    if fresh or not os.path.isdir(os.path.join(KUBESCHEMA_RUN, "node_modules",
                                               "kubernetes-models")):
        r = run([tool("npm"), "ci", "--no-audit", "--no-fund",
                 "--loglevel=error"], timeout=300, cwd=KUBESCHEMA_RUN)
        assert r.returncode == 0, "npm ci failed:\n" + r.stdout + r.stderr
    return KUBESCHEMA_RUN


def schema_check(objs):
    """[{kind, name, ok, error}] for each object, from validate.mjs."""
    where = kubeschema()
    r = subprocess.run([tool("node"), os.path.join(where, "validate.mjs")],
                       input=json.dumps(objs), capture_output=True,
                       text=True, timeout=120, cwd=where)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_kubernetes_schemas():
    """Every manifest (but kustomization.yaml, kustomize's own file, not
    an API object) valid against its API schema; and the validator does
    reject a broken Deployment and PodMonitor."""
    objs = [o for o in k8s_objects().values()
            if o["kind"] != "Kustomization"]
    assert sorted(o["kind"] for o in objs) == [
        "ConfigMap", "Deployment", "PodMonitor", "Service"]
    res = schema_check(objs)
    assert [r for r in res if not r["ok"]] == [], res
    assert len(res) == 4

    dep = next(o for o in objs if o["kind"] == "Deployment")
    bad = json.loads(json.dumps(dep))
    bad["spec"]["template"]["spec"]["containers"][0]["ports"][0][
        "containerPort"] = "twelve thousand"
    del bad["spec"]["selector"]
    pm = next(o for o in objs if o["kind"] == "PodMonitor")
    bad_pm = json.loads(json.dumps(pm))
    bad_pm["spec"]["podMetricsEndpoints"] = "stats"
    res = schema_check([bad, bad_pm])
    assert [r["ok"] for r in res] == [False, False], res
    assert "containerPort" in res[0]["error"], res[0]
    assert "selector" in res[0]["error"], res[0]
