#!/usr/bin/env bash
# Deploy an overlay with the image pinned to a pushed digest, then wait for the
# rollout: the CD step of the Jenkinsfile (and of anyone deploying a build).
#
#   ci/deploy-image.sh REPOSITORY@sha256:DIGEST [OVERLAY] [ROLLOUT_TIMEOUT]
#       # default overlay k8s/overlays/production
#
# The committed overlays keep a placeholder digest; this works on a copy of k8s/
# (the overlays include nothing outside it) whose overlay gets an `images:` entry for the digest, then
# deploys it with ci/deploy.sh (server-side dry run, apply, rollout status).
# KUBECONFIG / KUBECTL as for ci/deploy.sh.
# Exit codes: 0 deployed and rolled out, 1 failed, 2 usage.
set -euo pipefail
case "${1:-}" in *@sha256:*) REF=$1 ;; *) echo "usage: $0 REPOSITORY@sha256:DIGEST [OVERLAY] [ROLLOUT_TIMEOUT]" >&2; exit 2 ;; esac
OVERLAY=${2:-k8s/overlays/production}
TIMEOUT=${3:-300s}
cd "$(dirname "$0")/.."
[ -f "$OVERLAY/kustomization.yaml" ] || { echo "no kustomization in $OVERLAY" >&2; exit 2; }
if grep -E '^images:' "$OVERLAY/kustomization.yaml" >/dev/null; then
  echo "$OVERLAY already sets images: pin the digest there instead" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r k8s "$work/"
# The base renames the image to its placeholder repository first; match that name.
base_name=$(sed -n '/^images:/,$ { s/^ *newName: *//p; }' k8s/base/kustomization.yaml | sed -n 1p)
cat >>"$work/$OVERLAY/kustomization.yaml" <<YAML
images:
  - name: $base_name
    newName: ${REF%@*}
    digest: ${REF#*@}
YAML
echo "deploying $REF with $OVERLAY"
ci/deploy.sh "$work/$OVERLAY" "$TIMEOUT"
