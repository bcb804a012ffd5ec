#!/usr/bin/env bash
# The container link, on the image CD shipped: lint the Dockerfiles, pull the
# pushed image back by its digest (the same image, not a rebuild), write its SBOMs
# and audit what it links against the RustSec snapshot, and run it as production
# does. The image is built and pushed by the Jenkinsfile's own steps (.ci/run's cd
# stage, ci/build-image.sh --prebuilt from the run's one release build); the compose
# journey runs from the README itself, in the docs stage (ci/doc-blocks.sh), with
# this image, tagged tasks-api:ci here.
#
#   ci/container-checks.sh REPOSITORY@sha256:DIGEST
#
# Needs the registry that holds it and a Docker engine (DOCKER_HOST; started with
# ci/docker-engine.sh and stopped again when unset). Tools: hadolint and checkov
# from $VENV/bin (default .venv).
# Exit codes: 0 passed, 1 a step failed, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in *@sha256:*) REF=$1 ;; *) echo "usage: $0 REPOSITORY@sha256:DIGEST" >&2; exit 2 ;; esac
VENV=${VENV:-.venv}
export DOCKER=/usr/bin/docker   # Debian's 20.10 client: BuildKit works through it
STARTED_ENGINE=""
step() { echo; echo "--- [$(date -u +%H:%M:%S)] $*"; }
cleanup() {
  if [ -n "$STARTED_ENGINE" ]; then
    "$DOCKER" ps -aq | xargs -r "$DOCKER" rm -f >/dev/null 2>&1 || true
    ci/docker-engine.sh stop || true
  fi
}
trap cleanup EXIT

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

step "pull the pushed image back by digest"
repo=${REF%@*}
want=$("$DOCKER" image inspect -f '{{.Id}}' "$REF" 2>/dev/null || true)
# Every local name of that repository goes first, so the image comes from the registry.
"$DOCKER" image ls --format '{{.Repository}}:{{.Tag}}' "$repo" | grep -v ':<none>$' | xargs -r "$DOCKER" rmi >/dev/null || true
"$DOCKER" pull -q "$REF" >/dev/null
got=$("$DOCKER" image inspect -f '{{.Id}}' "$REF")
if [ -n "$want" ] && [ "$got" != "$want" ]; then echo "pulled $got, pushed $want" >&2; exit 1; fi
echo "pulled by digest: $REF (image ${got:0:19}${want:+, the one pushed})"
IMAGE=tasks-api:ci
"$DOCKER" tag "$REF" "$IMAGE"

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
