#!/usr/bin/env bash
# Lint the Jenkins side: npm-groovy-lint (CodeNarc; Groovy syntax and style) on the
# Jenkinsfile and every Groovy file of jenkins/ and ci/, hadolint on the
# controller's and the agent's Dockerfiles, yamllint on the JCasC files, and the Jenkinsfile's
# declarative structure as Groovy's own parser reads it (ci/tests/test_cicd.py
# asserts on that structure).
#
#   ci/jenkins-lint.sh
#
# npm-groovy-lint (ci/packages.txt; 15.2.2 is the last release for Node 20) is installed from npm once
# per machine into ~/.cache/tasks-ci/npm. Exit codes: 0 clean, 1 findings.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
NGL_VERSION=$(ci/packages.sh version npm-groovy-lint)
NGL_DIR="${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}/npm/npm-groovy-lint-$NGL_VERSION"
if [ ! -x "$NGL_DIR/node_modules/.bin/npm-groovy-lint" ]; then
  echo "installing npm-groovy-lint $NGL_VERSION (once per machine) ..." >&2
  npm install --prefix "$NGL_DIR" --no-audit --no-fund --silent "npm-groovy-lint@$NGL_VERSION" >&2
fi
mapfile -t groovy < <(git ls-files 'Jenkinsfile' '*.groovy')
echo "npm-groovy-lint: ${groovy[*]}"
# --noserver: no CodeNarc server left running; --failon error: syntax and
# correctness errors fail, style warnings are printed.
"$NGL_DIR/node_modules/.bin/npm-groovy-lint" --noserver --failon error --files "$(IFS=,; echo "${groovy[*]}")" .
"$VENV/bin/hadolint" jenkins/Dockerfile jenkins/agent.Dockerfile
"$VENV/bin/yamllint" -c .yamllint.yaml --strict jenkins/
java -cp "$(ci/groovy-classpath.sh)" groovy.ui.GroovyMain ci/jenkinsfile-structure.groovy Jenkinsfile \
  | "$VENV/bin/python" -c 'import json,sys; s=json.load(sys.stdin); print("Jenkinsfile stages: " + " -> ".join(x["name"] for x in s["stages"]))'
