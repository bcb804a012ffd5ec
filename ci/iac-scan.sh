#!/usr/bin/env bash
# Scan every infrastructure-as-code file: shellcheck (every shell script), checkov (Dockerfiles, GitHub Actions, the
# rendered Kubernetes manifests, Ansible), hadolint (Dockerfiles), yamllint.
#
#   ci/iac-scan.sh
#
# Tools from $VENV (default .venv, ci/python-tools.sh); KUBECTL (default kubectl)
# renders the kustomizations. Exit codes: 0 clean, 1 findings.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
KUBECTL=${KUBECTL:-kubectl}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
mapfile -t dockerfiles < <(git ls-files 'Dockerfile' '*.Dockerfile' '*/Dockerfile')

checkov() { # name, checkov args...
  local name=$1; shift
  "$VENV/bin/checkov" --skip-download --quiet --compact "$@" >"$OUT/$name.txt" 2>&1 || true
  if ! grep -E "^(Passed|Failed) checks" "$OUT/$name.txt" >/dev/null || grep -E "Failed checks: [1-9]" "$OUT/$name.txt" >/dev/null \
      || grep -iE "^(error|Traceback)" "$OUT/$name.txt" >/dev/null; then
    cat "$OUT/$name.txt"
    echo "checkov ($name): findings or errors" >&2
    return 1
  fi
  echo "checkov ($name): $(grep -E '^Passed checks' "$OUT/$name.txt" | paste -sd' ')"
}

# Shell scripts: every tracked one, warnings and errors, and any upper-case
# variable read but never assigned (scripts that CI does not run, such as most
# of bench/, rot this way first: a variable a refactor removed).
mapfile -t scripts < <(git ls-files '*.sh' .ci/run)
"$VENV/bin/shellcheck" --severity=warning -o check-unassigned-uppercase "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts clean"
echo "hadolint: ${dockerfiles[*]}"
"$VENV/bin/hadolint" "${dockerfiles[@]}"
files=()
for f in "${dockerfiles[@]}"; do files+=(-f "$f"); done
checkov dockerfile --framework dockerfile "${files[@]}"
checkov github-actions --framework github_actions -d .github
# Kubernetes as it is applied: each kustomization rendered, from a copy whose
# git-ignored env files are made from the committed examples.
mkdir -p "$OUT/src/monitoring" "$OUT/k8s"
cp -r k8s "$OUT/src/"
cp -r monitoring/dashboards "$OUT/src/monitoring/"
for f in "$OUT"/src/k8s/overlays/*/*.env.example; do cp "$f" "${f%.example}"; done
for k in k8s/overlays/minikube k8s/overlays/production k8s/sonarqube k8s/argocd/minikube k8s/argocd/production monitoring/dashboards; do
  "$KUBECTL" kustomize "$OUT/src/$k" >"$OUT/k8s/$(echo "$k" | tr / _).yaml"
done
checkov kubernetes --framework kubernetes -d "$OUT/k8s"
if [ -d ansible ]; then
  checkov ansible --framework ansible -d ansible
fi
yaml_dirs=(.github k8s monitoring)
for d in jenkins ansible; do [ -d "$d" ] && yaml_dirs+=("$d"); done
"$VENV/bin/yamllint" -c .yamllint.yaml --strict "${yaml_dirs[@]}"
echo "yamllint: clean"
