"""The minikube journey on a node that runs containers (tools/k8s/node.sh), after
.ci/run has deployed the minikube overlay there with ci/deploy.sh: what a user of
minikube would see (pods Ready through their real probes, a task written and read
back through the NodePort; SonarQube up in its namespace), and what only the node
can show (the processes' user, capabilities, seccomp mode and root filesystem; the
MongoDB URI as a file and in no environment; the data on the volume).

Then failure and change, as they happen to a running service: a rolling update to
a second image tag under load (no request may fail), the app's process killed
and its pod deleted, the database's pod gone and back (503 problem+json meanwhile,
then recovery without help); every task written before is still there after each.

Needs K8S_NODE_DIR (node.sh's DIR, with the deployed copy of k8s/ in
DIR/manifests and `tasks-api:dev2` loaded) and KUBECTL; skipped without them, and
.ci/run fails if anything here is skipped."""

import json
import os
import pathlib
import signal
import subprocess
import time
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
NODE_DIR = os.environ.get("K8S_NODE_DIR")
KUBECTL = os.environ.get("KUBECTL", "kubectl")
NODE_IP = "198.18.0.2"
NODE_PORT = 30080
APP_UID = 65532
# Debian's minimal image (ci/base-images.sh), loaded into the node: bash, to connect.
OUTSIDER_IMAGE = "tasks-ci/debian:bookworm-minbase"

pytestmark = pytest.mark.skipif(not NODE_DIR, reason="no real node (K8S_NODE_DIR unset)")


def kubectl(*args, check=True, input=None):
    r = subprocess.run([KUBECTL, "--kubeconfig", f"{NODE_DIR}/host.kubeconfig", *args],
                       input=input, capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
    return r


def get(*args):
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def in_node(*cmd, check=True):
    """A command in the node's network namespace, where the NodePort is."""
    r = subprocess.run(["bash", str(ROOT / "tools" / "k8s" / "node.sh"), "exec", NODE_DIR, *cmd],
                       capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr}"
    return r


def container_pid(pod, container):
    """The PID, on this machine, of a container's first process (containerd's task)."""
    status = next(s for s in pod["status"]["containerStatuses"] if s["name"] == container)
    cid = status["containerID"].removeprefix("containerd://")
    tasks = subprocess.run([f"{NODE_DIR}/bin/ctr", "--address", f"{NODE_DIR}/node/containerd/containerd.sock",
                            "-n", "k8s.io", "tasks", "ls"], capture_output=True, text=True, check=True).stdout
    for line in tasks.splitlines()[1:]:
        fields = line.split()
        if fields[0] == cid:
            return int(fields[1])
    raise AssertionError(f"no containerd task for {pod['metadata']['name']}/{container} ({cid})")


def proc_status(pid):
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return fields


def assert_read_only_root(pid):
    root = next(line.split() for line in pathlib.Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                if line.split()[4] == "/")
    assert "ro" in root[5].split(","), root


def app_pod():
    pods = [p for p in get("pods", "-n", "tasks-api", "-l", "app.kubernetes.io/name=tasks-api")["items"]
            if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def api(method, path, body=None, base=None):
    """One request from inside the node (the NodePort unless base is given)."""
    args = ["curl", "-sS", "-m", "10", "-o", "/dev/stdout", "-w", "\\n%{http_code} %{content_type}", "-X", method,
            f"{base or f'http://{NODE_IP}:{NODE_PORT}'}{path}"]
    if body is not None:
        args += ["-H", "content-type: application/json", "-d", json.dumps(body)]
    out = in_node(*args).stdout
    payload, _, meta = out.rpartition("\n")
    code, _, ctype = meta.partition(" ")
    return int(code), ctype, payload


def write_tasks(n):
    ids = []
    for i in range(n):
        code, _, payload = api("POST", "/api/tasks", {"title": f"kept {i} {uuid.uuid4()}"})
        assert code == 201, (code, payload)
        ids.append(json.loads(payload)["id"])
    return ids


def assert_all_there(ids):
    for task_id in ids:
        code, _, payload = api("GET", f"/api/tasks/{task_id}")
        assert code == 200, (task_id, code, payload)


def wait_ready(selector, timeout=180):
    kubectl("wait", "-n", "tasks-api", "--for", "condition=Ready", "pod", "-l", selector, f"--timeout={timeout}s")


def test_every_pod_is_running_and_ready_through_its_probes():
    pods = get("pods", "-A")["items"]
    names = {p["metadata"]["name"] for p in pods}
    assert any(n.startswith("tasks-api-") for n in names) and "mongodb-0" in names, names
    for pod in pods:
        assert pod["spec"]["nodeName"] == "tasks-node", pod["metadata"]["name"]
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert pod["status"]["phase"] == "Running" and ready["Ready"] == "True", (pod["metadata"]["name"], pod["status"])
        for c in pod["status"]["containerStatuses"]:
            assert c["restartCount"] == 0, (pod["metadata"]["name"], c)
    # The probes are the kubelet's, for real: the app's readiness is its /readyz.
    container = app_pod()["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_a_task_written_through_the_node_port_is_read_back():
    title = f"node journey {uuid.uuid4()}"
    code, _, payload = api("POST", "/api/tasks", {"title": title})
    assert code == 201, (code, payload)
    task = json.loads(payload)
    assert task["title"] == title
    code, _, payload = api("GET", f"/api/tasks/{task['id']}")
    assert code == 200, (code, payload)
    got = json.loads(payload)
    assert got["title"] == title and got["id"] == task["id"]


def test_the_app_runs_as_its_user_with_nothing_more():
    pid = container_pid(app_pod(), "host")
    status = proc_status(pid)
    assert status["Uid"] == [str(APP_UID)] * 4 and status["Gid"] == [str(APP_UID)] * 4, status["Uid"]
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[caps][0], 16) == 0, (caps, status[caps])
    assert status["NoNewPrivs"] == ["1"]
    # 2: a seccomp filter, RuntimeDefault as the pod asks, applied by the runtime.
    assert status["Seccomp"] == ["2"]
    assert_read_only_root(pid)


def test_every_container_runs_under_a_seccomp_filter_without_privilege():
    for pod in get("pods", "-n", "tasks-api")["items"]:
        for c in pod["spec"]["containers"]:
            status = proc_status(container_pid(pod, c["name"]))
            assert status["Seccomp"] == ["2"] and status["NoNewPrivs"] == ["1"], (pod["metadata"]["name"], c["name"])
            assert int(status["CapEff"][0], 16) == 0 and status["Uid"][0] != "0", (pod["metadata"]["name"], status["Uid"])


def test_sonarqube_runs_on_the_node_as_its_manifest_says():
    """k8s/sonarqube, deployed by the node-start stage, which the cd stage analysed
    against through the README's port-forward: the version CI pins, up, under the
    manifest's user with no capability, a seccomp filter and a read-only root, its
    three claims bound to the node's volumes."""
    pinned = subprocess.run(["bash", str(ROOT / "ci" / "packages.sh"), "version",
                             "org.sonarsource.sonarqube:sonar-application"], check=True, capture_output=True,
                            text=True).stdout.strip()
    pod = get("pod", "sonarqube-0", "-n", "sonarqube")
    assert pod["spec"]["nodeName"] == "tasks-node"
    code, _, payload = api("GET", "/api/system/status", base=f"http://{pod['status']['podIP']}:9000")
    assert code == 200 and json.loads(payload)["status"] == "UP", payload
    assert json.loads(payload)["version"] == pinned, payload
    pid = container_pid(pod, "sonarqube")
    status = proc_status(pid)
    assert status["Uid"] == ["1000"] * 4, status["Uid"]
    assert int(status["CapEff"][0], 16) == 0 and status["NoNewPrivs"] == ["1"] and status["Seccomp"] == ["2"], status
    assert_read_only_root(pid)
    claims = get("pvc", "-n", "sonarqube")["items"]
    assert len(claims) == 3 and all(c["status"]["phase"] == "Bound" for c in claims), [c["status"] for c in claims]


def test_network_policies_are_enforced():
    """kube-router enforces the manifests' NetworkPolicies on the node. A pod in a
    namespace of its own reaches cluster DNS (its network works), but not the API's
    ports, MongoDB or SonarQube. The API reaches MongoDB and DNS under its egress
    policy: it is Ready, and its readiness pings MongoDB by name. (SonarQube's egress
    to Jenkins was the cd stage's webhook delivery, made under the same firewall.)"""
    ns = f"outsider-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", ns)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": ns},
           "spec": {"automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "probe", "image": OUTSIDER_IMAGE, "imagePullPolicy": "Never",
                                    "command": ["sleep", "600"],
                                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}}
    kubectl("apply", "-f", "-", input=json.dumps(pod))
    try:
        kubectl("wait", "-n", ns, "--for", "condition=Ready", "pod/probe", "--timeout=60s")

        def reaches(ip, port):
            return kubectl("exec", "-n", ns, "probe", "--", "timeout", "3", "bash", "-c",
                           f"exec 3<>/dev/tcp/{ip}/{port}", check=False).returncode == 0

        assert reaches(get("service", "kube-dns", "-n", "kube-system")["spec"]["clusterIP"], 53)
        api_ip = app_pod()["status"]["podIP"]
        mongodb_ip = get("pod", "mongodb-0", "-n", "tasks-api")["status"]["podIP"]
        sonarqube_ip = get("pod", "sonarqube-0", "-n", "sonarqube")["status"]["podIP"]
        reached = [f"{ip}:{port}" for ip, port in ((api_ip, 8080), (api_ip, 9090), (mongodb_ip, 27017),
                                                    (sonarqube_ip, 9000)) if reaches(ip, port)]
        assert reached == [], f"a pod of another namespace reached {reached}"
        ready = {c["type"]: c["status"] for c in app_pod()["status"]["conditions"]}
        assert ready["Ready"] == "True"
    finally:
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_the_mongodb_uri_is_a_mounted_file_and_in_no_environment():
    pod = app_pod()
    pid = container_pid(pod, "host")
    uri = pathlib.Path(f"/proc/{pid}/root/var/run/secrets/tasks-api/mongodb/uri").read_text().strip()
    assert uri.startswith("mongodb://"), "the URI file is not where the app reads it"
    environ = pathlib.Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    assert "mongodb://" not in environ
    for kind in ("pods", "deployments", "statefulsets", "replicasets"):
        for obj in get(kind, "-A")["items"]:
            spec = obj["spec"] if kind == "pods" else obj["spec"]["template"]["spec"]
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                for env in c.get("env", []):
                    assert "mongodb://" not in env.get("value", ""), (kind, obj["metadata"]["name"], env["name"])


def test_the_database_keeps_its_data_on_the_persistent_volume():
    claim = get("pvc", "-n", "tasks-api", "data-mongodb-0")
    assert claim["status"]["phase"] == "Bound"
    volume = get("pv", claim["spec"]["volumeName"])
    path = pathlib.Path(volume["spec"]["hostPath"]["path"])
    assert path.is_relative_to(pathlib.Path(NODE_DIR)), path
    assert any(f.stat().st_size > 0 for f in path.rglob("*") if f.is_file()), f"nothing written under {path}"


# A bounded load from inside the node: THREADS clients, each sending GETs through
# the NodePort until the stop file appears (or LIMIT seconds pass); every
# connection error, timeout or non-2xx answer is a failure.
LOAD = r"""
import json, os, sys, threading, time, urllib.request
url, stop, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
end = time.monotonic() + limit
counts = {"ok": 0, "failed": 0}
errors = []
lock = threading.Lock()
def client():
    while not os.path.exists(stop) and time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                r.read()
                good = 200 <= r.status < 300
        except Exception as e:
            good = False
            with lock:
                errors.append(repr(e)[:200])
        with lock:
            counts["ok" if good else "failed"] += 1
threads = [threading.Thread(target=client) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({**counts, "errors": errors[:10]}))
"""


def test_a_rolling_update_under_load_fails_no_request(tmp_path):
    kept = write_tasks(10)
    before = app_pod()
    overlays = pathlib.Path(NODE_DIR) / "manifests" / "overlays"
    kustomization = overlays / "minikube-gitops" / "kustomization.yaml"
    # The user's next version: the lab's tag moved to the second image (the
    # README's `docker build -t tasks-api:<tag>`, `minikube image load`, deploy).
    text = kustomization.read_text()
    assert "newTag: dev\n" in text
    kustomization.write_text(text.replace("newTag: dev\n", "newTag: dev2\n"))
    stop = tmp_path / "stop"
    load = subprocess.Popen(["bash", str(ROOT / "tools" / "k8s" / "node.sh"), "exec", NODE_DIR, "python3", "-c", LOAD,
                             f"http://{NODE_IP}:{NODE_PORT}/api/tasks?limit=5", str(stop), "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        deployed = subprocess.run(["bash", str(ROOT / "ci" / "deploy.sh"), str(overlays / "minikube-standins"), "300s"],
                                  env={**os.environ, "KUBECONFIG": f"{NODE_DIR}/host.kubeconfig", "KUBECTL": KUBECTL},
                                  capture_output=True, text=True, timeout=400)
        assert deployed.returncode == 0, deployed.stderr
        # The old pod's whole termination (preStop, SIGTERM, drain) under load.
        deadline = time.monotonic() + 90
        while any(p["metadata"]["name"] == before["metadata"]["name"]
                  for p in get("pods", "-n", "tasks-api", "-l", "app.kubernetes.io/name=tasks-api")["items"]):
            assert time.monotonic() < deadline, "the old pod did not terminate"
            time.sleep(1)
        time.sleep(2)
    finally:
        stop.touch()
        out, err = load.communicate(timeout=60)
    result = json.loads(out)
    assert result["ok"] > 100, result
    assert result["failed"] == 0, result
    after = app_pod()
    assert after["spec"]["containers"][0]["image"] == "tasks-api:dev2"
    assert after["metadata"]["name"] != before["metadata"]["name"]
    assert_all_there(kept)


def test_the_app_comes_back_after_its_process_is_killed_and_its_pod_deleted():
    kept = write_tasks(5)
    pod = app_pod()
    os.kill(container_pid(pod, "host"), signal.SIGKILL)
    deadline = time.monotonic() + 120
    while True:
        pod = get("pods", "-n", "tasks-api", pod["metadata"]["name"])
        status = pod["status"]["containerStatuses"][0]
        if status["restartCount"] >= 1 and status["ready"]:
            break
        assert time.monotonic() < deadline, status
        time.sleep(1)
    assert_all_there(kept)
    kubectl("delete", "pod", "-n", "tasks-api", pod["metadata"]["name"], "--wait=true", "--timeout=120s")
    wait_ready("app.kubernetes.io/name=tasks-api")
    assert app_pod()["metadata"]["name"] != pod["metadata"]["name"]
    assert_all_there(kept)


def test_without_its_database_the_api_says_so_and_recovers_by_itself():
    kept = write_tasks(5)
    pod = app_pod()
    pod_url = f"http://{pod['status']['podIP']}:8080"
    kubectl("scale", "statefulset", "-n", "tasks-api", "mongodb", "--replicas=0")
    kubectl("wait", "-n", "tasks-api", "--for=delete", "pod/mongodb-0", "--timeout=120s")
    deadline = time.monotonic() + 60
    while True:
        code, ctype, payload = api("GET", "/api/tasks?limit=5", base=pod_url)
        if code == 503:
            break
        assert time.monotonic() < deadline, (code, payload)
        time.sleep(1)
    assert ctype.startswith("application/problem+json"), ctype
    problem = json.loads(payload)
    assert problem["status"] == 503 and "mongodb://" not in payload, problem
    # Readiness follows: the kubelet's probe takes the pod out of the Service.
    kubectl("wait", "-n", "tasks-api", "--for", "condition=Ready=false", f"pod/{pod['metadata']['name']}", "--timeout=60s")
    kubectl("scale", "statefulset", "-n", "tasks-api", "mongodb", "--replicas=1")
    wait_ready("app.kubernetes.io/name=mongodb")
    # Nobody restarts the API: it reconnects, turns Ready, and the data is the volume's.
    wait_ready("app.kubernetes.io/name=tasks-api")
    assert app_pod()["status"]["containerStatuses"][0]["restartCount"] == pod["status"]["containerStatuses"][0]["restartCount"]
    assert_all_there(kept)
