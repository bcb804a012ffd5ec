#!/usr/bin/env bash
# The Spin build (handler composed with adapters/documents-kv, run in this host with
# --key-value-store) against the tasks API component on the embedded store: same
# binary, same seed data (50 tasks), alternating rounds in one run. Prints req/s of
# GET one and of a list of 20, and the mean instantiation time, per round.
#
#   bash bench/spin-build.sh            # 2 rounds x 8 s per measurement
#   ROUNDS=3 DURATION=10s bash bench/spin-build.sh
#
# Needs wrk and the Spin build (target/guest/spin-app.wasm, made by .ci/run's spin
# stage). Everything is on 127.0.0.1; each host is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-8s}
SPIN=target/guest/spin-app.wasm
need wrk curl python3
release_host
[ -f "$SPIN" ] || { echo "$SPIN is missing: build it as .ci/run's spin stage does" >&2; exit 1; }
bench_init

run() {
  local mode=$1 args=()
  [ "$mode" = spin ] && args=(--component "$SPIN" --key-value-store default)
  start_host "$mode" "${args[@]}"
  local id one list inst
  id=$(seed "$HOST_API")
  read -r one _ < <(wrk_round "$BENCH_WORK/one" "http://$HOST_API/api/tasks/$id")
  read -r list _ < <(wrk_round "$BENCH_WORK/list" "http://$HOST_API/api/tasks?limit=20")
  inst=$(instantiate_mean_us "$HOST_ADMIN")
  printf '%-5s get_one=%9s req/s  list20=%8s req/s  instantiate_mean=%6s us\n' "$mode" "$one" "$list" "$inst"
  stop_pid "$HOST_PID"
  rm -rf "$BENCH_WORK/$mode-data"
}

for _ in $(seq 1 "$ROUNDS"); do run app; run spin; done
