#!/usr/bin/env bash
# The container link, end to end on this machine: lint the Dockerfiles, build the
# image from the real Dockerfile (base images replaced by local stand-ins where no
# registry can be pulled from), write its SBOMs and audit what it links against the
# RustSec snapshot, run it as production does, push it to a registry and pull it
# back by digest. The compose journey runs from the README itself, in the docs stage
# (ci/doc-blocks.sh), with this image.
#
#   ci/container-checks.sh [IMAGE]     # default tasks-api:ci
#
# Starts its own Docker engine (ci/docker-engine.sh) and local registry when needed
# and stops what it started, also on failure. Tools: hadolint and checkov from
# $VENV/bin (default .venv), Go for the registry and FerretDB (built once per machine).
# Exit codes: 0 passed, 1 a step failed.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-tasks-api:ci}
VENV=${VENV:-.venv}
export DOCKER=/usr/bin/docker   # Debian's 20.10 client: BuildKit works through it
STARTED_ENGINE=""
STARTED_REGISTRY=""
step() { echo; echo "--- [$(date -u +%H:%M:%S)] $*"; }
cleanup() {
  if [ -n "$STARTED_REGISTRY" ]; then ci/local-registry.sh stop || true; fi
  if [ -n "$STARTED_ENGINE" ]; then
    "$DOCKER" ps -aq | xargs -r "$DOCKER" rm -f >/dev/null 2>&1 || true
    ci/docker-engine.sh stop || true
  fi
}
trap cleanup EXIT

ci/packages.sh install debootstrap

step "lint: hadolint, checkov"
"$VENV/bin/hadolint" Dockerfile ci/standins/*.Dockerfile
"$VENV/bin/checkov" --framework dockerfile -f Dockerfile -d ci/standins --skip-download --quiet --compact \
  | tee /tmp/checkov-dockerfile.$$ 
grep -q "Failed checks: 0" /tmp/checkov-dockerfile.$$ && ! grep -q "Failed checks: [1-9]" /tmp/checkov-dockerfile.$$
rm -f /tmp/checkov-dockerfile.$$

step "docker engine"
if [ -z "${DOCKER_HOST:-}" ]; then
  eval "$(ci/docker-engine.sh start)"
  STARTED_ENGINE=1
fi
export DOCKER_HOST
"$DOCKER" version --format 'client {{.Client.Version}}, server {{.Server.Version}}'

step "base image (stand-in, cached)"
# The image is fed from the run's one release build (ci/build-image.sh --prebuilt),
# so only the runtime base is needed; the Dockerfile's compile stage is built by
# GitHub Actions and Jenkins (docs/container.md).
BASE_IMAGE_ARGS=$(ci/base-images.sh --runtime-only)
export BASE_IMAGE_ARGS
echo "$BASE_IMAGE_ARGS"

step "build the image from the Dockerfile"
start=$(date +%s)
ci/build-image.sh --prebuilt "$IMAGE" --network host >/tmp/image-build.$$ 2>&1 || { tail -60 /tmp/image-build.$$; exit 1; }
tail -5 /tmp/image-build.$$
rm -f /tmp/image-build.$$
echo "image built in $(( $(date +%s) - start ))s"

step "SBOM and known vulnerabilities (offline)"
ci/sbom.sh target/sbom
bin=$(mktemp -d)
cid=$("$DOCKER" create "$IMAGE")
"$DOCKER" cp "$cid:/usr/local/bin/host" "$bin/host"
"$DOCKER" rm "$cid" >/dev/null
ci/audit.sh "$bin/host"
rm -rf "$bin"

step "run it as production does"
ci/smoke-image.sh "$IMAGE" 40

step "push to a registry, pull back by digest"
REGISTRY=$(ci/local-registry.sh start)
STARTED_REGISTRY=1
ref=$(DOCKER="$DOCKER" ci/push-image.sh "$IMAGE" "$REGISTRY/tasks-api" "$(git rev-parse --short HEAD)" ci)
echo "pushed $ref"
want=$("$DOCKER" image inspect -f '{{.Id}}' "$IMAGE")
"$DOCKER" rmi "$REGISTRY/tasks-api:ci" "$REGISTRY/tasks-api:$(git rev-parse --short HEAD)" >/dev/null
"$DOCKER" pull -q "$ref" >/dev/null
got=$("$DOCKER" image inspect -f '{{.Id}}' "$ref")
[ "$got" = "$want" ] || { echo "pulled $got, pushed $want" >&2; exit 1; }
echo "pulled by digest: same image $got"
