#!/usr/bin/env bash
# Turn a RustSec advisory-db snapshot (data only) into the git repository that
# cargo-audit and cargo-deny read their database from, and print its snapshot line.
#
#   usage: ci/advisory-db.sh SNAPSHOT_DIR DEST_DIR     # DEST_DIR is created
#
# Used by ci/audit.sh and ci/deny.sh. Exit codes: 0 ready, 1 no snapshot, 2 usage.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 SNAPSHOT_DIR DEST_DIR" >&2; exit 2; }
SRC=$1 DEST=$2
[ -d "$SRC/crates" ] || { echo "no advisory-db snapshot at $SRC (set ADVISORY_DB)" >&2; exit 1; }
mkdir -p "$DEST"
cp -r "$SRC/." "$DEST/"
git -C "$DEST" init -q
git -C "$DEST" add -A
git -C "$DEST" -c user.name=ci -c user.email=ci@localhost commit -qm snapshot
head -1 "$SRC/SNAPSHOT" 2>/dev/null || true
