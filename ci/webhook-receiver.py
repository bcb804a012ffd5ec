#!/usr/bin/env python3
"""A stand-in for Jenkins' `/sonarqube-webhook/` endpoint, for .ci/run (Jenkins
itself cannot be obtained here; docs/testing.md): it accepts a SonarQube webhook
delivery only when its `X-Sonar-Webhook-HMAC-SHA256` header is the HMAC-SHA256 of
the body under the shared secret -- the check Jenkins' SonarQube plugin makes with
the credential `webhookSecretId` names -- and answers 403 otherwise, as Jenkins
does.

  ci/webhook-receiver.py serve DIR
      # on WEBHOOK_BIND (HOST:PORT, default 127.0.0.1:0; .ci/run: the real node's
      # address, where the in-cluster SonarQube reaches it); writes DIR/address
      # (HOST:PORT), then one JSON line per delivery to
      # DIR/deliveries.jsonl (the verdict, the project, the task, the gate's
      # status), which ci/jenkins-pipeline.py's waitForQualityGate reads
  ci/webhook-receiver.py check DIR PROJECT [SECS]
      # waits for a signed delivery of PROJECT's analysis whose quality gate is
      # OK, then replays its body with a forged signature and with none, which
      # must both be refused.

The secret comes from SONAR_WEBHOOK_SECRET, never from the command line.
Exit codes: 0 all of the above holds, 1 it does not, 2 usage.
"""

import hashlib
import hmac
import http.server
import json
import os
import pathlib
import sys
import time
import urllib.error
import urllib.request

MAX_BODY = 1 << 20


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def serve(out: pathlib.Path, secret: str) -> None:
    log = out / "deliveries.jsonl"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the http.server API)
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                self.send_response(413 if length else 400)
                self.end_headers()
                return
            body = self.rfile.read(length)
            given = self.headers.get("X-Sonar-Webhook-HMAC-SHA256", "")
            valid = hmac.compare_digest(given, signature(secret, body))
            record = {"valid": valid, "path": self.path, "body": body.decode("utf-8", "replace")}
            try:
                payload = json.loads(body)
                record["project"] = payload.get("project", {}).get("key")
                record["gate"] = payload.get("qualityGate", {}).get("status")
                record["task"] = payload.get("taskId")
            except ValueError:
                pass
            with log.open("a") as f:
                f.write(json.dumps(record) + "\n")
            self.send_response(200 if valid else 403)
            self.end_headers()

        def log_message(self, *args):
            pass

    host, _, port = os.environ.get("WEBHOOK_BIND", "127.0.0.1:0").rpartition(":")
    server = http.server.HTTPServer((host, int(port)), Handler)
    (out / "address").write_text(f"{host}:{server.server_address[1]}")
    server.serve_forever()


def post(address: str, body: bytes, headers: dict) -> int:
    req = urllib.request.Request(f"http://{address}/sonarqube-webhook/", data=body, method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def check(out: pathlib.Path, project: str, secs: float) -> int:
    log = out / "deliveries.jsonl"
    deadline = time.monotonic() + secs
    delivered = None
    while time.monotonic() < deadline and delivered is None:
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        delivered = next((r for r in records if r.get("project") == project), None)
        if delivered is None:
            time.sleep(1)
    if delivered is None:
        print(f"webhook: no delivery for {project} within {secs:.0f} s", file=sys.stderr)
        return 1
    if not delivered["valid"]:
        print("webhook: SonarQube's delivery was not signed with the shared secret", file=sys.stderr)
        return 1
    if delivered.get("gate") != "OK":
        print(f"webhook: the delivery reports the gate as {delivered.get('gate')}", file=sys.stderr)
        return 1
    address = (out / "address").read_text()
    body = delivered["body"].encode()
    forged = post(address, body, {"X-Sonar-Webhook-HMAC-SHA256": "0" * 64})
    unsigned = post(address, body, {})
    if (forged, unsigned) != (403, 403):
        print(f"webhook: a forged delivery got {forged}, an unsigned one {unsigned} (want 403)", file=sys.stderr)
        return 1
    print(f"webhook: SonarQube delivered {project}'s gate (OK), signed with the shared secret; "
          "forged and unsigned replays were refused")
    return 0


def main() -> int:
    secret = os.environ.get("SONAR_WEBHOOK_SECRET", "")
    if len(sys.argv) < 3 or sys.argv[1] not in ("serve", "check") or not secret:
        print(__doc__, file=sys.stderr)
        return 2
    out = pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    if sys.argv[1] == "serve":
        serve(out, secret)
        return 0
    return check(out, sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 120)


if __name__ == "__main__":
    sys.exit(main())
