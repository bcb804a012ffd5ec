#!/usr/bin/env bash
# A local OCI registry (distribution v3, built from the Go module proxy once per
# machine into ~/.cache/tasks-ci/bin) on loopback, for pushing and pulling images
# where no public registry is reachable.
#
#   ci/local-registry.sh start    # prints the registry address (127.0.0.1:PORT)
#   ci/local-registry.sh stop
#
# Docker needs no insecure-registry setting for 127.0.0.0/8.
# Exit codes: 0 done, 1 it did not come up, 2 usage.
set -euo pipefail
RUN=${TASKS_REGISTRY_RUN:-/tmp/tasks-registry}

start() {
  local BIN
  BIN=$("$(dirname "$0")/go-tool.sh" github.com/distribution/distribution/v3/cmd/registry)
  mkdir -p "$RUN/storage"
  local port
  port=$("$(dirname "$0")/free-port.py")
  cat >"$RUN/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $RUN/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
  OTEL_TRACES_EXPORTER=none "$BIN" serve "$RUN/config.yml" >"$RUN/registry.log" 2>&1 &
  echo $! >"$RUN/registry.pid"
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/v2/" >/dev/null; then
      echo "127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "the registry did not come up:" >&2
  cat "$RUN/registry.log" >&2
  return 1
}

stop() {
  if [ -f "$RUN/registry.pid" ]; then
    kill "$(cat "$RUN/registry.pid")" 2>/dev/null || true
  fi
  rm -rf "$RUN"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
