#!/usr/bin/env bash
# Where the host's time goes: `perf record` with DWARF call graphs on the release
# host while wrk drives one kind of request, folded and drawn by inferno as a flame
# graph (bench/results/flame-WHAT.svg, linked from docs/performance.md). Guest code
# shows as unsymbolized JIT frames under wasmtime's `catch_traps`.
#
#   bash bench/profile.sh               # GET one task (50 stored)
#   WHAT=list bash bench/profile.sh     # a list of 20
#   SECONDS_RECORDED=10 bash bench/profile.sh
#
# Needs perf (Debian's linux-perf) with the right to trace the host (root, or a low
# kernel.perf_event_paranoid), wrk, and inferno (built once by ci/cargo-tool.sh).
# Loopback only; the host and wrk are stopped by PID. Exit codes: 0 written,
# 1 a step failed, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
WHAT=${WHAT:-one}
SECONDS_RECORDED=${SECONDS_RECORDED:-5}
need wrk perf curl python3
collapse=$(ci/cargo-tool.sh inferno inferno-collapse-perf)
flamegraph=$(dirname "$collapse")/inferno-flamegraph
release_host
bench_init
start_host profile
ID=$(seed "$HOST_API")
case "$WHAT" in
one) URL="http://$HOST_API/api/tasks/$ID" ;;
list) URL="http://$HOST_API/api/tasks?limit=20" ;;
*) echo "WHAT is one or list" >&2; exit 2 ;;
esac
DURATION=2s wrk_round "$BENCH_WORK/warm" "$URL" >/dev/null
wrk -t2 -c"${CONNS:-32}" -d"$((SECONDS_RECORDED + 2))s" "$URL" >"$BENCH_WORK/wrk.out" &
WRK_PID=$!
track "$WRK_PID"
sleep 1
perf record -q -F 199 --call-graph dwarf,16384 -p "$HOST_PID" -o "$BENCH_WORK/perf.data" \
  -- sleep "$SECONDS_RECORDED" 2>"$BENCH_WORK/perf.log"
wait "$WRK_PID"
grep -E 'Requests/sec' "$BENCH_WORK/wrk.out"
perf script -i "$BENCH_WORK/perf.data" 2>/dev/null | "$collapse" >"$BENCH_WORK/folded"
"$flamegraph" --title "tasks-api host, $WHAT, wrk -c${CONNS:-32}, $(date -u +%F), $(machine)" \
  <"$BENCH_WORK/folded" >"bench/results/flame-$WHAT.svg"
echo "wrote bench/results/flame-$WHAT.svg ($(wc -l <"$BENCH_WORK/folded") stacks)"
