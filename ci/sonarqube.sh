#!/usr/bin/env bash
# A throw-away SonarQube Community Build on loopback, for the quality gate in
# .ci/run (docs/cicd.md). The server is downloaded once per machine from Maven
# Central (~950 MB) and unpacked under ~/.cache/tasks-ci/sonarqube; each run gets
# a hard-linked copy and its own data, so nothing of one run leaks into the next.
#
#   ci/sonarqube.sh start DIR       # starts it in the background, prints the URL; does not wait
#   ci/sonarqube.sh wait DIR [SECS] # until /api/system/status is UP (default 900 s)
#   ci/sonarqube.sh token DIR       # replaces admin/admin by a random password, prints an admin user token
#   ci/sonarqube.sh analysis-token DIR PROJECT  # after `token`: a token that may only analyse PROJECT (Jenkins')
#   ci/sonarqube.sh stop DIR        # stops it by PID (also a half-started one)
#
# Elasticsearch's disk watermarks are off: they are percentages of the whole disk
# (90 % used = no shard allocated), so on a large shared build disk a tiny,
# throw-away index was refused and SonarQube stopped (seen in .ci/run at 91 %).
# It runs as `nobody`: Elasticsearch refuses root, and SonarQube then exits 0
# anyway, so root would look like a slow start that never ends.
# The version (and its sha256) is ci/packages.txt's; SONAR_JAVA is the Java it runs on
# (default: the Temurin 25 JDK when present; this version needs Java 21+).
# Exit codes: 0 done, 1 failed (the log tail is printed), 2 usage.
set -euo pipefail
VERSION=$("$(dirname "$0")/packages.sh" version org.sonarsource.sonarqube:sonar-application)
CACHE="${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}/sonarqube"
[ $# -ge 2 ] || { echo "usage: $0 start|wait|token|analysis-token|stop DIR [SECS|PROJECT]" >&2; exit 2; }
CMD=$1 DIR=$2

java_bin() {
  if [ -n "${SONAR_JAVA:-}" ]; then echo "$SONAR_JAVA"; return; fi
  for j in /usr/lib/jvm/temurin-25-jdk-amd64/bin/java /usr/lib/jvm/temurin-21-jdk-amd64/bin/java; do
    [ -x "$j" ] && { echo "$j"; return; }
  done
  command -v java
}

case "$CMD" in
start)
  if [ ! -d "$CACHE/sonarqube-$VERSION/lib" ]; then
    mkdir -p "$CACHE"
    zip=$("$(dirname "$0")/packages.sh" fetch org.sonarsource.sonarqube:sonar-application "$CACHE")
    rm -rf "$CACHE/unpack.$$" && mkdir "$CACHE/unpack.$$"
    unzip -q "$zip" -d "$CACHE/unpack.$$"
    mv "$CACHE/unpack.$$/sonarqube-$VERSION" "$CACHE/sonarqube-$VERSION"
    rmdir "$CACHE/unpack.$$"
  fi
  mkdir -p "$DIR"
  chmod 755 "$DIR"
  # Hard links: the copy costs no space and the cache stays untouched (the
  # server writes only to extensions/ and the paths set below). Outside $HOME, which nobody
  # cannot enter.
  cp -al "$CACHE/sonarqube-$VERSION" "$DIR/server"
  # extensions/ is written at start (plugin downloads dir): a real, owned copy.
  rm -rf "$DIR/server/extensions"
  cp -r "$CACHE/sonarqube-$VERSION/extensions" "$DIR/server/extensions"
  mkdir -p "$DIR/data" "$DIR/temp" "$DIR/logs"
  chown -R 65534:65534 "$DIR/data" "$DIR/temp" "$DIR/logs" "$DIR/server/extensions"
  port=$("$(dirname "$0")/free-port.py")
  java=$(java_bin)
  "$java" -version 2>&1 | sed -n 1p >&2   # sed reads to the end: no SIGPIPE
  (
    cd "$DIR/server"
    exec setpriv --reuid=65534 --regid=65534 --clear-groups \
      "$java" -Xmx256m \
      --add-exports=java.base/jdk.internal.ref=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED \
      --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED \
      --add-opens=java.management/sun.management=ALL-UNNAMED --add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED \
      -jar "lib/sonar-application-$VERSION.jar" \
      -Dsonar.web.host=127.0.0.1 -Dsonar.web.port="$port" -Dsonar.search.host=127.0.0.1 -Dsonar.search.port=0 \
      -Dsonar.path.data="$DIR/data" -Dsonar.path.temp="$DIR/temp" -Dsonar.path.logs="$DIR/logs" \
      -Dsonar.web.javaOpts="-Xmx512m -Xms128m" -Dsonar.ce.javaOpts="-Xmx512m -Xms128m" \
      -Dsonar.search.javaOpts="-Xmx512m -Xms512m -XX:MaxDirectMemorySize=256m" \
      -Dsonar.search.javaAdditionalOpts="-Dcluster.routing.allocation.disk.threshold_enabled=false" \
      -Dsonar.telemetry.enable=false -Dsonar.updatecenter.activate=false
  ) >"$DIR/console.log" 2>&1 &
  echo $! >"$DIR/pid"
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
      echo "SonarQube exited before it was up (last status: ${status:-none}); its logs:" >&2
      tail -n 40 "$DIR/console.log" "$DIR"/logs/*.log >&2 || true
      exit 1
    fi
    if [ $(( $(date +%s) - start )) -ge "$limit" ]; then
      echo "SonarQube was not up after ${limit}s (status: ${status:-no answer}); its logs:" >&2
      tail -n 40 "$DIR/console.log" "$DIR"/logs/*.log >&2 || true
      exit 1
    fi
    sleep 3
  done
  echo "SonarQube $VERSION up at $url (waited $(( $(date +%s) - start ))s)"
  ;;
token)
  # The default admin/admin is what the whole loopback machine knows: change it
  # first (kept in DIR, mode 600), then issue a token for the scanner and the gate.
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
    pid=$(cat "$DIR/pid")
    # The main process stops its children (Elasticsearch, web, compute engine)
    # on SIGTERM; wait for it, then make sure nothing of this run is left.
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
    pkill -9 -u 65534 -f "$DIR/" 2>/dev/null || true
    rm -f "$DIR/pid"
  fi
  ;;
*) echo "usage: $0 start|wait|token|analysis-token|stop DIR [SECS|PROJECT]" >&2; exit 2 ;;
esac
