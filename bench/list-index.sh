#!/usr/bin/env bash
# Lists with and without the embedded store's indexes, on the same data: N tasks
# with a SIZE-byte description, seeded once through the API and copied, served by a
# baseline binary that scans the collection (BASE: a build from before the indexes)
# and by this checkout's release build, in alternating rounds. Measures the
# newest-first first page and a page DEPTH tasks deep (through the keyset cursor),
# 20 tasks each; prints req/s, p99 and non-2xx answers (504: past the deadline),
# the time the new build took to build its indexes at its first open, and the ratios;
# writes bench/results/list-index.json.
#
#   BASE=/tmp/host-noindex bash bench/list-index.sh
#   N=20000 SIZE=10000 DEPTH=10000 ROUNDS=2 CONNS=8 BASE=... bash bench/list-index.sh
#
# Needs wrk and a release build (cargo build --release -p host). Loopback only;
# every host stopped by PID. Exit codes: 0 measured, 1 a step failed, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
N=${N:-20000}
SIZE=${SIZE:-10000}
DEPTH=${DEPTH:-10000}
ROUNDS=${ROUNDS:-2}
export DURATION=${DURATION:-8s} CONNS=${CONNS:-8}
[ -x "${BASE:-}" ] || { echo "usage: BASE=/path/to/a/host/built/before/the/indexes $0" >&2; exit 2; }
need wrk curl python3
release_host
NEW=$BIN
bench_init

# Seed through the baseline (it writes documents only), then stop it.
BIN=$BASE start_host seed
python3 - "$HOST_API" "$N" "$SIZE" <<'PY'
import concurrent.futures, http.client, json, sys
api, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
host, port = api.rsplit(":", 1)
def post(chunk):
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    for i in chunk:
        body = json.dumps({"title": f"task {i}", "description": "x" * size, "priority": 1 + i % 5,
                           "due": f"2027-{1 + i % 12:02d}-01T00:00:00Z", "tags": ["bench"]})
        c.request("POST", "/api/tasks", body, {"content-type": "application/json"})
        r = c.getresponse(); r.read()
        if r.status != 201: sys.exit(f"seeding: {r.status} {r.read()[:300]!r}")
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    list(ex.map(post, [range(k, n, 8) for k in range(8)]))
PY
stop_pid "$HOST_PID"
cp -r "$BENCH_WORK/seed-data" "$BENCH_WORK/base-data"
cp -r "$BENCH_WORK/seed-data" "$BENCH_WORK/new-data"
echo "== seeded $N tasks of $SIZE bytes ($(du -sh "$BENCH_WORK/seed-data" | cut -f1) on disk)"

BIN=$BASE start_host base
BASE_API=$HOST_API
start=$(date +%s%N)
BIN=$NEW start_host new
NEW_API=$HOST_API
echo "== the new build opened the store (building its indexes) and listened in $(( ($(date +%s%N) - start) / 1000000 )) ms"
grep -o '"message":"embedded store: indexes built"[^}]*' "$BENCH_WORK/new.log" || true

# The cursor DEPTH tasks into the newest-first list (the same data: valid on both).
cursor=$(python3 - "$NEW_API" "$DEPTH" <<'PY'
import json, sys, urllib.request
api, depth = sys.argv[1], int(sys.argv[2])
cursor, seen = None, 0
while seen < depth:
    url = f"http://{api}/api/tasks?sort=-created&limit=100" + (f"&cursor={cursor}" if cursor else "")
    page = json.load(urllib.request.urlopen(url, timeout=60))
    seen += len(page["items"])
    cursor = page["next_cursor"]
print(cursor)
PY
)
declare -A URL=([first]="/api/tasks?sort=-created&limit=20" [deep]="/api/tasks?sort=-created&limit=20&cursor=$cursor")
echo "== machine: $(machine)"
echo "== wrk -t${THREADS:-2} -c$CONNS -d$DURATION, $ROUNDS rounds"
printf '%-6s %-6s %-6s %10s %9s %8s\n' round build page req/s p99_ms non2xx
: >"$BENCH_WORK/rows"
for r in $(seq 1 "$ROUNDS"); do
  for build in base new; do
    api=$BASE_API
    [ "$build" = new ] && api=$NEW_API
    for page in first deep; do
      read -r rps _ p99 < <(ALLOW_NON_2XX=1 wrk_round "$BENCH_WORK/out" "http://$api${URL[$page]}")
      bad=$(grep -oE 'Non-2xx or 3xx responses: [0-9]+' "$BENCH_WORK/out" | grep -oE '[0-9]+$' || echo 0)
      printf '%-6s %-6s %-6s %10s %9s %8s\n' "$r" "$build" "$page" "$rps" "$p99" "$bad"
      echo "$build $page $rps $p99 $bad" >>"$BENCH_WORK/rows"
    done
  done
done
SUMMARY=$(python3 - "$BENCH_WORK/rows" "$N" "$SIZE" "$DEPTH" <<'PY'
import json, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for build, page, rps, p99, bad in rows:
    med.setdefault(f"{build}/{page}", []).append((float(rps), float(p99), int(bad)))
out = {k: {"rps": statistics.median(x[0] for x in v), "p99_ms": statistics.median(x[1] for x in v),
           "non_2xx": sum(x[2] for x in v)} for k, v in med.items()}
for page in ("first", "deep"):
    ratio = out[f"new/{page}"]["rps"] / max(out[f"base/{page}"]["rps"], 0.01)
    print(f"{page} page: {ratio:.0f}x the req/s of the scan", file=sys.stderr)
    out[f"ratio/{page}"] = ratio
print(json.dumps({"tasks": int(sys.argv[2]), "description_bytes": int(sys.argv[3]), "depth": int(sys.argv[4]), "median": out}))
PY
)
result list-index "$SUMMARY"
