#!/usr/bin/env bash
# Run the image the way Kubernetes runs it and check it from outside:
# read-only root, numeric non-root user, no capabilities, no privilege escalation,
# the data volume as the only writable path. Then: healthy by its own HEALTHCHECK,
# CRUD through the API port, /metrics on the admin port, not root, no shell in the
# image, size within the target, the precompiled component used, and a restart
# keeps the data.
#
#   ci/smoke-image.sh IMAGE [MAX_MB]     # needs DOCKER_HOST; MAX_MB default 40
#
# Exit codes: 0 all checks passed, 1 a check failed (what and why is printed), 2 usage.
set -euo pipefail
# (Pipes into grep use `grep ... >/dev/null`, not `grep -q`: -q exits at the first
# match, the writer gets SIGPIPE, and pipefail would report the match as a failure.)
IMAGE=${1:?usage: $0 IMAGE [MAX_MB]}
MAX_MB=${2:-40}
DOCKER=${DOCKER:-/usr/bin/docker}
NAME=tasks-smoke-$$
VOLUME=tasks-smoke-data-$$

fail() { echo "FAIL: $*" >&2; "$DOCKER" logs "$NAME" 2>&1 | tail -20 >&2 || true; exit 1; }
cleanup() {
  "$DOCKER" rm -f "$NAME" >/dev/null 2>&1 || true
  "$DOCKER" volume rm -f "$VOLUME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

run() {
  "$DOCKER" run -d --name "$NAME" \
    --read-only --user 65532:65532 --cap-drop ALL --security-opt no-new-privileges \
    --memory 512m --pids-limit 256 \
    -v "$VOLUME:/data" \
    -p 127.0.0.1::8080 -p 127.0.0.1::9090 \
    --health-interval 1s --health-start-period 30s \
    "$IMAGE" >/dev/null
}

wait_healthy() {
  local status=""
  for _ in $(seq 1 60); do
    status=$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$NAME")
    [ "$status" = healthy ] && return 0
    [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$NAME")" = true ] || fail "the container exited"
    sleep 0.5
  done
  fail "not healthy after 30 s (status: $status)"
}

ports() {
  API=$("$DOCKER" port "$NAME" 8080/tcp | sed -n 1p)
  ADMIN=$("$DOCKER" port "$NAME" 9090/tcp | sed -n 1p)
}

# --- the image itself --------------------------------------------------------
bytes=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
mb=$(( (bytes + 999999) / 1000000 ))
echo "image $IMAGE: ${mb} MB ($bytes bytes), layers:"
"$DOCKER" history --format '  {{.Size}}\t{{.CreatedBy}}' "$IMAGE" | cut -c1-110
[ "$mb" -le "$MAX_MB" ] || fail "image is $mb MB, over the $MAX_MB MB target"
[ "$("$DOCKER" image inspect -f '{{.Config.User}}' "$IMAGE")" = "65532:65532" ] || fail "image user is not 65532:65532"
"$DOCKER" image inspect -f '{{json .Config.Healthcheck.Test}}' "$IMAGE" | grep '"healthcheck"' >/dev/null \
  || fail "HEALTHCHECK does not run the binary's healthcheck"
for label in source revision version licenses; do
  "$DOCKER" image inspect -f "{{ index .Config.Labels \"org.opencontainers.image.$label\" }}" "$IMAGE" | grep . >/dev/null \
    || fail "OCI label $label missing"
done
# No shell, no package manager, no toolchain: list the filesystem without running it.
files=$(mktemp)
cid=$("$DOCKER" create "$IMAGE")
"$DOCKER" export "$cid" | tar -t >"$files"
"$DOCKER" rm "$cid" >/dev/null
for f in bin/sh bin/bash bin/dash usr/bin/apt usr/bin/dpkg usr/bin/perl usr/local/cargo/bin/cargo usr/bin/gcc; do
  if grep -qx "$f" "$files"; then fail "the image contains /$f"; fi
done
echo "no shell, package manager or toolchain among $(wc -l <"$files") entries"
rm -f "$files"

# --- run it as production does -------------------------------------------------
run
wait_healthy
ports
echo "healthy; API on $API, admin on $ADMIN"
pid=$("$DOCKER" inspect -f '{{.State.Pid}}' "$NAME")
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
[ "$uid" = 65532 ] || fail "the process runs as uid $uid"
caps=$(awk '/^CapEff:/ {print $2}' "/proc/$pid/status")
[ "$caps" = 0000000000000000 ] || fail "the process has capabilities $caps"
echo "process uid $uid, effective capabilities $caps"
"$DOCKER" logs "$NAME" 2>&1 | grep '"source":"Precompiled"' >/dev/null || fail "the precompiled component was not used"
if "$DOCKER" logs "$NAME" 2>&1 | grep $'\x1b\\[' >/dev/null; then fail "colour escapes in container logs"; fi

id=$(curl -sf -XPOST "http://$API/api/tasks" -H 'content-type: application/json' \
  -d '{"title":"container smoke","tags":["smoke"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])') \
  || fail "create"
curl -sf "http://$API/api/tasks/$id" | grep '"title":"container smoke"' >/dev/null || fail "read"
curl -sf -XPATCH "http://$API/api/tasks/$id" -H 'content-type: application/merge-patch+json' \
  -H 'if-match: "v1"' -d '{"status":"done"}' | grep '"status":"done"' >/dev/null || fail "patch"
curl -sf "http://$API/api/tasks?status=done" | grep "$id" >/dev/null || fail "list"
keep=$(curl -sf -XPOST "http://$API/api/tasks" -H 'content-type: application/json' -d '{"title":"kept"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
[ "$(curl -s -o /dev/null -w '%{http_code}' -XDELETE "http://$API/api/tasks/$id")" = 204 ] || fail "delete"
metrics=$(curl -sf "http://$ADMIN/metrics")
echo "$metrics" | grep '^http_requests_total{.*route="/api/tasks".*status="201"' >/dev/null || fail "/metrics lacks the requests"
echo "CRUD and /metrics OK"

# --- a restart keeps the data ----------------------------------------------------
"$DOCKER" restart -t 10 "$NAME" >/dev/null
wait_healthy
ports
curl -sf "http://$API/api/tasks/$keep" | grep '"title":"kept"' >/dev/null || fail "the task did not survive a restart"
echo "restart kept the data"
echo "image smoke test passed"
