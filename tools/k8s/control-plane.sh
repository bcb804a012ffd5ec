#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, for CI and local development:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and kwok, which
# plays the kubelet for fake nodes (it runs no containers: pods go Running and
# Ready by its stages). Binaries come from tools/k8s/build.sh (built once per
# machine, cached).
#
#   tools/k8s/control-plane.sh start DIR   # prints the kubeconfig path
#   export KUBECONFIG=DIR/kubeconfig PATH=DIR/bin:$PATH
#   tools/k8s/control-plane.sh stop DIR    # stops every process by PID
#
# DIR holds the PKI, etcd's data, logs (DIR/logs) and the PIDs. A failed start
# stops whatever it had started. Ports are free loopback ports chosen at start.
#
# tools/k8s/node.sh starts it for the real node, inside that node's network
# namespace, with these (the defaults are the kwok cluster's):
#   KWOK_NODES=0                  no kwok, no fake nodes, no pre-made volumes
#   SERVICE_CIDR=198.19.0.0/24    the Services' range (default 10.0.0.0/24)
#   ADVERTISE_ADDRESS=198.18.0.2  the kubernetes Service's endpoint, which pods
#                                 reach; the apiserver then listens on every
#                                 address of its (the node's) namespace
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
KWOK_NODES=${KWOK_NODES:-3}
SERVICE_CIDR=${SERVICE_CIDR:-10.0.0.0/24}
ADVERTISE_ADDRESS=${ADVERTISE_ADDRESS:-127.0.0.1}

log() { echo "[control-plane] $*" >&2; }
PKI_DIR=$dir/pki LOG_DIR=$dir/logs PID_FILE=$dir/pids
# shellcheck source=tools/k8s/lib.sh
. "$here/lib.sh"

stop_all() {
  [ -f "$PID_FILE" ] || return 0
  stop_recorded
  log "stopped"
}

pki() {
  local p=$dir/pki
  [ -f "$p/ca.crt" ] && return 0
  mkdir -p "$p"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=tasks-ci-ca \
    -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
  local service_ip
  service_ip=$(python3 -c 'import ipaddress, sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' "$SERVICE_CIDR")
  cert apiserver /CN=kube-apiserver \
    "IP:127.0.0.1,IP:$ADVERTISE_ADDRESS,IP:$service_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # system:masters: the bootstrap admin that RBAC always allows.
  cert admin "/O=system:masters/CN=tasks-ci-admin"
  cert controller-manager /CN=system:kube-controller-manager
  cert scheduler /CN=system:kube-scheduler
  # The apiserver's identity towards kubelets (logs, exec, port-forward)
  # (tools/k8s/node.sh binds it to system:kubelet-api-admin, and no more).
  cert kubelet-client /CN=kube-apiserver-kubelet-client
  # Service-account token signing pair.
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
}

# kwok_nodes OUT: kwok, KWOK_NODES fake nodes and the volumes their pods claim.
kwok_nodes() {
  local out=$1
  run kwok "$dir/bin/kwok" --kubeconfig "$dir/kubeconfig" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --config "$out/stages.yaml" \
    --server-address "127.0.0.1:$(free_port)"

  # Three fake nodes in three zones, so the Deployment's topology spread and
  # the PodDisruptionBudgets mean something.
  local k=("$dir/bin/kubectl" --kubeconfig "$dir/kubeconfig")
  for i in $(seq 0 $((KWOK_NODES - 1))); do
    "${k[@]}" apply --server-side -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/zone: zone-$i
    type: kwok
status:
  allocatable: {cpu: "8", memory: 32Gi, pods: "110"}
  capacity: {cpu: "8", memory: 32Gi, pods: "110"}
EOF
  done
  wait_for kwok 60 "${k[@]}" wait --for condition=Ready node --all --timeout 1s

  # Storage as a cluster without a dynamic provisioner has it: a default
  # StorageClass and pre-made volumes that the PersistentVolume controller
  # binds claims to (the smallest that fits). kwok mounts nothing; these only
  # let StatefulSets with volumeClaimTemplates be scheduled.
  volumes static 8 /var/lib/kwok-static | "${k[@]}" apply --server-side -f - >/dev/null
}

start() {
  if [ -f "$dir/pids" ]; then
    log "$dir/pids exists: already running? ($0 stop $dir first)"
    exit 1
  fi
  # shellcheck disable=SC2154 # rc is assigned inside the trap string
  trap 'rc=$?; if [ $rc -ne 0 ]; then log "start failed; stopping what was started"; stop_all; fi' EXIT
  local out
  out=$("$here/build.sh")
  mkdir -p "$dir/logs"
  ln -sfn "$out/bin" "$dir/bin"
  local bin=$dir/bin
  pki

  local etcd_port etcd_peer api_port
  etcd_port=$(free_port)
  etcd_peer=$(free_port)
  api_port=$(free_port)
  local server=https://127.0.0.1:$api_port

  rm -rf "$dir/etcd"
  # Loopback-only and disposable: no fsync makes it fast and costs nothing here.
  run etcd "$bin/etcd" --name tasks-ci --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "tasks-ci=http://127.0.0.1:$etcd_peer" \
    --unsafe-no-fsync --log-level warn
  wait_for etcd 30 curl -sf "http://127.0.0.1:$etcd_port/health"

  # On loopback the endpoint reconciler is off, because 127.0.0.1 may not be
  # advertised as the kubernetes Service's endpoint; no kwok pod needs it. The
  # real node's pods do (CoreDNS watches Services): there the apiserver listens
  # on the node namespace's addresses and advertises the node's, and kubelets'
  # serving certificates are checked against the cluster's CA.
  local node_args=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none)
  if [ "$ADVERTISE_ADDRESS" != 127.0.0.1 ]; then
    node_args=(--bind-address 0.0.0.0 --advertise-address "$ADVERTISE_ADDRESS"
      --kubelet-certificate-authority "$dir/pki/ca.crt" --kubelet-preferred-address-types InternalIP)
  fi
  run kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    "${node_args[@]}" --secure-port "$api_port" \
    --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
    --client-ca-file "$dir/pki/ca.crt" \
    --service-account-key-file "$dir/pki/sa.pub" --service-account-signing-key-file "$dir/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC \
    --kubelet-client-certificate "$dir/pki/kubelet-client.crt" --kubelet-client-key "$dir/pki/kubelet-client.key" \
    --allow-privileged=false \
    --profiling=false
  kubeconfig admin "$dir/kubeconfig" "$server"
  kubeconfig controller-manager "$dir/controller-manager.kubeconfig" "$server"
  kubeconfig scheduler "$dir/scheduler.kubeconfig" "$server"
  wait_for kube-apiserver 120 "$bin/kubectl" --kubeconfig "$dir/kubeconfig" get --raw /readyz

  # Without the controller-manager no ServiceAccount `default`, no ReplicaSets,
  # no Pods from workloads, no PersistentVolume binding.
  run kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
    --service-account-private-key-file "$dir/pki/sa.key" --root-ca-file "$dir/pki/ca.crt" \
    --use-service-account-credentials \
    --bind-address 127.0.0.1 --secure-port "$(free_port)" \
    --leader-elect=false
  # A pod tried before its claims were bound ("unbound immediate
  # PersistentVolumeClaims") was once left unscheduled past ci/deploy.sh's 180 s
  # wait: the bindings did not requeue it, and the scheduler retries such pods
  # only every 5 minutes by default. Here it retries within 10 s.
  run kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$(free_port)" \
    --pod-max-in-unschedulable-pods-duration 10s \
    --leader-elect=false
  if [ "$KWOK_NODES" -gt 0 ]; then kwok_nodes "$out"; fi
  wait_for kube-controller-manager 60 "$bin/kubectl" --kubeconfig "$dir/kubeconfig" get serviceaccount default -n default
  trap - EXIT
  log "up: $server; KUBECONFIG=$dir/kubeconfig; logs in $dir/logs"
  echo "$dir/kubeconfig"
}

case "$cmd" in
  start) start ;;
  stop) stop_all ;;
  *) usage ;;
esac
