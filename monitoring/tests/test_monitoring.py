"""Static checks of the monitoring: the Grafana dashboards against the JSON Schema
generated from @grafana/schema (monitoring/schema/generate.sh; GRAFANA_SCHEMA_DIR
points at its output), the conventions the dashboards and rules follow, and the
runbook every alert links to. Their queries are proven against a live Prometheus by
monitoring/live_check.py; the rules by `promtool test rules`.

Skipped without GRAFANA_SCHEMA_DIR; ci/monitoring-checks.sh fails if anything is."""

import json
import os
import pathlib
import re

import jsonschema
import pytest
import yaml

MON = pathlib.Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((MON / "dashboards").glob("*.json"))
RULES = yaml.safe_load((MON / "rules" / "tasks-api.rules.yaml").read_text())
SCHEMA_DIR = os.environ.get("GRAFANA_SCHEMA_DIR")
needs_schema = pytest.mark.skipif(not SCHEMA_DIR, reason="GRAFANA_SCHEMA_DIR unset (monitoring/schema/generate.sh)")


def load(f):
    return json.loads(f.read_text())


def datasource_refs(node):
    if isinstance(node, dict):
        if "datasource" in node and isinstance(node["datasource"], dict):
            yield node["datasource"]
        for v in node.values():
            yield from datasource_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from datasource_refs(v)


def test_the_four_dashboards_exist():
    assert {f.stem for f in DASHBOARDS} == {"tasks-api-overview", "tasks-api-sandbox", "tasks-api-data", "tasks-api-process"}


@needs_schema
@pytest.mark.parametrize("f", DASHBOARDS, ids=lambda f: f.stem)
def test_dashboard_matches_grafana_schema(f):
    schema = json.loads((pathlib.Path(SCHEMA_DIR) / "dashboard.schema.json").read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(load(f))]
    assert not errors, errors[:10]


@needs_schema
def test_schema_rejects_a_broken_dashboard():
    schema = json.loads((pathlib.Path(SCHEMA_DIR) / "dashboard.schema.json").read_text())
    d = load(DASHBOARDS[0])
    d["panels"][0]["gridPos"] = {"x": "left"}
    d["title"] = 7
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(d))) >= 2


@needs_schema
@pytest.mark.parametrize("f", DASHBOARDS, ids=lambda f: f.stem)
def test_dashboard_has_the_current_schema_version(f):
    assert load(f)["schemaVersion"] == int((pathlib.Path(SCHEMA_DIR) / "schema-version").read_text())


@pytest.mark.parametrize("f", DASHBOARDS, ids=lambda f: f.stem)
def test_dashboard_conventions(f):
    d = load(f)
    assert d["uid"] == f.stem and len(d["uid"]) <= 40
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for ref in datasource_refs(d):
        if ref.get("type") == "grafana":
            continue  # the built-in annotations
        assert ref == {"type": "prometheus", "uid": "${datasource}"}, f"fixed datasource: {ref}"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in d["panels"]:
        assert len(p.get("description", "")) > 20, f"{p['title']}: no description"
        assert p["targets"], p["title"]
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for t in p["targets"]:
            assert 'job="$job"' in t["expr"], f"{p['title']}: not scoped to $job"


def alerts():
    return [r for g in RULES["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_has_summary_description_and_a_runbook_section():
    anchors = {re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-"))
               for h in re.findall(r"^## (.+)$", (MON / "RUNBOOK.md").read_text(), re.M)}
    names = set()
    for a in alerts():
        ann = a["annotations"]
        assert ann.get("summary") and len(ann.get("description", "")) > 30, a["alert"]
        url = ann["runbook_url"]
        assert url.endswith("/monitoring/RUNBOOK.md#" + a["alert"].lower()), url
        assert a["alert"].lower() in anchors, f"RUNBOOK.md has no section for {a['alert']}"
        assert a["labels"]["severity"] in ("page", "ticket")
        names.add(a["alert"])
    assert names >= {"TasksApiHigh5xxRatio", "TasksApiLatencySLOBurn", "TasksApiGuestKillsRising", "TasksApiStoreUnavailable",
                     "TasksApiStoreFailing", "TasksApiNotReady", "TasksApiPodRestarts", "TasksApiTargetDown", "TasksApiMemoryGrowth"}


def test_every_alert_has_a_firing_and_a_quiet_promtool_case():
    tests = yaml.safe_load((MON / "rules" / "tasks-api.rules.test.yaml").read_text())["tests"]
    for a in alerts():
        cases = [c for t in tests for c in t["alert_rule_test"] if c["alertname"] == a["alert"]]
        assert any(c["exp_alerts"] for c in cases), f"{a['alert']}: no firing case"
        assert any(not c["exp_alerts"] for c in cases), f"{a['alert']}: no quiet case"


def test_recording_rules_cover_the_issue_list():
    records = {r["record"] for g in RULES["groups"] for r in g["rules"] if "record" in r}
    for needed in ("job_route:http_requests:rate5m", "job:http_5xx_ratio:rate5m",
                   "job_route:http_request_duration_seconds:p99_5m", "job_kind:wasm_guest_traps:rate5m"):
        assert needed in records
