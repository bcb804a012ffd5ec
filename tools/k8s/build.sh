#!/usr/bin/env bash
# Build the local Kubernetes control plane from the Go module proxy, once per
# machine: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, and
# the real node's kubelet and kube-proxy (v1.33.13: the last minor that runs on
# cgroup v1 without being told to), etcd (v3.6.16) and kwok (v0.8.0), plus
# kwok's stage files; and the rest of the real node (tools/k8s/node.sh):
# containerd v2.4.2 with its runc shim and ctr, CoreDNS v1.12.4, and the pod
# sandbox's pause, compiled from the pinned Kubernetes source. Each of those is
# cached under its own version and linked into the output's bin.
#
# Output: a directory keyed by the pinned versions and the wrapper modules'
# go.sum, printed on stdout (the last line). A second run with the same pins
# prints the same directory and builds nothing. A cold build takes about 30
# minutes here (kube-apiserver alone is most of it); the Go build cache makes a
# rebuild after a pin change much shorter.
#
#   bin=$(tools/k8s/build.sh)/bin
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

KUBE_VERSION=v1.33.13
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
CONTAINERD_VERSION=v2.4.2
COREDNS_VERSION=v1.12.4
# The newest the Go module proxy serves (flaws are reported against it; it runs
# only as the test node's NetworkPolicy firewall: docs/kubernetes.md).
KUBE_ROUTER_VERSION=v2.1.0

cache_root=${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}
key=$(cat "$here/kube/go.sum" "$here/etcd/go.sum" | sha256sum | cut -c1-12)
out="$cache_root/k8s/kube-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-$key"
mkdir -p "$out/bin"

log() { echo "[k8s-build] $*" >&2; }

# module_dir MODULE@VERSION: where the Go module cache holds that module's source.
module_dir() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

timed() {
  local what=$1
  shift
  local t0=$SECONDS
  log "building $what"
  "$@" >&2
  log "built $what in $((SECONDS - t0)) s"
}

# The committed go.mod and go.sum are the whole truth: a build never edits them.
export CGO_ENABLED=0 GOFLAGS=-mod=readonly

# kubectl refuses to talk to a server whose version it cannot parse, and a
# build outside the Kubernetes release tooling would report v0.0.0-master.
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION"
  kube_ldflags+=" -X $pkg.gitMajor=1 -X $pkg.gitMinor=33"
  kube_ldflags+=" -X $pkg.gitTreeState=clean"
done

kube_bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
missing=0
for b in "${kube_bins[@]}"; do [ -x "$out/bin/$b" ] || missing=1; done
if [ "$missing" = 1 ]; then
  # One go build for all of them shares the compilation of the packages they
  # have in common.
  timed "${kube_bins[*]} $KUBE_VERSION" \
    bash -c "cd '$here/kube' && go build -trimpath -ldflags '$kube_ldflags' -o '$out/bin/' ./cmd/..."
fi

if [ ! -x "$out/bin/etcd" ]; then
  timed "etcd $ETCD_VERSION" \
    bash -c "cd '$here/etcd' && go build -trimpath -ldflags '-s -w' -o '$out/bin/etcd' ./cmd/etcd"
fi

if [ ! -x "$out/bin/kwok" ]; then
  timed "kwok $KWOK_VERSION" \
    env GOBIN="$out/bin" go install -trimpath -ldflags '-s -w' "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi

# kwok does nothing without stages ("no stages found"): the node stages mark
# our hand-made Node Ready and keep its heartbeat, the pod stages move pods
# to Running so that rollouts complete. They ship in kwok's module.
if [ ! -s "$out/stages.yaml" ]; then
  kwok_dir=$(module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")
  stage_dir="$kwok_dir/kustomize/stage"
  {
    for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
      pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo "---"
      cat "$stage_dir/$f"
    done
  } > "$out/stages.yaml.tmp"
  mv "$out/stages.yaml.tmp" "$out/stages.yaml"
fi

# go_tool DIR VERSION PACKAGE...: go install PACKAGE@VERSION into a directory of
# its own, for each PACKAGE whose binary is not there yet.
go_tool() {
  local d=$1 version=$2 p pkgs=()
  shift 2
  for p in "$@"; do
    [ -x "$d/${p##*/}" ] || pkgs+=("$p@$version")
  done
  [ ${#pkgs[@]} -eq 0 ] && return 0
  mkdir -p "$d"
  # The snapshotters that need C libraries are left out (overlayfs is the node's).
  timed "${pkgs[*]}" env GOBIN="$d" go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags '-s -w' "${pkgs[@]}"
}
containerd_dir="$cache_root/k8s/containerd-$CONTAINERD_VERSION"
go_tool "$containerd_dir" "$CONTAINERD_VERSION" github.com/containerd/containerd/v2/cmd/containerd \
  github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/ctr
coredns_dir="$cache_root/k8s/coredns-$COREDNS_VERSION"
go_tool "$coredns_dir" "$COREDNS_VERSION" github.com/coredns/coredns
kube_router_dir="$cache_root/k8s/kube-router-$KUBE_ROUTER_VERSION"
go_tool "$kube_router_dir" "$KUBE_ROUTER_VERSION" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
# pause: the process every pod's sandbox is, static (its image has nothing else).
pause_dir="$cache_root/k8s/pause-$KUBE_VERSION"
if [ ! -x "$pause_dir/pause" ]; then
  kube_src=$(cd "$here/kube" && module_dir "k8s.io/kubernetes@$KUBE_VERSION")
  mkdir -p "$pause_dir"
  timed "pause $KUBE_VERSION" gcc -Os -static -Wall -Werror \
    -DVERSION="$KUBE_VERSION" -o "$pause_dir/pause.tmp" "$kube_src/build/pause/linux/pause.c"
  mv "$pause_dir/pause.tmp" "$pause_dir/pause"
fi
for b in "$containerd_dir"/* "$coredns_dir/coredns" "$kube_router_dir/kube-router" "$pause_dir/pause"; do
  ln -sfn "$b" "$out/bin/$(basename "$b")"
done

"$out/bin/kubectl" version --client -o yaml | grep gitVersion >&2
echo "$out"
