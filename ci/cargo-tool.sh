#!/usr/bin/env bash
# Install a cargo tool from crates.io once per machine, keyed by version, into
# ~/.cache/tasks-ci/bin/NAME-VERSION, and print the path of its binary.
#
#   ci/cargo-tool.sh CRATE VERSION [BINARY]     # BINARY defaults to CRATE
#
# Exit codes: 0 ready, 1 the install failed, 2 usage.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 CRATE VERSION [BINARY]" >&2; exit 2; }
CRATE=$1 VERSION=$2 BINARY=${3:-$1}
ROOT="${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}/bin/$CRATE-$VERSION"
if [ ! -x "$ROOT/bin/$BINARY" ]; then
  echo "installing $CRATE $VERSION (once per machine) ..." >&2
  # With the project's pinned toolchain (the only one CI installs), but outside
  # the workspace so its lock file and config do not apply.
  channel=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")
  (cd / && RUSTUP_TOOLCHAIN=$channel cargo install --locked --quiet --version "$VERSION" --root "$ROOT" "$CRATE") >&2
fi
echo "$ROOT/bin/$BINARY"
