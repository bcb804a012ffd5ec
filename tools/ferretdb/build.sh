#!/usr/bin/env bash
# Build FerretDB v1.24.2 (pinned in go.mod/go.sum) into tools/bin/ferretdb,
# only when it is missing or older than the pins or the patches.
#
# Two patches, where FerretDB 1.24 and MongoDB part ways and the stand-in must
# answer as MongoDB does:
#   skip-empty-exchange.patch  FerretDB ignores the SCRAM option skipEmptyExchange
#       that MongoDB 4.4+ honours, and the Rust driver then fails authentication;
#       with it the stand-in authenticates the application's user the way MongoDB
#       does (host/tests/mongo_faults.rs, ci/compose-standins.sh).
#   existing-indexes.patch  createIndexes of four or more indexes that all exist
#       already panicked (it removed them from its list by a stale position) and
#       dropped the connection, so a second API instance, or a restarted one,
#       never became ready (the real node's rolling update found it; MongoDB
#       answers ok).
set -euo pipefail
cd "$(dirname "$0")"
out=../bin/ferretdb
patches=(skip-empty-exchange.patch existing-indexes.patch)
fresh=1
for f in go.sum go.mod build.sh "${patches[@]}"; do
  [ -x "$out" ] && [ "$out" -nt "$f" ] || fresh=0
done
[ "$fresh" = 1 ] && exit 0
mkdir -p ../bin
# FerretDB embeds build/version/version.txt, which its release tooling generates
# and the module download does not contain (the binary panics at start without
# it). Build from a vendored copy with that one file added; vendor/ is
# regenerated here and git-ignored.
go mod vendor
echo "v1.24.2" > vendor/github.com/FerretDB/FerretDB/build/version/version.txt
for p in "${patches[@]}"; do
  patch --quiet --forward -p1 -d vendor/github.com/FerretDB/FerretDB <"$p"
done
# Telemetry is also disabled at run time (--telemetry=disable).
CGO_ENABLED=0 go build -mod=vendor -trimpath -o "$out" github.com/FerretDB/FerretDB/cmd/ferretdb
# sed reads to the end: head would close the pipe early, and under pipefail
# the writer's SIGPIPE (exit 141) fails the build.
"$out" --version | sed -n 1,3p
