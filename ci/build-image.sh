#!/usr/bin/env bash
# Build the container image from the Dockerfile with BuildKit.
#
#   ci/build-image.sh IMAGE [extra docker build args...]
#
# VERSION (default: the workspace version) and REVISION (default: git HEAD) become
# OCI labels. BASE_IMAGE_ARGS, when set, points the base images elsewhere (on
# machines without a registry: the output of ci/base-images.sh). Uses the Docker
# CLI in DOCKER (default: docker; the Debian 20.10 client where BuildKit needs it).
# Exit codes: 0 built, 1 the build failed, 2 usage.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 IMAGE [docker build args...]" >&2; exit 2; }
IMAGE=$1
shift
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-docker}
VERSION=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
REVISION=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
# shellcheck disable=SC2086
DOCKER_BUILDKIT=1 "$DOCKER" build --progress=plain \
  ${BASE_IMAGE_ARGS:-} \
  --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
  -t "$IMAGE" "$@" .
