#!/usr/bin/env bash
# Deploy one kustomization to the cluster KUBECONFIG points at, the one way
# .ci/run, Jenkins and Ansible all deploy:
#   1. namespaces first (the app namespace enforces PodSecurity `restricted`, so
#      it must exist with its labels before any pod is admitted into it);
#   2. kubectl apply --server-side --validate=strict of the rendered DIR, with
#      every API server warning an error (a PodSecurity warning means pods that
#      will never be created), first as a server-side dry run, so that a refused
#      deploy changes nothing (a warning arrives with a successful write), then
#      for real;
#   3. kubectl rollout status for every Deployment, StatefulSet and DaemonSet,
#      with a timeout;
#   4. a summary.
#
#   ci/deploy.sh k8s/overlays/minikube [ROLLOUT_TIMEOUT]
#
# KUBECTL picks the kubectl binary (default: the one on PATH).
# Exit codes: 0 deployed and rolled out, 1 refused or not ready in time, 2 usage.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 KUSTOMIZATION_DIR [ROLLOUT_TIMEOUT]" >&2; exit 2; }
target=$1
timeout=${2:-180s}
KUBECTL=${KUBECTL:-kubectl}
k() { "$KUBECTL" --warnings-as-errors "$@"; }
log() { echo "[deploy $target] $*" >&2; }

t0=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
k kustomize "$target" >"$work/all.yaml"

# Kustomize writes each object with its top-level keys at column 0, separated
# by `---`: enough structure to pick out the Namespaces without a YAML tool
# that the CD agents may not have.
awk '
  /^---$/ { flush(); next }
  { doc = doc $0 "\n" }
  /^kind: Namespace$/ { isns = 1 }
  END { flush() }
  function flush() {
    if (isns) { if (n++) print "---"; printf "%s", doc }
    doc = ""; isns = 0
  }
' "$work/all.yaml" >"$work/ns.yaml"
if [ -s "$work/ns.yaml" ]; then
  k apply --server-side --field-manager tasks-deploy --validate=strict -f "$work/ns.yaml"
fi

# Every namespace the objects live in must exist now: one this kustomization
# does not create belongs to another step (the app overlay for k8s/mongodb, the
# Argo CD install for k8s/argocd/*), and deploying before it is an ordering error.
for ns in $(sed -n 's/^  namespace: //p' "$work/all.yaml" | sort -u); do
  if ! "$KUBECTL" get namespace "$ns" -o name >/dev/null 2>&1; then
    log "namespace $ns does not exist; deploy what creates it first"
    exit 1
  fi
done

apply=(apply --server-side --field-manager tasks-deploy --validate=strict -f "$work/all.yaml")
if ! k "${apply[@]}" --dry-run=server >"$work/dry-run.log" 2>&1; then
  cat "$work/dry-run.log" >&2
  log "refused by the API server (dry run): nothing applied"
  exit 1
fi
k "${apply[@]}"

# kind/name and namespace of every workload, as the server now has them.
"$KUBECTL" get -f "$work/all.yaml" \
  -o jsonpath='{range .items[*]}{.kind}/{.metadata.name} {.metadata.namespace}{"\n"}{end}' \
  | awk '$1 ~ /^(Deployment|StatefulSet|DaemonSet)\// { print tolower($1), $2 }' >"$work/workloads"

while read -r workload ns; do
  log "waiting for $workload in $ns (timeout $timeout)"
  if ! "$KUBECTL" rollout status "$workload" -n "$ns" --timeout "$timeout"; then
    # Enough state to explain a stuck rollout without the cluster (CI stops it).
    log "not ready in time: pods, claims, volumes and recent events of $ns"
    "$KUBECTL" get pods,pvc -n "$ns" -o wide >&2 || true
    "$KUBECTL" get pv -o wide >&2 || true
    "$KUBECTL" get events -n "$ns" --sort-by=.lastTimestamp 2>/dev/null | tail -n 30 >&2 || true
    exit 1
  fi
done <"$work/workloads"

log "summary: $(grep -c '^kind: ' "$work/all.yaml") objects applied, $(wc -l <"$work/workloads") workloads rolled out, in $((SECONDS - t0)) s"
while read -r workload ns; do
  "$KUBECTL" get "$workload" -n "$ns" --no-headers -o wide
done <"$work/workloads"
