#!/usr/bin/env bash
# The container's cost: GET one task, the same binary run plainly and in its image
# (run as in production: read-only, non-root, no capabilities), alternating rounds
# in one run. Prints req/s, p50, p99 and the image/plain ratio.
#
#   bash bench/image.sh [IMAGE]          # default tasks-api:dev; needs DOCKER_HOST
#   ROUNDS=5 DURATION=15s NETWORK=bridge bash bench/image.sh
#
# NETWORK=host (default) gives the container the host's network stack, so the
# ratio measures the image and its runtime, not docker-proxy's port forwarding;
# NETWORK=bridge measures a published port instead. Loopback only, bounded by
# DURATION; the container and the plain process are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-tasks-api:dev}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
NETWORK=${NETWORK:-host}
DOCKER=${DOCKER:-/usr/bin/docker}

WORK=$(mktemp -d)
NAME=tasks-bench-$$
PLAIN_PID=""
cleanup() {
  "$DOCKER" rm -f "$NAME" >/dev/null 2>&1 || true
  if [ -n "$PLAIN_PID" ]; then kill -TERM "$PLAIN_PID" 2>/dev/null || true; wait "$PLAIN_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=bench/lib.sh
. bench/lib.sh
need wrk

# The plain side runs the very binary and precompiled component from the image.
cid=$("$DOCKER" create "$IMAGE")
"$DOCKER" cp "$cid:/usr/local/bin/host" "$WORK/host"
"$DOCKER" cp "$cid:/opt/tasks/precompiled" "$WORK/precompiled"
"$DOCKER" rm "$cid" >/dev/null

P_API=$(free_port) P_ADMIN=$(free_port)
LOG_FORMAT=json RUST_LOG=warn "$WORK/host" --listen "127.0.0.1:$P_API" --admin-listen "127.0.0.1:$P_ADMIN" \
  --data-dir "$WORK/data" --precompiled-dir "$WORK/precompiled" --allow-precompiled 2>"$WORK/plain.log" &
PLAIN_PID=$!

if [ "$NETWORK" = host ]; then
  C_API=$(free_port) C_ADMIN=$(free_port)
  "$DOCKER" run -d --name "$NAME" --network host --read-only --user 65532:65532 --cap-drop ALL \
    --security-opt no-new-privileges -e RUST_LOG=warn \
    -e "LISTEN_ADDR=127.0.0.1:$C_API" -e "ADMIN_LISTEN_ADDR=127.0.0.1:$C_ADMIN" "$IMAGE" >/dev/null
else
  "$DOCKER" run -d --name "$NAME" --read-only --user 65532:65532 --cap-drop ALL \
    --security-opt no-new-privileges -e RUST_LOG=warn -p 127.0.0.1::8080 -p 127.0.0.1::9090 "$IMAGE" >/dev/null
  C_API=$("$DOCKER" port "$NAME" 8080/tcp | sed -n 1p | cut -d: -f2)
fi

P_ID=$(seed "$P_API")
C_ID=$(seed "$C_API")

echo "GET one task, wrk -t2 -c$CONNS -d$DURATION, network=$NETWORK, $ROUNDS rounds"
printf '%-6s %-10s %10s %9s %9s\n' round side req/s p50_ms p99_ms
for r in $(seq 1 "$ROUNDS"); do
  read -r prps pp50 pp99 < <(wrk_round "$WORK/plain.out" "http://127.0.0.1:$P_API/api/tasks/$P_ID")
  read -r crps cp50 cp99 < <(wrk_round "$WORK/image.out" "http://127.0.0.1:$C_API/api/tasks/$C_ID")
  printf '%-6s %-10s %10s %9s %9s\n' "$r" plain "$prps" "$pp50" "$pp99"
  printf '%-6s %-10s %10s %9s %9s\n' "$r" image "$crps" "$cp50" "$cp99"
  echo "$r $prps $crps" >>"$WORK/ratios"
done
awk '{ printf "round %s: image/plain = %.2f\n", $1, $3 / $2 }' "$WORK/ratios"
