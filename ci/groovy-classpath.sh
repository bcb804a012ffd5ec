#!/usr/bin/env bash
# Groovy 4 (Maven Central) for the checks that read Groovy with Groovy's own parser
# (ci/jenkinsfile-structure.groovy): downloads the jars once per machine into
# ~/.cache/tasks-ci/groovy and prints the class path.
#
#   usage: ci/groovy-classpath.sh      # e.g. java -cp "$(ci/groovy-classpath.sh)" groovy.ui.GroovyMain SCRIPT ARGS...
#
# Exit codes: 0 ready, 1 the download failed.
set -euo pipefail
VERSION=4.0.33
DIR="${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}/groovy"
mkdir -p "$DIR"
cp=""
for artifact in groovy groovy-json; do
  jar="$DIR/$artifact-$VERSION.jar"
  if [ ! -f "$jar" ]; then
    curl -sSfL --retry 3 -o "$jar.part" \
      "https://repo1.maven.org/maven2/org/apache/groovy/$artifact/$VERSION/$artifact-$VERSION.jar"
    mv "$jar.part" "$jar"
  fi
  cp="$cp${cp:+:}$jar"
done
echo "$cp"
