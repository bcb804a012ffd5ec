#!/usr/bin/env bash
# The host against the stack a user would pick instead (the seed's): Flask +
# gunicorn, with pymongo on the same FerretDB and with an in-memory dict, gunicorn
# `-w 2` (sync) and `-w 4 --threads 4 -k gthread`. Same endpoints, same seed data,
# alternating rounds in one run. Prints req/s, p50, p99 and the ratios against the
# better Flask configuration per store; writes bench/results/peers.json and the chart.
#
#   bash bench/peers.sh                         # 2 rounds x 8 s, 32 connections
#   ROUNDS=3 DURATION=10s CONNS=64 bash bench/peers.sh
#
# Needs wrk, the venv of ci/python-tools.sh (VENV, default .venv) and Go for
# FerretDB (tools/ferretdb/build.sh). Loopback only; every server stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-32}
VENV=${VENV:-.venv}
need wrk curl python3
release_host
bash ci/python-tools.sh "$VENV" >/dev/null
VENV=$(cd "$VENV" && pwd)
bench_init

start_ferretdb "$BENCH_WORK/fdb"
MONGO="mongodb://127.0.0.1:$FERRET_PORT/"

# gunicorn NAME BACKEND ARGS...: a Flask peer on a free port; sets PEER_ADDR.
gunicorn_peer() {
  local name=$1 backend=$2 port
  shift 2
  port=$(free_port)
  (cd bench/peers && TASKS_BACKEND=$backend TASKS_SEED=50 MONGODB_URI="$MONGO" MONGODB_DATABASE="flask_$name" \
    exec "$VENV/bin/gunicorn" -b "127.0.0.1:$port" --log-level warning "$@" flask_app:app) \
    >"$BENCH_WORK/$name.log" 2>&1 &
  track $!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/api/tasks?limit=1" >/dev/null && break; sleep 0.1; done
  PEER_ADDR="127.0.0.1:$port"
}

declare -A URL_ONE URL_LIST
add() { URL_ONE[$1]="http://$2/api/tasks/$3"; URL_LIST[$1]="http://$2/api/tasks?limit=20"; }

start_host host-embedded
add host-embedded "$HOST_API" "$(seed "$HOST_API")"
MONGODB_URI=$MONGO MONGODB_DATABASE=host_bench start_host host-ferretdb
add host-ferretdb "$HOST_API" "$(seed "$HOST_API")"
SYNC=(-w 2)
GTHREAD=(-w 4 --threads 4 -k gthread)
gunicorn_peer flask-memory-sync memory "${SYNC[@]}"
add flask-memory-sync "$PEER_ADDR" 000000000000000000000032
gunicorn_peer flask-memory-gthread memory "${GTHREAD[@]}"
add flask-memory-gthread "$PEER_ADDR" 000000000000000000000032
gunicorn_peer flask-ferretdb-sync mongo "${SYNC[@]}"
add flask-ferretdb-sync "$PEER_ADDR" "$(seed "$PEER_ADDR")"
gunicorn_peer flask-ferretdb-gthread mongo "${GTHREAD[@]}"
add flask-ferretdb-gthread "$PEER_ADDR" "$(seed "$PEER_ADDR")"
TARGETS=(host-embedded flask-memory-sync flask-memory-gthread host-ferretdb flask-ferretdb-sync flask-ferretdb-gthread)

echo "== machine: $(machine)"
echo "== wrk -t${THREADS:-2} -c$CONNS -d$DURATION, $ROUNDS rounds, client and servers on the same cores"
for t in "${TARGETS[@]}"; do DURATION=1s wrk_round "$BENCH_WORK/warm" "${URL_ONE[$t]}" >/dev/null; done
printf '%-6s %-24s %-8s %10s %9s %9s\n' round server request req/s p50_ms p99_ms
: >"$BENCH_WORK/rows"
for r in $(seq 1 "$ROUNDS"); do
  for t in "${TARGETS[@]}"; do
    for req in one list; do
      if [ "$req" = one ]; then url=${URL_ONE[$t]}; else url=${URL_LIST[$t]}; fi
      read -r rps p50 p99 < <(wrk_round "$BENCH_WORK/out" "$url")
      printf '%-6s %-24s %-8s %10s %9s %9s\n' "$r" "$t" "$req" "$rps" "$p50" "$p99"
      echo "$r $t $req $rps $p50 $p99" >>"$BENCH_WORK/rows"
    done
  done
done

SUMMARY=$(python3 - "$BENCH_WORK/rows" "$CONNS" "$DURATION" <<'PY'
import json, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
runs = {}
for r, t, req, rps, p50, p99 in rows:
    runs.setdefault((t, req), []).append({"rps": float(rps), "p50_ms": float(p50), "p99_ms": float(p99)})
med = {k: {m: statistics.median(x[m] for x in v) for m in ("rps", "p50_ms", "p99_ms")} for k, v in runs.items()}
ratios = {}
for store, mem in (("embedded", "memory"), ("ferretdb", "ferretdb")):
    for req in ("one", "list"):
        host = med[(f"host-{store}", req)]
        peers = {c: med[(f"flask-{mem}-{c}", req)] for c in ("sync", "gthread")}
        best = max(peers, key=lambda c: peers[c]["rps"])
        q = {"vs": f"flask-{mem}-{best}", "rps_ratio": host["rps"] / peers[best]["rps"],
             "p99_ratio": host["p99_ms"] / peers[best]["p99_ms"]}
        ratios[f"{store}/{req}"] = q
        print(f"host-{store} {req}: {q['rps_ratio']:.1f}x the req/s of {q['vs']}, p99 {q['p99_ratio']:.2f}x", file=sys.stderr)
print(json.dumps({"connections": int(sys.argv[2]), "duration": sys.argv[3],
                  "median": {f"{t}/{req}": v for (t, req), v in med.items()},
                  "runs": {f"{t}/{req}": v for (t, req), v in runs.items()}, "ratios": ratios}))
PY
)
result peers "$SUMMARY"
"$VENV/bin/python" bench/chart.py peers
