#!/usr/bin/env bash
# Build FerretDB v1.24.2 (pinned in go.mod/go.sum) into tools/bin/ferretdb,
# only when it is missing or older than the pins or the patch.
#
# One patch (skip-empty-exchange.patch): FerretDB 1.24 ignores the SCRAM option
# skipEmptyExchange that MongoDB 4.4+ honours, and the Rust driver then fails
# authentication; with it the stand-in authenticates the application's user the
# way MongoDB does (host/tests/mongo_faults.rs, ci/compose-standins.sh).
set -euo pipefail
cd "$(dirname "$0")"
out=../bin/ferretdb
if [ -x "$out" ] && [ "$out" -nt go.sum ] && [ "$out" -nt go.mod ] && [ "$out" -nt build.sh ] \
  && [ "$out" -nt skip-empty-exchange.patch ]; then
  exit 0
fi
mkdir -p ../bin
# FerretDB embeds build/version/version.txt, which its release tooling generates
# and the module download does not contain (the binary panics at start without
# it). Build from a vendored copy with that one file added; vendor/ is
# regenerated here and git-ignored.
go mod vendor
echo "v1.24.2" > vendor/github.com/FerretDB/FerretDB/build/version/version.txt
patch --quiet --forward -p1 -d vendor/github.com/FerretDB/FerretDB < skip-empty-exchange.patch
# Telemetry is also disabled at run time (--telemetry=disable).
CGO_ENABLED=0 go build -mod=vendor -trimpath -o "$out" github.com/FerretDB/FerretDB/cmd/ferretdb
# sed reads to the end: head would close the pipe early, and under pipefail
# the writer's SIGPIPE (exit 141) fails the build.
"$out" --version | sed -n 1,3p
