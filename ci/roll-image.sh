#!/usr/bin/env bash
# The CD step of the Jenkinsfile: point the tasks-api Deployment at a pushed
# image digest and wait for the rollout. It needs only the rights of the
# tasks-api-deployer ServiceAccount (k8s/deployer): CD changes the image, the
# operator owns the manifests (ci/deploy-image.sh deploys a whole overlay).
#
#   ci/roll-image.sh REPOSITORY@sha256:DIGEST [ROLLOUT_TIMEOUT]
#
# KUBECONFIG / KUBECTL as for ci/deploy.sh. Exit codes: 0 rolled out, 1 failed, 2 usage.
set -euo pipefail
case "${1:-}" in *@sha256:*) REF=$1 ;; *) echo "usage: $0 REPOSITORY@sha256:DIGEST [ROLLOUT_TIMEOUT]" >&2; exit 2 ;; esac
TIMEOUT=${2:-300s}
KUBECTL=${KUBECTL:-kubectl}
NS=tasks-api
k() { "$KUBECTL" --warnings-as-errors -n "$NS" "$@"; }
echo "rolling deployment/tasks-api to $REF" >&2
k set image deployment/tasks-api "host=$REF"
k rollout status deployment/tasks-api --timeout "$TIMEOUT"
