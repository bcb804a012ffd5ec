"""Checks against a real control plane (tools/k8s/control-plane.sh) after .ci/run has
deployed the production overlay and k8s/argocd/production with ci/deploy.sh (k8s/sonarqube runs
on the real node: test_node.py):
what the API server holds, and that it refuses what it must (PodSecurity, strict
field validation, the CRDs' own schemas). kwok plays the kubelet, so pods reach
Running and Ready without containers: probes and the image are proven by the
container smoke test, not here.

Needs K8S_LIVE_KUBECONFIG (and KUBECTL, the kubectl built with the server),
K8S_DEPLOYER_KUBECONFIG (ci/deployer-kubeconfig.sh's output, CD's identity) and
K8S_CD_IMAGE (the digest the Jenkinsfile's pipeline pushed and rolled, in .ci/run's
cd stage); skipped without them, and .ci/run fails if anything here is skipped."""

import copy
import json
import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

K8S = pathlib.Path(__file__).resolve().parents[1]
ROOT = K8S.parent
KUBECONFIG = os.environ.get("K8S_LIVE_KUBECONFIG")
DEPLOYER_KUBECONFIG = os.environ.get("K8S_DEPLOYER_KUBECONFIG")
CD_IMAGE = os.environ.get("K8S_CD_IMAGE")
KUBECTL = os.environ.get("KUBECTL", "kubectl")

pytestmark = pytest.mark.skipif(not (KUBECONFIG and DEPLOYER_KUBECONFIG and CD_IMAGE),
                                reason="no live cluster (K8S_LIVE_KUBECONFIG, K8S_DEPLOYER_KUBECONFIG or K8S_CD_IMAGE unset)")


def kubectl(*args, stdin=None, check=True):
    r = subprocess.run([KUBECTL, "--kubeconfig", KUBECONFIG, *args], input=stdin, capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
    return r


def get(*args):
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def rendered(target):
    return [d for d in yaml.safe_load_all(kubectl("kustomize", str(K8S / target)).stdout) if d]


def apply_refused(doc, *extra):
    """Apply one object the way ci/deploy.sh does; return the API server's refusal."""
    r = kubectl("--warnings-as-errors", "apply", "--server-side", "--field-manager", "tasks-test", "--validate=strict",
                *extra, "-f", "-", stdin=yaml.safe_dump(doc), check=False)
    assert r.returncode != 0, f"the API server accepted {doc['kind']}/{doc['metadata']['name']}: {r.stdout}"
    return r.stderr


def deploy(target, timeout):
    """ci/deploy.sh, as .ci/run runs it, against the live cluster."""
    return subprocess.run(["bash", str(ROOT / "ci" / "deploy.sh"), str(target), timeout],
                          env={**os.environ, "KUBECONFIG": KUBECONFIG, "KUBECTL": KUBECTL},
                          capture_output=True, text=True, timeout=300)


def production_deployment():
    return next(d for d in rendered("overlays/production") if d["kind"] == "Deployment")


def test_every_workload_is_rolled_out():
    seen = []
    for kind in ("deployments", "statefulsets"):
        for w in get(kind, "-n", "tasks-api")["items"]:
            want = w["spec"]["replicas"]
            st = w["status"]
            assert st.get("readyReplicas") == want and st.get("updatedReplicas") == want, f"{w['metadata']['name']}: {st}"
            seen.append(w["metadata"]["name"])
    assert "tasks-api" in seen, seen


def test_production_pods_run_as_the_manifest_says():
    pods = get("pods", "-n", "tasks-api", "-l", "app.kubernetes.io/name=tasks-api")["items"]
    # The manifest leaves the count to the HPA, which raised it to its minimum.
    hpa = next(d for d in rendered("overlays/production") if d["kind"] == "HorizontalPodAutoscaler")
    assert "replicas" not in production_deployment()["spec"]
    assert len(pods) == hpa["spec"]["minReplicas"] == 3
    for p in pods:
        assert p["status"]["phase"] == "Running", p["status"]
        assert p["spec"]["securityContext"]["runAsUser"] == 65532
        assert p["spec"]["automountServiceAccountToken"] is False
        assert p["spec"]["nodeName"].startswith("kwok-node-")
    # The topology spread constraint (three zones, three replicas) was honoured.
    assert len({p["spec"]["nodeName"] for p in pods}) == 3


def test_crd_objects_are_stored():
    assert get("servicemonitor", "-n", "tasks-api")["items"]
    assert get("prometheusrule", "-n", "tasks-api")["items"]
    assert get("clusterissuer")["items"]
    apps = get("application", "-n", "argocd")["items"]
    assert apps and get("appproject", "-n", "argocd")["items"]


def test_dashboards_are_configmaps_for_the_grafana_sidecar():
    cms = get("configmap", "-n", "monitoring", "-l", "grafana_dashboard=1")["items"]
    names = sorted(c["metadata"]["name"] for c in cms)
    assert names == ["tasks-api-dashboard-data", "tasks-api-dashboard-overview", "tasks-api-dashboard-process",
                     "tasks-api-dashboard-sandbox"], names
    for c in cms:
        (key, text), = c["data"].items()
        assert json.loads(text)["uid"] == key.removesuffix(".json")


def test_a_second_deploy_changes_nothing():
    """The same deploy again: production went in through ci/deploy-image.sh (the
    Jenkinsfile's Deploy stage) with an image digest, so the same script and digest."""
    live = get("deployment", "tasks-api", "-n", "tasks-api")
    before = live["metadata"]["resourceVersion"]
    image = live["spec"]["template"]["spec"]["containers"][0]["image"]
    assert "@sha256:" in image, image
    r = subprocess.run(["bash", str(ROOT / "ci" / "deploy-image.sh"), image, "k8s/overlays/production", "60s"],
                       env={**os.environ, "KUBECONFIG": KUBECONFIG, "KUBECTL": KUBECTL},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert get("deployment", "tasks-api", "-n", "tasks-api")["metadata"]["resourceVersion"] == before


def test_deploy_of_a_root_container_is_refused_and_changes_nothing(tmp_path):
    """ci/deploy.sh on an overlay that runs the app as root: PodSecurity `restricted`
    warns on the Deployment, the dry run turns that into a refusal, and the live
    Deployment keeps its user."""
    overlay = tmp_path / "root-overlay"
    overlay.mkdir()
    shutil.copytree(K8S, tmp_path / "k8s", ignore=shutil.ignore_patterns("tests", "__pycache__"))
    # The running digest, as every operator deploy after CD's first roll carries
    # (another one is a conflict over the image, tested below).
    image = get("deployment", "tasks-api", "-n", "tasks-api")["spec"]["template"]["spec"]["containers"][0]["image"]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": ["../k8s/overlays/production"],
        "images": [{"name": "registry.example.com/tasks-api", "newName": image.split("@")[0],
                    "digest": image.split("@")[1]}],
        "patches": [{"target": {"kind": "Deployment", "name": "tasks-api"}, "patch": yaml.safe_dump([
            {"op": "replace", "path": "/spec/template/spec/containers/0/securityContext/runAsUser", "value": 0},
            {"op": "replace", "path": "/spec/template/spec/containers/0/securityContext/runAsNonRoot", "value": False},
        ])}],
    }))
    r = deploy(overlay, "30s")
    assert r.returncode != 0, r.stdout
    assert "violate PodSecurity" in r.stderr and "nothing applied" in r.stderr, r.stderr
    live = get("deployment", "tasks-api", "-n", "tasks-api")
    assert live["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] == 65532


def test_a_bare_root_pod_is_rejected():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root-pod", "namespace": "tasks-api"},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "securityContext": {"runAsUser": 0}}]}}
    err = apply_refused(pod)
    assert "violates PodSecurity" in err and "restricted" in err, err


def test_a_privileged_container_is_rejected_even_outside_restricted_namespaces():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged-pod", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": True}}]}}
    err = apply_refused(pod)
    assert "privileged" in err, err


def test_typo_in_a_builtin_kind_is_rejected():
    d = copy.deepcopy(production_deployment())
    d["spec"]["revisionHistoryLimt"] = d["spec"].pop("revisionHistoryLimit")
    err = apply_refused(d, "--dry-run=server")
    assert ".spec.revisionHistoryLimt: field not declared in schema" in err, err


def crd_object(kind):
    """One of our CRD objects under a new name: server-side apply merges into a live
    object of the same name, whose other field manager would still own (and so keep)
    a field deleted here."""
    d = copy.deepcopy(next(d for t in ("overlays/production", "argocd/production") for d in rendered(t) if d["kind"] == kind))
    d["metadata"]["name"] = "broken-" + d["metadata"]["name"]
    return d


def test_typo_in_a_crd_object_is_rejected():
    sm = crd_object("ServiceMonitor")
    sm["spec"]["endpoint"] = sm["spec"].pop("endpoints")
    err = apply_refused(sm, "--dry-run=server")
    assert ".spec.endpoint: field not declared in schema" in err, err


# Each case with the API server's words for it. The CRDs' schemas are what is
# checked; cert-manager's and Argo CD's webhooks and controllers, which check more,
# do not run here.
BROKEN = {
    "rule-groups-string": ("PrometheusRule", lambda d: d["spec"].update(groups="not a list"), ".spec.groups: expected list"),
    "monitor-without-selector": ("ServiceMonitor", lambda d: d["spec"].pop("selector"), 'spec.selector: Required value'),
    "issuer-without-server": ("ClusterIssuer", lambda d: d["spec"]["acme"].pop("server"), "spec.acme.server: Required value"),
    "application-without-project": ("Application", lambda d: d["spec"].pop("project"), "spec.project: Required value"),
    "application-typo": ("Application", lambda d: d["spec"]["syncPolicy"]["automated"].update(selfheal=True),
                         ".spec.syncPolicy.automated.selfheal: field not declared in schema"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_crd_schemas_reject_broken_objects(case):
    kind, breakage, expected = BROKEN[case]
    d = crd_object(kind)
    breakage(d)
    err = apply_refused(d, "--dry-run=server")
    assert expected in err, err


def as_deployer(*args, stdin=None):
    """kubectl with CD's kubeconfig only (the tasks-api-deployer ServiceAccount)."""
    return subprocess.run([KUBECTL, "--kubeconfig", DEPLOYER_KUBECONFIG, *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_cd_identity_is_the_deployer_service_account_not_an_admin():
    config = yaml.safe_load(pathlib.Path(DEPLOYER_KUBECONFIG).read_text())
    (user,) = config["users"]
    assert set(user["user"]) == {"token"}, "no client certificate, no exec plugin: a ServiceAccount token"
    r = as_deployer("auth", "whoami", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"]["userInfo"]["username"] == "system:serviceaccount:tasks-api:tasks-api-deployer"


def test_cd_can_roll_the_image_and_nothing_else():
    """What the Jenkinsfile's Deploy stage needs works (its pipeline rolled the image
    it pushed with this kubeconfig before these checks); everything else is refused
    by the API server itself, not just by `auth can-i`."""
    live = get("deployment", "tasks-api", "-n", "tasks-api", "--show-managed-fields")
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == CD_IMAGE
    managers = {f["manager"] for f in live["metadata"]["managedFields"]}
    assert "kubectl-set" in managers, f"the image was not set by `kubectl set image`: {managers}"
    r = as_deployer("rollout", "status", "deployment/tasks-api", "-n", "tasks-api", "--timeout", "30s")
    assert r.returncode == 0, r.stderr
    refused = {
        "read the app's Secrets": ["get", "secrets", "-n", "tasks-api"],
        "read another namespace's Secrets": ["get", "secrets", "-n", "argocd"],
        "read the app's ConfigMaps": ["get", "configmaps", "-n", "tasks-api"],
        "exec into a pod": ["exec", "-n", "tasks-api", "deployment/tasks-api", "--", "true"],
        "create a Deployment": ["create", "deployment", "rogue", "-n", "tasks-api", "--image", "busybox"],
        "scale the Deployment": ["scale", "deployment/tasks-api", "-n", "tasks-api", "--replicas", "0"],
        "patch another namespace's workload": ["set", "image", "statefulset/sonarqube", "-n", "sonarqube",
                                               "sonarqube=busybox"],
        "create a ClusterRole": ["create", "clusterrole", "rogue", "--verb", "get", "--resource", "secrets"],
        "bind itself to cluster-admin": ["create", "rolebinding", "rogue", "-n", "tasks-api",
                                         "--clusterrole", "cluster-admin",
                                         "--serviceaccount", "tasks-api:tasks-api-deployer"],
        "delete the namespace": ["delete", "namespace", "tasks-api", "--wait=false"],
    }
    allowed = {what: r.stdout for what, args in refused.items() if (r := as_deployer(*args)).returncode == 0}
    assert allowed == {}, f"the deployer could: {sorted(allowed)}"
    for what, args in refused.items():
        r = as_deployer(*args)
        assert "forbidden" in r.stderr.lower(), f"{what}: {r.stderr}"


def test_an_operator_deploy_of_another_image_than_cd_rolled_is_refused_and_changes_nothing():
    """CD owns the image field once it has rolled one; the operator's manifests
    carry the running digest (docs/kubernetes.md). Another digest is a conflict
    between the two, which the server-side dry run of ci/deploy.sh catches."""
    live = get("deployment", "tasks-api", "-n", "tasks-api")
    before = live["metadata"]["resourceVersion"]
    other = "docker.io/example/tasks-api@sha256:" + "e3" * 32
    r = subprocess.run(["bash", str(ROOT / "ci" / "deploy-image.sh"), other, "k8s/overlays/production", "60s"],
                       env={**os.environ, "KUBECONFIG": KUBECONFIG, "KUBECTL": KUBECTL},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "conflict" in r.stderr.lower(), r.stderr
    assert get("deployment", "tasks-api", "-n", "tasks-api")["metadata"]["resourceVersion"] == before
