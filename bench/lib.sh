# Shared by the bench/ scripts (sourced): free ports, seeding, one wrk round.
# shellcheck shell=bash

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# seed API_PORT: wait until the API answers, create 50 tasks, print the last id.
seed() {
  local api=$1 id=""
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$api/api/tasks?limit=1" >/dev/null && break; sleep 0.1; done
  for i in $(seq 1 50); do
    id=$(curl -sf -XPOST "http://127.0.0.1:$api/api/tasks" -H 'content-type: application/json' \
      -d "{\"title\":\"bench $i\",\"tags\":[\"bench\"]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  done
  echo "$id"
}

# wrk_round OUTFILE URL: one bounded wrk run (CONNS, DURATION); prints
# "req/s p50_ms p99_ms" and fails on any non-2xx answer.
wrk_round() {
  wrk -t2 -c"$CONNS" -d"$DURATION" --latency "$2" >"$1"
  python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
def lat(p):
    m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", t)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if errs: sys.exit(f"non-2xx answers: {errs.group(1)}")
print(f"{rps:.0f} {lat(50):.2f} {lat(99):.2f}")
PY
}
