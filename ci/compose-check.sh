#!/usr/bin/env bash
# Check a running compose stack as CI does: every service running, and healthy
# where it has a health check; the API ready and storing through MongoDB as the
# application's user; Prometheus scraping it with monitoring/rules/ loaded.
#
#   ci/compose-check.sh       # after `docker compose up -d --wait`
#
# Checks the stack `docker compose` sees from the repository's root (COMPOSE_FILE,
# COMPOSE_PROJECT_NAME as usual), on the ports compose.yaml publishes (API_PORT,
# ADMIN_PORT, PROMETHEUS_PORT; defaults 8080, 9090, 9091). Changes nothing but one
# task it creates. Exit codes: 0 passed, 1 a check failed.
set -euo pipefail
# (Pipes into grep use `grep ... >/dev/null`, not `grep -q`: -q exits at the first
# match, the writer gets SIGPIPE, and pipefail would report the match as a failure.)
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
API=127.0.0.1:${API_PORT:-8080}
ADMIN=127.0.0.1:${ADMIN_PORT:-9090}
PROMETHEUS=127.0.0.1:${PROMETHEUS_PORT:-9091}
fail() {
  echo "FAIL: $*" >&2
  "$DOCKER" compose logs --tail 20 >&2 || true
  exit 1
}

# The stack's own file is clean as written, with the CD profile too.
"$DOCKER" compose -f compose.yaml config -q
"$DOCKER" compose -f compose.yaml --profile ci config -q

services=$("$DOCKER" compose ps --format '{{.Service}} {{.State}} {{.Health}}')
echo "$services"
for want in tasks-api mongodb prometheus; do
  echo "$services" | grep -E "^$want " >/dev/null || fail "$want is not running"
done
echo "$services" | awk '$2 != "running" || ($3 != "" && $3 != "healthy") { bad = 1 } END { exit bad }' \
  || fail "a service is not running or not healthy"

curl -sf "http://$ADMIN/readyz" | grep '"store":true' >/dev/null || fail "the store is not reachable"
"$DOCKER" compose logs tasks-api 2>&1 | grep 'using the MongoDB store' >/dev/null || fail "the API is not on the database"
id=$(curl -sf -XPOST "http://$API/api/tasks" -H 'content-type: application/json' -d '{"title":"through compose"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') || fail "create"
curl -sf "http://$API/api/tasks/$id" | grep 'through compose' >/dev/null || fail "read back"
echo "tasks-api healthy on the database; created and read $id"

up=""
for _ in $(seq 1 60); do
  up=$(curl -sf "http://$PROMETHEUS/api/v1/query?query=up%7Bjob%3D%22tasks-api%22%7D" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' || true)
  [ "$up" = 1 ] && break
  sleep 1
done
[ "$up" = 1 ] || fail "Prometheus does not scrape tasks-api (up=$up)"
n=$(curl -sf "http://$PROMETHEUS/api/v1/query?query=sum(http_requests_total)" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["result"][0]["value"][1])')
echo "Prometheus scrapes tasks-api: up=1, http_requests_total=$n"
# The rules are mounted and loaded (monitoring/rules/, the PrometheusRule's groups).
rules=$(curl -sf "http://$PROMETHEUS/api/v1/rules" \
  | python3 -c 'import json,sys; g=json.load(sys.stdin)["data"]["groups"]; print(len(g), sum(len(x["rules"]) for x in g))')
want="$(cat monitoring/rules/*.rules.yaml | grep -c '^  - name: ') $(cat monitoring/rules/*.rules.yaml | grep -cE '^      - (record|alert): ')"
[ "$rules" = "$want" ] || fail "Prometheus loaded groups/rules '$rules', expected '$want' from monitoring/rules/"
echo "Prometheus loaded monitoring/rules/: $rules (groups, rules)"
echo "compose stack checked"
