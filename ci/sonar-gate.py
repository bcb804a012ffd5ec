#!/usr/bin/env python3
"""Create or update the project's SonarQube quality gate from ci/sonar-quality-gate.json
and select it for the project, through the web API. Idempotent: conditions are made
exactly the file's (added, updated, removed), the project is created when missing.

    SONAR_HOST_URL=... SONAR_TOKEN=... ci/sonar-gate.py [PROJECT_KEY]   # default: sonar-project.properties

The token needs 'Administer Quality Gates' and 'Create Projects' (an admin's user
token). The same script is what .ci/run runs against its throw-away server and what
a user runs once against theirs (docs/cicd.md).
Exit codes: 0 applied, 1 the server refused or could not be reached, 2 usage.
"""

import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def project_key_from_properties() -> str:
    for line in (ROOT / "sonar-project.properties").read_text().splitlines():
        if line.startswith("sonar.projectKey="):
            return line.split("=", 1)[1].strip()
    raise SystemExit("sonar.projectKey not found in sonar-project.properties")


class Sonar:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        # A user token is the login of HTTP basic auth with an empty password.
        self.auth = "Basic " + base64.b64encode(f"{token}:".encode()).decode()

    def call(self, method: str, path: str, **params):
        data = urllib.parse.urlencode(params).encode()
        url = f"{self.url}/api/{path}"
        if method == "GET" and params:
            url, data = f"{url}?{data.decode()}", None
        req = urllib.request.Request(url, data=data if method == "POST" else None, method=method)
        req.add_header("Authorization", self.auth)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                body = resp.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            raise RuntimeError(f"{method} api/{path} -> {err.code}: {detail}") from None
        return json.loads(body) if body else {}


def main() -> int:
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and sys.argv[1].startswith("-")):
        print(__doc__, file=sys.stderr)
        return 2
    url, token = os.environ.get("SONAR_HOST_URL"), os.environ.get("SONAR_TOKEN")
    if not url or not token:
        print("SONAR_HOST_URL and SONAR_TOKEN must be set", file=sys.stderr)
        return 2
    project = sys.argv[1] if len(sys.argv) == 2 else project_key_from_properties()
    spec = json.loads((ROOT / "ci" / "sonar-quality-gate.json").read_text())
    sonar = Sonar(url, token)
    try:
        gates = sonar.call("GET", "qualitygates/list")["qualitygates"]
        if not any(g["name"] == spec["name"] for g in gates):
            sonar.call("POST", "qualitygates/create", name=spec["name"])
            print(f"created quality gate {spec['name']!r}")
        have = {c["metric"]: c for c in sonar.call("GET", "qualitygates/show", name=spec["name"]).get("conditions", [])}
        want = {c["metric"]: c for c in spec["conditions"]}
        for metric, cond in have.items():
            if metric not in want:
                sonar.call("POST", "qualitygates/delete_condition", id=cond["id"])
                print(f"removed condition {metric}")
        for metric, cond in want.items():
            old = have.get(metric)
            if old is None:
                sonar.call("POST", "qualitygates/create_condition", gateName=spec["name"],
                           metric=metric, op=cond["op"], error=cond["error"])
                print(f"added condition {metric} {cond['op']} {cond['error']}")
            elif (old.get("op"), old.get("error")) != (cond["op"], cond["error"]):
                sonar.call("POST", "qualitygates/update_condition", id=old["id"],
                           metric=metric, op=cond["op"], error=cond["error"])
                print(f"updated condition {metric} {cond['op']} {cond['error']}")
        found = sonar.call("GET", "projects/search", projects=project)["components"]
        if not found:
            sonar.call("POST", "projects/create", project=project, name=project)
            print(f"created project {project!r}")
        sonar.call("POST", "qualitygates/select", gateName=spec["name"], projectKey=project)
    except (RuntimeError, urllib.error.URLError, OSError) as err:
        print(f"sonar-gate: {err}", file=sys.stderr)
        return 1
    for c in spec["conditions"]:
        print(f"  gate {spec['name']}: fails when {c['metric']} {c['op']} {c['error']} ({c['why']})")
    print(f"quality gate {spec['name']!r} selected for {project!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
