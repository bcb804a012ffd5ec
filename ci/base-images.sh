#!/usr/bin/env bash
# Build the local stand-ins for the base images the Dockerfile names, on machines
# that cannot pull from a registry (these CI machines). Cached: each image is
# rebuilt only when its recipe changes (a label holds the recipe's hash).
#
#   ci/base-images.sh                 # needs DOCKER_HOST (ci/docker-engine.sh start)
#   ci/base-images.sh --runtime-only  # for ci/build-image.sh --prebuilt: no build stage
#   ci/base-images.sh --debian-only   # the Debian base alone (ci/sonarqube.sh image)
#
# Prints the --build-arg flags that point the Dockerfile at the stand-ins (nothing
# with --debian-only).
# Exit codes: 0 done, 1 a build failed.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}
DOCKER=${DOCKER:-/usr/bin/docker}
export DOCKER_BUILDKIT=1

# 1. Debian 12 minbase from debootstrap (Debian's own packages), imported once. One
# builder at a time: .ci/run builds SonarQube's image on it in the background while
# a stage may be here, and on a new machine neither finds it made.
debian_base() {
  "$DOCKER" image inspect tasks-ci/debian:bookworm-minbase >/dev/null 2>&1
}
if ! debian_base; then
  mkdir -p "$CACHE"
  exec 9>"$CACHE/rootfs-bookworm.lock"
  flock 9
fi
if ! debian_base; then
  ci/packages.sh install debootstrap
  ROOTFS="$CACHE/rootfs-bookworm"
  if [ ! -x "$ROOTFS/bin/sh" ]; then
    rm -rf "$ROOTFS"
    debootstrap --variant=minbase bookworm "$ROOTFS" http://deb.debian.org/debian >&2
  fi
  # Documentation, manuals and locales are not needed in a build base.
  rm -rf "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/* \
    "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  tar -C "$ROOTFS" -c . | "$DOCKER" import - tasks-ci/debian:bookworm-minbase >&2
fi
exec 9>&-
[ "${1:-}" = "--debian-only" ] && exit 0

# 2. The stand-ins, each from its recipe in ci/standins/.
standin() {
  local name=$1 recipe=$2 hash
  hash=$(sha256sum "$recipe" | cut -c1-16)
  if [ "$("$DOCKER" image inspect -f '{{ index .Config.Labels "tasks-ci.recipe" }}' "$name" 2>/dev/null)" = "$hash" ]; then
    return 0
  fi
  local ctx
  ctx=$(mktemp -d)
  cp "$recipe" "$ctx/Dockerfile"
  # The machine's CA bundle, for the Rust stand-in's downloads only.
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/machine-ca.crt"
  "$DOCKER" build --network host --force-rm --label "tasks-ci.recipe=$hash" -t "$name" "$ctx" >&2
  rm -rf "$ctx"
}
standin tasks-ci/distroless-cc:nonroot ci/standins/distroless-cc.Dockerfile
if [ "${1:-}" = "--runtime-only" ]; then
  echo "--build-arg RUNTIME_IMAGE=tasks-ci/distroless-cc:nonroot"
  exit 0
fi
standin tasks-ci/rust:1.95-slim-bookworm ci/standins/rust.Dockerfile
echo "--build-arg RUST_IMAGE=tasks-ci/rust:1.95-slim-bookworm --build-arg RUNTIME_IMAGE=tasks-ci/distroless-cc:nonroot"
