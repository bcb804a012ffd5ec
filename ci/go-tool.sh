#!/usr/bin/env bash
# Build a Go tool from the Go module proxy once per machine, keyed by version,
# into ~/.cache/tasks-ci/bin/NAME-VERSION, and print the path of its binary.
#
#   ci/go-tool.sh MODULE/PATH/TO/MAIN VERSION     # e.g. github.com/rhysd/actionlint/cmd/actionlint v1.7.12
#
# Exit codes: 0 ready, 1 the build failed, 2 usage.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PACKAGE VERSION" >&2; exit 2; }
PKG=$1 VERSION=$2
NAME=${PKG##*/}
DIR="${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}/bin/$NAME-$VERSION"
if [ ! -x "$DIR/$NAME" ]; then
  command -v go >/dev/null || { echo "go is required to build $NAME" >&2; exit 1; }
  echo "building $NAME $VERSION from the Go module proxy (once per machine) ..." >&2
  mkdir -p "$DIR"
  # `go install pkg@version` resolves with the module's own go.sum (checked
  # against the checksum database), outside any workspace.
  (cd / && GOBIN="$DIR" GOFLAGS=-mod=mod CGO_ENABLED=0 go install "$PKG@$VERSION") >&2
fi
echo "$DIR/$NAME"
