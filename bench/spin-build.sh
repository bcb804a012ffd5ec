#!/usr/bin/env bash
# The Spin build (handler composed with adapters/documents-kv, run in this host with
# --key-value-store) against the tasks API component on the embedded store: same
# binary, same seed data (50 tasks), alternating rounds in one run. Prints req/s of
# GET one and of a list of 20, and the mean instantiation time, per round.
#
#   bash bench/spin-build.sh            # 2 rounds x 8 s per measurement
#   ROUNDS=3 DURATION=10s bash bench/spin-build.sh
#
# Needs wrk. Everything is on 127.0.0.1; each host is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-8s}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }

cargo build --release -p host
BIN=target/release/host
SPIN=target/guest/spin-app.wasm
PID=""
DIR=""
cleanup() {
  if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  if [ -n "$DIR" ]; then rm -rf "$DIR"; fi
}
trap cleanup EXIT

run() {
  local mode=$1 args=()
  [ "$mode" = spin ] && args=(--component "$SPIN" --key-value-store default)
  DIR=$(mktemp -d)
  LOG_FORMAT=json RUST_LOG=warn,host=info "$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --data-dir "$DIR/data" "${args[@]}" 2>"$DIR/log" &
  PID=$!
  for _ in $(seq 1 300); do grep -q '"message":"listening"' "$DIR/log" && break; sleep 0.1; done
  read -r api admin < <(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try: v = json.loads(line)
    except ValueError: continue
    if v.get("message") == "listening": print(v["api"], v["admin"]); break
' "$DIR/log")
  local id=""
  for i in $(seq 1 50); do
    id=$(curl -sf -XPOST "http://$api/api/tasks" -H 'content-type: application/json' -d "{\"title\":\"t$i\"}" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  done
  local one list inst
  one=$(wrk -t2 -c32 -d"$DURATION" "http://$api/api/tasks/$id" | awk '/Requests\/sec/ {print $2}')
  list=$(wrk -t2 -c32 -d"$DURATION" "http://$api/api/tasks?limit=20" | awk '/Requests\/sec/ {print $2}')
  inst=$(curl -s "http://$admin/metrics" | awk '/^wasm_instantiate_duration_seconds_sum/ {s=$2}
    /^wasm_instantiate_duration_seconds_count/ {c=$2} END {printf "%.1f", s/c*1e6}')
  printf '%-5s get_one=%9s req/s  list20=%8s req/s  instantiate_mean=%6s us\n' "$mode" "$one" "$list" "$inst"
  kill -TERM "$PID"; wait "$PID" || true; PID=""
  rm -rf "$DIR"; DIR=""
}

for _ in $(seq 1 "$ROUNDS"); do run app; run spin; done
