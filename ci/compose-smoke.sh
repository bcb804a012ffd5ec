#!/usr/bin/env bash
# Bring the compose stack up with local stand-ins (ci/compose.standins.yaml: FerretDB
# for MongoDB, Debian's Prometheus; Grafana cannot be obtained here and is not
# started), check the API is healthy and stores through the database, Prometheus
# scrapes the host, then take everything down with its volumes, also on failure.
#
#   ci/compose-smoke.sh IMAGE     # needs DOCKER_HOST; IMAGE from ci/build-image.sh
#
# Exit codes: 0 passed, 1 a check failed, 2 usage.
set -euo pipefail
# (Pipes into grep use `grep ... >/dev/null`, not `grep -q`: -q exits at the first
# match, the writer gets SIGPIPE, and pipefail would report the match as a failure.)
IMAGE=${1:?usage: $0 IMAGE}
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-/usr/bin/docker}
export DOCKER_BUILDKIT=1
PROJECT=tasks-ci-$$
free_port() { ci/free-port.py; }
API_PORT=$(free_port) ADMIN_PORT=$(free_port) PROMETHEUS_PORT=$(free_port) GRAFANA_PORT=$(free_port)
export TASKS_API_IMAGE=$IMAGE API_PORT ADMIN_PORT PROMETHEUS_PORT GRAFANA_PORT
# `docker compose`, the plugin the README's commands use (tools/compose/build.sh).
bash tools/compose/build.sh >/dev/null
COMPOSE=("$DOCKER" compose --env-file .env.example -p "$PROJECT" -f compose.yaml -f ci/compose.standins.yaml)

fail() {
  echo "FAIL: $*" >&2
  "${COMPOSE[@]}" logs --tail 20 >&2 || true
  exit 1
}
cleanup() { "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

# The stack's own file must be clean as written (with the example .env).
"$DOCKER" compose --env-file .env.example -f compose.yaml config -q
"$DOCKER" compose --env-file .env.example -f compose.yaml --profile ci config -q

# Stand-in images, rebuilt only when missing; FerretDB's is tagged with its
# binary's hash, so a rebuilt (patched) binary gets a new image.
bash tools/ferretdb/build.sh >/dev/null
FERRETDB_STANDIN_IMAGE="tasks-ci/ferretdb:1.24.2-$(sha256sum tools/bin/ferretdb | cut -c1-12)"
export FERRETDB_STANDIN_IMAGE
if ! "$DOCKER" image inspect "$FERRETDB_STANDIN_IMAGE" >/dev/null 2>&1; then
  ctx=$(mktemp -d)
  cp ci/standins/ferretdb.Dockerfile "$ctx/Dockerfile"
  cp tools/bin/ferretdb "$ctx/ferretdb"
  mkdir "$ctx/state"
  "$DOCKER" build --force-rm -t "$FERRETDB_STANDIN_IMAGE" "$ctx" >&2
  rm -rf "$ctx"
fi
if ! "$DOCKER" image inspect tasks-ci/prometheus:debian >/dev/null 2>&1; then
  "$DOCKER" build --network host --force-rm -t tasks-ci/prometheus:debian -f ci/standins/prometheus.Dockerfile ci/standins >&2
fi

"${COMPOSE[@]}" up -d --no-build tasks-api mongodb prometheus
api=$("${COMPOSE[@]}" ps -q tasks-api)
for _ in $(seq 1 90); do
  [ "$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$api")" = healthy ] && break
  sleep 1
done
[ "$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$api")" = healthy ] || fail "tasks-api is not healthy"
curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" | grep '"store":true' >/dev/null || fail "the store is not reachable"
"$DOCKER" logs "$api" 2>&1 | grep 'using the MongoDB store' >/dev/null || fail "the API is not on the database"
id=$(curl -sf -XPOST "http://127.0.0.1:$API_PORT/api/tasks" -H 'content-type: application/json' -d '{"title":"through compose"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') || fail "create"
curl -sf "http://127.0.0.1:$API_PORT/api/tasks/$id" | grep 'through compose' >/dev/null || fail "read back"
echo "tasks-api healthy on the database; created and read $id"

up=""
for _ in $(seq 1 60); do
  up=$(curl -sf "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query?query=up%7Bjob%3D%22tasks-api%22%7D" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' || true)
  [ "$up" = 1 ] && break
  sleep 1
done
[ "$up" = 1 ] || fail "Prometheus does not scrape tasks-api (up=$up)"
n=$(curl -sf "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query?query=sum(http_requests_total)" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["result"][0]["value"][1])')
echo "Prometheus scrapes tasks-api: up=1, http_requests_total=$n"
# The rules are mounted and loaded (monitoring/rules/, the PrometheusRule's groups).
rules=$(curl -sf "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/rules" \
  | python3 -c 'import json,sys; g=json.load(sys.stdin)["data"]["groups"]; print(len(g), sum(len(x["rules"]) for x in g))')
want="$(cat monitoring/rules/*.rules.yaml | grep -c '^  - name: ') $(cat monitoring/rules/*.rules.yaml | grep -cE '^      - (record|alert): ')"
[ "$rules" = "$want" ] || fail "Prometheus loaded groups/rules '$rules', expected '$want' from monitoring/rules/"
echo "Prometheus loaded monitoring/rules/: $rules (groups, rules)"
echo "compose smoke test passed"
