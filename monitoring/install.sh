#!/usr/bin/env bash
# Install the monitoring stack into namespace `monitoring`: kube-prometheus-stack
# (Prometheus, Alertmanager, Grafana, kube-state-metrics, node-exporter) with
# monitoring/helm/kube-prometheus-stack.values.yaml, then our dashboards as
# ConfigMaps. Our ServiceMonitor and PrometheusRule come with the app's overlays
# (k8s/monitoring), which therefore need this installed first (the CRDs).
#
#   GRAFANA_ADMIN_PASSWORD=... monitoring/install.sh
#
# Needs helm 3 and kubectl pointing at the cluster.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# 67.8.0: prometheus-operator v0.79.2; the CRD fields our objects use are the same
# in v0.85.0, whose CRDs .ci/run installs.
CHART_VERSION=${CHART_VERSION:-67.8.0}
KUBECTL=${KUBECTL:-kubectl}
: "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD (it goes into the Secret grafana-admin, never into values)}"

"$KUBECTL" create namespace monitoring --dry-run=client -o yaml | "$KUBECTL" apply -f -
# The Secret from the environment, not from a file in the repository; the password
# goes through a pipe, never on kubectl's command line (readable by any user in /proc).
"$KUBECTL" -n monitoring create secret generic grafana-admin \
  --from-literal=admin-user=admin --from-file=admin-password=<(printf '%s' "$GRAFANA_ADMIN_PASSWORD") \
  --dry-run=client -o yaml | "$KUBECTL" apply -f -

helm repo add prometheus-community https://prometheus-community.github.io/helm-charts >/dev/null 2>&1 || true
helm repo update prometheus-community >/dev/null
helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  --namespace monitoring --version "$CHART_VERSION" \
  --values "$here/helm/kube-prometheus-stack.values.yaml" \
  --wait --timeout 10m

"$KUBECTL" apply --server-side -k "$here/dashboards"
echo "monitoring installed: kubectl -n monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80"
