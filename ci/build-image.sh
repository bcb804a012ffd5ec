#!/usr/bin/env bash
# Build the container image from the Dockerfile with BuildKit.
#
#   ci/build-image.sh IMAGE [extra docker build args...]
#   ci/build-image.sh --prebuilt IMAGE [extra docker build args...]
#
# The first form compiles the host inside the Dockerfile's build stage. --prebuilt
# feeds the image from this checkout's release build instead (`cargo auditable
# build --release -p host`, which reuses target/release: only the workspace crates
# are compiled again, to embed the dependency list scanners read), stripped and
# precompiled here, in a context holding nothing but that output. The binary links
# this machine's glibc, so it must be no newer than the runtime image's (Debian 12).
#
# VERSION (default: the workspace version) and REVISION (default: git HEAD) become
# OCI labels. BASE_IMAGE_ARGS, when set, points the base images elsewhere (on
# machines without a registry: the output of ci/base-images.sh). Uses the Docker
# CLI in DOCKER (default: docker; the Debian 20.10 client where BuildKit needs it).
# Exit codes: 0 built, 1 the build failed, 2 usage.
set -euo pipefail
PREBUILT=""
if [ "${1:-}" = "--prebuilt" ]; then
  PREBUILT=1
  shift
fi
[ $# -ge 1 ] || { echo "usage: $0 [--prebuilt] IMAGE [docker build args...]" >&2; exit 2; }
IMAGE=$1
shift
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
VERSION=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | sed -n 1p)}
REVISION=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
CONTEXT=.
FROM_ARGS=()
if [ -n "$PREBUILT" ]; then
  auditable=$(ci/cargo-tool.sh cargo-auditable)
  PATH="$(dirname "$auditable"):$PATH" cargo auditable build --locked --release -p host
  CONTEXT=$(mktemp -d)
  trap 'rm -rf "$CONTEXT"' EXIT
  mkdir -p "$CONTEXT/out/precompiled" "$CONTEXT/out/data"
  cp Dockerfile "$CONTEXT/Dockerfile"
  # What the build stage's profile.release.strip=true does; the auditable section
  # is kept (ci/audit.sh reads it from the image's binary).
  strip -o "$CONTEXT/out/host" target/release/host
  "$CONTEXT/out/host" precompile --portable --dir "$CONTEXT/out/precompiled"
  FROM_ARGS=(--build-arg HOST_FROM=prebuilt)
fi
# shellcheck disable=SC2086
DOCKER_BUILDKIT=1 "$DOCKER" build --progress=plain \
  ${BASE_IMAGE_ARGS:-} "${FROM_ARGS[@]}" \
  --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
  -t "$IMAGE" "$@" "$CONTEXT"
