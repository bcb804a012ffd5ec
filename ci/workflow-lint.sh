#!/usr/bin/env bash
# Lint the GitHub Actions workflows: actionlint (with shellcheck on every `run:`),
# zizmor (security audits; offline: the audits that query GitHub are skipped) and
# yamllint.
#
#   ci/workflow-lint.sh
#
# actionlint is built from the Go module proxy once per machine (ci/go-tool.sh);
# zizmor, shellcheck and yamllint come from $VENV (default .venv, ci/python-tools.sh).
# Exit codes: 0 clean, 1 findings.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
ACTIONLINT=$(ci/go-tool.sh github.com/rhysd/actionlint/cmd/actionlint)
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
PATH="$VENV/bin:$PATH"
command -v shellcheck >/dev/null || { echo "shellcheck missing from $VENV" >&2; exit 1; }
"$ACTIONLINT" -version | sed -n 1p
"$ACTIONLINT" -shellcheck "$(command -v shellcheck)" .github/workflows/*.yml
echo "actionlint: clean"
zizmor --offline --persona regular --no-progress .github/workflows/
yamllint -c .yamllint.yaml --strict .github/
echo "yamllint: clean"
