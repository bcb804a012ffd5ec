#!/usr/bin/env bash
# Write the kubeconfig CD deploys with: the token of the tasks-api-deployer
# ServiceAccount (k8s/deployer, applied by the operator beforehand), the
# cluster's CA and API address, nothing of the operator's own credentials.
#
#   ci/deployer-kubeconfig.sh OUT [SERVER]
#       # SERVER: the API address as CD reaches it (default: the one in the
#       # operator's current context)
#
# Runs with the operator's KUBECONFIG; KUBECTL picks the binary. OUT is written
# 0600 and never printed. Exit codes: 0 written, 1 the token is not there (yet), 2 usage.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT [SERVER]" >&2; exit 2; }
out=$1
KUBECTL=${KUBECTL:-kubectl}
NS=tasks-api
SECRET=tasks-api-deployer-token
server=${2:-$("$KUBECTL" config view --minify -o jsonpath='{.clusters[0].cluster.server}')}
# The token controller fills the Secret shortly after it is created.
token=""
for _ in $(seq 1 50); do
  token=$("$KUBECTL" get secret "$SECRET" -n "$NS" -o jsonpath='{.data.token}' 2>/dev/null || true)
  [ -n "$token" ] && break
  sleep 0.2
done
[ -n "$token" ] || { echo "secret $NS/$SECRET has no token: apply k8s/deployer first" >&2; exit 1; }
ca=$("$KUBECTL" get secret "$SECRET" -n "$NS" -o jsonpath='{.data.ca\.crt}')
umask 077
mkdir -p "$(dirname "$out")"
# Written by hand, not with `kubectl config set-credentials --token`, which
# would put the token on a command line.
cat >"$out" <<YAML
apiVersion: v1
kind: Config
clusters:
  - name: cluster
    cluster:
      server: $server
      certificate-authority-data: $ca
users:
  - name: $NS-deployer
    user:
      token: $(printf %s "$token" | base64 -d)
contexts:
  - name: $NS-deployer
    context:
      cluster: cluster
      namespace: $NS
      user: $NS-deployer
current-context: $NS-deployer
YAML
echo "wrote the deployer's kubeconfig to $out (namespace $NS, server $server)" >&2
