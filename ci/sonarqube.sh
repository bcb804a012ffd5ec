#!/usr/bin/env bash
# SonarQube for the quality gate in .ci/run (docs/cicd.md), the way the lab runs
# it: k8s/sonarqube in namespace `sonarqube` on the real node (tools/k8s/node.sh),
# reached through `kubectl port-forward --address 0.0.0.0`, as the README says.
#
#   ci/sonarqube.sh image               # builds the image k8s/sonarqube names (once per version), prints its name
#   ci/sonarqube.sh forward DIR         # the port-forward, in the background (DIR/pid, DIR/url); prints the URL
#   ci/sonarqube.sh wait DIR [SECS]     # until /api/system/status is UP (default 900 s)
#   ci/sonarqube.sh token DIR           # replaces admin/admin by a random password, prints an admin user token
#   ci/sonarqube.sh analysis-token DIR PROJECT  # after `token`: a token that may only analyse PROJECT (Jenkins')
#   ci/sonarqube.sh stop DIR            # stops the port-forward by PID
#
# The image: no registry here serves Docker Hub's sonarqube:<version>-community, so
# it is built here (ci/standins/sonarqube.Dockerfile) from the Community Build zip
# of Maven Central (ci/packages.txt's version and sha256; ~950 MB, downloaded once
# per machine and unpacked under ~/.cache/tasks-ci/sonarqube) and the JDK of
# SONAR_JAVA (default: the Temurin 25 JDK when present; this
# version needs Java 21+). It is rebuilt only when the recipe, the version or the
# JDK changes. DOCKER (default docker) and DOCKER_HOST pick the engine; KUBECTL
# (default kubectl) and KUBECONFIG the cluster.
# Exit codes: 0 done, 1 failed (the logs are printed), 2 usage.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
VERSION=$("$here/packages.sh" version org.sonarsource.sonarqube:sonar-application)
CACHE="${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}/sonarqube"
IMAGE="sonarqube:$VERSION-community"
KUBECTL=${KUBECTL:-kubectl}
usage() { echo "usage: $0 image | forward|wait|token|analysis-token|stop DIR [SECS|PROJECT]" >&2; exit 2; }
[ $# -ge 1 ] || usage
CMD=$1
if [ "$CMD" != image ]; then [ $# -ge 2 ] || usage; DIR=$2; fi

jdk_home() {
  local java=${SONAR_JAVA:-}
  if [ -z "$java" ]; then
    for j in /usr/lib/jvm/temurin-25-jdk-amd64/bin/java /usr/lib/jvm/temurin-21-jdk-amd64/bin/java; do
      [ -x "$j" ] && { java=$j; break; }
    done
  fi
  java=$(readlink -f "${java:-$(command -v java)}")
  dirname "$(dirname "$java")"
}

# The unpacked server, once per machine.
server() {
  if [ ! -d "$CACHE/sonarqube-$VERSION/lib" ]; then
    mkdir -p "$CACHE"
    local zip
    zip=$("$here/packages.sh" fetch org.sonarsource.sonarqube:sonar-application "$CACHE")
    rm -rf "$CACHE/unpack.$$" && mkdir "$CACHE/unpack.$$"
    unzip -q "$zip" -d "$CACHE/unpack.$$"
    mv "$CACHE/unpack.$$/sonarqube-$VERSION" "$CACHE/sonarqube-$VERSION"
    rmdir "$CACHE/unpack.$$"
  fi
  echo "$CACHE/sonarqube-$VERSION"
}

pod_logs() {
  "$KUBECTL" get pods -n sonarqube -o wide >&2 || true
  "$KUBECTL" logs -n sonarqube statefulset/sonarqube --tail 40 >&2 || true
}

case "$CMD" in
image)
  docker=${DOCKER:-docker}
  jdk=$(jdk_home)
  recipe="$here/standins/sonarqube.Dockerfile"
  hash=$({ cat "$recipe" "$0"; echo "$VERSION"; cat "$jdk/release"; } | sha256sum | cut -c1-16)
  if [ "$("$docker" image inspect -f '{{ index .Config.Labels "tasks-ci.recipe" }}' "$IMAGE" 2>/dev/null)" != "$hash" ]; then
    src=$(server)
    DOCKER=$docker "$here/base-images.sh" --debian-only
    ctx=$(mktemp -d)
    trap 'rm -rf "$ctx"' EXIT
    # The whole JDK, not a jlinked runtime: Elasticsearch's entitlement checks
    # require jdk.jlink and jdk.jdi, which jlink cannot put in an image made from
    # a JDK without packaged modules (Temurin 25's).
    cp -al "$jdk" "$ctx/jdk"
    # Hard links: the cache's 1 GB is not copied.
    cp -al "$src" "$ctx/sonarqube"
    cp "$recipe" "$ctx/Dockerfile"
    DOCKER_BUILDKIT=1 "$docker" build --force-rm --label "tasks-ci.recipe=$hash" -t "$IMAGE" "$ctx" >&2
  fi
  echo "$IMAGE"
  ;;
forward)
  mkdir -p "$DIR"
  port=$("$here/free-port.py")
  # The README's command, on a free port rather than 9000 (a CI machine may be
  # running anything). Run once the pod is Ready, so the first connection finds the
  # server listening; the caller changes admin/admin right after `wait`.
  "$KUBECTL" port-forward --address 0.0.0.0 -n sonarqube svc/sonarqube "$port:9000" >"$DIR/forward.log" 2>&1 &
  echo $! >"$DIR/pid"
  for _ in $(seq 1 100); do
    grep -q '^Forwarding from' "$DIR/forward.log" && break
    kill -0 "$(cat "$DIR/pid")" 2>/dev/null || { cat "$DIR/forward.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "http://127.0.0.1:$port" >"$DIR/url"
  cat "$DIR/url"
  ;;
wait)
  limit=${3:-900}
  url=$(cat "$DIR/url")
  pid=$(cat "$DIR/pid")
  start=$(date +%s)
  status=""
  while :; do
    status=$(curl -sf "$url/api/system/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' 2>/dev/null || true)
    [ "$status" = UP ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the port-forward to SonarQube ended (last status: ${status:-none}):" >&2
      cat "$DIR/forward.log" >&2
      pod_logs
      exit 1
    fi
    if [ $(( $(date +%s) - start )) -ge "$limit" ]; then
      echo "SonarQube was not up after ${limit}s (status: ${status:-no answer}); its logs:" >&2
      pod_logs
      exit 1
    fi
    sleep 3
  done
  echo "SonarQube $VERSION up at $url (waited $(( $(date +%s) - start ))s)"
  ;;
token)
  # The default admin/admin is what everyone knows: change it first, as soon as the
  # server is up (kept in DIR, mode 600), then issue a token for the operator's part.
  # The server's password policy wants 12+ characters with an upper- and a
  # lower-case letter, a digit and a special character: token_urlsafe alone has
  # no special character about one time in three (a 400 that failed a run).
  # Credentials reach curl as a config on stdin, never on its command line (which
  # any user of the machine can read in /proc).
  url=$(cat "$DIR/url")
  pass=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24) + "aA1!")')
  printf 'user = "admin:admin"\ndata-urlencode = "password=%s"\n' "$pass" \
    | curl -sS --fail-with-body --config - -XPOST "$url/api/users/change_password" \
      --data-urlencode login=admin --data-urlencode previousPassword=admin >&2
  (umask 077; echo "$pass" >"$DIR/admin-password")
  printf 'user = "admin:%s"\n' "$pass" \
    | curl -sS --fail-with-body --config - -XPOST "$url/api/user_tokens/generate" --data-urlencode "name=ci-$(date +%s)" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
  ;;
analysis-token)
  # Jenkins' credential: a project analysis token can scan that one project and
  # read its gate; it cannot administer the server or touch another project.
  [ $# -eq 3 ] || { echo "usage: $0 analysis-token DIR PROJECT" >&2; exit 2; }
  printf 'user = "admin:%s"\n' "$(cat "$DIR/admin-password")" \
    | curl -sS --fail-with-body --config - -XPOST "$(cat "$DIR/url")/api/user_tokens/generate" \
      --data-urlencode "name=jenkins-$(date +%s)" --data-urlencode type=PROJECT_ANALYSIS_TOKEN --data-urlencode "projectKey=$3" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
  ;;
stop)
  if [ -f "$DIR/pid" ]; then
    kill "$(cat "$DIR/pid")" 2>/dev/null || true
    rm -f "$DIR/pid"
  fi
  ;;
*) usage ;;
esac
