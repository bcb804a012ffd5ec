#!/usr/bin/env bash
# Two builds of the host side by side: GET one task and a list of 20, alternating
# wrk rounds in one run, then each process's peak RSS. Prints req/s, p50, p99 and
# the candidate/baseline ratios. Used for the allocator and libc choice of the
# image (docs/container.md).
#
#   bash bench/binaries.sh BASELINE_BIN CANDIDATE_BIN
#   ROUNDS=5 DURATION=15s bash bench/binaries.sh target/release/host \
#     target/x86_64-unknown-linux-musl/release/host
#
# Both processes stay up for the whole run (idle while the other is measured; which
# one goes first alternates by round), on
# loopback, each with its own data dir; wrk is bounded by DURATION; both are
# stopped by PID at the end.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BASELINE_BIN CANDIDATE_BIN" >&2; exit 2; }
BASE_BIN=$(realpath "$1")
CAND_BIN=$(realpath "$2")
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
# shellcheck source=bench/lib.sh
. bench/lib.sh
need wrk

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

start() { # name bin -> sets <name>_API, <name>_ADMIN, <name>_PID
  local name=$1 bin=$2 api admin
  api=$(free_port)
  admin=$(free_port)
  LOG_FORMAT=json RUST_LOG=warn "$bin" --listen "127.0.0.1:$api" --admin-listen "127.0.0.1:$admin" \
    --data-dir "$WORK/$name-data" 2>"$WORK/$name.log" &
  PIDS+=($!)
  printf -v "${name}_API" %s "$api"
  printf -v "${name}_ADMIN" %s "$admin"
  printf -v "${name}_PID" %s "$!"
}
start base "$BASE_BIN"
start cand "$CAND_BIN"
# shellcheck disable=SC2154 # base_API and cand_API are set by start() through printf -v
BASE_ID=$(seed "$base_API")
# shellcheck disable=SC2154
CAND_ID=$(seed "$cand_API")

echo "baseline:  $BASE_BIN ($(stat -c %s "$BASE_BIN") bytes)"
echo "candidate: $CAND_BIN ($(stat -c %s "$CAND_BIN") bytes)"
echo "wrk -t2 -c$CONNS -d$DURATION, $ROUNDS rounds, alternating"
printf '%-6s %-6s %-10s %10s %9s %9s\n' round route side req/s p50_ms p99_ms
for r in $(seq 1 "$ROUNDS"); do
  for route in one list; do
    if [ "$route" = one ]; then
      b_url="http://127.0.0.1:$base_API/api/tasks/$BASE_ID"
      c_url="http://127.0.0.1:$cand_API/api/tasks/$CAND_ID"
    else
      b_url="http://127.0.0.1:$base_API/api/tasks?limit=20"
      c_url="http://127.0.0.1:$cand_API/api/tasks?limit=20"
    fi
    # Which side goes first alternates by round: an A/A run (one binary on both
    # sides) measured the second side 6-15 % slower when the baseline always went
    # first.
    if [ $((r % 2)) -eq 1 ]; then
      read -r brps bp50 bp99 < <(wrk_round "$WORK/b.out" "$b_url")
      read -r crps cp50 cp99 < <(wrk_round "$WORK/c.out" "$c_url")
    else
      read -r crps cp50 cp99 < <(wrk_round "$WORK/c.out" "$c_url")
      read -r brps bp50 bp99 < <(wrk_round "$WORK/b.out" "$b_url")
    fi
    printf '%-6s %-6s %-10s %10s %9s %9s\n' "$r" "$route" baseline "$brps" "$bp50" "$bp99"
    printf '%-6s %-6s %-10s %10s %9s %9s\n' "$r" "$route" candidate "$crps" "$cp50" "$cp99"
    echo "$r $route $brps $crps" >>"$WORK/ratios"
  done
done
awk '{ printf "round %s %-4s candidate/baseline = %.2f\n", $1, $2, $4 / $3 }' "$WORK/ratios"
for side in base cand; do
  pid_var="${side}_PID" admin_var="${side}_ADMIN"
  echo "$side peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/${!pid_var}/status")"
  # The host's own metric, over every instance of the run (both routes).
  echo "$side instantiate: mean $(instantiate_mean_us "127.0.0.1:${!admin_var}") us"
done
