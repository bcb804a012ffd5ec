"""Static but strict checks of every Kubernetes manifest, the fast first step before
the real deploy (test_cluster.py): render each kustomization, validate built-in kinds
against the Kubernetes OpenAPI (oldest and newest supported versions), scan with
checkov, and assert the security invariants directly on the rendered objects. CRD
kinds are validated by the real CRDs on the real API server, not here."""

import base64
import copy
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

K8S = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent
TARGETS = ["base", "overlays/minikube", "overlays/production", "sonarqube", "argocd/minikube", "argocd/production",
           "deployer"]
ARGOCD_TARGETS = [t for t in TARGETS if t.startswith("argocd/")]
# argocd/ holds only CRD objects (checked by the API server in test_cluster.py).
BUILTIN_TARGETS = [t for t in TARGETS if t not in ARGOCD_TARGETS]
KUBECTL = os.environ.get("KUBECTL", "kubectl")
# kubernetes-validate 1.37 knows 1.25-1.37; we support that whole range.
K8S_VERSIONS = ["1.25.0", "1.37.0"]
CRD_KINDS = {
    ("cert-manager.io/v1", "ClusterIssuer"),
    ("argoproj.io/v1alpha1", "Application"),
    ("argoproj.io/v1alpha1", "AppProject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


@pytest.fixture(scope="session")
def rendered(tmp_path_factory):
    """Render every target from a copy of k8s/ in which the committed *.env.example
    files stand in for the git-ignored secret env files."""
    work = tmp_path_factory.mktemp("k8s")
    src = work / "src"
    shutil.copytree(K8S, src, ignore=shutil.ignore_patterns("*.env", "__pycache__", ".pytest_cache"))
    for example in src.rglob("*.env.example"):
        shutil.copy(example, example.with_suffix(""))
    out = {}
    for target in TARGETS:
        text = subprocess.run([KUBECTL, "kustomize", str(src / target)], check=True, capture_output=True, text=True).stdout
        path = work / "rendered" / (target.replace("/", "-") + ".yaml")
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        out[target] = (path, [d for d in yaml.safe_load_all(text) if d])
    return out


def is_crd(doc):
    return (doc["apiVersion"], doc["kind"]) in CRD_KINDS


def all_docs(rendered):
    for target, (_, docs) in rendered.items():
        for d in docs:
            yield target, d


def pod_spec(doc):
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return spec["template"]["spec"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("target", BUILTIN_TARGETS)
def test_builtin_kinds_validate_strictly(rendered, target, version, tmp_path):
    _, docs = rendered[target]
    builtin = [d for d in docs if not is_crd(d)]
    assert builtin, target
    f = tmp_path / "builtin.yaml"
    f.write_text(yaml.safe_dump_all(builtin))
    r = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "--quiet", "-k", version, str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_argocd_holds_only_crd_objects(rendered):
    for target in ARGOCD_TARGETS:
        assert all(is_crd(d) for d in rendered[target][1]), target


def test_argocd_applications_each_own_their_objects(rendered, tmp_path):
    """One Application per environment: no two (across both environments' sets,
    which one Argo CD may hold together) sync to the same cluster and namespace,
    each destination is one its AppProject allows, and each source renders from what
    Argo CD has, a Git checkout: the tracked files only (no git-ignored env file)."""
    apps = [d for t in ARGOCD_TARGETS for d in rendered[t][1] if d["kind"] == "Application"]
    project = next(d for d in rendered["argocd/minikube"][1] if d["kind"] == "AppProject")
    allowed = {(d["name"], d["namespace"]) for d in project["spec"]["destinations"]}
    destinations = [(a["spec"]["destination"]["name"], a["spec"]["destination"]["namespace"]) for a in apps]
    assert len(set(destinations)) == len(destinations), destinations
    assert set(destinations) <= allowed, (destinations, allowed)
    tracked = subprocess.run(["git", "ls-files", "k8s", "monitoring"], cwd=K8S.parent, check=True,
                             capture_output=True, text=True).stdout.split()
    for path in tracked:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(K8S.parent / path, tmp_path / path)
    for app in apps:
        r = subprocess.run([KUBECTL, "kustomize", str(tmp_path / app["spec"]["source"]["path"])],
                           capture_output=True, text=True)
        assert r.returncode == 0, f"{app['metadata']['name']}: {r.stderr}"
        kinds = {d["kind"] for d in yaml.safe_load_all(r.stdout) if d}
        assert "Secret" not in kinds, f"{app['metadata']['name']} would sync a Secret from Git"


def test_every_crd_kind_is_used_and_nothing_else_is_custom(rendered):
    """The CRDs tools/k8s/crds.sh installs cover exactly what the manifests use."""
    kinds = {(d["apiVersion"], d["kind"]) for _, d in all_docs(rendered)}
    custom = {k for k in kinds if "." in k[0].split("/")[0] and not k[0].split("/")[0].endswith(".k8s.io")}
    assert custom == CRD_KINDS, custom


def test_checkov_finds_no_failures(rendered, tmp_path):
    for target, (path, _) in rendered.items():
        shutil.copy(path, tmp_path / path.name)
    r = subprocess.run([str(BIN / "checkov"), "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download", "--quiet", "--compact"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "Failed checks: 0" in r.stdout, r.stdout[-2000:]


def test_checkov_skips_carry_a_reason(rendered):
    for target, d in all_docs(rendered):
        for k, v in d["metadata"].get("annotations", {}).items():
            if k.startswith("checkov.io/skip"):
                check, _, reason = v.partition("=")
                assert check.startswith("CKV") and len(reason) > 20, f"{target} {d['kind']}: skip without a reason: {v}"


def violations(doc):
    """Security invariants of one workload; returns what is wrong."""
    problems = []
    spec = pod_spec(doc)
    pod_sc = spec.get("securityContext", {})
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("service account token is mounted")
    if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod seccompProfile is not RuntimeDefault")
    for c in spec.get("initContainers", []) + spec["containers"]:
        sc = c.get("securityContext", {})
        name = c["name"]
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
            problems.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser", pod_sc.get("runAsUser", 0)) == 0:
            problems.append(f"{name}: runs as uid 0")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root filesystem is writable")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: privilege escalation allowed")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append(f"{name}: does not drop ALL capabilities")
        if sc.get("capabilities", {}).get("add"):
            problems.append(f"{name}: adds capabilities")
        limits = c.get("resources", {}).get("limits", {})
        if not {"cpu", "memory"} <= set(limits):
            problems.append(f"{name}: missing cpu/memory limits")
        if not c.get("resources", {}).get("requests"):
            problems.append(f"{name}: missing requests")
        if "readinessProbe" not in c or "livenessProbe" not in c:
            problems.append(f"{name}: missing readiness or liveness probe")
        for e in c.get("env", []):
            if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]:
                problems.append(f"{name}: secret {e['name']} passed as an environment variable")
    return problems


def test_every_workload_meets_the_security_invariants(rendered):
    workloads = [(t, d) for t, d in all_docs(rendered) if d["kind"] in WORKLOADS]
    assert len(workloads) >= 5
    for target, d in workloads:
        assert violations(d) == [], f"{target}: {d['kind']}/{d['metadata']['name']}"


def test_invariant_checks_catch_violations(rendered):
    base = next(d for t, d in all_docs(rendered) if t == "base" and d["kind"] == "Deployment")
    mutations = {
        "root filesystem is writable": lambda c: c["securityContext"].update(readOnlyRootFilesystem=False),
        "does not drop ALL": lambda c: c["securityContext"]["capabilities"].update(drop=[]),
        "privilege escalation": lambda c: c["securityContext"].pop("allowPrivilegeEscalation"),
        "runs as uid 0": lambda c: c["securityContext"].update(runAsUser=0),
        "missing cpu/memory limits": lambda c: c["resources"].pop("limits"),
        "missing readiness": lambda c: c.pop("readinessProbe"),
        "environment variable": lambda c: c.setdefault("env", []).append({"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
    }
    for expected, mutate in mutations.items():
        d = copy.deepcopy(base)
        mutate(d["spec"]["template"]["spec"]["containers"][0])
        assert any(expected in p for p in violations(d)), expected


def test_each_namespace_with_workloads_has_a_default_deny_policy(rendered):
    for target, (_, docs) in rendered.items():
        namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] in WORKLOADS}
        for ns in namespaces:
            policies = [d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"].get("namespace") == ns]
            deny_all = [p for p in policies if p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
                        and not p["spec"].get("ingress") and not p["spec"].get("egress")]
            covered = all(
                any(p["spec"]["podSelector"] in ({}, {"matchLabels": {"app.kubernetes.io/name": d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]}})
                    for p in policies)
                for d in docs if d["kind"] in WORKLOADS and d["metadata"].get("namespace") == ns)
            assert deny_all or covered, f"{target}: namespace {ns} has no default-deny policy"
        if target in ("base", "overlays/production", "overlays/minikube"):
            assert any(d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "default-deny-all" for d in docs), target


def test_no_secret_carries_a_real_value(rendered):
    tracked = subprocess.run(["git", "ls-files", "k8s"], cwd=K8S.parent, capture_output=True, text=True, check=True).stdout.split()
    assert not [f for f in tracked if f.endswith(".env")], "no secret env file is committed"
    for f in tracked:
        if f.endswith(".env.example"):
            text = (K8S.parent / f).read_text()
            assert "change-me" in text, f"{f} must hold placeholders only"
    for target, d in all_docs(rendered):
        if d["kind"] == "Secret":
            values = {k: base64.b64decode(v).decode() for k, v in d.get("data", {}).items()}
            values.update(d.get("stringData", {}))
            for k, v in values.items():
                # Only passwords are secret; names and the address are not.
                assert "change-me" in v or k in ("username", "uri"), f"{target}: Secret {d['metadata']['name']} key {k} is not a placeholder"
    for target in ("base", "overlays/production"):
        assert not [d for d in rendered[target][1] if d["kind"] == "Secret"], f"{target} must not define Secrets"


def test_images_are_pinned_and_the_app_by_digest(rendered):
    for target, d in all_docs(rendered):
        if d["kind"] in WORKLOADS:
            for c in pod_spec(d)["containers"]:
                image = c["image"]
                assert not image.endswith(":latest") and (":" in image or "@" in image), f"{target}: {image}"
                if target in ("base", "overlays/production") and c["name"] == "host":
                    assert "@sha256:" in image, f"{target}: the app image must be pinned by digest: {image}"


def test_sonarqube_is_the_version_ci_analyses_with(rendered):
    """One version: the in-cluster server is the Community Build whose zip ci/packages.txt
    pins (older images have no Rust analyser); a pull policy that keeps a loaded image."""
    pinned = subprocess.run(["bash", str(K8S.parent / "ci" / "packages.sh"), "version",
                             "org.sonarsource.sonarqube:sonar-application"], check=True, capture_output=True,
                            text=True).stdout.strip()
    sts = next(d for t, d in all_docs(rendered) if t == "sonarqube" and d["kind"] == "StatefulSet")
    c = pod_spec(sts)["containers"][0]
    assert (c["image"], c["imagePullPolicy"]) == (f"sonarqube:{pinned}-community", "IfNotPresent"), c["image"]


def test_prometheusrule_carries_the_rules_file(rendered):
    """One source of rules: the compose Prometheus loads monitoring/rules/, Kubernetes
    gets the same groups through the PrometheusRule in both overlays."""
    rules = yaml.safe_load((K8S.parent / "monitoring" / "rules" / "tasks-api.rules.yaml").read_text())
    for target in ("overlays/minikube", "overlays/production"):
        pr = [d for d in rendered[target][1] if d["kind"] == "PrometheusRule"]
        assert len(pr) == 1 and pr[0]["spec"]["groups"] == rules["groups"], (
            f"{target}: run monitoring/render-prometheusrule.py after editing the rules")
        assert [d for d in rendered[target][1] if d["kind"] == "ServiceMonitor"], target


def test_minikube_runs_the_locally_built_image(rendered):
    """The image the README builds and loads (`tasks-api:dev`), never pulled."""
    d = next(d for t, d in all_docs(rendered) if t == "overlays/minikube" and d["kind"] == "Deployment")
    c = pod_spec(d)["containers"][0]
    assert (c["image"], c["imagePullPolicy"]) == ("tasks-api:dev", "Never"), c["image"]


def test_minikube_serves_on_the_readme_node_port(rendered):
    """`curl http://$(minikube ip):30080/...`: the Service's http port is that NodePort
    (a patch without `protocol` missed the list's merge key and was dropped)."""
    svc = next(d for t, d in all_docs(rendered)
               if t == "overlays/minikube" and d["kind"] == "Service" and d["metadata"]["name"] == "tasks-api")
    assert svc["spec"]["type"] == "NodePort"
    assert {p["name"]: p.get("nodePort") for p in svc["spec"]["ports"]}["http"] == 30080, svc["spec"]["ports"]
    assert "$(minikube ip):30080/api/tasks" in (K8S.parent / "README.md").read_text()


def test_replicas_are_left_to_the_hpa(rendered):
    """A Deployment an HPA scales sets no `replicas` (every apply would reset the
    HPA's choice); one without an HPA sets it."""
    for target in BUILTIN_TARGETS:
        docs = [d for t, d in all_docs(rendered) if t == target]
        scaled = {d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
        for d in docs:
            if d["kind"] == "Deployment":
                has = "replicas" in d["spec"]
                assert has != (d["metadata"]["name"] in scaled), (target, d["metadata"]["name"], d["spec"].get("replicas"))


def test_shutdown_drain_fits_the_grace_period(rendered):
    """SIGTERM: the drain (SHUTDOWN_DELAY_SECS) and in-flight requests
    (SHUTDOWN_GRACE_SECS) end before the kubelet's SIGKILL."""
    d = next(d for t, d in all_docs(rendered) if t == "base" and d["kind"] == "Deployment")
    cm = next(d for t, d in all_docs(rendered) if t == "base" and d["kind"] == "ConfigMap")
    drain, grace = int(cm["data"]["SHUTDOWN_DELAY_SECS"]), int(cm["data"]["SHUTDOWN_GRACE_SECS"])
    assert drain > 0, "without a drain, a rolling update refuses connections (test_node.py)"
    assert drain + grace < d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_ports_and_probes_match_the_host(rendered):
    """The Deployment uses the host's real ports and endpoints (README, config.rs)."""
    d = next(d for t, d in all_docs(rendered) if t == "base" and d["kind"] == "Deployment")
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080, "metrics": 9090}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    cm = next(d for t, d in all_docs(rendered) if t == "base" and d["kind"] == "ConfigMap")
    assert cm["data"]["MONGODB_URI_FILE"] == c["volumeMounts"][0]["mountPath"] + "/uri"
    assert int(cm["data"]["MAX_INSTANCES"]) * int(cm["data"]["MEMORY_LIMIT_MIB"]) < 1024, "worst-case guest memory fits the 1Gi limit"


def test_the_app_and_its_database_user_share_one_secret(rendered):
    """The API reads its MongoDB address, user and password from the Secret
    tasks-api-mongodb, one file each (no credentials in the URI, nothing to
    URL-encode); MongoDB's init script creates that user, readWrite on the app's
    database only, from the same Secret. Root stays in mongodb-auth, which the API
    never mounts."""
    docs = [d for t, d in all_docs(rendered) if t == "overlays/minikube"]
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    (sts,) = [d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "mongodb"]
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("tasks-api-config")]
    (init,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("mongodb-init")]

    def mounted_files(spec, container):
        """{path in the container: (secret or configmap name, key)}."""
        volumes = {v["name"]: v for v in spec["volumes"]}
        files = {}
        for m in container["volumeMounts"]:
            v = volumes.get(m["name"], {})  # (a claim template's volume is not listed)
            src = v.get("secret") or v.get("configMap")
            if not src:
                continue
            name = src.get("secretName") or src.get("name")
            for item in src.get("items", []):
                files[f"{m['mountPath']}/{item['path']}"] = (name, item["key"])
        return files

    app_spec = pod_spec(deploy)
    app_files = mounted_files(app_spec, app_spec["containers"][0])
    secret = next(n for n, _ in app_files.values() if n.startswith("tasks-api-mongodb"))
    for env, key in [("MONGODB_URI_FILE", "uri"), ("MONGODB_USERNAME_FILE", "username"), ("MONGODB_PASSWORD_FILE", "password")]:
        assert app_files[cm["data"][env]] == (secret, key), env
    assert not any(n.startswith("mongodb-auth") for n, _ in app_files.values()), "the API never mounts root's credentials"

    db_spec = pod_spec(sts)
    db = db_spec["containers"][0]
    db_files = mounted_files(db_spec, db)
    env = {e["name"]: e.get("value") for e in db["env"]}
    assert env["MONGO_APP_DATABASE"] == cm["data"]["MONGODB_DATABASE"]
    assert db_files[env["MONGO_APP_USERNAME_FILE"]] == (secret, "username")
    assert db_files[env["MONGO_APP_PASSWORD_FILE"]] == (secret, "password")
    (init_mount,) = [m for m in db["volumeMounts"] if m["mountPath"] == "/docker-entrypoint-initdb.d"]
    assert {v["name"]: v for v in db_spec["volumes"]}[init_mount["name"]]["configMap"]["name"] == init["metadata"]["name"]
    assert init["data"]["create-app-user.js"] == (K8S / "mongodb" / "create-app-user.js").read_text()

    # The example Secret holds an address without credentials.
    uri = base64.b64decode(next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == secret)["data"]["uri"]).decode()
    assert "@" not in uri, "credentials belong in username/password, not in the URI"


def run_init_script(tmp_path, env):
    """k8s/mongodb/create-app-user.js as mongosh runs it (a global `db`, `print`,
    Node's `require` and `process.env`), with `db` recording what it is asked to do.
    MongoDB itself (mongosh, the roles) cannot be had where CI runs; this holds the
    script's own logic: which user, which password, which roles."""
    harness = tmp_path / "harness.js"
    harness.write_text("""
const vm = require('vm');
const fs = require('fs');
const calls = [];
const db = { getSiblingDB: (name) => ({ createUser: (u) => calls.push({ db: name, ...u }) }) };
vm.runInNewContext(fs.readFileSync(process.argv[2], 'utf8'), { db, print: () => {}, require, process });
console.log(JSON.stringify(calls));
""")
    r = subprocess.run(["node", str(harness), str(K8S / "mongodb" / "create-app-user.js")],
                       env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def test_the_init_script_creates_a_readwrite_user_from_env_or_files(tmp_path):
    import json
    rc, out, err = run_init_script(tmp_path, {"MONGO_APP_DATABASE": "tasks", "MONGO_APP_USERNAME": "app",
                                              "MONGO_APP_PASSWORD": "p@ss:w/rd%"})
    assert rc == 0, err
    assert json.loads(out) == [{"db": "tasks", "user": "app", "pwd": "p@ss:w/rd%", "roles": [{"role": "readWrite", "db": "tasks"}]}]
    # As the StatefulSet runs it: the user and password from the mounted Secret's files.
    (tmp_path / "username").write_text("app")
    (tmp_path / "password").write_text("from-a-file\n")
    rc, out, err = run_init_script(tmp_path, {"MONGO_APP_DATABASE": "tasks",
                                              "MONGO_APP_USERNAME_FILE": str(tmp_path / "username"),
                                              "MONGO_APP_PASSWORD_FILE": str(tmp_path / "password")})
    assert rc == 0, err
    assert [(c["user"], c["pwd"]) for c in json.loads(out)] == [("app", "from-a-file")]
    rc, out, err = run_init_script(tmp_path, {"MONGO_APP_DATABASE": "tasks", "MONGO_APP_USERNAME": "app"})
    assert rc != 0 and "MONGO_APP_PASSWORD" in err and out.strip() in ("", "[]")
