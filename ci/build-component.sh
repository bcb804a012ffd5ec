#!/usr/bin/env bash
# Build the WebAssembly components (host/build.rs does it, with the host) and copy
# them to OUT_DIR: app-wasm.wasm (the tasks handlers, what the host embeds),
# documents-kv.wasm (the Spin adapter) and spin-app.wasm (both composed, what
# `spin up` serves), with their SHA-256 sums.
#
#   ci/build-component.sh [OUT_DIR]      # default target/dist
#
# Exit codes: 0 built, 1 the build failed.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/dist}
cargo build --locked --release -p host
mkdir -p "$OUT"
cp target/guest/wasm32-wasip2/wasm/app_wasm.wasm "$OUT/app-wasm.wasm"
cp target/guest/wasm32-wasip2/wasm/documents_kv.wasm "$OUT/documents-kv.wasm"
cp target/guest/spin-app.wasm "$OUT/spin-app.wasm"
(cd "$OUT" && sha256sum app-wasm.wasm documents-kv.wasm spin-app.wasm | tee SHA256SUMS)
