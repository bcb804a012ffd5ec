#!/usr/bin/env bash
# Install the CustomResourceDefinitions our manifests use, at pinned versions,
# from the Go modules of the projects that own them (the Go module proxy is the
# one source of them these machines can reach): prometheus-operator
# (ServiceMonitor, PrometheusRule), cert-manager (ClusterIssuer) and Argo CD
# (Application, AppProject). Each project's whole CRD set is installed, as its
# own installer would. Waits until every one is Established.
#
#   KUBECONFIG=... tools/k8s/crds.sh
set -euo pipefail
KUBECTL=${KUBECTL:-kubectl}

PROMETHEUS_OPERATOR=github.com/prometheus-operator/prometheus-operator@v0.85.0
CERT_MANAGER=github.com/cert-manager/cert-manager@v1.21.2
# v3.6 needs Go 1.27; v3.5 is the newest these machines build.
ARGO_CD=github.com/argoproj/argo-cd/v3@v3.5.7

module_dir() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

files=()
d=$(module_dir "$PROMETHEUS_OPERATOR")
files+=("$d"/example/prometheus-operator-crd/monitoring.coreos.com_*.yaml)
d=$(module_dir "$CERT_MANAGER")
files+=("$d"/deploy/crds/*.yaml)
d=$(module_dir "$ARGO_CD")
files+=("$d"/manifests/crds/*-crd.yaml)

t0=$SECONDS
# Server-side: the Prometheus CRD is larger than the last-applied annotation
# that client-side apply would write.
for f in "${files[@]}"; do
  "$KUBECTL" apply --server-side --field-manager tasks-crds -f "$f" -o name
done
"$KUBECTL" wait --for condition=Established --timeout 120s crd --all >/dev/null
echo "[crds] $(${KUBECTL} get crd -o name | wc -l) CRDs Established in $((SECONDS - t0)) s" >&2
