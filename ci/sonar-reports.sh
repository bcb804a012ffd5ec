#!/usr/bin/env bash
# The reports SonarQube imports (sonar-project.properties): clippy's JSON
# diagnostics for the host and for the wasm32-wasip2 guests, and line coverage of
# the whole test suite (cargo-llvm-cov, lcov format). Writes target/sonar/.
#
#   ci/sonar-reports.sh [clippy|coverage|all]     # default all
#
# Coverage builds the workspace a second time with instrumentation (its own target
# dir, target/llvm-cov-target) and runs `cargo test` under it, end-to-end suites
# included: the host binary they start is instrumented too.
# Exit codes: 0 written, 1 a lint or a test failed (the report is still written).
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-all}
case "$WHAT" in clippy|coverage|all) ;; *) echo "usage: $0 [clippy|coverage|all]" >&2; exit 2 ;; esac
mkdir -p target/sonar

if [ "$WHAT" != coverage ]; then
  # The same flags as the lint gate; the report lists what the gate would print.
  cargo clippy --locked --all-targets --message-format=json -- -D warnings >target/sonar/clippy-host.json
  cargo clippy --locked --target wasm32-wasip2 --profile wasm -p app-wasm -p fault-wasm -p documents-kv \
    --message-format=json -- -D warnings >target/sonar/clippy-wasm.json
  echo "clippy reports: $(grep -c '"reason":"compiler-message"' target/sonar/clippy-*.json | paste -sd' ') compiler messages"
fi

if [ "$WHAT" != clippy ]; then
  LLVM_COV=$(ci/cargo-tool.sh cargo-llvm-cov)
  channel=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
  rustup component list --toolchain "$channel" --installed | grep '^llvm-tools' >/dev/null \
    || rustup component add --toolchain "$channel" llvm-tools-preview
  "$LLVM_COV" llvm-cov --locked --lcov --output-path target/sonar/lcov.info
  "$LLVM_COV" llvm-cov report --summary-only | tail -1
fi
