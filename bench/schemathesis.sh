#!/usr/bin/env bash
# Hostile input: schemathesis generates requests from the API's own OpenAPI
# document (/api/openapi.json) against a release host, with every check (no 5xx,
# status codes, content types, headers and bodies conforming to the document,
# valid data accepted, invalid data refused, stateful sequences). Fails on any
# failure or if fewer than MIN_CASES cases were generated. JUnit report in
# bench/results/schemathesis-junit.xml.
#
#   bash bench/schemathesis.sh                   # 300 examples per operation
#   EXAMPLES=2000 bash bench/schemathesis.sh     # the long variant
#
# Config (the allowed exceptions, each with its reason): bench/schemathesis.toml;
# generators for formats the document names: bench/schemathesis_hooks.py.
# Needs the venv of ci/python-tools.sh (VENV, default .venv). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh
EXAMPLES=${EXAMPLES:-300}
MIN_CASES=${MIN_CASES:-1000}
SEED=${SEED:-$(date +%s)}
VENV=${VENV:-.venv}
need python3 curl
release_host
bash ci/python-tools.sh "$VENV" >/dev/null
bench_init
start_host schemathesis
mkdir -p "$RESULTS"
set +e
SCHEMATHESIS_HOOKS=bench.schemathesis_hooks "$VENV/bin/schemathesis" --config-file bench/schemathesis.toml run "http://$HOST_API/api/openapi.json" \
  --checks all -n "$EXAMPLES" --seed "$SEED" --workers 1 --no-color --request-timeout 10 --generation-database none \
  --report junit --report-junit-path "$RESULTS/schemathesis-junit.xml" >"$BENCH_WORK/out" 2>&1
rc=$?
set -e
cat "$BENCH_WORK/out"
cases=$(sed -n 's/^ *\([0-9][0-9]*\) generated.*/\1/p' "$BENCH_WORK/out" | tail -1)
echo "schemathesis: exit $rc, ${cases:-?} cases generated, seed $SEED"
[ "$rc" -eq 0 ] || { echo "schemathesis found failures (replay with SEED=$SEED)" >&2; exit 1; }
if grep -q "Schema validation mismatch" "$BENCH_WORK/out"; then
  echo "schemathesis: the document is looser than the API's validation (see the warning above)" >&2
  exit 1
fi
[ "${cases:-0}" -ge "$MIN_CASES" ] || { echo "only ${cases:-0} cases generated (< $MIN_CASES)" >&2; exit 1; }
if grep -q '"level":"ERROR"' "$BENCH_WORK/schemathesis.log"; then
  echo "the host logged errors under schemathesis:" >&2
  grep '"level":"ERROR"' "$BENCH_WORK/schemathesis.log" | sed -n 1,5p >&2
  exit 1
fi
echo "schemathesis passed"
