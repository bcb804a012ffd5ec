# Shared by the bench/ scripts (sourced): a work directory cleaned at exit, servers
# started and stopped by PID, free ports, seeding, bounded wrk rounds, results.
# shellcheck shell=bash
#
#   . bench/lib.sh; bench_init        # BENCH_WORK, and an EXIT trap that stops
#                                     # every tracked process and removes it
#   start_host NAME [HOST ARGS...]    # sets HOST_API, HOST_ADMIN (host:port), HOST_PID
#   track PID / stop_pid PID          # cleanup on exit / stop now (TERM, then wait)
#   release_host                      # cargo build --release -p host (a no-op when fresh)
#   free_port; seed API; wrk_round OUTFILE URL; need wrk python3 ...
#   result NAME JSON                  # writes bench/results/NAME.json

BENCH_PIDS=()
BENCH_WORK=""
BIN=${BIN:-target/release/host}
export RESULTS=${RESULTS:-bench/results}   # also read by bench/chart.py

bench_init() {
  BENCH_WORK=$(mktemp -d)
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local rc=$? pid log
  for pid in "${BENCH_PIDS[@]}"; do stop_pid "$pid"; done
  if [ -n "$BENCH_WORK" ]; then
    # A failed run keeps what its hosts logged: the last lines of each here (the
    # work directory goes), the warnings and errors above them.
    if [ "$rc" -ne 0 ]; then
      for log in "$BENCH_WORK"/*.log; do
        [ -f "$log" ] || continue
        echo "--- $(basename "$log"): warnings, errors and the last 20 lines" >&2
        grep -E '"level":"(WARN|ERROR)"|panicked|WARN|ERROR' "$log" | grep -vE 'response failed' | tail -20 >&2 || true
        tail -20 "$log" >&2
      done
    fi
    rm -rf "$BENCH_WORK"
  fi
}

track() { BENCH_PIDS+=("$1"); }

# stop_pid PID: TERM, then wait up to 10 s, then KILL.
stop_pid() {
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

need() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "$t is required: it is in ci/packages.txt (run ci/packages.sh install)" >&2; exit 1; }
  done
}

# release_host: the release host at BIN, rebuilt if the sources changed (a stale
# binary would be measured otherwise; cargo's check is a no-op when it is fresh).
release_host() {
  cargo build --locked --release -p host
}

free_port() {
  "$(dirname "${BASH_SOURCE[0]}")/../ci/free-port.py"
}

# start_host NAME [ARGS...]: the release host on 127.0.0.1:0 with its own data dir
# under BENCH_WORK, JSON logs in BENCH_WORK/NAME.log; returns once it is listening.
start_host() {
  local name=$1
  shift
  LOG_FORMAT=json RUST_LOG=${RUST_LOG:-warn,host=info} "$BIN" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --data-dir "$BENCH_WORK/$name-data" "$@" 2>"$BENCH_WORK/$name.log" &
  HOST_PID=$!
  track "$HOST_PID"
  local addrs=""
  for _ in $(seq 1 600); do
    addrs=$(listen_addrs "$BENCH_WORK/$name.log")
    [ -n "$addrs" ] && break
    kill -0 "$HOST_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$addrs" ] || { echo "host $name did not start:" >&2; cat "$BENCH_WORK/$name.log" >&2; exit 1; }
  # shellcheck disable=SC2034  # read by the scripts that source this file
  read -r HOST_API HOST_ADMIN <<<"$addrs"
}

# listen_addrs LOGFILE: "API ADMIN" (host:port each) from the host's JSON
# "listening" line; nothing while it has not logged it yet.
listen_addrs() {
  python3 - "$1" <<'PY'
import json, sys
try: lines = open(sys.argv[1])
except OSError: sys.exit(0)
for line in lines:
    try: v = json.loads(line)
    except ValueError: continue
    if v.get("message") == "listening": print(v["api"], v["admin"]); break
PY
}

# start_ferretdb DIR: FerretDB (tools/ferretdb/build.sh builds it once per
# machine) on a free loopback port with its data in DIR; sets FERRET_PORT and
# FERRET_PID (tracked when bench_init ran) once it accepts connections.
start_ferretdb() {
  local dir=$1
  bash tools/ferretdb/build.sh
  FERRET_PORT=$(free_port)
  mkdir -p "$dir/data" "$dir/state"
  tools/bin/ferretdb --handler=sqlite --sqlite-url="file:$dir/data/" --listen-addr="127.0.0.1:$FERRET_PORT" \
    --debug-addr=- --state-dir="$dir/state" --telemetry=disable --log-level=warn >"$dir/ferretdb.log" 2>&1 &
  FERRET_PID=$!
  if [ -n "$BENCH_WORK" ]; then track "$FERRET_PID"; fi
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$FERRET_PORT") 2>/dev/null && return 0
    kill -0 "$FERRET_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "FerretDB did not start:" >&2
  cat "$dir/ferretdb.log" >&2
  return 1
}

# seed API: wait until the API (host:port, or a bare port) answers, create 50
# typical tasks, print the last id.
seed() {
  local api=$1 id=""
  case "$api" in *:*) ;; *) api="127.0.0.1:$api" ;; esac
  for _ in $(seq 1 100); do curl -sf "http://$api/api/tasks?limit=1" >/dev/null && break; sleep 0.1; done
  for i in $(seq 1 50); do
    id=$(curl -sf -XPOST "http://$api/api/tasks" -H 'content-type: application/json' \
      -d "{\"title\":\"bench task $i\",\"description\":\"a typical task body\",\"tags\":[\"bench\",\"perf\"],\"priority\":2,\"due\":\"2027-01-01T12:00:00Z\"}" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  done
  echo "$id"
}

# wrk_round OUTFILE URL [WRK ARGS...]: one bounded wrk run (THREADS, CONNS,
# DURATION); prints "req/s p50_ms p99_ms" and fails on any non-2xx answer, unless
# ALLOW_NON_2XX=1.
wrk_round() {
  local out=$1 url=$2
  shift 2
  wrk -t"${THREADS:-2}" -c"${CONNS:-32}" -d"${DURATION:-10s}" --latency "$@" "$url" >"$out"
  ALLOW_NON_2XX=${ALLOW_NON_2XX:-0} python3 - "$out" "$url" <<'PY'
import os, re, sys
t = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
def lat(p):
    m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", t)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if errs and os.environ["ALLOW_NON_2XX"] != "1": sys.exit(f"non-2xx answers: {errs.group(1)} from {sys.argv[2]}")
sock = re.search(r"Socket errors: (.*)", t)
if sock: print(f"wrk socket errors: {sock.group(1)}", file=sys.stderr)
print(f"{rps:.0f} {lat(50):.2f} {lat(99):.2f}")
PY
}

# guest_wasm NAME: the newest NAME.wasm (app, fault, spin-app) host/build.rs made
# for the release build.
guest_wasm() {
  find target/release/build -path "*/out/$1.wasm" -printf '%T@ %p\n' | sort -rn | sed -n '1s/^[^ ]* //p'
}

# rss_kb PID: resident set size now, in KiB.
# instantiate_mean_us ADMIN_ADDR: the host's mean instantiate time (µs) over its life,
# from its own metric.
instantiate_mean_us() {
  curl -sf "http://$1/metrics" | awk '/^wasm_instantiate_duration_seconds_sum/ { s = $2 }
    /^wasm_instantiate_duration_seconds_count/ { c = $2 } END { if (c) printf "%.1f", s / c * 1e6 }'
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# fd_count PID: open file descriptors now.
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }

machine() {
  echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), Linux $(uname -r)"
}

# result NAME JSON: bench/results/NAME.json, with the machine and the time added.
result() {
  mkdir -p "$RESULTS"
  MACHINE=$(machine) python3 - "$RESULTS/$1.json" "$2" <<'PY'
import json, os, sys, time
data = json.loads(sys.argv[2])
data = {"machine": os.environ["MACHINE"], "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **data}
with open(sys.argv[1], "w") as f:
    json.dump(data, f, indent=2)
    f.write("\n")
PY
  echo "wrote $RESULTS/$1.json"
}

# judge NAME: prints the "failures" of bench/results/NAME.json and fails if any.
judge() {
  python3 - "$RESULTS/$1.json" <<'PY'
import json, sys
failures = json.load(open(sys.argv[1]))["failures"]
for f in failures:
    print("FAIL:", f, file=sys.stderr)
sys.exit(1 if failures else 0)
PY
}
