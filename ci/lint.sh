#!/usr/bin/env bash
# The Rust lint gate: rustfmt, then clippy with warnings as errors for the host
# workspace and for the wasm32-wasip2 guests.
#
#   ci/lint.sh [fmt|clippy-host|clippy-wasm]...     # default: all three, in that order
#
# Exit codes: 0 clean, 1 a finding or a build error, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- fmt clippy-host clippy-wasm
for step in "$@"; do
  case "$step" in
    fmt) cargo fmt --all -- --check ;;
    clippy-host) cargo clippy --locked --all-targets -- -D warnings ;;
    clippy-wasm)
      cargo clippy --locked --target wasm32-wasip2 --profile wasm -p app-wasm -p fault-wasm -p documents-kv -p hello-wasm -- -D warnings ;;
    *) echo "usage: $0 [fmt|clippy-host|clippy-wasm]..." >&2; exit 2 ;;
  esac
done
