#!/usr/bin/env bash
# Build Docker Compose v5.6.0 (the `docker compose` CLI plugin) from the Go module
# proxy, once per machine, and install it where the Docker CLI looks for plugins
# (${DOCKER_CONFIG:-~/.docker}/cli-plugins/docker-compose), so that the README's
# `docker compose ...` commands run as written. Debian 12 has only Compose v1
# (`docker-compose`), which the project's own Ansible docker role does not install.
#
# Output: the plugin's path on stdout (the last line). The binary is cached under
# ~/.cache/tasks-ci/bin keyed by the version and the wrapper's go.sum; a second
# run builds nothing. About 4 minutes cold here.
#
#   tools/compose/build.sh && docker compose version
#
# Exit codes: 0 installed, 1 the build failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
VERSION=v5.6.0
key=$(sha256sum "$here/go.sum" | cut -c1-12)
out="${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}/bin/docker-compose-$VERSION-$key"
if [ ! -x "$out/docker-compose" ]; then
  echo "building docker compose $VERSION from the Go module proxy (once per machine) ..." >&2
  mkdir -p "$out"
  # The committed go.mod and go.sum are the whole truth: a build never edits them.
  (cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
    -ldflags "-s -w -X main.version=$VERSION -X github.com/docker/compose/v5/internal.Version=$VERSION" \
    -o "$out/docker-compose.tmp" ./cmd/docker-compose) >&2
  mv "$out/docker-compose.tmp" "$out/docker-compose"
fi
plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
mkdir -p "$plugins"
ln -sfn "$out/docker-compose" "$plugins/docker-compose"
echo "$plugins/docker-compose"
