#!/usr/bin/env bash
# Build a Go tool from the Go module proxy once per machine, at the version
# ci/packages.txt pins, into ~/.cache/tasks-ci/bin/NAME-VERSION, and print the path
# of its binary.
#
#   ci/go-tool.sh MODULE/PATH/TO/MAIN     # e.g. github.com/rhysd/actionlint/cmd/actionlint
#
# Exit codes: 0 ready, 1 the build failed, 2 usage or a tool the list lacks.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 PACKAGE" >&2; exit 2; }
PKG=$1
VERSION=$("$(dirname "$0")/packages.sh" version "$PKG")
NAME=${PKG##*/}
# A major-version suffix is not the command's name (…/kustomize/v5 installs `kustomize`).
if [[ $NAME =~ ^v[0-9]+$ ]]; then NAME=$(basename "$(dirname "$PKG")"); fi
DIR="${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}/bin/$NAME-$VERSION"
if [ ! -x "$DIR/$NAME" ]; then
  # .ci/run builds the tools in the background ahead of the stages that use them:
  # a stage that needs one still building waits for it (one lock per tool).
  mkdir -p "$(dirname "$DIR")"
  exec 9>"$DIR.lock"
  flock 9
fi
if [ ! -x "$DIR/$NAME" ]; then
  "$(dirname "$0")/packages.sh" need go
  echo "building $NAME $VERSION from the Go module proxy (once per machine) ..." >&2
  mkdir -p "$DIR"
  # `go install pkg@version` resolves with the module's own go.sum (checked
  # against the checksum database), outside any workspace.
  (cd / && GOBIN="$DIR" GOFLAGS=-mod=mod CGO_ENABLED=0 go install "$PKG@$VERSION") >&2
fi
echo "$DIR/$NAME"
