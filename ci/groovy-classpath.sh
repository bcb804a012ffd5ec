#!/usr/bin/env bash
# Groovy 4 (Maven Central) for the checks that read Groovy with Groovy's own parser
# (ci/jenkinsfile-structure.groovy): downloads the jars (version and sha256 in
# ci/packages.txt) once per machine into ~/.cache/tasks-ci/groovy and prints the class path.
#
#   usage: ci/groovy-classpath.sh      # e.g. java -cp "$(ci/groovy-classpath.sh)" groovy.ui.GroovyMain SCRIPT ARGS...
#
# Exit codes: 0 ready, 1 the download failed.
set -euo pipefail
DIR="${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}/groovy"
cp=""
for artifact in groovy groovy-json; do
  cp="$cp${cp:+:}$("$(dirname "$0")/packages.sh" fetch "org.apache.groovy:$artifact" "$DIR")"
done
echo "$cp"
