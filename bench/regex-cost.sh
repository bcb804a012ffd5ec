#!/usr/bin/env bash
# The data firewall's worst cases, timed in release: filters a hostile component
# could send (up to the 1 MiB document limit) must parse or be refused within
# 50 ms and 16 MiB each (crates/doc-query/examples/regex_cost.rs; docs/security.md).
# The memory bound is also a property test (crates/doc-query/tests/regex_cost.rs).
#
#   bash bench/regex-cost.sh
#
# Exit codes: 0 within the bounds, 1 over them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --locked --quiet --release -p doc-query --example regex_cost
