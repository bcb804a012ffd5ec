#!/usr/bin/env bash
# The compose stack's stand-ins, for a machine no registry serves (CI's): build the
# images ci/compose.standins.yaml names when missing, and print the variables that
# make `docker compose` use them, to eval:
#
# Usage:  eval "$(ci/compose-standins.sh)"      # then: docker compose up -d --wait
#
# FerretDB (tools/ferretdb/build.sh) stands in for MongoDB, Debian's Prometheus for
# the upstream image; Grafana is left out (no registry here serves it). The FerretDB
# image is tagged with its binary's hash, so a rebuilt (patched) binary gets a new one.
# Needs DOCKER_HOST. Exit codes: 0 ready, 1 a build failed.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
bash tools/ferretdb/build.sh >/dev/null
# The bases of both stand-ins (distroless for FerretDB, Debian for Prometheus).
DOCKER=$DOCKER ci/base-images.sh --runtime-only >/dev/null
ferretdb="tasks-ci/ferretdb:1.24.2-$(sha256sum tools/bin/ferretdb | cut -c1-12)"
if ! "$DOCKER" image inspect "$ferretdb" >/dev/null 2>&1; then
  ctx=$(mktemp -d)
  cp ci/standins/ferretdb.Dockerfile "$ctx/Dockerfile"
  cp tools/bin/ferretdb "$ctx/ferretdb"
  mkdir "$ctx/state"
  "$DOCKER" build --force-rm -t "$ferretdb" "$ctx" >&2
  rm -rf "$ctx"
fi
if ! "$DOCKER" image inspect tasks-ci/prometheus:debian >/dev/null 2>&1; then
  "$DOCKER" build --network host --force-rm -t tasks-ci/prometheus:debian -f ci/standins/prometheus.Dockerfile ci/standins >&2
fi
# `docker compose` itself: the plugin the docs' commands use (tools/compose/build.sh).
bash tools/compose/build.sh >/dev/null
echo "export COMPOSE_FILE=compose.yaml:ci/compose.standins.yaml FERRETDB_STANDIN_IMAGE=$ferretdb"
