#!/usr/bin/env bash
# Start or stop a private Docker engine for the container checks (.ci/run, by hand).
#
#   ci/docker-engine.sh start    # prints `export DOCKER_HOST=...`; eval it
#   ci/docker-engine.sh stop
#
# Debian's docker.io (dockerd 20.10) is installed when missing (ci/packages.txt). The engine keeps
# its images and build cache under ~/.cache/tasks-ci/docker (override with
# TASKS_CI_CACHE), so base images and cargo's cache mounts survive between runs;
# its socket, pid file and exec root live in a run directory that `stop` removes.
# No init system is needed (none runs in these sandboxes).
# Exit codes: 0 done, 1 the engine did not come up (its log is printed), 2 usage.
set -euo pipefail

CACHE=${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}
RUN=${TASKS_DOCKER_RUN:-/tmp/tasks-docker}
SOCK="$RUN/docker.sock"

start() {
  "$(dirname "$0")/packages.sh" install docker.io
  mkdir -p "$CACHE/docker" "$RUN"
  if [ -S "$SOCK" ] && DOCKER_HOST="unix://$SOCK" /usr/bin/docker version >/dev/null 2>&1; then
    echo "export DOCKER_HOST=unix://$SOCK"
    return 0
  fi
  # iptables may be unusable in a sandbox; the default bridge still gives
  # containers loopback-published ports through docker-proxy.
  dockerd --data-root "$CACHE/docker" --exec-root "$RUN/exec" -H "unix://$SOCK" \
    --pidfile "$RUN/dockerd.pid" >"$RUN/dockerd.log" 2>&1 &
  for _ in $(seq 1 120); do
    if DOCKER_HOST="unix://$SOCK" /usr/bin/docker version >/dev/null 2>&1; then
      echo "export DOCKER_HOST=unix://$SOCK"
      return 0
    fi
    sleep 0.5
  done
  echo "dockerd did not come up; its log:" >&2
  tail -40 "$RUN/dockerd.log" >&2
  return 1
}

stop() {
  if [ -f "$RUN/dockerd.pid" ]; then
    local pid
    pid=$(cat "$RUN/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  # dockerd leaves its network namespace mounted.
  umount "$RUN/exec/netns/default" 2>/dev/null || true
  rm -rf "$RUN"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
