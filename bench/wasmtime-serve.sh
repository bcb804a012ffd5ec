#!/usr/bin/env bash
# This host against `wasmtime serve` (wasmtime-cli at our wasmtime version, built
# by ci/cargo-tool.sh once per machine, ~14 min) serving the same trivial
# wasi:http component (crates/hello-wasm), first with wasmtime's defaults, then
# with the pooling/keep-resident settings this host uses. Alternating rounds in
# one run; prints req/s, p50, p99 and the ratios; writes
# bench/results/wasmtime-serve.json and its chart.
#
#   bash bench/wasmtime-serve.sh           # 3 rounds x 8 s, 32 connections
#
# Needs wrk. Loopback only; every server is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-32}
VENV=${VENV:-.venv}
need wrk curl python3
release_host
# The version ci/packages.txt pins, equal to the `wasmtime` dependency (ci/tests/test_packages.py).
WASMTIME=$(bash ci/cargo-tool.sh wasmtime-cli wasmtime)
WASMTIME_VERSION=$(bash ci/packages.sh version wasmtime-cli)
cargo build --locked --quiet --profile wasm --target wasm32-wasip2 -p hello-wasm --target-dir target/guest
HELLO=target/guest/wasm32-wasip2/wasm/hello_wasm.wasm
bench_init

start_host ours --component "$HELLO"
declare -A URL
URL[host]="http://$HOST_API/"
# wasmtime serve: -S cli is needed for a component built by Rust's std (it imports
# wasi:cli). The second instance gets this host's pooling settings
# (host/src/engine/mod.rs: 2 MiB memory and 1 MiB table kept resident, 256 KiB of
# stack, pagemap scanning), with its own default concurrency.
serve() {
  local name=$1 port
  shift
  port=$(free_port)
  "$WASMTIME" serve --addr "127.0.0.1:$port" -S cli "$@" "$HELLO" >"$BENCH_WORK/$name.log" 2>&1 &
  track $!
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/" >/dev/null || { echo "wasmtime serve ($name) did not start:" >&2; cat "$BENCH_WORK/$name.log" >&2; exit 1; }
  URL[$name]="http://127.0.0.1:$port/"
}
serve wasmtime-defaults
serve wasmtime-pooling -O pooling-allocator=y -O pooling-memory-keep-resident=2097152 \
  -O pooling-table-keep-resident=1048576 -O pooling-pagemap-scan=y
NAMES=(host wasmtime-defaults wasmtime-pooling)

echo "== machine: $(machine); wasmtime-cli $WASMTIME_VERSION"
for n in "${NAMES[@]}"; do DURATION=1s wrk_round "$BENCH_WORK/warm" "${URL[$n]}" >/dev/null; done
printf '%-6s %-20s %10s %9s %9s\n' round server req/s p50_ms p99_ms
: >"$BENCH_WORK/rows"
for r in $(seq 1 "$ROUNDS"); do
  for n in "${NAMES[@]}"; do
    read -r rps p50 p99 < <(wrk_round "$BENCH_WORK/out" "${URL[$n]}")
    printf '%-6s %-20s %10s %9s %9s\n' "$r" "$n" "$rps" "$p50" "$p99"
    echo "$r $n $rps $p50 $p99" >>"$BENCH_WORK/rows"
  done
done
SUMMARY=$(python3 - "$BENCH_WORK/rows" "$CONNS" "$DURATION" "$WASMTIME_VERSION" <<'PY'
import json, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
runs = {}
for r, n, rps, p50, p99 in rows:
    runs.setdefault(n, []).append({"rps": float(rps), "p50_ms": float(p50), "p99_ms": float(p99)})
med = {n: {m: statistics.median(x[m] for x in v) for m in ("rps", "p50_ms", "p99_ms")} for n, v in runs.items()}
ratios = {f"host/{n}": med["host"]["rps"] / med[n]["rps"] for n in med if n != "host"}
per_round = [{f"host/{n}": runs["host"][i]["rps"] / runs[n][i]["rps"] for n in runs if n != "host"}
             for i in range(len(runs["host"]))]
for k, v in ratios.items():
    print(f"{k}: {v:.2f}x req/s (per round: {', '.join(f'{q[k]:.2f}' for q in per_round)})", file=sys.stderr)
print(json.dumps({"wasmtime_cli": sys.argv[4], "connections": int(sys.argv[2]), "duration": sys.argv[3],
                  "median": med, "runs": runs, "ratios": ratios, "ratios_per_round": per_round}))
PY
)
result wasmtime-serve "$SUMMARY"
if [ -x "$VENV/bin/python" ]; then "$VENV/bin/python" bench/chart.py wasmtime-serve; fi
