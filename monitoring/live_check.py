#!/usr/bin/env python3
"""Monitoring, proven against live metrics: starts the release host twice (the tasks API,
and the test fault component that gets killed at its deadline and memory limit and
refused by the data firewall, and
one whose MongoDB is down), a real Prometheus scraping both every second with the
rules of monitoring/rules/ loaded, drives traffic, then checks through Prometheus's
HTTP API that:

- every recording and alerting rule evaluates without error (rule health "ok");
- every PromQL expression in the rules and in the Grafana dashboards parses and
  runs, with the dashboards' template variables substituted;
- each expression listed in EXPECT_DATA, and every dashboard query not listed in
  NO_DATA (with the reason), returns data;
- `promtool check metrics` finds nothing in a real scrape of each host.

It writes the query_range data of every dashboard panel to OUT/ for
monitoring/render_dashboards.py. Everything listens on 127.0.0.1 and is stopped by
PID at the end, also on failure.

    python3 monitoring/live_check.py --host target/release/host \\
        --fault-component target/guest/wasm32-wasip2/wasm/fault_wasm.wasm --out DIR
"""

import argparse
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

HERE = pathlib.Path(__file__).resolve().parent
RULES = HERE / "rules" / "tasks-api.rules.yaml"
DASHBOARDS = HERE / "dashboards"

# Series the traffic below must produce: each would be empty if the host stopped
# exporting what the rules and dashboards are built on.
EXPECT_DATA = [
    'job_route:http_requests:rate5m{route="/api/tasks/{id}"}',
    'job:http_5xx_ratio:rate5m',
    'job:http_latency_slo_miss:ratio_rate5m',
    'job_route:http_request_duration_seconds:p99_5m{route="/api/tasks"}',
    'job_kind:wasm_guest_traps:rate5m{kind="deadline"}',
    'job_kind:wasm_guest_traps:rate5m{kind="memory"}',
    'job_op:store_errors:rate5m{kind="unavailable"} > 0',
    'host_ready{job="tasks-api"} == 0',
    'sum(rate(http_requests_total{job="tasks-api", status=~"4.."}[5m]))',
    'sum(rate(data_requests_denied_total{job="tasks-api"}[5m])) > 0',
    'ALERTS{alertname="TasksApiNotReady", alertstate="pending"}',
    'ALERTS{alertname="TasksApiStoreUnavailable", alertstate="pending"}',
    'ALERTS{alertname="TasksApiFirewallDenials", alertstate="pending"}',
    'host_ready{job="tasks-api"} == 1',
    'process_resident_memory_bytes{job="tasks-api"}',
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print(f"[live-check] {msg}", flush=True)


class Procs:
    """Child processes, stopped by PID (SIGTERM, then SIGKILL) in reverse order."""

    def __init__(self):
        self.procs = []

    def start(self, name, args, **kw):
        p = subprocess.Popen(args, **kw)
        self.procs.append((name, p))
        return p

    def stop(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    log(f"{name} ignored SIGTERM; killing")
                    p.kill()
                    p.wait()


def start_host(procs, work, name, host, extra, env_extra=None):
    logf = open(work / f"{name}.log", "w+")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONGODB_")}
    env.update(LOG_FORMAT="json", RUST_LOG="info", **(env_extra or {}))
    p = procs.start(name, [host, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                           "--data-dir", str(work / f"{name}-data"), *extra],
                    stdout=subprocess.DEVNULL, stderr=logf, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if p.poll() is not None:
            sys.exit(f"{name} exited: {(work / f'{name}.log').read_text()[-2000:]}")
        for line in (work / f"{name}.log").read_text().splitlines():
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if v.get("message") == "listening":
                return v["api"], v["admin"]
        time.sleep(0.1)
    sys.exit(f"{name} did not start listening")


def http(method, url, body=None, headers=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def traffic(api, fault_api, dead_api, seconds):
    """A mix with 2xx, 4xx, 5xx, guest kills of both kinds, firewall refusals and
    store errors, repeated for `seconds` so rates settle. Returns the status counts,
    to fail fast if the mix changed."""
    seen = {}

    def go(method, path, body=None, base=api, ctype="application/json"):
        status, _ = http(method, f"http://{base}{path}", body.encode() if body else None,
                         {"content-type": ctype} if body else {})
        seen[status] = seen.get(status, 0) + 1
        return status

    ids = []
    for i in range(20):
        status, b = http("POST", f"http://{api}/api/tasks", json.dumps({"title": f"live {i}"}).encode(),
                         {"content-type": "application/json"})
        assert status == 201, (status, b)
        ids.append(json.loads(b)["id"])
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for i in ids:
            go("GET", f"/api/tasks/{i}")
        go("GET", "/api/tasks?limit=10")
        go("GET", "/api/tasks?q=live&sort=-created")
        go("GET", "/api/tasks/0123456789abcdef01234567")        # 404
        go("POST", "/api/tasks", "{not json")                   # 400
        go("PATCH", f"/api/tasks/{ids[0]}", '{"title":"x"}', ctype="application/merge-patch+json")
        go("GET", "/fault/loop", base=fault_api)                # deadline kill, 504
        go("GET", "/fault/alloc", base=fault_api)               # memory kill, 500
        go("GET", "/fault/ungranted", base=fault_api)           # grant refused
        go("GET", "/fault/inject?op=where", base=fault_api)     # firewall refused
        go("GET", "/fault/ok", base=fault_api)
        go("GET", "/api/tasks?limit=5", base=dead_api)          # store unavailable, 503
    go("DELETE", f"/api/tasks/{ids[-1]}")
    return seen


def prom_query(prom, expr):
    status, body = http("GET", f"http://{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    return status, json.loads(body)


def prom_range(prom, expr, start, end, step):
    q = {"query": expr, "start": str(start), "end": str(end), "step": str(step)}
    status, body = http("GET", f"http://{prom}/api/v1/query_range?" + urllib.parse.urlencode(q))
    return status, json.loads(body)


def rule_expressions():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(r.get("record") or r.get("alert"), r["expr"]) for g in groups for r in g["rules"]]


# Dashboard queries (dashboard uid, panel title, refId) that cannot have data in
# this run, and why. Everything else must.
NO_DATA = {
    ("tasks-api-data", "MongoDB pool connections", "A"):
        "the pool opens no connection: the only MongoDB here is a closed port",
    ("tasks-api-data", "MongoDB pool checkout wait p99 and failures", "A"):
        "server selection fails before any checkout",
    ("tasks-api-data", "MongoDB command latency p99", "A"):
        "no command reaches a server",
}

TRAFFIC_SECONDS = 15

# Grafana's template variables as the dashboards use them, and what they stand for
# in this run ($__rate_interval is Grafana's max(4 x scrape interval, step + scrape
# interval) for the 1 s scrapes and 1 s steps here).
VARIABLES = {
    "$__rate_interval": "4s", "${__rate_interval}": "4s", "$__interval": "1s",
    "$job": "tasks-api", "${job}": "tasks-api", "$instance": ".*", "${instance}": ".*",
    "$route": ".*", "${route}": ".*",
}


def substitute(expr):
    for k in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(k, VARIABLES[k])
    return expr


def dashboard_panels():
    out = []
    for f in sorted(DASHBOARDS.glob("*.json")):
        d = json.loads(f.read_text())
        for p in d.get("panels", []):
            for t in p.get("targets", []):
                if "expr" in t:
                    out.append((f.stem, p.get("title", "?"), t.get("refId", "A"), t["expr"]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--fault-component", required=True)
    ap.add_argument("--prometheus", default="prometheus")
    ap.add_argument("--promtool", default="promtool")
    ap.add_argument("--out", required=True, help="where the panels' query_range data goes")
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    procs = Procs()
    work = pathlib.Path(tempfile.mkdtemp(prefix="live-check-"))
    failures = []
    try:
        api, admin = start_host(procs, work, "app", a.host, [])
        fault_api, fault_admin = start_host(procs, work, "fault", a.host,
                                            ["--component", a.fault_component, "--deadline-ms", "200"])
        # A third host whose MongoDB is a closed port: every store call fails as
        # unavailable, through the real driver, and the host is not ready.
        dead_api, dead_admin = start_host(procs, work, "store-down", a.host, [],
                                          {"MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}/",
                                           "MONGODB_DATABASE": "live"})
        prom = f"127.0.0.1:{free_port()}"
        (work / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "tasks-api",
                                "static_configs": [{"targets": [admin, fault_admin, dead_admin]}]}],
        }))
        procs.start("prometheus", [a.prometheus, f"--config.file={work / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address={prom}",
                                   "--log.level=warn"],
                    stdout=open(work / "prometheus.log", "w"), stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                if http("GET", f"http://{prom}/-/ready", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            sys.exit("prometheus did not become ready: " + (work / "prometheus.log").read_text()[-2000:])
        # Prometheus applies discovered targets in batches (every 5 s): traffic
        # before a target's first scrape would be invisible to rate().
        for _ in range(300):
            _, b = prom_query(prom, 'count_over_time(up{job="tasks-api"}[1m]) >= 2')
            if len(b.get("data", {}).get("result", [])) == 3:
                break
            time.sleep(0.1)
        else:
            sys.exit("Prometheus did not scrape all three hosts twice")
        t0 = time.time()
        seen = traffic(api, fault_api, dead_api, TRAFFIC_SECONDS)
        log(f"traffic: {dict(sorted(seen.items()))}")
        for code in (200, 400, 404, 500, 503, 504):
            if not seen.get(code):
                failures.append(f"the traffic produced no {code}")
        # Rates need two scrapes after the traffic; wait for the rules to see it.
        time.sleep(6)
        t1 = time.time()

        _, up = prom_query(prom, 'up{job="tasks-api"}')
        ups = {r["metric"]["instance"]: r["value"][1] for r in up["data"]["result"]}
        if ups != {admin: "1", fault_admin: "1", dead_admin: "1"}:
            failures.append(f"targets not all up: {ups}")

        rules = json.loads(http("GET", f"http://{prom}/api/v1/rules")[1])
        evaluated = 0
        for g in rules["data"]["groups"]:
            for r in g["rules"]:
                evaluated += 1
                if r.get("health") != "ok":
                    failures.append(f"rule {r['name']}: health {r.get('health')}: {r.get('lastError')}")
        if evaluated != len(rule_expressions()):
            failures.append(f"Prometheus loaded {evaluated} rules, the file has {len(rule_expressions())}")

        for name, expr in rule_expressions():
            status, body = prom_query(prom, expr)
            if status != 200 or body.get("status") != "success":
                failures.append(f"rule {name}: {body.get('error')}")
        for expr in EXPECT_DATA:
            status, body = prom_query(prom, expr)
            if status != 200 or not body.get("data", {}).get("result"):
                failures.append(f"no data: {expr} ({body.get('error', 'empty')})")

        panels = dashboard_panels()
        for n, (dash, title, ref, expr) in enumerate(panels):
            e = substitute(expr)
            status, body = prom_range(prom, e, int(t0) - 5, int(t1) + 1, 1)
            if status != 200 or body.get("status") != "success":
                failures.append(f"{dash} / {title} [{ref}]: {body.get('error')}")
                continue
            # A quantile of a histogram without observations is NaN: not data.
            has_data = any(v[1] != "NaN" for r in body["data"]["result"] for v in r["values"])
            if not has_data and (dash, title, ref) not in NO_DATA:
                failures.append(f"{dash} / {title} [{ref}]: no data for {e}")
            if has_data and (dash, title, ref) in NO_DATA:
                failures.append(f"{dash} / {title} [{ref}]: listed in NO_DATA but has data: update the list")
            # render_dashboards.py finds a query's data by these fields, not by name.
            (out / f"query-{n:03}.json").write_text(json.dumps({"dashboard": dash, "title": title, "ref": ref, "expr": e,
                                                          "start": int(t0) - 5, "result": body["data"]["result"]}))

        for name, target in (("app", admin), ("fault", fault_admin), ("store-down", dead_admin)):
            _, text = http("GET", f"http://{target}/metrics")
            r = subprocess.run([a.promtool, "check", "metrics"], input=text, capture_output=True)
            if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
                failures.append(f"promtool check metrics ({name}): {(r.stdout + r.stderr).decode()}")

        log(f"{len(rule_expressions())} rule expressions, {len(EXPECT_DATA)} expected series, "
            f"{len(panels)} dashboard queries checked against Prometheus at {prom}")
    finally:
        procs.stop()
    if failures:
        for f in failures:
            print(f"FAIL: {f}", file=sys.stderr)
        sys.exit(1)
    log("OK")


if __name__ == "__main__":
    main()
