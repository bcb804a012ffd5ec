#!/usr/bin/env bash
# Scaling: GET one task with 1 to 512 open connections, one host, one run. Prints
# req/s, p50, p99, the host's RSS and open descriptors per step; writes
# bench/results/scaling.json and its chart.
#
#   bash bench/scaling.sh               # 5 s per step
#   DURATION=10s STEPS="1 8 64 512" bash bench/scaling.sh
#
# Needs wrk. Loopback only, bounded by DURATION per step; the host is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
DURATION=${DURATION:-5s}
STEPS=${STEPS:-1 2 4 8 16 32 64 128 256 512}
VENV=${VENV:-.venv}
need wrk curl python3
release_host
bench_init
start_host scaling
ID=$(seed "$HOST_API")
URL="http://$HOST_API/api/tasks/$ID"
echo "== machine: $(machine)"
echo "== GET one, wrk -d$DURATION per step; RSS at start $(( $(rss_kb "$HOST_PID") / 1024 )) MiB"
printf '%6s %10s %9s %9s %8s %5s\n' conns req/s p50_ms p99_ms rss_MiB fds
: >"$BENCH_WORK/rows"
for c in $STEPS; do
  t=2; [ "$c" -lt 2 ] && t=1
  read -r rps p50 p99 < <(THREADS=$t CONNS=$c wrk_round "$BENCH_WORK/out" "$URL")
  rss=$(( $(rss_kb "$HOST_PID") / 1024 ))
  fds=$(fd_count "$HOST_PID")
  printf '%6s %10s %9s %9s %8s %5s\n' "$c" "$rps" "$p50" "$p99" "$rss" "$fds"
  echo "$c $rps $p50 $p99 $rss $fds" >>"$BENCH_WORK/rows"
done
SUMMARY=$(python3 - "$BENCH_WORK/rows" "$DURATION" <<'PY'
import json, sys
pts = [dict(zip(("connections", "rps", "p50_ms", "p99_ms", "rss_mib", "fds"), map(float, l.split())))
       for l in open(sys.argv[1])]
print(json.dumps({"store": "embedded", "duration": sys.argv[2], "points": pts}))
PY
)
result scaling "$SUMMARY"
if [ -x "$VENV/bin/python" ]; then "$VENV/bin/python" bench/chart.py scaling; fi
