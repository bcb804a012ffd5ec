#!/usr/bin/env bash
# Cold start: process start to the first answered API request (GET /api/tasks, 200),
# N starts per way of getting the component, in one run. Prints min/median/max and
# writes bench/results/cold-start.json and its chart.
#
#   bash bench/cold-start.sh            # 10 starts per mode
#   STARTS=20 bash bench/cold-start.sh
#
# Modes: the built-in component compiled at start (--no-compile-cache); the same
# with the compile cache warm (a restart); a .cwasm (--component); the built-in
# component from --precompiled-dir (the image's way); a .wasm compiled at start;
# the same .wasm with the compile cache warm. Loopback only; each process is
# stopped by PID once it has answered.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
STARTS=${STARTS:-10}
VENV=${VENV:-.venv}
need python3
release_host
bench_init
WASM=$(guest_wasm app)
"$BIN" precompile "$WASM" -o "$BENCH_WORK/app.cwasm" 2>/dev/null
"$BIN" precompile --dir "$BENCH_WORK/precompiled" 2>/dev/null
SUMMARY=$(python3 bench/cold_start.py "$BIN" "$BENCH_WORK" "$WASM" "$STARTS")
result cold-start "$SUMMARY"
if [ -x "$VENV/bin/python" ]; then "$VENV/bin/python" bench/chart.py cold-start; fi
