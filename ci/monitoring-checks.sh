#!/usr/bin/env bash
# The monitoring link, for real (docs/monitoring.md):
#   1. promtool: the compose Prometheus configs, the rules, and their unit tests
#      (every alert firing and quiet);
#   2. yamllint on the monitoring and Kubernetes YAML;
#   3. the Grafana dashboards against the JSON Schema generated from the pinned
#      @grafana/schema npm package, and the dashboards' and alerts' conventions;
#   4. monitoring/live_check.py: the release host (three of them: the API, the
#      fault component, one with its MongoDB down) scraped every second by a real
#      Prometheus loaded with the rules; every rule healthy, every rule and panel
#      query run, the expected ones with data, `promtool check metrics` clean;
#   5. the dashboards rendered as PNGs from that run's data.
#
#   VENV=.venv ci/monitoring-checks.sh HOST_BIN FAULT_COMPONENT OUT_DIR
#
# Needs Debian's prometheus package (Prometheus and promtool; installed here if
# missing), Node/npm, and the venv with monitoring/requirements.txt.
# Exit codes: 0 passed, 1 a check failed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
HOST_BIN=${1:?usage: $0 HOST_BIN FAULT_COMPONENT OUT_DIR}
FAULT=${2:?usage: $0 HOST_BIN FAULT_COMPONENT OUT_DIR}
OUT=${3:?usage: $0 HOST_BIN FAULT_COMPONENT OUT_DIR}
VENV=${VENV:-$ROOT/.venv}
PY="$VENV/bin/python"
mkdir -p "$OUT"
step() { echo "--- [$(date -u +%H:%M:%S)] $*"; }

ci/packages.sh install prometheus
promtool --version 2>&1 | sed -n 1p
[ -f "$FAULT" ] || { echo "no fault component at $FAULT (it is built with the host)" >&2; exit 1; }

step "promtool: configs, rules, rule unit tests"
promtool check config --syntax-only monitoring/prometheus.yml
promtool check config --syntax-only ci/prometheus-fast.yml
promtool check rules monitoring/rules/tasks-api.rules.yaml
promtool test rules monitoring/rules/tasks-api.rules.test.yaml

step "yamllint"
"$VENV/bin/yamllint" --strict -f parsable monitoring k8s compose.yaml .yamllint.yaml

step "dashboards against @grafana/schema; dashboard and alert conventions"
bash monitoring/schema/generate.sh "$OUT/schema"
GRAFANA_SCHEMA_DIR="$OUT/schema" "$PY" -m pytest -q -p no:cacheprovider -rs monitoring/tests | tee "$OUT/static.log"
if grep -E '[0-9]+ skipped' "$OUT/static.log" >/dev/null; then
  echo "monitoring checks were skipped" >&2
  exit 1
fi

step "live: host x3 + Prometheus, every rule and panel query"
"$PY" monitoring/live_check.py --host "$HOST_BIN" --fault-component "$FAULT" --out "$OUT/data"

step "dashboards rendered from the live data"
"$PY" monitoring/render_dashboards.py "$OUT/data" "$OUT/png"
for d in overview sandbox data process; do
  [ -s "$OUT/png/tasks-api-$d.png" ] || { echo "no picture of tasks-api-$d" >&2; exit 1; }
done
echo "monitoring checks passed; pictures in $OUT/png"
