#!/usr/bin/env bash
# The Python tools of the checks (checkov, hadolint, yamllint, kubernetes-validate,
# detect-secrets, zizmor, shellcheck, ansible, ansible-lint, matplotlib, pytest, and the
# benchmarks' flask, gunicorn, pymongo, schemathesis), pinned in
# ci/requirements.txt and the lists it includes, in a venv; reinstalled only when a
# list changes.
#
#   ci/python-tools.sh [VENV]      # default .venv
#
# Exit codes: 0 ready, 1 the install failed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-${VENV:-.venv}}
REQS=(ci/requirements.txt k8s/requirements.txt monitoring/requirements.txt ansible/requirements.txt bench/requirements.txt)
if ! cat "${REQS[@]}" | cmp -s - "$VENV/.requirements" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r ci/requirements.txt
  cat "${REQS[@]}" >"$VENV/.requirements"
fi
echo "python tools ready in $VENV"
