#!/usr/bin/env bash
# Soak: a mixed workload (reads, lists, creates, expected 4xx) at about 80 % of
# the maximum measured at the start of the same run, for SOAK_SECS. Fails unless:
# no 5xx and no socket errors; RSS at the end within 10 % of RSS after warm-up;
# open descriptors back to where they were once the load stops. Writes
# bench/results/soak.json.
#
#   bash bench/soak.sh                  # 30 minutes (the long variant)
#   SOAK_SECS=120 bash bench/soak.sh    # the bounded run in .ci/run
#
# Needs wrk. Loopback only; every wrk run is bounded; the host is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
SOAK_SECS=${SOAK_SECS:-1800}
WARMUP_SECS=${WARMUP_SECS:-15}
DELAY_MS=${DELAY_MS:-2}
need wrk curl python3
release_host
bench_init
start_host soak
IDS=$(for _ in 1 2 3 4; do seed "$HOST_API"; done | paste -sd,)
URL="http://$HOST_API"
fds_idle=$(fd_count "$HOST_PID")

# The maximum: the same mix with no pause, 32 connections.
IDS=$IDS DELAY_MS=0 wrk -t2 -c32 -d5s -s bench/lua/mixed.lua "$URL" >"$BENCH_WORK/max"
max=$(awk '/Requests\/sec/ {print $2}' "$BENCH_WORK/max")
# Each connection sends one request per (latency + DELAY_MS), and latency depends
# on the load: the connection count for 80 % of the maximum is found by three
# short calibration rounds, each scaling it by target / achieved.
conns=$(python3 -c "print(max(2, round(0.8 * $max * $DELAY_MS / 1000)))")
for _ in 1 2 3; do
  IDS=$IDS DELAY_MS=$DELAY_MS wrk -t2 -c"$conns" -d3s -s bench/lua/mixed.lua "$URL" >"$BENCH_WORK/cal"
  got=$(awk '/Requests\/sec/ {print $2}' "$BENCH_WORK/cal")
  conns=$(python3 -c "print(min(512, max(2, round($conns * 0.8 * $max / max($got, 1)))))")
done
echo "== machine: $(machine)"
echo "== max $max req/s (mixed, 32 connections); soak: $conns connections with ${DELAY_MS} ms pauses, ${WARMUP_SECS}s warm-up + ${SOAK_SECS}s"

IDS=$IDS DELAY_MS=$DELAY_MS wrk -t2 -c"$conns" -d"${WARMUP_SECS}s" -s bench/lua/mixed.lua "$URL" >"$BENCH_WORK/warm"
rss_warm=$(rss_kb "$HOST_PID")
fds_warm=$(fd_count "$HOST_PID")
IDS=$IDS DELAY_MS=$DELAY_MS wrk -t2 -c"$conns" -d"${SOAK_SECS}s" --latency -s bench/lua/mixed.lua "$URL" >"$BENCH_WORK/soak" &
WRK=$!
track "$WRK"
: >"$BENCH_WORK/samples"
while kill -0 "$WRK" 2>/dev/null; do
  echo "$(date +%s) $(rss_kb "$HOST_PID") $(fd_count "$HOST_PID")" >>"$BENCH_WORK/samples"
  sleep 5
done
wait "$WRK"
rss_end=$(rss_kb "$HOST_PID")
sleep 1
fds_after=$(fd_count "$HOST_PID")
cat "$BENCH_WORK/soak"

SUMMARY=$(python3 - "$BENCH_WORK/soak" "$BENCH_WORK/samples" "$max" "$conns" "$SOAK_SECS" \
  "$rss_warm" "$rss_end" "$fds_idle" "$fds_warm" "$fds_after" <<'PY'
import json, re, sys
t = open(sys.argv[1]).read()
mx, conns, secs, rss_warm, rss_end, fds_idle, fds_warm, fds_after = map(float, sys.argv[3:])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
cls = dict(kv.split("=") for kv in re.search(r"classes (.*)", t).group(1).split())
sock = re.search(r"Socket errors: (.*)", t)
def lat(p):
    m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", t)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
samples = [list(map(int, l.split())) for l in open(sys.argv[2])]
out = {"max_rps": mx, "connections": int(conns), "seconds": int(secs), "rps": rps, "load": rps / mx,
       "answers": {k: int(v) for k, v in cls.items()}, "socket_errors": sock.group(1) if sock else None,
       "p50_ms": lat(50), "p99_ms": lat(99),
       "rss_kib": {"after_warmup": int(rss_warm), "end": int(rss_end), "growth": rss_end / rss_warm - 1},
       "fds": {"idle_before": int(fds_idle), "after_warmup": int(fds_warm), "idle_after": int(fds_after)},
       "samples": [{"t": s[0] - samples[0][0], "rss_kib": s[1], "fds": s[2]} for s in samples]}
fails = []
if int(cls["5xx"]) or int(cls["other"]): fails.append(f"unexpected answers: {cls}")
if sock: fails.append(f"socket errors: {sock.group(1)}")
if rss_end > 1.10 * rss_warm: fails.append(f"RSS grew {100 * (rss_end / rss_warm - 1):.1f} % (limit 10 %)")
if fds_after > fds_idle: fails.append(f"descriptors {fds_idle:.0f} idle before, {fds_after:.0f} after")
out["failures"] = fails
print(f"soak: {rps:.0f} req/s = {100 * rps / mx:.0f} % of max {mx:.0f}; answers {cls}; p99 {lat(99):.2f} ms; "
      f"RSS {rss_warm / 1024:.1f} -> {rss_end / 1024:.1f} MiB ({100 * (rss_end / rss_warm - 1):+.1f} %); "
      f"fds idle {fds_idle:.0f} -> {fds_after:.0f}", file=sys.stderr)
print(json.dumps(out))
PY
)
result soak "$SUMMARY"
judge soak
echo "soak passed"
