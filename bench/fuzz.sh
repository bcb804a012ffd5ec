#!/usr/bin/env bash
# cargo-fuzz (libFuzzer, AddressSanitizer) on the parsers that take the guest's
# documents: fuzz/fuzz_targets/raw_bson.rs (the raw-BSON size and depth check) and
# query.rs (filters, updates, sorts, projections). Starts from the checked-in
# seeds (fuzz/corpus/*); fails on any crash, leak or timeout and leaves the input
# in fuzz/artifacts/.
#
#   bash bench/fuzz.sh                 # 60 s per target (the bounded run in .ci/run)
#   FUZZ_SECS=3600 bash bench/fuzz.sh  # the long variant
#
# cargo-fuzz needs nightly-only flags (-Zsanitizer); the project pins a stable
# toolchain, so they are allowed on it with RUSTC_BOOTSTRAP=1 for this build only
# (the fuzz crate is its own workspace, nothing else is built this way).
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECS=${FUZZ_SECS:-60}
CARGO_FUZZ=$(bash ci/cargo-tool.sh cargo-fuzz)
CHANNEL=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for target in raw_bson query; do
  # The run's own corpus starts from the seeds; new inputs stay out of the tree.
  cp -r "fuzz/corpus/$target" "$WORK/$target"
  echo "== $target: ${FUZZ_SECS}s"
  rc=0
  (cd fuzz && RUSTC_BOOTSTRAP=1 RUSTUP_TOOLCHAIN=$CHANNEL "$CARGO_FUZZ" run --fuzz-dir . "$target" "$WORK/$target" -- \
    -max_total_time="$FUZZ_SECS" -timeout=5 -rss_limit_mb=1024 -max_len=65536 -print_final_stats=1) \
    >"$WORK/$target.log" 2>&1 || rc=$?
  grep -E "^Done [0-9]+ runs|stat::number_of_executed_units|stat::new_units_added" "$WORK/$target.log" || true
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$WORK/$target.log" >&2
    echo "fuzz target $target failed (exit $rc); the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
echo "fuzzing passed: no crash in ${FUZZ_SECS}s per target"
