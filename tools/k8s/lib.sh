# shellcheck shell=bash
# Sourced by control-plane.sh and node.sh: certificates signed by the cluster's
# CA in PKI_DIR and kubeconfigs that use them; components started in the
# background with their logs in LOG_DIR and PIDs in PID_FILE; pre-made volumes.
# The sourcing script sets those three and defines log. Exit codes: none (a
# library).
LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# cert NAME SUBJECT [SAN]: PKI_DIR/NAME.key and .crt signed by PKI_DIR/ca; a
# server certificate when SAN is given, a client certificate otherwise.
cert() {
  local name=$1 subj=$2 san=${3:-} p=${PKI_DIR:?} ext
  openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$p/$name.key" -out "$p/$name.csr" 2>/dev/null
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

# kubeconfig USER OUT SERVER: a kubeconfig for SERVER as USER (PKI_DIR/USER.crt).
kubeconfig() {
  local user=$1 out=$2 server=$3
  cat >"$out" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: tasks-ci
    cluster:
      server: $server
      certificate-authority: $PKI_DIR/ca.crt
users:
  - name: $user
    user:
      client-certificate: $PKI_DIR/$user.crt
      client-key: $PKI_DIR/$user.key
contexts:
  - name: tasks-ci
    context: {cluster: tasks-ci, user: $user}
current-context: tasks-ci
KUBECONFIG
}

# run NAME CMD...: CMD in the background, its output in LOG_DIR/NAME.log, its PID
# recorded in PID_FILE for stop (CMD must exec what it starts, as nsenter does).
run() {
  local name=$1
  shift
  "$@" >"${LOG_DIR:?}/$name.log" 2>&1 &
  echo "$name $!" >>"${PID_FILE:?}"
}

# stop_recorded: every PID in PID_FILE told to stop at once (a component that
# outlives its apiserver or etcd only logs errors until its own SIGTERM lands);
# then each is waited for, and killed after 10 s, in reverse start order.
stop_recorded() {
  [ -f "$PID_FILE" ] || return 0
  local pids pid
  pids=$(tac "$PID_FILE" | awk '{print $2}')
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
  rm -f "$PID_FILE"
}

# free_port: a free loopback TCP port (ci/free-port.py).
free_port() {
  "$LIB_DIR/../../ci/free-port.py"
}

# wait_for NAME SECONDS CHECK...: poll CHECK until it succeeds; fail with NAME's
# log if it dies or the time runs out.
wait_for() {
  local name=$1 seconds=$2
  shift 2
  local pid t0=$SECONDS
  pid=$(awk -v n="$name" '$1 == n {print $2}' "$PID_FILE")
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited; its log:"
      tail -40 "$LOG_DIR/$name.log" >&2
      return 1
    fi
    if [ $((SECONDS - t0)) -ge "$seconds" ]; then
      log "$name not ready after $seconds s; its log:"
      tail -40 "$LOG_DIR/$name.log" >&2
      return 1
    fi
    sleep 0.2
  done
  log "$name ready in $((SECONDS - t0)) s"
}

# volumes CLASS COUNT DIR: a default StorageClass CLASS without a provisioner and
# COUNT pre-made hostPath volumes DIR/0.., which the PersistentVolume controller
# binds claims to (the smallest that fits), as YAML on stdout.
volumes() {
  local class=$1 count=$2 base=$3 i
  cat <<YAML
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $class
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Retain
YAML
  for i in $(seq 0 $((count - 1))); do
    cat <<YAML
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: $class-$i
spec:
  storageClassName: $class
  capacity: {storage: 20Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: $base/$i}
YAML
  done
}
