#!/usr/bin/env bash
# The test suites.
#
#   ci/test.sh [unit|mongodb]...     # default: both
#
#   unit     `cargo test --locked`: every unit, property and end-to-end test on the
#            embedded store (the README's `cargo test`, with the lock file enforced)
#   mongodb  the store conformance suite and the end-to-end API suites against the
#            MongoDB server at TEST_MONGODB_URI (required), atomicity cases included
#
# MONGODB_FLAVOUR=ferretdb skips, by name, the cases FerretDB 1.24 cannot pass
# (docs/mongodb.md, "FerretDB vs MongoDB"): concurrent updates are not atomic there,
# `$pull` conditions are ignored, and its query plans have none of MongoDB's stages
# (the check that lists use indexes). Against real MongoDB nothing is skipped.
# Exit codes: 0 passed, 1 a test failed, 2 usage or missing settings.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- unit mongodb
for suite in "$@"; do
  case "$suite" in
    unit) cargo test --locked ;;
    mongodb)
      [ -n "${TEST_MONGODB_URI:-}" ] || { echo "TEST_MONGODB_URI must point at a MongoDB server" >&2; exit 2; }
      skip=() e2e=(--test api --test injection --test metrics --test concurrency)
      if [ "${MONGODB_FLAVOUR:-mongodb}" = ferretdb ]; then
        skip=(--skip concurrent_updates_are_atomic --skip pull_conditions --skip pull_query_over_documents --skip list_queries_use_indexes)
        e2e=(--test api --test injection --test metrics)
      fi
      cargo test --locked -p host --test conformance mongodb_store -- --ignored "${skip[@]}"
      TEST_STORE=mongodb cargo test --locked -p host "${e2e[@]}"
      ;;
    *) echo "usage: $0 [unit|mongodb]..." >&2; exit 2 ;;
  esac
done
