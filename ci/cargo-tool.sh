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
CACHE="${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}/bin"
ROOT="$CACHE/$CRATE-$VERSION"
if [ ! -x "$ROOT/bin/$BINARY" ]; then
  # .ci/run builds the tools in the background ahead of the stages that use them:
  # one lock for every install (they share a target dir), so a stage that needs a
  # tool still building waits for it instead of building it a second time.
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.cargo-install.lock"
  flock 9
fi
if [ ! -x "$ROOT/bin/$BINARY" ]; then
  echo "installing $CRATE $VERSION (once per machine) ..." >&2
  # With the project's pinned toolchain (the only one CI installs), but outside
  # the workspace so its lock file and config do not apply.
  channel=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$(dirname "$0")/../rust-toolchain.toml")
  # These are build tools, not shipped: no LTO and parallel codegen (cargo-deny's
  # own profile asks for fat LTO and one codegen unit, minutes of a cold run), and
  # one target dir for all of them, so the dependencies they share (rustsec, gix,
  # clap, serde...) compile once.
  # shellcheck disable=SC2086  # FLAGS: zero or more words
  (cd / && RUSTUP_TOOLCHAIN=$channel CARGO_TARGET_DIR="$CACHE/.cargo-target/$channel" \
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install --locked --quiet $FLAGS --version "$VERSION" --root "$ROOT" "$CRATE") >&2
fi
echo "$ROOT/bin/$BINARY"
