#!/usr/bin/env bash
# A one-node Kubernetes cluster that runs containers: the lab cluster of the
# minikube journey (docs/kubernetes.md, "The real node"). The control plane of
# control-plane.sh (without kwok), containerd with Debian's runc, kubelet,
# kube-proxy (iptables), the CNI bridge, kube-router enforcing NetworkPolicies
# and CoreDNS, every one of them inside a network namespace this script creates
# and deletes.
#
#   tools/k8s/node.sh start DIR            # prints this host's kubeconfig path
#   tools/k8s/node.sh load DIR IMAGE...    # docker save | ctr import (DOCKER_HOST)
#   tools/k8s/node.sh exec DIR CMD...      # CMD in the node's network namespace
#   tools/k8s/node.sh stop DIR             # pods, node, control plane, namespace
#
# The namespace has no way out: its interfaces are loopback, a veth pair (both
# ends inside) carrying the node's address and the pods' bridge, and it has no default route. The node is
# 198.18.0.2, pods get 198.18.128.0/24, Services 198.19.0.0/24: the range
# reserved for benchmarking (RFC 2544), outside every private range a machine
# may route. This host reaches the apiserver as a laptop reaches minikube's, on
# a loopback port, here carried into the namespace over a Unix socket (socat).
#
# Needs root, DOCKER_HOST (the pause and CoreDNS images are built here from the
# binaries tools/k8s/build.sh makes, since no registry here serves them) and
# Debian's runc, socat, iptables, ipset, conntrack and CNI plugins (ci/packages.txt).
# DIR holds everything: PKI, etcd, containerd's root, the kubelet's, the volumes,
# logs (DIR/logs, DIR/node/logs) and PIDs. A failed start stops what it started.
# Exit codes: 0 done, 1 failed, 2 usage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

usage() { echo "usage: $0 start|stop DIR | load DIR IMAGE... | exec DIR CMD..." >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
shift 2

NODE_NAME=tasks-node
NODE_IP=198.18.0.2
POD_CIDR=198.18.128.0/24
SERVICE_CIDR=198.19.0.0/24
DNS_IP=198.19.0.10
PAUSE_IMAGE=docker.io/tasks-ci/pause:3.10
COREDNS_IMAGE=docker.io/tasks-ci/coredns:1.12.4

node=$dir/node
# One name per DIR, short enough for an interface-free netns name and a cgroup.
id=$(printf '%s' "$dir" | sha256sum | cut -c1-8)
netns=tasks-node-$id
cgroup_root=/tasks-node-$id
sock=$node/containerd/containerd.sock
PKI_DIR=$dir/pki LOG_DIR=$node/logs PID_FILE=$node/pids

log() { echo "[node] $*" >&2; }
# shellcheck source=tools/k8s/lib.sh
. "$here/lib.sh"

in_ns() { nsenter --net="/run/netns/$netns" "$@"; }
ctr_() { "$dir/bin/ctr" --address "$sock" --namespace k8s.io "$@"; }

# run_in_ns NAME CMD...: a node process in the namespace (nsenter execs CMD, so
# the PID recorded is the component's own).
run_in_ns() {
  local name=$1
  shift
  run "$name" nsenter --net="/run/netns/$netns" "$@"
}

k() { "$dir/bin/kubectl" --kubeconfig "$dir/host.kubeconfig" "$@"; }

network() {
  ip netns add "$netns"
  ip -n "$netns" link set lo up
  # The node's own interface: a veth pair whose both ends stay in the namespace
  # (this kernel has no dummy driver), so it has a carrier and leads nowhere.
  ip -n "$netns" link add node0 type veth peer name node0-end
  ip -n "$netns" addr add "$NODE_IP/32" dev node0
  ip -n "$netns" link set node0-end up
  ip -n "$netns" link set node0 up
  # Traffic this node sends to a Service address needs a route before
  # kube-proxy's DNAT picks the pod; node0 is that route, and the only one.
  ip -n "$netns" route add "$SERVICE_CIDR" dev node0
  # Per-namespace settings: forwarding between pods, and bridged pod-to-pod
  # packets seen by kube-proxy's rules (a Service's reply from a pod on the same
  # bridge would otherwise skip the reverse NAT).
  in_ns sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
}

# The kubelet's pods live in a cgroup tree of their own, removed at stop.
cgroups() {
  local d
  for d in /sys/fs/cgroup/*/; do
    case $d in */unified/) continue ;; esac
    mkdir -p "$d${cgroup_root#/}"
  done
  # A new cpuset starts with no CPUs and no memory nodes; children inherit these.
  cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset$cgroup_root/cpuset.cpus"
  cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset$cgroup_root/cpuset.mems"
}

node_pki() {
  [ -f "$PKI_DIR/node.crt" ] && return 0
  cert node "/O=system:nodes/CN=system:node:$NODE_NAME"
  cert node-serving "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
  cert kube-proxy /CN=system:kube-proxy
  cert kube-router /CN=system:kube-router
}

containerd_start() {
  mkdir -p "$node/containerd" "$node/cni/net.d" "$node/cni/ipam"
  cat >"$node/containerd/config.toml" <<EOF
version = 4
root = "$node/containerd/root"
state = "$node/containerd/state"
# Nothing of the machine's own: no drop-in configuration, and none of the
# plugins that would create sockets or directories outside DIR (NRI, /opt).
imports = []
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt"]
[plugins.'io.containerd.server.v1.grpc']
  address = "$sock"
[plugins.'io.containerd.server.v1.ttrpc']
  address = "$sock.ttrpc"
[plugins.'io.containerd.cri.v1.runtime']
  # The pod sandboxes ask for an OOM score of -998; root here may not lower it
  # (no CAP_SYS_RESOURCE), so it is clamped to this process's own.
  restrict_oom_score_adj = true
  # Pod network namespaces under DIR, so that stop finds and removes them.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "/usr/sbin/runc"
      Root = "$node/containerd/runc"
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$node/cni/net.d"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"
EOF
  cat >"$node/cni/net.d/10-tasks-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "tasks-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$node/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  # containerd finds its shim on PATH: ours, not the machine's (Debian's docker.io
  # brings containerd 1.6's, which containerd 2 cannot talk to).
  run_in_ns containerd env PATH="$dir/bin:$PATH" "$dir/bin/containerd" --config "$node/containerd/config.toml"
  wait_for containerd 60 "$dir/bin/ctr" --address "$sock" version
}

# scratch_image IMAGE BINARY USER: IMAGE holding only DIR/bin/BINARY, run as USER.
scratch_image() {
  local image=$1 binary=$2 user=$3 ctx
  ctx=$(mktemp -d)
  cp "$dir/bin/$binary" "$ctx/$binary"
  printf 'FROM scratch\nCOPY %s /%s\nUSER %s\nENTRYPOINT ["/%s"]\n' "$binary" "$binary" "$user" "$binary" |
    "${DOCKER:-docker}" build -q -t "$image" -f - "$ctx" >/dev/null
  rm -rf "$ctx"
}

images() {
  # The sandbox every pod starts with, and the cluster's DNS: built FROM scratch
  # from binaries built here (tools/k8s/build.sh), as no registry here serves them.
  scratch_image "$PAUSE_IMAGE" pause 65535:65535
  scratch_image "$COREDNS_IMAGE" coredns 65532:65532
  load "$PAUSE_IMAGE" "$COREDNS_IMAGE"
}

# load IMAGE...: from the Docker engine into the node's containerd, pinned (the
# kubelet's image garbage collection would delete what no registry can give back).
load() {
  "${DOCKER:-docker}" save "$@" | ctr_ images import --label io.cri-containerd.pinned=pinned - >&2
}

kubelet_start() {
  mkdir -p "$node/kubelet" "$node/pod-logs"
  # Pods' DNS is the cluster's; nothing upstream (the namespace has no way out).
  printf '# %s: no upstream resolver, the node has no route out\n' "$NODE_NAME" >"$node/resolv.conf"
  kubeconfig node "$node/kubelet.kubeconfig" "$server"
  cat >"$node/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI_DIR/node-serving.crt
tlsPrivateKeyFile: $PKI_DIR/node-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI_DIR/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$sock
cgroupDriver: cgroupfs
cgroupRoot: $cgroup_root
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $node/resolv.conf
podLogsDir: $node/pod-logs
# Lowering its own OOM score needs CAP_SYS_RESOURCE, which root lacks here.
oomScoreAdj: 0
# The images came from docker save, not a registry: never collect them, and
# evict only when the machine is really short.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%}
failSwapOn: false
EOF
  run_in_ns kubelet "$dir/bin/kubelet" --config "$node/kubelet.yaml" \
    --kubeconfig "$node/kubelet.kubeconfig" --root-dir "$node/kubelet" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
  wait_for kubelet 120 k wait --for condition=Ready "node/$NODE_NAME" --timeout 1s
}

kube_proxy_start() {
  kubeconfig kube-proxy "$node/kube-proxy.kubeconfig" "$server"
  cat >"$node/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $node/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
nodePortAddresses: [$NODE_IP/32]
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# The namespace's conntrack table is the kernel's; leave its sizes alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  run_in_ns kube-proxy "$dir/bin/kube-proxy" --config "$node/kube-proxy.yaml"
  wait_for kube-proxy 60 in_ns curl -sf http://127.0.0.1:10256/healthz
}

# NetworkPolicies enforced, as a policy-enforcing CNI does (the bridge plugin
# enforces none): kube-router's firewall alone, in iptables and ipsets of the
# node's namespace; pod networking stays the bridge's, Services kube-proxy's.
kube_router_start() {
  k apply --server-side -f "$here/node/kube-router.yaml" >/dev/null
  kubeconfig kube-router "$node/kube-router.kubeconfig" "$server"
  run_in_ns kube-router "$dir/bin/kube-router" --kubeconfig "$node/kube-router.kubeconfig" \
    --hostname-override "$NODE_NAME" --run-firewall=true --run-router=false --run-service-proxy=false \
    --enable-cni=false --service-cluster-ip-range "$SERVICE_CIDR" --health-port 20244 --metrics-port 0
  wait_for kube-router 60 in_ns curl -sf http://127.0.0.1:20244/healthz
}

# The cluster's add-ons, as minikube has them: DNS, and a default StorageClass
# named `standard` whose volumes are directories on the node (minikube's
# provisioner makes them on demand; here they are made in advance).
addons() {
  k create clusterrolebinding kube-apiserver-kubelet-client \
    --clusterrole system:kubelet-api-admin --user kube-apiserver-kubelet-client >/dev/null
  sed -e "s|@DNS_IP@|$DNS_IP|" -e "s|@IMAGE@|$COREDNS_IMAGE|" "$here/node/coredns.yaml" |
    k apply --server-side -f - >/dev/null
  local i
  for i in $(seq 0 7); do mkdir -p "$node/volumes/$i" && chmod 0777 "$node/volumes/$i"; done
  volumes standard 8 "$node/volumes" | k apply --server-side -f - >/dev/null
  k rollout status -n kube-system deployment/coredns --timeout 120s >&2
}

start() {
  [ "$(id -u)" = 0 ] || { log "needs root (network namespace, cgroups, mounts)"; exit 1; }
  if [ -f "$node/pids" ]; then
    log "$node/pids exists: already running? ($0 stop $dir first)"
    exit 1
  fi
  # shellcheck disable=SC2154 # rc is assigned inside the trap string
  trap 'rc=$?; if [ $rc -ne 0 ]; then log "start failed; stopping what was started"; stop_all; fi' EXIT
  local t0=$SECONDS
  mkdir -p "$node/logs"
  : >"$node/pids"
  # Built (or found in the cache) out here: the namespace has no network to
  # download with.
  "$here/build.sh" >/dev/null
  network
  cgroups
  # The control plane in the node's namespace, where pods reach it through the
  # kubernetes Service.
  in_ns env KWOK_NODES=0 SERVICE_CIDR="$SERVICE_CIDR" ADVERTISE_ADDRESS="$NODE_IP" \
    bash "$here/control-plane.sh" start "$dir" >/dev/null
  local api_port host_port
  api_port=$(sed -n 's|^ *server: https://127.0.0.1:||p' "$dir/kubeconfig")
  server=https://127.0.0.1:$api_port
  node_pki
  # This host's way in: a loopback port here, a Unix socket between, the
  # apiserver's loopback port there.
  run_in_ns api-bridge socat "UNIX-LISTEN:$node/api.sock,fork,unlink-early,mode=600" "TCP:127.0.0.1:$api_port"
  host_port=$(free_port)
  run host-bridge socat "TCP-LISTEN:$host_port,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$node/api.sock"
  kubeconfig admin "$dir/host.kubeconfig" "https://127.0.0.1:$host_port"
  wait_for host-bridge 30 k get --raw /readyz
  containerd_start
  images
  kubelet_start
  kube_proxy_start
  kube_router_start
  addons
  trap - EXIT
  log "up in $((SECONDS - t0)) s: node $NODE_NAME ($NODE_IP) in netns $netns; KUBECONFIG=$dir/host.kubeconfig"
  echo "$dir/host.kubeconfig"
}

# Everything start made, found from DIR's records (PIDs, the namespace name,
# the cgroup tree, mounts under DIR), so that a half-done start is undone too.
stop_all() {
  local pid name
  if [ -f "$node/pids" ]; then
    # The kubelet first, so that it restarts nothing.
    for name in kubelet kube-proxy; do
      pid=$(awk -v n="$name" '$1 == n {print $2}' "$node/pids")
      [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    done
  fi
  # The pods' processes: every one in the node's cgroup tree, then the runc
  # shims containerd started for them (they outlive containerd by design).
  local procs
  for _ in 1 2 3; do
    procs=$(find /sys/fs/cgroup/pids"$cgroup_root" -name cgroup.procs -exec cat {} + 2>/dev/null || true)
    [ -n "$procs" ] || break
    # shellcheck disable=SC2086 # one PID per word
    kill -KILL $procs 2>/dev/null || true
    sleep 0.5
  done
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $sock" 2>/dev/null || true
  stop_recorded
  bash "$here/control-plane.sh" stop "$dir"
  # Volumes, container root filesystems, pod network namespaces: deepest first.
  findmnt -rn -o TARGET | { grep -F "$dir/" || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  local d
  for d in /sys/fs/cgroup/*"$cgroup_root"; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  if [ -e "/run/netns/$netns" ]; then ip netns delete "$netns"; fi
  log "stopped"
}

case "$cmd" in
  start) [ $# -eq 0 ] || usage; start ;;
  stop) [ $# -eq 0 ] || usage; stop_all ;;
  load) [ $# -ge 1 ] || usage; load "$@" ;;
  exec) [ $# -ge 1 ] || usage; exec nsenter --net="/run/netns/$netns" "$@" ;;
  *) usage ;;
esac
