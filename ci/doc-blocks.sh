#!/usr/bin/env bash
# Run the shell blocks of the README and docs/ as written, with pytest-codeblocks
# (ci/docblocks.py: stage marks, fail-fast bash, readable failures).
#
#   ci/doc-blocks.sh [STAGE]     # default: docs
#
# STAGE `docs` runs every unmarked block, with the stand-ins this machine needs in
# place of what no registry here serves (the variables are the ones the docs name;
# docs/testing.md): its own Docker engine, the image the pipeline (cd stage) built from
# the Dockerfile as `tasks-api` and `tasks-api:dev`, compose's stand-in services
# (COMPOSE_FILE), the image's pushed digest as IMAGE, kubectl and kustomize on PATH.
# It lists the blocks marked skip with their reasons, and those that other stages
# run. Any other STAGE runs the blocks marked for it, with what that stage started.
#
# The blocks run in a scratch copy of the working tree (they copy .env files and
# edit kustomizations), so the checkout is never changed; cargo builds into the
# checkout's target/. What a block leaves running is removed at the end.
# Exit codes: 0 every block passed, 1 a block failed, 2 usage.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
STAGE=${1:-docs}
cd "$ROOT"
export DOCKER=${DOCKER:-/usr/bin/docker}
WORK=$(mktemp -d)
STARTED_ENGINE=""
cleanup() {
  if [ "$STAGE" = docs ] && [ -n "${DOCKER_HOST:-}" ]; then
    # What the compose journey and the `docker run` block leave behind.
    (cd "$WORK" && "$DOCKER" compose --env-file .env.example down -v --remove-orphans >/dev/null 2>&1) || true
    "$DOCKER" rm -f tasks-api >/dev/null 2>&1 || true
    "$DOCKER" volume rm -f tasks-data >/dev/null 2>&1 || true
  fi
  if [ -n "$STARTED_ENGINE" ]; then ci/docker-engine.sh stop || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The working tree as a clone would have it, with uncommitted edits: tracked and
# untracked files, not what .gitignore keeps out (target/, .env, secrets).
git ls-files -z --cached --others --exclude-standard \
  | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$WORK"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

if [ "$STAGE" = docs ]; then
  if [ -z "${DOCKER_HOST:-}" ]; then
    eval "$(ci/docker-engine.sh start)"
    STARTED_ENGINE=1
  fi
  export DOCKER_HOST
  # `docker build -t tasks-api .` stands for the image the pipeline (cd stage) built
  # from the same Dockerfile (ci/build-image.sh --prebuilt), under the names the
  # docs use; it was pushed to a registry and pulled back by digest there.
  "$DOCKER" image inspect tasks-api:ci >/dev/null 2>&1 \
    || { echo "no image tasks-api:ci: run the container stage first (bash .ci/run docs does)" >&2; exit 1; }
  "$DOCKER" tag tasks-api:ci tasks-api:dev
  "$DOCKER" tag tasks-api:ci tasks-api:latest
  IMAGE=$("$DOCKER" image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' tasks-api:ci | sed -n 1p)
  [ -n "$IMAGE" ] || { echo "tasks-api:ci has no pushed digest: run the container stage first" >&2; exit 1; }
  export IMAGE
  eval "$(ci/compose-standins.sh)"
  export COMPOSE_PROJECT_NAME=tasks-docs
  KUBECTL=${KUBECTL:-$(bash tools/k8s/build.sh 2>/dev/null | tail -1)/bin/kubectl}
  KUSTOMIZE=$(ci/go-tool.sh sigs.k8s.io/kustomize/kustomize/v5)
  PATH="$(dirname "$KUBECTL"):$(dirname "$KUSTOMIZE"):$PATH"
  export PATH
  echo "stand-ins: IMAGE=$IMAGE COMPOSE_FILE=${COMPOSE_FILE:?} FERRETDB_STANDIN_IMAGE=${FERRETDB_STANDIN_IMAGE:?}"
fi

cd "$WORK"
PYTHONPATH="$ROOT/ci${PYTHONPATH:+:$PYTHONPATH}" timeout "${DOC_BLOCKS_TIMEOUT:-1200}" \
  "$VENV/bin/python" -m pytest -p docblocks -p no:cacheprovider --codeblocks --doc-stage="$STAGE" -q -rps \
  README.md CONTRIBUTING.md SECURITY.md docs
