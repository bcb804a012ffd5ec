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
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

log() { echo "[control-plane] $*" >&2; }

stop_all() {
  local pidfile=$dir/pids
  [ -f "$pidfile" ] || return 0
  # All are told to stop at once (a component that outlives its apiserver or
  # etcd only logs errors until its own SIGTERM lands); then each is waited for,
  # and killed after 10 s, in reverse start order.
  local pids
  pids=$(tac "$pidfile" | awk '{print $2}')
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $pids; do
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid ignored SIGTERM for 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$pidfile"
  log "stopped"
}

free_port() {
  "$here/../../ci/free-port.py"
}

# run NAME ARGS...: start a component in the background, its output in
# DIR/logs/NAME.log, its PID recorded for stop.
run() {
  local name=$1
  shift
  "$@" >"$dir/logs/$name.log" 2>&1 &
  echo "$name $!" >>"$dir/pids"
}

# wait_for NAME SECONDS CHECK...: poll CHECK until it succeeds; fail with the
# component's log if it dies or the time runs out.
wait_for() {
  local name=$1 seconds=$2
  shift 2
  local pid t0=$SECONDS
  pid=$(awk -v n="$name" '$1 == n {print $2}' "$dir/pids")
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited; its log:"
      tail -40 "$dir/logs/$name.log" >&2
      return 1
    fi
    if [ $((SECONDS - t0)) -ge "$seconds" ]; then
      log "$name not ready after $seconds s; its log:"
      tail -40 "$dir/logs/$name.log" >&2
      return 1
    fi
    sleep 0.2
  done
  log "$name ready in $((SECONDS - t0)) s"
}

pki() {
  local p=$dir/pki
  [ -f "$p/ca.crt" ] && return 0
  mkdir -p "$p"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=tasks-ci-ca \
    -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
  # cert NAME SUBJECT [SAN]: a key and a certificate signed by the CA.
  cert() {
    local name=$1 subj=$2 san=${3:-}
    openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$p/$name.key" -out "$p/$name.csr" 2>/dev/null
    local ext
    ext=$(mktemp)
    if [ -n "$san" ]; then
      printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" >"$ext"
    else
      printf 'extendedKeyUsage=clientAuth\n' >"$ext"
    fi
    openssl x509 -req -in "$p/$name.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
      -days 30 -extfile "$ext" -out "$p/$name.crt" 2>/dev/null
    rm -f "$ext" "$p/$name.csr"
  }
  cert apiserver /CN=kube-apiserver \
    "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # system:masters: the bootstrap admin that RBAC always allows.
  cert admin "/O=system:masters/CN=tasks-ci-admin"
  cert controller-manager /CN=system:kube-controller-manager
  cert scheduler /CN=system:kube-scheduler
  # Service-account token signing pair.
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
}

kubeconfig() {
  local user=$1 out=$2 server=$3
  cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: tasks-ci
    cluster:
      server: $server
      certificate-authority: $dir/pki/ca.crt
users:
  - name: $user
    user:
      client-certificate: $dir/pki/$user.crt
      client-key: $dir/pki/$user.key
contexts:
  - name: tasks-ci
    context: {cluster: tasks-ci, user: $user}
current-context: tasks-ci
EOF
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

  # The endpoint reconciler is off because 127.0.0.1 may not be advertised as
  # the kubernetes Service's endpoint; nothing here needs that endpoint.
  run kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
    --client-ca-file "$dir/pki/ca.crt" \
    --service-account-key-file "$dir/pki/sa.pub" --service-account-signing-key-file "$dir/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode Node,RBAC \
    --endpoint-reconciler-type none \
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
  run kwok "$bin/kwok" --kubeconfig "$dir/kubeconfig" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --config "$out/stages.yaml" \
    --server-address "127.0.0.1:$(free_port)"

  # Three fake nodes in three zones, so the Deployment's topology spread and
  # the PodDisruptionBudgets mean something.
  local k=("$bin/kubectl" --kubeconfig "$dir/kubeconfig")
  for i in 0 1 2; do
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
  {
    cat <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: static
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Retain
EOF
    for i in $(seq 0 7); do
      cat <<EOF
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: static-$i
spec:
  storageClassName: static
  capacity: {storage: 20Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /var/lib/kwok-static/$i}
EOF
    done
  } | "${k[@]}" apply --server-side -f - >/dev/null
  wait_for kube-controller-manager 60 "${k[@]}" get serviceaccount default -n default
  trap - EXIT
  log "up: $server; KUBECONFIG=$dir/kubeconfig; logs in $dir/logs"
  echo "$dir/kubeconfig"
}

case "$cmd" in
  start) start ;;
  stop) stop_all ;;
  *) usage ;;
esac
