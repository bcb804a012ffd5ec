#!/usr/bin/env bash
# Benchmark: GET one task and list tasks through the sandboxed component vs the
# same lookups in native handlers on the same store, behind the same middleware, in
# one run, plus the admin /metrics endpoint. Prints req/s, p50, p99 and the ratios.
#
#   bash bench/run.sh                  # embedded store; 3 rounds x 10 s, 32 connections
#   STORE=ferretdb bash bench/run.sh   # MongoDB store on a FerretDB started for the run
#   ROUNDS=5 DURATION=15s bash bench/run.sh
#
# Needs wrk (Debian: apt-get install wrk). Everything runs on 127.0.0.1 and stops
# by itself: each wrk run is bounded by DURATION, the host is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
EXTRA_ARGS=${EXTRA_ARGS:-}
STORE=${STORE:-embedded}

command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }

echo "== building release"
cargo build --release -p host
BIN=target/release/host

WORK=$(mktemp -d)
HOST_PID=""
FERRET_PID=""
cleanup() {
  if [ -n "$HOST_PID" ]; then kill -TERM "$HOST_PID" 2>/dev/null || true; wait "$HOST_PID" 2>/dev/null || true; fi
  if [ -n "$FERRET_PID" ]; then kill "$FERRET_PID" 2>/dev/null || true; wait "$FERRET_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

STORE_ENV=()
if [ "$STORE" = ferretdb ]; then
  bash tools/ferretdb/build.sh
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$WORK/fdb/data" "$WORK/fdb/state"
  tools/bin/ferretdb --handler=sqlite --sqlite-url="file:$WORK/fdb/data/" --listen-addr="127.0.0.1:$PORT" \
    --debug-addr=- --state-dir="$WORK/fdb/state" --telemetry=disable --log-level=error >"$WORK/fdb.log" 2>&1 &
  FERRET_PID=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  STORE_ENV=(MONGODB_URI="mongodb://127.0.0.1:$PORT/" MONGODB_DATABASE=bench)
fi

# shellcheck disable=SC2086
env "${STORE_ENV[@]}" LOG_FORMAT=json RUST_LOG="warn,host=info" "$BIN" \
  --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir "$WORK/data" \
  --bench-native-route $EXTRA_ARGS 2>"$WORK/host.log" &
HOST_PID=$!

for _ in $(seq 1 300); do
  grep -q '"message":"listening"' "$WORK/host.log" 2>/dev/null && break
  sleep 0.1
done
read -r API ADMIN < <(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try: v = json.loads(line)
    except ValueError: continue
    if v.get("message") == "listening": print(v["api"], v["admin"]); break
' "$WORK/host.log")
[ -n "${API:-}" ] || { echo "host did not start:"; cat "$WORK/host.log"; exit 1; }

for i in $(seq 1 30); do
  ID=$(curl -sf -XPOST "http://$API/api/tasks" -H 'content-type: application/json' \
    -d "{\"title\":\"benchmark task $i\",\"description\":\"a typical task body\",\"tags\":[\"bench\",\"perf\"],\"priority\":2,\"due\":\"2027-01-01T12:00:00Z\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
done
COMPONENT_URL="http://$API/api/tasks/$ID"
NATIVE_URL="http://$API/bench/native/tasks/$ID"
COMPONENT_LIST_URL="http://$API/api/tasks?limit=20"
NATIVE_LIST_URL="http://$API/bench/native/tasks"
METRICS_URL="http://$ADMIN/metrics"
for u in "$COMPONENT_URL" "$NATIVE_URL" "$COMPONENT_LIST_URL" "$NATIVE_LIST_URL"; do curl -sf "$u" >/dev/null; done

# wrk -> "req/s p50_ms p99_ms"
measure() {
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$1" | python3 -c '
import re, sys
text = sys.stdin.read()
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    n, u = float(m.group(1)), m.group(2)
    return n / 1000 if u == "us" else n * 1000 if u == "s" else n
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors: sys.exit("non-2xx responses: " + errors.group(1))
print(f"{rps:.0f} {p50:.2f} {p99:.2f}")
'
}

echo "== machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "== store: $STORE; wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds, client and server on the same cores"
echo "== warm-up"
wrk -t"$THREADS" -c"$CONNS" -d2s "$COMPONENT_URL" >/dev/null
wrk -t"$THREADS" -c"$CONNS" -d2s "$NATIVE_URL" >/dev/null

printf '%-6s %-22s %10s %9s %9s\n' round target req/s p50_ms p99_ms
RATIOS=()
LIST_RATIOS=()
for r in $(seq 1 "$ROUNDS"); do
  read -r c_rps c_p50 c_p99 < <(measure "$COMPONENT_URL")
  read -r n_rps n_p50 n_p99 < <(measure "$NATIVE_URL")
  read -r cl_rps cl_p50 cl_p99 < <(measure "$COMPONENT_LIST_URL")
  read -r nl_rps nl_p50 nl_p99 < <(measure "$NATIVE_LIST_URL")
  read -r m_rps m_p50 m_p99 < <(measure "$METRICS_URL")
  printf '%-6s %-22s %10s %9s %9s\n' "$r" "component GET one" "$c_rps" "$c_p50" "$c_p99"
  printf '%-6s %-22s %10s %9s %9s\n' "$r" "native GET one" "$n_rps" "$n_p50" "$n_p99"
  printf '%-6s %-22s %10s %9s %9s\n' "$r" "component list 20" "$cl_rps" "$cl_p50" "$cl_p99"
  printf '%-6s %-22s %10s %9s %9s\n' "$r" "native list 20" "$nl_rps" "$nl_p50" "$nl_p99"
  printf '%-6s %-22s %10s %9s %9s\n' "$r" "admin /metrics" "$m_rps" "$m_p50" "$m_p99"
  ratio=$(python3 -c "print(f'{$c_rps / $n_rps:.3f}')")
  list_ratio=$(python3 -c "print(f'{$cl_rps / $nl_rps:.3f}')")
  RATIOS+=("$ratio")
  LIST_RATIOS+=("$list_ratio")
  echo "       ratio component/native: GET one $ratio, list $list_ratio"
done

curl -sf "$METRICS_URL" | python3 -c '
import re, sys
text = sys.stdin.read()
s = float(re.search(r"^wasm_instantiate_duration_seconds_sum (\S+)", text, re.M).group(1))
n = float(re.search(r"^wasm_instantiate_duration_seconds_count (\S+)", text, re.M).group(1))
print(f"== instantiate: mean {s / n * 1e6:.1f} us over {n:.0f} instances")
'
echo "== ratios per round: GET one ${RATIOS[*]}; list ${LIST_RATIOS[*]}"
