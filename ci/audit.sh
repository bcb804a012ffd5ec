#!/usr/bin/env bash
# Known-vulnerability check that works offline: cargo-audit against a RustSec
# advisory-db snapshot, on the lock file (every crate the workspace can build,
# the guests included) and on binaries built with cargo-auditable (exactly what
# was linked, e.g. the one inside the image).
#
#   ci/audit.sh [BINARY...]
#
# ADVISORY_DB: the snapshot (default ../shared/advisory-db beside the clone); it is
# copied to a temporary git repository, as cargo-audit reads one.
# Exit codes: 0 no vulnerability, 1 a vulnerability was found or the check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${ADVISORY_DB:-../shared/advisory-db}
AUDIT=$(ci/cargo-tool.sh cargo-audit)
DB=$(mktemp -d)
trap 'rm -rf "$DB"' EXIT
ci/advisory-db.sh "$SRC" "$DB"
"$AUDIT" audit --db "$DB" --no-fetch --file Cargo.lock
for bin in "$@"; do
  "$AUDIT" audit --db "$DB" --no-fetch bin "$bin"
done
