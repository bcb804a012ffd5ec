#!/usr/bin/env bash
# Runaway guests under load: healthy requests (GET /fault/ok of the test-only fault
# component) alone, then with RUNAWAY requests (default 2 x cores) that spin until
# the deadline always in flight. Fails unless, with the runaways, healthy p99 <=
# 50 ms and throughput >= 50 % of the baseline. Writes bench/results/runaway.json.
#
#   bash bench/runaway.sh               # 10 s per measurement
#   DURATION=30s RUNAWAY=8 bash bench/runaway.sh
#
# Needs wrk. Loopback only; bounded by DURATION; the host is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
RUNAWAY=${RUNAWAY:-$(( 2 * $(nproc) ))}
DEADLINE_MS=${DEADLINE_MS:-1000}
need wrk curl python3
release_host
bench_init
FAULT=$(guest_wasm fault)
"$BIN" precompile "$FAULT" -o "$BENCH_WORK/fault.cwasm" 2>/dev/null
start_host runaway --component "$BENCH_WORK/fault.cwasm" --allow-precompiled --deadline-ms "$DEADLINE_MS"
OK="http://$HOST_API/fault/ok"
echo "== machine: $(machine)"
DURATION=2s wrk_round "$BENCH_WORK/warm" "$OK" >/dev/null
read -r base_rps base_p50 base_p99 < <(wrk_round "$BENCH_WORK/base" "$OK")
echo "baseline: $base_rps req/s, p50 $base_p50 ms, p99 $base_p99 ms"

# RUNAWAY clients, each sending /fault/loop again as soon as the last one ended.
python3 - "$HOST_API" "$RUNAWAY" "$BENCH_WORK/stop" >"$BENCH_WORK/runaways" <<'PY' &
import http.client, os, sys, threading
host, port = sys.argv[1].split(":")
stop = sys.argv[3]
counts = {}
def loop(i):
    n = 0
    while not os.path.exists(stop):
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        c.request("GET", "/fault/loop")
        status = c.getresponse().status
        counts[status] = counts.get(status, 0) + 1
        c.close()
threads = [threading.Thread(target=loop, args=(i,)) for i in range(int(sys.argv[2]))]
for t in threads: t.start()
for t in threads: t.join()
print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())))
PY
LOOPS=$!
track "$LOOPS"
sleep 1
read -r rps p50 p99 < <(wrk_round "$BENCH_WORK/load" "$OK")
touch "$BENCH_WORK/stop"
wait "$LOOPS"
runaways=$(cat "$BENCH_WORK/runaways")
echo "with $RUNAWAY runaways in flight: $rps req/s, p50 $p50 ms, p99 $p99 ms; runaway answers: $runaways"
SUMMARY=$(python3 - <<PY
import json
base, rps, p99 = $base_rps, $rps, $p99
fails = []
if p99 > 50: fails.append(f"healthy p99 {p99} ms > 50 ms")
if rps < 0.5 * base: fails.append(f"throughput {rps / base:.2f} of baseline < 0.5")
print(json.dumps({"runaway_in_flight": $RUNAWAY, "deadline_ms": $DEADLINE_MS, "connections": $CONNS,
  "baseline": {"rps": base, "p50_ms": $base_p50, "p99_ms": $base_p99},
  "with_runaways": {"rps": rps, "p50_ms": $p50, "p99_ms": p99, "throughput_ratio": rps / base},
  "runaway_answers": "$runaways", "failures": fails}))
PY
)
result runaway "$SUMMARY"
judge runaway
echo "runaway check passed"
