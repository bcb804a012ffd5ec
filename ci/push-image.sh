#!/usr/bin/env bash
# Push a built image and print the pushed reference by digest (repo@sha256:...),
# which is what deployments pin. The same script serves the local registry in
# .ci/run, GitHub Actions and Jenkins (Docker Hub).
#
#   ci/push-image.sh LOCAL_IMAGE REPOSITORY TAG [TAG...]
#
# Credentials, when the registry needs them, come only from the environment
# (REGISTRY_USERNAME, REGISTRY_PASSWORD; never echoed): Jenkins binds them from its
# credential store, GitHub Actions from repository secrets. The login lives in a
# Docker config made for this push and deleted after it, so the credential is not
# left on a shared build agent, whatever the registry.
# Optional: DIGEST_FILE=path also receives the reference.
# Exit codes: 0 pushed, 1 the push failed, 2 usage.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 LOCAL_IMAGE REPOSITORY TAG [TAG...]" >&2; exit 2; }
IMAGE=$1
REPO=$2
shift 2
DOCKER=${DOCKER:-docker}

if [ -n "${REGISTRY_USERNAME:-}" ]; then
  set +x
  DOCKER_CONFIG=$(mktemp -d)
  export DOCKER_CONFIG
  trap 'rm -rf "$DOCKER_CONFIG"' EXIT
  registry=${REPO%%/*}
  case "$registry" in *.*|*:*|localhost) ;; *) registry=docker.io ;; esac
  printf '%s' "${REGISTRY_PASSWORD:?REGISTRY_PASSWORD is required with REGISTRY_USERNAME}" \
    | "$DOCKER" login --username "$REGISTRY_USERNAME" --password-stdin "$registry" >/dev/null
fi
for tag in "$@"; do
  "$DOCKER" tag "$IMAGE" "$REPO:$tag"
  "$DOCKER" push "$REPO:$tag" >&2
done
ref=$("$DOCKER" image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$REPO:$1" | grep "^$REPO@" | sed -n 1p)
[ -n "$ref" ] || { echo "no digest recorded for $REPO:$1" >&2; exit 1; }
echo "$ref"
if [ -n "${DIGEST_FILE:-}" ]; then echo "$ref" >"$DIGEST_FILE"; fi
