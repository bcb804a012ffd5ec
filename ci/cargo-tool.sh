#!/usr/bin/env bash
# Install a cargo tool from crates.io once per machine, at the version ci/packages.txt
# pins, into ~/.cache/tasks-ci/bin/NAME-VERSION, and print the path of its binary.
#
#   ci/cargo-tool.sh CRATE [BINARY]     # BINARY defaults to CRATE
#
# Exit codes: 0 ready, 1 the install failed, 2 usage or a crate the list lacks.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 CRATE [BINARY]" >&2; exit 2; }
CRATE=$1 BINARY=${2:-$1}
VERSION=$("$(dirname "$0")/packages.sh" version "$CRATE")
# Extra `cargo install` flags the list gives as flags=A,B (e.g. --no-default-features).
FLAGS=$("$(dirname "$0")/packages.sh" flags "$CRATE")
ROOT="${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}/bin/$CRATE-$VERSION"
if [ ! -x "$ROOT/bin/$BINARY" ]; then
  echo "installing $CRATE $VERSION (once per machine) ..." >&2
  # With the project's pinned toolchain (the only one CI installs), but outside
  # the workspace so its lock file and config do not apply.
  channel=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")
  # shellcheck disable=SC2086  # FLAGS: zero or more words
  (cd / && RUSTUP_TOOLCHAIN=$channel cargo install --locked --quiet $FLAGS --version "$VERSION" --root "$ROOT" "$CRATE") >&2
fi
echo "$ROOT/bin/$BINARY"
