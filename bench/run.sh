#!/usr/bin/env bash
# Benchmark: GET one task and list tasks through the sandboxed component vs the
# same lookups in native handlers on the same store, behind the same middleware, in
# one run, plus the admin /metrics endpoint. Prints req/s, p50, p99 and the ratios,
# and writes bench/results/sandbox-cost[-ferretdb].json.
#
#   bash bench/run.sh                  # embedded store; 3 rounds x 10 s, 32 connections
#   STORE=ferretdb bash bench/run.sh   # MongoDB store on a FerretDB started for the run
#   ROUNDS=5 DURATION=15s EXTRA_ARGS="--workers 1" bash bench/run.sh
#
# Needs wrk (ci/packages.txt: ci/packages.sh install). Everything runs on 127.0.0.1 and stops
# by itself: each wrk run is bounded by DURATION, the servers are stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
EXTRA_ARGS=${EXTRA_ARGS:-}
STORE=${STORE:-embedded}
need wrk curl python3
release_host
bench_init

STORE_ENV=()
if [ "$STORE" = ferretdb ]; then
  start_ferretdb "$BENCH_WORK/fdb"
  STORE_ENV=(MONGODB_URI="mongodb://127.0.0.1:$FERRET_PORT/" MONGODB_DATABASE=bench)
fi
[ ${#STORE_ENV[@]} -eq 0 ] || export "${STORE_ENV[@]}"
# shellcheck disable=SC2086
start_host sandbox --bench-native-route $EXTRA_ARGS
ID=$(seed "$HOST_API")
COMPONENT_URL="http://$HOST_API/api/tasks/$ID"
NATIVE_URL="http://$HOST_API/bench/native/tasks/$ID"
COMPONENT_LIST_URL="http://$HOST_API/api/tasks?limit=20"
NATIVE_LIST_URL="http://$HOST_API/bench/native/tasks"
METRICS_URL="http://$HOST_ADMIN/metrics"
for u in "$COMPONENT_URL" "$NATIVE_URL" "$COMPONENT_LIST_URL" "$NATIVE_LIST_URL"; do curl -sf "$u" >/dev/null; done

echo "== machine: $(machine)"
echo "== store: $STORE; wrk -t${THREADS:-2} -c$CONNS -d$DURATION, $ROUNDS rounds, client and server on the same cores"
DURATION=2s wrk_round "$BENCH_WORK/warm" "$COMPONENT_URL" >/dev/null
DURATION=2s wrk_round "$BENCH_WORK/warm" "$NATIVE_URL" >/dev/null

printf '%-6s %-22s %10s %9s %9s\n' round target req/s p50_ms p99_ms
: >"$BENCH_WORK/rows"
for r in $(seq 1 "$ROUNDS"); do
  for t in "component_get_one $COMPONENT_URL" "native_get_one $NATIVE_URL" \
    "component_list_20 $COMPONENT_LIST_URL" "native_list_20 $NATIVE_LIST_URL" "admin_metrics $METRICS_URL"; do
    read -r name url <<<"$t"
    read -r rps p50 p99 < <(wrk_round "$BENCH_WORK/out" "$url")
    printf '%-6s %-22s %10s %9s %9s\n' "$r" "$name" "$rps" "$p50" "$p99"
    echo "$r $name $rps $p50 $p99" >>"$BENCH_WORK/rows"
  done
done

curl -sf "$METRICS_URL" >"$BENCH_WORK/metrics"
SUMMARY=$(python3 - "$BENCH_WORK/rows" "$BENCH_WORK/metrics" "$STORE" "$CONNS" "$DURATION" <<'PY'
import json, re, sys
rows = [l.split() for l in open(sys.argv[1])]
text = open(sys.argv[2]).read()
s = float(re.search(r"^wasm_instantiate_duration_seconds_sum (\S+)", text, re.M).group(1))
n = float(re.search(r"^wasm_instantiate_duration_seconds_count (\S+)", text, re.M).group(1))
rounds = {}
for r, name, rps, p50, p99 in rows:
    rounds.setdefault(int(r), {})[name] = {"rps": float(rps), "p50_ms": float(p50), "p99_ms": float(p99)}
ratios = [{"get_one": v["component_get_one"]["rps"] / v["native_get_one"]["rps"],
           "list_20": v["component_list_20"]["rps"] / v["native_list_20"]["rps"]} for v in rounds.values()]
for i, q in enumerate(ratios, 1):
    print(f"round {i}: component/native GET one {q['get_one']:.3f}, list {q['list_20']:.3f}", file=sys.stderr)
print(f"instantiate: mean {s / n * 1e6:.1f} us over {n:.0f} instances", file=sys.stderr)
print(json.dumps({"store": sys.argv[3], "connections": int(sys.argv[4]), "duration": sys.argv[5],
                  "rounds": [rounds[k] for k in sorted(rounds)], "ratios": ratios,
                  "instantiate_mean_us": s / n * 1e6}))
PY
)
result "sandbox-cost$([ "$STORE" = embedded ] || echo "-$STORE")" "$SUMMARY"
if [ -x "${VENV:-.venv}/bin/python" ]; then "${VENV:-.venv}/bin/python" bench/chart.py "sandbox-cost$([ "$STORE" = embedded ] || echo "-$STORE")"; fi
