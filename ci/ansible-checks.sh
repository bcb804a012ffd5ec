#!/usr/bin/env bash
# The Ansible link (docs/ansible.md), for real:
#
#   ci/ansible-checks.sh lint       # syntax check of every playbook, ansible-lint
#                                  # (production profile, offline), yamllint, checkov
#   ci/ansible-checks.sh converge   # site.yml over SSH into a separate Debian 12 machine
#                                  # (ci/ssh-target.sh) whose cluster is KUBECONFIG's, twice:
#                                  # the second run must change nothing; then the host, read
#                                  # over SSH, the cluster, read from its API server, and a
#                                  # new version rolled out
#
# Tools from $VENV (default .venv: ansible, ansible-lint, checkov, yamllint).
# converge needs root (network namespaces), debootstrap, apt-cacher-ng, socat,
# Debian's archive and PyPI (the wheels the k8s_tools role installs, served to the
# target), KUBECONFIG (a cluster on 127.0.0.1) and KUBECTL (the kubectl the role
# installs, served to the target). Exit codes: 0 passed, 1 a check failed, 2 usage.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
export PATH="$VENV/bin:$PATH"
export ANSIBLE_CONFIG="$ROOT/ansible/ansible.cfg"
# Plain output: recaps are parsed below.
export ANSIBLE_FORCE_COLOR=0 ANSIBLE_NOCOLOR=1
cd "$ROOT/ansible"

# Runs a playbook command twice and fails unless the second run changed nothing.
converge_twice() { # log prefix, ansible-playbook args...
  local name=$1; shift
  local run
  for run in 1 2; do
    echo "--- converge $name, run $run"
    ansible-playbook "$@" | tee "$WORK/$name-$run.log"
    grep -E '^\S+\s+: ok=' "$WORK/$name-$run.log" | sed 's/^/    recap: /'
  done
  if grep -E '^\S+\s+: ok=' "$WORK/$name-2.log" | grep -vE 'changed=0 .*failed=0' >/dev/null; then
    echo "the second converge of $name changed something (or failed): not idempotent" >&2
    grep -B2 -E '^changed:' "$WORK/$name-2.log" >&2 || true
    exit 1
  fi
  echo "second converge of $name: changed=0"
}

case "${1:-}" in
lint)
  mapfile -t playbooks < <(ls site.yml docker.yml k8s-tools.yml minikube.yml app.yml monitoring.yml sonarqube.yml jenkins.yml)
  for pb in "${playbooks[@]}" ci/*.yml; do
    case "$pb" in ci/*-vars.yml) continue ;; esac
    ansible-playbook --syntax-check "$pb" >/dev/null
  done
  echo "syntax check: ${playbooks[*]}"
  ansible-lint --offline --profile production
  yamllint -c "$ROOT/.yamllint.yaml" --strict .
  out=$(checkov --framework ansible -d . --skip-download --quiet --compact 2>&1 || true)
  echo "$out" | grep -E '^(Passed|Failed) checks' || { echo "$out"; exit 1; }
  if echo "$out" | grep -E 'Failed checks: [1-9]' >/dev/null; then echo "$out"; exit 1; fi
  # The bundled collections are the versions requirements.yml pins.
  ansible-galaxy collection list --format json 2>/dev/null | python3 -c '
import json, sys, yaml
have = {}
for path, cols in json.load(sys.stdin).items():
    for name, meta in cols.items():
        have.setdefault(name, meta["version"])
want = yaml.safe_load(open("requirements.yml"))["collections"]
bad = ["%s: pinned %s, installed %s" % (c["name"], c["version"], have.get(c["name"])) for c in want if have.get(c["name"]) != c["version"]]
print("collections as pinned: " + ", ".join("%s %s" % (c["name"], c["version"]) for c in want))
sys.exit("\n".join(bad) if bad else 0)
'
  ;;

converge)
  : "${KUBECTL:?KUBECTL must name the kubectl binary to serve}" "${KUBECONFIG:?}"
  WORK=$(mktemp -d)
  cleanup() {
    bash "$ROOT/ci/ssh-target.sh" stop "$WORK/target" || true
    rm -rf "$WORK"
  }
  trap cleanup EXIT
  export ANSIBLE_CI_BUILD_DIR="$WORK/build"
  # The role downloads kubectl and its .sha256 from here, as it would from dl.k8s.io,
  # ...and the Compose plugin, as from Compose's releases (hash and file name, their format).
  mkdir "$WORK/mirror"
  cp "$KUBECTL" "$WORK/mirror/kubectl"
  sha256sum "$WORK/mirror/kubectl" | cut -d' ' -f1 >"$WORK/mirror/kubectl.sha256"
  cp -L "$(bash "$ROOT/tools/compose/build.sh")" "$WORK/mirror/docker-compose-linux-x86_64"
  (cd "$WORK/mirror" && sha256sum docker-compose-linux-x86_64 >docker-compose-linux-x86_64.sha256)
  # ...and the kubernetes client's wheels, as PyPI would (the pin the role installs),
  # downloaded once per machine.
  req=$(sed -n 's/^ *- \(kubernetes==[0-9.]*\)$/\1/p' roles/k8s_tools/defaults/main.yml)
  wheels="${TASKS_CI_CACHE:-$HOME/.cache/tasks-ci}/wheels/$req"
  if [ ! -f "$wheels/done" ]; then
    rm -rf "$wheels" && mkdir -p "$wheels"
    "$VENV/bin/python" -m pip download --quiet --only-binary :all: --python-version 3.11 -d "$wheels" "$req"
    touch "$wheels/done"
  fi
  mkdir "$WORK/mirror/wheels"
  cp "$wheels"/*.whl "$WORK/mirror/wheels/"
  # A vault made the way a user makes theirs (vault.example.yml, real values,
  # encrypted), with a password that exists only for this run.
  python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >"$WORK/vault-pass"
  mongo_pw="ci-$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')"
  mongo_root_pw="ci-root-$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')"
  sed -e "s|^vault_mongodb_password: .*|vault_mongodb_password: $mongo_pw|" \
    -e "s|^vault_mongodb_root_password: .*|vault_mongodb_root_password: $mongo_root_pw|" vault.example.yml >"$WORK/vault.yml"
  ansible-vault encrypt --vault-password-file "$WORK/vault-pass" "$WORK/vault.yml" >/dev/null
  head -1 "$WORK/vault.yml"
  # The target's cluster, as `minikube start` would leave it in the user's
  # ~/.kube/config: the run's API server, credentials embedded (no paths).
  "$KUBECTL" config view --raw --flatten --minify >"$WORK/target.kubeconfig"
  # From nothing: the namespaces earlier stages deployed into are deleted first.
  "$KUBECTL" delete namespace tasks-api sonarqube --ignore-not-found --timeout 120s
  # The target: a separate Debian 12 machine reached over SSH (ci/ssh-target.sh).
  CI_MIRROR_DIR="$WORK/mirror" CI_TARGET_KUBECONFIG="$WORK/target.kubeconfig" \
    bash "$ROOT/ci/ssh-target.sh" start "$WORK/target" >"$WORK/host-vars"
  {
    printf 'all:\n  children:\n    devsecops:\n      hosts:\n        tasks-target:\n'
    sed 's/^/          /' "$WORK/host-vars"
  } >"$WORK/inventory.yml"
  # docs/ansible.md's one command, without the roles this machine cannot run
  # (minikube, monitoring, jenkins: why, in docs/ansible.md).
  site=(-i "$WORK/inventory.yml" -e @ci/target-vars.yml -e @"$WORK/vault.yml"
    --vault-password-file "$WORK/vault-pass" site.yml --skip-tags "minikube,monitoring,jenkins")
  converge_twice site "${site[@]}"

  # The host, read from the target itself, over SSH.
  in_target() { bash "$ROOT/ci/ssh-target.sh" ssh "$WORK/target" "$@"; }
  in_target dpkg-query -W -f '${Package} ${Version} ${Status}\n' docker.io python3-docker | tee "$WORK/pkgs"
  [ "$(grep -c 'install ok installed' "$WORK/pkgs")" = 2 ] || { echo "packages missing" >&2; exit 1; }
  in_target cat /etc/docker/daemon.json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["live-restore"] is True and d["no-new-privileges"] is True and d["log-opts"]["max-size"] == "10m", d
print("daemon.json:", json.dumps(d, sort_keys=True))
'
  [ "$(in_target stat -c '%a %U' /etc/docker/daemon.json)" = "644 root" ]
  in_target getent group docker | grep -E '(:|,)deploy(,|$)' >/dev/null || { echo "deploy is not in the docker group" >&2; exit 1; }
  # Whole outputs into variables: a reader that stops early (head, grep -q) would
  # SIGPIPE the writer, and pipefail would fail the run on it.
  client=$(in_target kubectl version --client)
  echo "${client%%$'\n'*}"
  case "$client" in *v1.33.13*) ;; *) echo "kubectl in the target is not v1.33.13" >&2; exit 1 ;; esac
  # The README's `docker compose`, on a host with the distribution's Docker.
  compose=$(in_target docker compose version)
  echo "$compose"
  case "$compose" in *v5.6.0*) ;; *) echo "\`docker compose\` in the target is not v5.6.0" >&2; exit 1 ;; esac
  # The kubernetes.core modules run on the target with the client the role installed.
  pyclient=$(in_target /opt/k8s-tools/python/bin/python3 -c 'import kubernetes; print(kubernetes.__version__)')
  [ "$pyclient" = 33.1.0 ] || { echo "the target's kubernetes client is $pyclient, not 33.1.0" >&2; exit 1; }
  echo "host: packages, daemon.json, docker group, kubectl v1.33.13, docker compose v5.6.0, kubernetes client $pyclient"

  # The cluster, read back from its API server: the Secrets the overlay generated
  # from the vault's values.
  "$KUBECTL" get secrets -n tasks-api -o json | python3 -c '
import base64, json, sys
pw = sys.argv[1]
items = {s["metadata"]["name"]: s for s in json.load(sys.stdin)["items"]}
def data(prefix, key):
    (name,) = [n for n in items if n.startswith(prefix + "-")]
    return base64.b64decode(items[name]["data"][key]).decode()
root_pw = sys.argv[2]
assert data("mongodb-auth", "password") == root_pw, "mongodb-auth password is not the vault root value"
assert (data("tasks-api-mongodb", "username"), data("tasks-api-mongodb", "password")) == ("tasks", pw), "the app user is not the vault value"
uri = data("tasks-api-mongodb", "uri")
assert uri.startswith("mongodb://mongodb-0.mongodb.tasks-api.svc.cluster.local") and "@" not in uri, "uri carries credentials"
print("Secrets rendered from the vault: mongodb-auth (root), tasks-api-mongodb (app user) (values match, not printed)")
' "$mongo_pw" "$mongo_root_pw"
  "$KUBECTL" get deployment/tasks-api statefulset/mongodb -n tasks-api
  "$KUBECTL" get statefulset/sonarqube -n sonarqube
  # The image is the version shipped: this checkout's commit; another version (a new
  # commit) is rolled out by the next converge.
  image() { "$KUBECTL" get deployment tasks-api -n tasks-api -o jsonpath='{.spec.template.spec.containers[0].image}'; }
  want="tasks-api:$(git -C "$ROOT" rev-parse --short=12 HEAD)"
  [ "$(image)" = "$want" ] || { echo "the Deployment runs $(image), not $want" >&2; exit 1; }
  ansible-playbook -i "$WORK/inventory.yml" -e @ci/target-vars.yml -e @"$WORK/vault.yml" \
    --vault-password-file "$WORK/vault-pass" -e app_version=ci-next-commit app.yml | tee "$WORK/next.log" | grep -E '^\S+\s+: ok='
  grep -E '^\S+\s+: ok=' "$WORK/next.log" | grep -E 'changed=[1-9]' >/dev/null \
    || { echo "a new version changed nothing" >&2; exit 1; }
  [ "$(image)" = tasks-api:ci-next-commit ] || { echo "a new version was not rolled out: $(image)" >&2; exit 1; }
  echo "versions: $want deployed, re-converged with changed=0; tasks-api:ci-next-commit rolled out by the next converge"
  # The kubeconfig the role wrote on the target for Jenkins is the deployer
  # ServiceAccount's, and only its owner reads it.
  deployer=/home/ansible/.kube/tasks-api-deployer.kubeconfig
  who=$(in_target kubectl --kubeconfig "$deployer" auth whoami -o jsonpath='{.status.userInfo.username}')
  [ "$who" = system:serviceaccount:tasks-api:tasks-api-deployer ] || { echo "Jenkins' kubeconfig is $who's" >&2; exit 1; }
  [ "$(in_target stat -c '%a %U' "$deployer")" = "600 ansible" ] || { echo "the deployer kubeconfig is not 0600 ansible's" >&2; exit 1; }
  echo "Jenkins' kubeconfig on the target: $who, 0600"
  ;;

*) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
