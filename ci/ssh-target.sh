#!/usr/bin/env bash
# A separate Debian 12 machine for Ansible to provision over SSH, as it would a VM:
# its own network namespace (198.19.255.2, reached from the host's 198.19.255.1
# over a veth pair; nothing else is routed), its own mount, PID, UTS and IPC
# namespaces, a root filesystem of its own (debootstrap minbase + python3,
# openssh-server, sudo), sshd as its only service, and a login user `ansible` with
# a key made for this run and passwordless sudo, the way cloud images come.
#
#   ci/ssh-target.sh start DIR   # prints the inventory host's variables (YAML) on stdout
#   ci/ssh-target.sh ssh DIR CMD...   # runs CMD on the target as root (for checks)
#   ci/ssh-target.sh stop DIR
#
# The target reaches three things only, all served from the host: Debian's archive
# through apt-cacher-ng (an apt caching proxy, so .debs are downloaded once per
# machine; the target's apt is pointed at it, as sites with a local apt proxy do),
# the files CI_MIRROR_DIR holds (kubectl, the Compose plugin, Python wheels), served
# as their release servers would, and, with CI_TARGET_KUBECONFIG (a kubeconfig with
# its credentials embedded and the server https://127.0.0.1:PORT), that API server:
# the file becomes the login user's ~/.kube/config, as `minikube start` leaves it,
# and the target's own 127.0.0.1:PORT is carried to the host's over a Unix socket
# (socat, as tools/k8s/node.sh carries its node's). Root, iproute2, util-linux, socat.
# Exit codes: 0 done, 1 it failed, 2 usage.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}"
HOST_IP=198.19.255.1 TARGET_IP=198.19.255.2
[ $# -ge 2 ] || { sed -n '2,22p' "$0" >&2; exit 2; }
CMD=$1 DIR=$2
shift 2

ssh_opts() {
  echo -o BatchMode=yes -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$DIR/known_hosts" \
    -o ConnectTimeout=5 -i "$DIR/id_ed25519"
}

case "$CMD" in
start)
  # Only the inventory variables go to stdout (fd 3); everything else to stderr.
  exec 3>&1 1>&2
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  # The image, once per machine. Host keys are not part of it: each target makes its own.
  BASE="$CACHE/rootfs-bookworm-ssh-target"
  if [ ! -x "$BASE/usr/sbin/sshd" ]; then
    "$ROOT/ci/packages.sh" install debootstrap
    rm -rf "$BASE.tmp"
    debootstrap --variant=minbase --include=python3,ca-certificates,openssh-server,sudo \
      bookworm "$BASE.tmp" http://deb.debian.org/debian >"$DIR/debootstrap.log" 2>&1 \
      || { tail -20 "$DIR/debootstrap.log" >&2; exit 1; }
    # No init system runs there: package scripts must not try to start services.
    printf '#!/bin/sh\nexit 101\n' >"$BASE.tmp/usr/sbin/policy-rc.d"
    chmod 755 "$BASE.tmp/usr/sbin/policy-rc.d"
    rm -f "$BASE.tmp"/etc/ssh/ssh_host_*
    rm -rf "$BASE.tmp"/var/cache/apt/archives/*.deb "$BASE.tmp"/var/lib/apt/lists/*_Packages
    mv "$BASE.tmp" "$BASE"
  fi
  TARGET="$DIR/rootfs"
  cp -a "$BASE" "$TARGET"
  echo tasks-target >"$TARGET/etc/hostname"
  printf '127.0.0.1 localhost\n%s tasks-target\n' "$TARGET_IP" >"$TARGET/etc/hosts"
  : >"$TARGET/etc/resolv.conf"
  chroot "$TARGET" ssh-keygen -q -A
  ssh-keygen -q -t ed25519 -N '' -C "tasks-ci-ansible" -f "$DIR/id_ed25519"
  echo "$TARGET_IP $(cat "$TARGET/etc/ssh/ssh_host_ed25519_key.pub")" >"$DIR/known_hosts"
  chroot "$TARGET" useradd --create-home --shell /bin/bash ansible
  install -d -m 700 -o "$(chroot "$TARGET" id -u ansible)" -g "$(chroot "$TARGET" id -g ansible)" "$TARGET/home/ansible/.ssh"
  install -m 600 -o "$(chroot "$TARGET" id -u ansible)" "$DIR/id_ed25519.pub" "$TARGET/home/ansible/.ssh/authorized_keys"
  echo 'ansible ALL=(ALL:ALL) NOPASSWD: ALL' >"$TARGET/etc/sudoers.d/ansible"
  chmod 440 "$TARGET/etc/sudoers.d/ansible"
  printf 'PasswordAuthentication no\nPermitRootLogin no\nListenAddress %s\n' "$TARGET_IP" >"$TARGET/etc/ssh/sshd_config.d/ci.conf"
  API_PORT=""
  if [ -n "${CI_TARGET_KUBECONFIG:-}" ]; then
    API_PORT=$(sed -n 's|^ *server: https://127\.0\.0\.1:\([0-9][0-9]*\)/*$|\1|p' "$CI_TARGET_KUBECONFIG")
    [ -n "$API_PORT" ] || { echo "CI_TARGET_KUBECONFIG: the server is not https://127.0.0.1:PORT" >&2; exit 1; }
    install -d -m 700 -o "$(chroot "$TARGET" id -u ansible)" -g "$(chroot "$TARGET" id -g ansible)" "$TARGET/home/ansible/.kube"
    install -m 600 -o "$(chroot "$TARGET" id -u ansible)" "$CI_TARGET_KUBECONFIG" "$TARGET/home/ansible/.kube/config"
  fi

  # Debian's archive through the apt proxy on the host's end of the link. The proxy
  # fetches from deb.debian.org, the mirror the target asks for (its stock backend
  # list would send it to ftp.debian.org).
  "$ROOT/ci/packages.sh" install apt-cacher-ng
  mkdir -p "$CACHE/apt-cacher-ng" "$DIR/acng-log"
  echo "Acquire::http::Proxy \"http://$HOST_IP:3142\";" >"$TARGET/etc/apt/apt.conf.d/01proxy"

  # The link. Its addresses are fixed, so there is one target per machine: one
  # left by a run killed before its `stop` is switched off first.
  for ns in $(ip netns list | awk '/^tasks-target-[0-9]+/ {print $1}'); do
    echo "switching off the target a killed run left: $ns"
    for pid in $(ip netns pids "$ns"); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns"
  done
  for link in $(ip -o link show | sed -n 's/^[0-9]*: \(tt[0-9]*h\)@.*/\1/p'); do ip link del "$link"; done
  pkill -f "apt-cacher-ng .*BindAddress=$HOST_IP " || true
  pkill -f "http.server --bind $HOST_IP " || true
  NS="tasks-target-$$" VETH="tt$$h"
  echo "$NS" >"$DIR/netns"
  echo "$VETH" >"$DIR/veth"
  ip netns add "$NS"
  ip link add "$VETH" type veth peer name "tt$$t"
  ip link set "tt$$t" netns "$NS"
  ip addr add "$HOST_IP/30" dev "$VETH"
  ip link set "$VETH" up
  ip -n "$NS" link set lo up
  ip -n "$NS" addr add "$TARGET_IP/30" dev "tt$$t"
  ip -n "$NS" link set "tt$$t" up

  /usr/sbin/apt-cacher-ng -c /etc/apt-cacher-ng ForeGround=1 "BindAddress=$HOST_IP" Port=3142 \
    "CacheDir=$CACHE/apt-cacher-ng" "LogDir=$DIR/acng-log" "PidFile=$DIR/acng.pid" \
    "SocketPath=$DIR/acng.socket" \
    "Remap-debrep=file:deb_mirror*.gz /debian ; http://deb.debian.org/debian/" >"$DIR/acng.out" 2>&1 &
  echo $! >"$DIR/acng.pid.run"
  if [ -n "${CI_MIRROR_DIR:-}" ]; then
    python3 -m http.server --bind "$HOST_IP" --directory "$CI_MIRROR_DIR" 8080 >"$DIR/mirror.log" 2>&1 &
    echo $! >"$DIR/mirror.pid"
  fi

  if [ -n "$API_PORT" ]; then
    socat "UNIX-LISTEN:$DIR/api.sock,fork,unlink-early,mode=600" "TCP:127.0.0.1:$API_PORT" >"$DIR/api-host.log" 2>&1 &
    echo $! >"$DIR/api-host.pid"
    nsenter --net="/run/netns/$NS" socat "TCP-LISTEN:$API_PORT,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$DIR/api.sock" \
      >"$DIR/api-target.log" 2>&1 &
    echo $! >"$DIR/api-target.pid"
  fi

  # The machine: sshd in its own namespaces, chrooted into its root filesystem.
  # --kill-child: when unshare dies, everything inside dies with it (its PID
  # namespace's init is killed). unshare ignores SIGTERM while it waits, so `stop`
  # sends SIGKILL: the machine is switched off, not shut down.
  # nsenter joins the link's namespace and execs, so $! is unshare's PID.
  nsenter --net="/run/netns/$NS" unshare --mount --uts --ipc --pid --fork --kill-child \
    chroot "$TARGET" /bin/sh -c '
      mount -t proc proc /proc
      mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
      mount --bind /dev/pts/ptmx /dev/ptmx
      mount -t tmpfs -o mode=1777 tmpfs /dev/shm
      mount -t tmpfs -o mode=755 tmpfs /run
      mkdir -p /run/sshd
      hostname tasks-target
      exec /usr/sbin/sshd -D -e' >"$DIR/sshd.log" 2>&1 &
  echo $! >"$DIR/target.pid"
  for _ in $(seq 50); do
    # shellcheck disable=SC2046  # ssh_opts: words on purpose
    if ssh $(ssh_opts) "ansible@$TARGET_IP" true 2>/dev/null; then break; fi
    sleep 0.2
  done
  # shellcheck disable=SC2046
  ssh $(ssh_opts) "ansible@$TARGET_IP" true || { cat "$DIR/sshd.log" >&2; exit 1; }
  cat >&3 <<YAML
ansible_host: $TARGET_IP
ansible_user: ansible
ansible_ssh_private_key_file: $DIR/id_ed25519
ansible_ssh_common_args: -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$DIR/known_hosts
ansible_python_interpreter: /usr/bin/python3
ci_mirror: http://$HOST_IP:8080
YAML
  ;;

ssh)
  [ $# -ge 1 ] || { echo "usage: $0 ssh DIR CMD..." >&2; exit 2; }
  # One remote command line, each word quoted as given.
  # shellcheck disable=SC2046
  ssh $(ssh_opts) "ansible@$TARGET_IP" sudo -n -- "$(printf '%q ' "$@")"
  ;;

stop)
  for f in target.pid mirror.pid acng.pid.run api-host.pid api-target.pid; do
    if [ -f "$DIR/$f" ]; then
      pid=$(cat "$DIR/$f")
      if [ "$f" = target.pid ]; then kill -KILL "$pid" 2>/dev/null || true; else kill "$pid" 2>/dev/null || true; fi
      # Not our child here: wait for it to be gone.
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$DIR/$f"
    fi
  done
  # The veth pair goes with the namespace.
  if [ -f "$DIR/netns" ]; then ip netns del "$(cat "$DIR/netns")" 2>/dev/null || true; rm -f "$DIR/netns"; fi
  if [ -f "$DIR/veth" ]; then ip link del "$(cat "$DIR/veth")" 2>/dev/null || true; rm -f "$DIR/veth"; fi
  ;;

*) sed -n '2,22p' "$0" >&2; exit 2 ;;
esac
