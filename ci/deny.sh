#!/usr/bin/env bash
# Supply-chain policy of deny.toml: advisories, licences, bans, sources.
#
#   ci/deny.sh [CHECK...]        # default: all four; e.g. `ci/deny.sh advisories`
#
# ADVISORY_DB=DIR (a RustSec advisory-db checkout or snapshot) runs fully offline:
# the snapshot is copied into a temporary git repository where cargo-deny looks for
# its database, and nothing is fetched. Without it, cargo-deny fetches the database
# (GitHub Actions). .ci/run sets ADVISORY_DB to ../shared/advisory-db.
# Exit codes: 0 clean, 1 a check failed, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."
for c in "$@"; do
  case "$c" in advisories|licenses|bans|sources) ;; *) echo "usage: $0 [advisories|licenses|bans|sources]..." >&2; exit 2 ;; esac
done
DENY=$(ci/cargo-tool.sh cargo-deny)
# cargo metadata reads every locked package, for every target: fetch them first
# (crates.io only; a no-op when cached), so the check itself can run offline.
cargo fetch --locked --quiet
if [ -n "${ADVISORY_DB:-}" ]; then
  DB=$(mktemp -d)
  trap 'rm -rf "$DB"' EXIT
  # cargo-deny names the database directory after the URL it would fetch.
  ci/advisory-db.sh "$ADVISORY_DB" "$DB/advisory-db-3157b0e258782691"
  export TASKS_DENY_DB="$DB"
  "$DENY" --offline check "$@"
  exit 0
fi
export TASKS_DENY_DB="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
exec "$DENY" check "$@"
