#!/usr/bin/env bash
# Jenkins `post { always }`: remove what a build left on the shared Docker engine
# (its image tag, dangling layers; the registry login never outlives ci/push-image.sh). Never fails the build.
#
#   ci/jenkins-cleanup.sh [IMAGE]
#
# Exit code: always 0.
DOCKER=${DOCKER:-docker}
if command -v "$DOCKER" >/dev/null 2>&1; then
  [ -n "${1:-}" ] && "$DOCKER" image rm "$1" >/dev/null 2>&1
  "$DOCKER" image prune -f --filter "until=24h" >/dev/null 2>&1
fi
echo "cleaned up${1:+ $1}"
exit 0
