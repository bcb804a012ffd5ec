#!/usr/bin/env bash
# SonarQube analysis with the reports of ci/sonar-reports.sh, then the quality gate.
#
#   SONAR_HOST_URL=... SONAR_TOKEN=... ci/sonar.sh            # scan, wait for the gate, print it
#   ci/sonar.sh --no-wait                                      # scan only (Jenkins: waitForQualityGate)
#
# The scanner is sonar-scanner-cli from Maven Central (downloaded once per machine
# into ~/.cache/tasks-ci/sonarqube), run on a local Java 21+ (SONAR_SCANNER_JAVA;
# default: the Temurin 25 JDK when present, else `java`), never a downloaded JRE. In Jenkins,
# withSonarQubeEnv sets SONAR_HOST_URL and SONAR_AUTH_TOKEN; either token name works.
# SONAR_GATE_TIMEOUT: seconds to wait for the server's verdict (default 300).
# Exit codes: 0 passed (or scanned, with --no-wait), 1 the gate failed or the scan
# failed, 2 usage or missing settings.
set -euo pipefail
cd "$(dirname "$0")/.."
WAIT=true
case "${1:-}" in
  "") ;;
  --no-wait) WAIT=false ;;
  *) echo "usage: $0 [--no-wait]" >&2; exit 2 ;;
esac
TOKEN=${SONAR_TOKEN:-${SONAR_AUTH_TOKEN:-}}
[ -n "${SONAR_HOST_URL:-}" ] && [ -n "$TOKEN" ] || { echo "SONAR_HOST_URL and SONAR_TOKEN must be set" >&2; exit 2; }
for f in target/sonar/clippy-host.json target/sonar/clippy-wasm.json target/sonar/lcov.info; do
  [ -s "$f" ] || { echo "$f is missing: run ci/sonar-reports.sh first" >&2; exit 2; }
done

JAR=$(ci/packages.sh fetch org.sonarsource.scanner.cli:sonar-scanner-cli "${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}/sonarqube")

JAVA=${SONAR_SCANNER_JAVA:-}
if [ -z "$JAVA" ]; then
  for j in /usr/lib/jvm/temurin-25-jdk-amd64/bin/java /usr/lib/jvm/temurin-21-jdk-amd64/bin/java; do
    [ -x "$j" ] && { JAVA=$j; break; }
  done
fi
JAVA=${JAVA:-java}

# The token goes through the environment, not the command line (ps shows that).
set +x
rc=0
# The scanner starts its engine in a second JVM, found through JAVA_HOME.
SONAR_TOKEN="$TOKEN" JAVA_HOME="$(dirname "$(dirname "$(readlink -f "$(command -v "$JAVA")")")")" "$JAVA" -jar "$JAR" \
  -Dsonar.host.url="$SONAR_HOST_URL" \
  -Dsonar.scanner.skipJreProvisioning=true \
  -Dsonar.scm.revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -Dsonar.qualitygate.wait="$WAIT" -Dsonar.qualitygate.timeout="${SONAR_GATE_TIMEOUT:-300}" \
  -Dsonar.working.directory=target/sonar/scannerwork || rc=$?
[ "$WAIT" = true ] || exit "$rc"

# What the gate measured, condition by condition, whatever the verdict.
key=$(sed -n 's/^sonar.projectKey=//p' sonar-project.properties)
# The token reaches curl as a config on stdin, never on its command line.
sonar_get() { printf 'user = "%s:"\n' "$TOKEN" | curl -sSf --config - "$SONAR_HOST_URL/api/$1"; }
sonar_get "qualitygates/project_status?projectKey=$key" | python3 -c '
import json, sys
s = json.load(sys.stdin)["projectStatus"]
print("quality gate: %s" % s["status"])
for c in s.get("conditions", []):
    print("  %-5s %-40s %8s  (fails when %s %s)" % (c["status"], c["metricKey"], c.get("actualValue", "-"), c["comparator"], c["errorThreshold"]))
'
sonar_get "measures/component?component=$key&metricKeys=ncloc,files,coverage,duplicated_lines_density,code_smells,cognitive_complexity" | python3 -c '
import json, sys
m = {x["metric"]: x.get("value") for x in json.load(sys.stdin)["component"]["measures"]}
print("  measures: " + ", ".join(f"{k}={v}" for k, v in sorted(m.items())))
'
if [ "$rc" -ne 0 ]; then
  echo "the quality gate failed (or the analysis did): see above" >&2
  exit 1
fi
