"""The pipelines' wiring, checked without running them: every script a workflow or
the Jenkinsfile names exists and is executable, every secret and credential they
use is documented, the workflows keep their security properties, the branch
ruleset requires real jobs, and the Jenkinsfile has the declarative structure the
CD design needs (read with Groovy's own parser: ci/jenkinsfile-structure.groovy).
Each check has a negative case, so it is known to fail when it should."""

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
README = (ROOT / "README.md").read_text()
CICD_DOC = (ROOT / "docs" / "cicd.md").read_text()
SCRIPT = re.compile(r"(?<![\w/.-])(ci/[\w./-]+\.(?:sh|py))")
EXPECTED_STAGES = ["Checkout", "Lint", "Test", "SonarQube analysis",
                   "Quality gate", "Build image", "Scan image", "Push image", "Deploy"]
# Sections a declarative stage may hold (Jenkins' pipeline-model-definition).
STAGE_SECTIONS = {"steps", "when", "environment", "options", "agent", "input", "tools", "post",
                  "stages", "parallel", "matrix", "failFast"}
PIPELINE_SECTIONS = {"agent", "options", "parameters", "environment", "triggers", "tools", "stages",
                     "post", "libraries"}


def load_workflow(path):
    # PyYAML reads the key `on` as True; keep it a string.
    text = path.read_text()
    return yaml.load(text, Loader=yaml.BaseLoader)


@pytest.fixture(scope="module")
def jenkinsfile():
    cp = subprocess.run([str(ROOT / "ci" / "groovy-classpath.sh")], check=True, capture_output=True, text=True).stdout.strip()
    out = subprocess.run(["java", "-cp", cp, "groovy.ui.GroovyMain", str(ROOT / "ci" / "jenkinsfile-structure.groovy"),
                          str(ROOT / "Jenkinsfile")], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def workflow_run_scripts():
    for path in WORKFLOWS:
        for job_id, job in load_workflow(path)["jobs"].items():
            for step in job.get("steps", []):
                yield path.name, job_id, step.get("run", "")


def scripts_named(texts):
    return {m for t in texts for m in SCRIPT.findall(t)}


# --- scripts -------------------------------------------------------------------

def test_every_script_named_by_a_pipeline_exists_and_is_executable(jenkinsfile):
    named = scripts_named(run for _, _, run in workflow_run_scripts()) | scripts_named(jenkinsfile["sh"])
    assert len(named) >= 12, named
    missing = [s for s in named if not (ROOT / s).is_file() or not os.access(ROOT / s, os.X_OK)]
    assert not missing, f"named by a pipeline but missing or not executable: {missing}"


def test_every_ci_script_prints_usage_and_exit_codes():
    for script in sorted((ROOT / "ci").glob("*.sh")) + sorted((ROOT / "ci").glob("*.py")):
        head = script.read_text()[:2500]
        assert re.search(r"usage|^\s*#\s+ci/|^\s+ci/", head, re.I | re.M), f"{script.name}: no usage line"
        assert re.search(r"exit code", head, re.I), f"{script.name}: exit codes not documented"


def test_script_check_catches_a_missing_script(tmp_path):
    assert scripts_named(["ci/no-such-step.sh --flag"]) == {"ci/no-such-step.sh"}
    assert not (ROOT / "ci/no-such-step.sh").exists()


# --- secrets and credentials ---------------------------------------------------

def pipeline_secrets():
    """What a user creates in GitHub and in Jenkins' credential store."""
    names = set()
    for path in WORKFLOWS:
        names |= set(re.findall(r"\$\{\{\s*(?:secrets|vars)\.([A-Z0-9_]+)\s*\}\}", path.read_text()))
    names.discard("GITHUB_TOKEN")  # GitHub's own, not created by anyone
    jf = (ROOT / "Jenkinsfile").read_text()
    names |= set(re.findall(r"credentialsId:\s*'([^']+)'", jf))
    names |= set(re.findall(r"withSonarQubeEnv\('([^']+)'\)", jf))
    # The credential store JCasC fills.
    casc = yaml.safe_load((ROOT / "jenkins" / "casc" / "jenkins.yaml").read_text())
    for domain in casc["credentials"]["system"]["domainCredentials"]:
        for cred in domain["credentials"]:
            names |= {c["id"] for c in cred.values()}
    return names


def jcasc_inputs():
    """What the Jenkins container is given (environment or mounted files)."""
    names = set()
    # JCasC (placeholders resolved from env or secret files) and the job DSL.
    for f in (ROOT / "jenkins" / "casc").rglob("*"):
        if f.is_file():
            text = "\n".join(l for l in f.read_text().splitlines() if not l.lstrip().startswith(("#", "//")))
            names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)\}", text))
            names |= set(re.findall(r"credentials\('([^']+)'\)", text))
            names |= set(re.findall(r"readFile:(/run/secrets/[\w.-]+)", text))
    return names


def test_every_secret_and_credential_is_documented():
    names = pipeline_secrets()
    assert {"DOCKERHUB_USERNAME", "DOCKERHUB_TOKEN", "dockerhub", "kubeconfig", "github-repo", "sonarqube"} <= names
    undocumented = sorted(n for n in names if f"`{n}`" not in README or f"`{n}`" not in CICD_DOC)
    assert not undocumented, f"used by a pipeline, not documented (in backticks) in README and docs/cicd.md: {undocumented}"
    inputs = jcasc_inputs()
    assert {"JENKINS_ADMIN_PASSWORD", "SONAR_TOKEN", "/run/secrets/kubeconfig"} <= inputs
    undocumented = sorted(n for n in inputs if f"`{n}`" not in CICD_DOC)
    assert not undocumented, f"JCasC inputs not documented in docs/cicd.md: {undocumented}"


def jcasc_secret_names(casc):
    """The ${NAME}s JCasC puts into a credential's secret or a user's password."""
    names = set()

    def walk(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key in ("password", "secret", "privateKey", "secretBytes"):
            names.update(re.findall(r"\$\{([A-Z][A-Z0-9_]+)\}", node))

    walk(casc)
    return names


def secrets_given_as_environment(casc, compose, jenkins_tasks, jenkins_defaults):
    """Where a JCasC secret would reach the controller as an environment variable
    (visible to `docker inspect`, inherited by every child) or not as a file."""
    secrets = jcasc_secret_names(casc)
    problems = []
    service = compose["services"]["jenkins"]
    env = {e.split("=", 1)[0] for e in service.get("environment", [])}
    problems += [f"compose: {n} in environment" for n in sorted(secrets & env)]
    problems += [f"compose: {n} not a secret file" for n in sorted(secrets - set(service.get("secrets", [])))]
    (container,) = [t for t in jenkins_tasks if "community.docker.docker_container" in t
                    and "controller" in t["name"]]
    role_env = set(container["community.docker.docker_container"].get("env", {}))
    problems += [f"ansible: {n} in env" for n in sorted(secrets & role_env)]
    files = set(jenkins_defaults.get("jenkins_secret_files", {}))
    problems += [f"ansible: {n} not a secret file" for n in sorted(secrets - files)]
    return problems


def test_jenkins_gets_every_secret_as_a_file_never_as_an_environment_variable():
    casc = yaml.safe_load((ROOT / "jenkins" / "casc" / "jenkins.yaml").read_text())
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    tasks = yaml.safe_load((ROOT / "ansible" / "roles" / "jenkins" / "tasks" / "main.yml").read_text())
    defaults = yaml.safe_load((ROOT / "ansible" / "roles" / "jenkins" / "defaults" / "main.yml").read_text())
    assert {"JENKINS_ADMIN_PASSWORD", "SONAR_TOKEN", "SONAR_WEBHOOK_SECRET", "GITHUB_TOKEN"} <= jcasc_secret_names(casc)
    assert secrets_given_as_environment(casc, compose, tasks, defaults) == []
    # The way it was: tokens in the containers' environment.
    leaky = copy.deepcopy(compose)
    leaky["services"]["jenkins"]["environment"].append("SONAR_TOKEN")
    leaky["services"]["jenkins"]["secrets"].remove("SONAR_TOKEN")
    leaky_tasks = copy.deepcopy(tasks)
    (c,) = [t for t in leaky_tasks if "community.docker.docker_container" in t and "controller" in t["name"]]
    c["community.docker.docker_container"]["env"]["GITHUB_TOKEN"] = "{{ jenkins_github_token }}"
    assert secrets_given_as_environment(casc, leaky, leaky_tasks, defaults) == [
        "compose: SONAR_TOKEN in environment", "compose: SONAR_TOKEN not a secret file", "ansible: GITHUB_TOKEN in env"]


def test_the_quality_gate_webhook_is_signed():
    casc = yaml.safe_load((ROOT / "jenkins" / "casc" / "jenkins.yaml").read_text())
    (sonar,) = casc["unclassified"]["sonarGlobalConfiguration"]["installations"]
    secret_id = sonar["webhookSecretId"]
    assert secret_id, "an unsigned webhook lets anyone who reaches Jenkins forge a passing gate"
    creds = [c for d in casc["credentials"]["system"]["domainCredentials"] for c in d["credentials"]]
    assert any(next(iter(c.values())).get("id") == secret_id for c in creds), f"{secret_id} is not a credential"


# --- workflows -----------------------------------------------------------------

def workflow_problems(wf):
    problems = []
    if wf.get("permissions") != {} and wf.get("permissions") != "{}":
        problems.append("top-level permissions is not {}")
    if "concurrency" not in wf:
        problems.append("no concurrency group")
    for job_id, job in wf["jobs"].items():
        if "permissions" not in job:
            problems.append(f"{job_id}: no job permissions")
        if "timeout-minutes" not in job:
            problems.append(f"{job_id}: no timeout")
        for step in job.get("steps", []):
            uses = step.get("uses")
            if uses and not uses.startswith("./"):
                if not re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", uses):
                    problems.append(f"{job_id}: {uses} not pinned by commit SHA")
                if uses.startswith("actions/checkout@") and step.get("with", {}).get("persist-credentials") != "false":
                    problems.append(f"{job_id}: checkout persists credentials")
    return problems


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_security_properties(path):
    assert workflow_problems(load_workflow(path)) == []
    # The pins carry the version they were resolved from.
    for line in path.read_text().splitlines():
        if re.search(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40}", line):
            assert re.search(r"# v\d", line), f"pin without a version comment: {line.strip()}"


def test_workflow_check_catches_a_tag_pin_and_missing_grants():
    wf = copy.deepcopy(load_workflow(ROOT / ".github/workflows/ci.yml"))
    wf["permissions"] = "write-all"
    job = wf["jobs"]["lint"]
    del job["timeout-minutes"]
    job["steps"][0]["uses"] = "actions/checkout@v5"
    problems = workflow_problems(wf)
    assert "top-level permissions is not {}" in problems
    assert "lint: no timeout" in problems
    assert any("not pinned" in p for p in problems)


def test_ci_runs_mongodb_suites_against_a_real_mongo_service():
    wf = load_workflow(ROOT / ".github/workflows/ci.yml")
    test = wf["jobs"]["test"]
    assert test["services"]["mongo"]["image"].startswith("mongo:7")
    assert any("ci/test.sh unit mongodb" in s.get("run", "") for s in test["steps"])


def test_push_sign_and_attest_only_on_main():
    wf = load_workflow(ROOT / ".github/workflows/ci.yml")
    jobs = wf["jobs"]
    publish = jobs["publish"]
    assert publish["if"] == "github.ref == 'refs/heads/main' && github.event_name == 'push'"
    assert "image" in publish["needs"]
    # Only the publish job may push, sign or attest; every job that runs a pull
    # request's scripts has no such token.
    for name, job in jobs.items():
        perms = job.get("permissions", {})
        steps = " ".join(str(s) for s in job.get("steps", []))
        powerful = perms.get("id-token") == "write" or perms.get("attestations") == "write"
        publishing = any(k in steps for k in ("push-image", "sign-image", "cosign", "attest-build-provenance", "DOCKERHUB_TOKEN"))
        if name != "publish":
            assert not powerful and not publishing, name
    sign = (ROOT / "ci" / "sign-image.sh").read_text()
    assert "--certificate-identity " in sign and "ci.yml@refs/heads/main" in sign
    assert "identity-regexp" not in sign


# --- branch protection ---------------------------------------------------------

def ruleset_problems(ruleset, job_names):
    problems = []
    types = {r["type"] for r in ruleset["rules"]}
    for needed in ("deletion", "non_fast_forward", "pull_request", "required_status_checks"):
        if needed not in types:
            problems.append(f"rule {needed} missing")
    for r in ruleset["rules"]:
        if r["type"] == "pull_request" and r["parameters"]["required_approving_review_count"] < 1:
            problems.append("no required review")
        if r["type"] == "required_status_checks":
            for c in r["parameters"]["required_status_checks"]:
                if c["context"] not in job_names:
                    problems.append(f"required check {c['context']!r} is not a job")
    return problems


def ci_job_names():
    wf = load_workflow(ROOT / ".github/workflows/ci.yml")
    return {job.get("name", job_id) for job_id, job in wf["jobs"].items()}


def test_ruleset_requires_real_jobs_reviews_and_no_force_push():
    ruleset = json.loads((ROOT / ".github/rulesets/main.json").read_text())
    assert ruleset_problems(ruleset, ci_job_names()) == []
    required = {c["context"] for r in ruleset["rules"] if r["type"] == "required_status_checks"
                for c in r["parameters"]["required_status_checks"]}
    assert required == ci_job_names(), "every CI job is required, and nothing else"


def test_ruleset_check_catches_a_renamed_job():
    ruleset = json.loads((ROOT / ".github/rulesets/main.json").read_text())
    names = ci_job_names() - {"lint (fmt, clippy host + wasm)"} | {"lint"}
    assert ruleset_problems(ruleset, names) == ["required check 'lint (fmt, clippy host + wasm)' is not a job"]


# --- Jenkinsfile ----------------------------------------------------------------

def jenkinsfile_problems(s):
    problems = []
    unknown = set(s["sections"]) - PIPELINE_SECTIONS
    if unknown:
        problems.append(f"unknown pipeline sections {sorted(unknown)}")
    names = [st["name"] for st in s["stages"]]
    if names != EXPECTED_STAGES:
        problems.append(f"stages {names}")
    for st in s["stages"]:
        if st["call"] != "stage":
            problems.append(f"{st['call']} inside stages")
        if "steps" not in st["sections"]:
            problems.append(f"stage {st['name']!r} has no steps")
        bad = set(st["sections"]) - STAGE_SECTIONS
        if bad:
            problems.append(f"stage {st['name']!r}: unknown sections {sorted(bad)}")
    for script in s["sh"]:
        lines = [l.strip() for l in (script or "").strip().splitlines() if l.strip() and l.strip() != "set +x"]
        if not lines or not all(l.startswith("ci/") for l in lines):
            problems.append(f"sh step not calling a ci/ script: {script!r}")
    by = {st["name"]: st for st in s["stages"]}
    needs = {"SonarQube analysis": {"withSonarQubeEnv"}, "Quality gate": {"timeout", "waitForQualityGate"},
             "Push image": {"withCredentials"}, "Deploy": {"withKubeConfig"}}
    for name, steps in needs.items():
        if name in by and not steps <= set(by[name]["steps"]):
            problems.append(f"stage {name!r} lacks {sorted(steps - set(by[name]['steps']))}")
    if "always" not in s["post"] or not {"cleanWs", "sh"} <= set(s["post"]["always"]):
        problems.append("post { always } does not clean up")
    return problems


def test_jenkinsfile_declarative_structure(jenkinsfile):
    assert jenkinsfile_problems(jenkinsfile) == []


def test_jenkinsfile_credentials_are_never_echoed():
    text = (ROOT / "Jenkinsfile").read_text()
    for block in re.findall(r"withCredentials\(.*?\{(.*?)\n\s{16}\}", text, re.S):
        assert "set +x" in block
    assert not re.search(r"echo[^\n]*(PASSWORD|TOKEN)", text)


def test_jenkinsfile_check_catches_structural_mistakes(jenkinsfile, tmp_path):
    s = copy.deepcopy(jenkinsfile)
    s["stages"][1]["sections"] = ["step"]                     # typo: no `steps`
    s["stages"][4]["steps"] = ["steps", "timeout"]            # gate without waitForQualityGate
    s["sh"].append("cargo test")                              # a step outside ci/
    s["sections"].append("stagess")
    problems = jenkinsfile_problems(s)
    assert "stage 'Lint' has no steps" in problems
    assert "stage 'Lint': unknown sections ['step']" in problems
    assert "stage 'Quality gate' lacks ['waitForQualityGate']" in problems
    assert "sh step not calling a ci/ script: 'cargo test'" in problems
    assert "unknown pipeline sections ['stagess']" in problems


def test_structure_reader_rejects_a_file_without_pipeline(tmp_path):
    bad = tmp_path / "Jenkinsfile"
    bad.write_text("node { sh 'make' }\n")
    cp = subprocess.run([str(ROOT / "ci" / "groovy-classpath.sh")], check=True, capture_output=True, text=True).stdout.strip()
    r = subprocess.run(["java", "-cp", cp, "groovy.ui.GroovyMain", str(ROOT / "ci" / "jenkinsfile-structure.groovy"), str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no `pipeline { }` block" in r.stderr


# --- Jenkins: executors and credentials -------------------------------------------

def jcasc():
    return yaml.safe_load((ROOT / "jenkins" / "casc" / "jenkins.yaml").read_text())


# Jenkins' placement rule, as ci/jenkins-pipeline.py applies it when it runs the pipeline.
_spec = importlib.util.spec_from_file_location("jenkins_pipeline", ROOT / "ci" / "jenkins-pipeline.py")
jenkins_pipeline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(jenkins_pipeline)
build_nodes, label_matches, place = jenkins_pipeline.build_nodes, jenkins_pipeline.label_matches, jenkins_pipeline.place


def agent_problems(structure, casc):
    nodes = build_nodes(casc)
    problems = []
    for st in structure["stages"]:
        agent = st.get("agent") or structure.get("agent")
        if agent in (None, "none"):
            problems.append(f"stage {st['name']!r} has no agent")
        elif place(agent, nodes) is None:
            problems.append(f"stage {st['name']!r}: no node in JCasC can run agent {agent}")
    return problems


def credential_problems(casc, texts):
    defined = {c["id"] for d in casc["credentials"]["system"]["domainCredentials"]
               for cred in d["credentials"] for c in cred.values()}
    used = set()
    for t in texts:
        used |= set(re.findall(r"credentialsId:\s*'([^']+)'", t)) | set(re.findall(r"credentials\('([^']+)'\)", t))
        # A credential id given as a build parameter: its default must be defined.
        for param in re.findall(r"credentialsId:\s*params\.(\w+)", t):
            default = re.search(rf"name:\s*'{param}',\s*defaultValue:\s*'([^']+)'", t)
            used.add(default.group(1) if default else f"<parameter {param} without a default>")

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "credentialsId" and v:
                    used.add(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(casc)
    return [f"credential {c!r} is used but JCasC defines no such id" for c in sorted(used - defined)]


def pipeline_texts():
    return [(ROOT / "Jenkinsfile").read_text()] + [f.read_text() for f in (ROOT / "jenkins" / "casc" / "jobs").glob("*.groovy")]


def test_every_stage_gets_an_executor_and_every_credential_is_defined(jenkinsfile):
    casc = jcasc()
    assert agent_problems(jenkinsfile, casc) == []
    assert credential_problems(casc, pipeline_texts()) == []
    assert int(casc["jenkins"]["numExecutors"]) == 0, "builds run on an agent, never next to JENKINS_HOME"


def test_the_executor_check_fails_where_jenkins_would_wait_for_ever(jenkinsfile):
    # The configuration before the agent: `agent any` and an EXCLUSIVE built-in node
    # with no other node: Jenkins queues every build for ever.
    before = {"jenkins": {"numExecutors": 2, "mode": "EXCLUSIVE"}}
    s = copy.deepcopy(jenkinsfile)
    s["agent"] = "any"
    assert agent_problems(s, before) == [f"stage {n!r}: no node in JCasC can run agent any" for n in EXPECTED_STAGES]
    # A label no node carries; a stage with none; an undefined credential.
    s = copy.deepcopy(jenkinsfile)
    s["stages"][0]["agent"] = {"kind": "label", "label": "linux && arm64"}
    s["stages"][1]["agent"] = "none"
    assert agent_problems(s, jcasc()) == [
        "stage 'Checkout': no node in JCasC can run agent {'kind': 'label', 'label': 'linux && arm64'}",
        "stage 'Lint' has no agent",
    ]
    assert credential_problems(jcasc(), ["withCredentials([string(credentialsId: 'npm-token')])"]) == [
        "credential 'npm-token' is used but JCasC defines no such id"]
    assert credential_problems(jcasc(), ["string(name: 'CRED', defaultValue: 'ghcr', description: 'x')\n"
                                         "withCredentials([usernamePassword(credentialsId: params.CRED)])"]) == [
        "credential 'ghcr' is used but JCasC defines no such id"]
    assert label_matches("linux && (docker || podman) && !windows", {"linux", "docker"})


# --- SonarQube gate and secret scan ---------------------------------------------

def test_quality_gate_conditions_are_on_overall_code():
    spec = json.loads((ROOT / "ci" / "sonar-quality-gate.json").read_text())
    metrics = {c["metric"] for c in spec["conditions"]}
    assert {"coverage", "duplicated_lines_density", "software_quality_reliability_issues",
            "software_quality_security_issues"} <= metrics
    assert not any(m.startswith("new_") for m in metrics)


def test_sonar_properties_use_the_official_rust_report_keys():
    props = dict(l.split("=", 1) for l in (ROOT / "sonar-project.properties").read_text().splitlines()
                 if l and not l.startswith("#"))
    assert props["sonar.rust.clippyReport.reportPaths"] and props["sonar.rust.lcov.reportPaths"]
    assert "tools/ferretdb/vendor/**" in props["sonar.exclusions"]


def test_secret_scan_is_clean_and_fails_on_a_planted_key(tmp_path):
    venv = os.environ.get("VENV", str(ROOT / ".venv"))
    env = dict(os.environ, VENV=venv)
    clean = subprocess.run([str(ROOT / "ci" / "secret-scan.py")], capture_output=True, text=True, env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    # detect-secrets scans only files below the working directory, by their real
    # path: not under target/, which CI makes a link to a cache outside the clone.
    plant = ROOT / ".secret-scan-test"
    plant.mkdir(parents=True, exist_ok=True)
    try:
        leak = plant / "leak.env"
        # Assembled at run time, so the repository itself holds no key-shaped string.
        key = "AKIA" + "Z3MSJV4WQXBNOP7Q"
        leak.write_text(f'AWS_ACCESS_KEY_ID="{key}"\n')
        r = subprocess.run([str(ROOT / "ci" / "secret-scan.py"), str(leak.relative_to(ROOT))],
                           capture_output=True, text=True, env=env, cwd=ROOT)
        assert r.returncode == 1 and "AWS Access Key" in r.stderr
        assert key not in r.stdout + r.stderr
    finally:
        shutil.rmtree(plant)


def test_gitignore_covers_secrets():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    for pattern in (".env", "*.pem", "*.key", "kubeconfig*"):
        assert pattern in ignored, pattern


# --- project files ---------------------------------------------------------------

def codeowners_rules(text):
    """(pattern, owners) per rule line of a CODEOWNERS file."""
    rules = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pattern, *owners = line.split()
            rules.append((pattern, owners))
    return rules


def codeowners_problems(rules, ruleset, root):
    problems = []
    for pattern, owners in rules:
        if not owners:
            problems.append(f"{pattern}: no owner")
        if pattern != "*" and not list(root.glob(pattern.strip("/"))):
            problems.append(f"{pattern}: matches nothing in the repository")
    guarded = {p for p, owners in rules if "@example/security" in owners}
    for path in ("/.github/", "/Jenkinsfile", "/jenkins/", "/ci/", "/k8s/", "/wit/", "/crates/doc-query/"):
        if path not in guarded:
            problems.append(f"{path}: no security owner")
    reviews = [r["parameters"] for r in ruleset["rules"] if r["type"] == "pull_request"]
    if not reviews or not reviews[0].get("require_code_owner_review"):
        problems.append("the ruleset does not require the code owners' review")
    return problems


def test_codeowners_cover_the_boundary_and_the_chain_and_the_ruleset_requires_them():
    rules = codeowners_rules((ROOT / ".github" / "CODEOWNERS").read_text())
    ruleset = json.loads((ROOT / ".github/rulesets/main.json").read_text())
    assert codeowners_problems(rules, ruleset, ROOT) == []
    # The check can fail: a stale path, a dropped security owner, reviews not required.
    broken = copy.deepcopy(ruleset)
    for r in broken["rules"]:
        if r["type"] == "pull_request":
            r["parameters"]["require_code_owner_review"] = False
    stale = [(p, o) for p, o in rules if p != "/k8s/"] + [("/kube/", ["@example/x"])]
    assert codeowners_problems(stale, broken, ROOT) == [
        "/kube/: matches nothing in the repository",
        "/k8s/: no security owner",
        "the ruleset does not require the code owners' review",
    ]


def test_the_files_people_expect_are_there_and_agree_with_the_manifests():
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert re.search(r'^license = "Apache-2.0"$', (ROOT / "Cargo.toml").read_text(), re.M)
    security = (ROOT / "SECURITY.md").read_text()
    assert "Report a vulnerability" in security and "docs/security.md" in security
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    for command in ("cargo run --release -p host", "cargo test", "bash .ci/run"):
        assert command in contributing and command in README


def broken_links(files):
    """Relative Markdown links whose target does not exist."""
    bad = []
    for f in files:
        for m in re.finditer(r"\]\(([^)\s]+)\)", f.read_text()):
            target = m.group(1)
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            if not (f.parent / target.split("#")[0]).exists():
                bad.append(f"{f.relative_to(f.parent.parent if f.parent.name == 'docs' else f.parent)}: {target}")
    return bad


def test_the_docs_link_only_to_files_that_exist(tmp_path):
    docs = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert broken_links(docs) == []
    stale = tmp_path / "stale.md"
    stale.write_text("See [the old page](docs/gone.md) and [ok](https://example.com).\n")
    assert broken_links([stale]) == ["stale.md: docs/gone.md"]
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200, "the README is the front door: detail goes to docs/"
    for text in [readme, *(d.read_text() for d in docs)]:
        assert not re.search(r"issue #|these machines|not re-run", text)


# --- the docs' commands run as written ----------------------------------------------

DOC_PAGES = ["README.md", "CONTRIBUTING.md", "SECURITY.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
# Languages pytest-codeblocks would not run: fine for output, pictures and data, never
# for commands (those go in `bash` blocks, which run or carry a reason).
NOT_COMMANDS = {"text", "mermaid", "yaml", "json"}


def doc_block_problems(name, text, stages):
    """What keeps a page's commands from being run by ci/doc-blocks.sh."""
    problems = []
    lines = text.splitlines()
    in_fence, prev_blank, marks, in_list = False, True, [], False
    for n, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            if not in_fence:
                lang = line.strip()[3:].strip()
                if lang != "bash" and lang not in NOT_COMMANDS:
                    problems.append(f"{name}:{n}: a ```{lang or '(no language)'} block: commands go in ```bash")
                for mark in marks:
                    skip = re.fullmatch(r'skip\(reason="(.+)"\)', mark)
                    stage = re.fullmatch(r'stage\("([\w-]+)"\)', mark)
                    if skip is None and stage is None:
                        problems.append(f"{name}:{n}: mark {mark!r}: use skip(reason=\"...\") or stage(\"ID\")")
                    if stage and stage.group(1) not in stages:
                        problems.append(f"{name}:{n}: no stage runs ci/doc-blocks.sh {stage.group(1)}")
                marks = []
            in_fence = not in_fence
            prev_blank = False
            continue
        if in_fence:
            continue
        m = re.fullmatch(r"<!--pytest\.mark\.(.*)-->", line.strip())
        if m:
            marks.append(m.group(1))
        elif line.startswith("    ") and line.strip() and prev_blank and not in_list:
            problems.append(f"{name}:{n}: an indented code block: fence it as ```bash (or ```text)")
        if line.strip():
            # Indented text after a list item continues the item; it is not code.
            in_list = bool(re.match(r"\s*([-*+]|\d+\.)\s", line)) or (in_list and line.startswith(" "))
        prev_blank = not line.strip()
    return problems


def doc_block_stages():
    """The stages that run `ci/doc-blocks.sh STAGE` inside their own block of .ci/run."""
    run = (ROOT / ".ci/run").read_text()
    found = set()
    for m in re.finditer(r"^if stage ([\w-]+); then\n(.*?)^fi$", run, re.M | re.S):
        found.update(s for s in re.findall(r"ci/doc-blocks\.sh ([\w-]+)", m.group(2)) if s == m.group(1))
    return found


def test_every_command_in_the_docs_is_in_a_block_ci_runs_or_says_why_not():
    stages = doc_block_stages()
    assert {"docs", "quick-start"} <= stages
    problems = []
    for page in DOC_PAGES:
        problems += doc_block_problems(page, (ROOT / page).read_text(), stages)
    assert problems == []
    # The README's journeys are in blocks, each run or marked.
    readme = (ROOT / "README.md").read_text()
    assert "```bash\ncp .env.example .env" in readme and "docker compose up -d --wait" in readme
    # The check can fail: an unfenced command, a ```sh block, a skip without a reason,
    # a stage nobody runs.
    planted = ("Run:\n\n    docker compose up -d\n\n```sh\nls\n```\n\n<!--pytest.mark.skip-->\n```bash\nls\n```\n\n"
               '<!--pytest.mark.stage("nowhere")-->\n```bash\nls\n```\n\n- a list\n\n    continued\n')
    found = doc_block_problems("planted.md", planted, stages)
    assert [p.split(":")[1] for p in found] == ["3", "5", "10", "15"], found


# --- secrets never on a command line ----------------------------------------------

# A process's arguments are readable by every user of the machine (/proc/PID/cmdline,
# `ps`): credentials go through stdin, a 0600 file, or the environment.
SECRET_ON_COMMAND_LINE = [
    re.compile(r"""(?:^|\s)(?:-u|--user)\s+["']?[^"'\s]*\$\{?\w*(?:TOKEN|PASS|pass|token|SECRET)"""),
    re.compile(r"--from-literal=[\w.-]+=[\"']?\$\{?\w*(?:PASSWORD|TOKEN|SECRET|pass)"),
    re.compile(r"--password(?:=|\s+)[\"']?\$"),
    re.compile(r"""--data(?:-urlencode|-raw)?\s+["']?\w*(?:password|token)=\$"""),
    re.compile(r"""(?:Authorization|PRIVATE-TOKEN):\s*\w*\s*\$\{?\w*(?:TOKEN|PASS)"""),
]


def code_lines_matching(paths, patterns, only_if=""):
    """`name:line` of every non-comment line matching one of `patterns`, in the
    files that contain `only_if`."""
    found = []
    for path in paths:
        text = path.read_text()
        if only_if not in text:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if not line.lstrip().startswith("#") and any(p.search(line) for p in patterns):
                found.append(f"{path.name}:{n}")
    return found


def secrets_on_command_lines(paths):
    return code_lines_matching(paths, SECRET_ON_COMMAND_LINE)


def shell_and_task_files():
    tracked = subprocess.run(["git", "ls-files", "*.sh", "ansible/**/*.yml", "Jenkinsfile", ".github/workflows/*.yml", ".ci/run"],
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout.split()
    return [ROOT / p for p in tracked]


def test_no_secret_is_passed_on_a_command_line(tmp_path):
    files = shell_and_task_files()
    assert any(f.name == "sonarqube.sh" for f in files)
    assert secrets_on_command_lines(files) == []
    planted = tmp_path / "leaky.sh"
    planted.write_text('curl -u "admin:$pass" "$url"\n'
                       'kubectl create secret generic g --from-literal=password="$GRAFANA_ADMIN_PASSWORD"\n'
                       'docker login --password "$REGISTRY_PASSWORD" r\n'
                       'curl --data-urlencode "password=$pass" "$url"\n'
                       'printf %s "$REGISTRY_PASSWORD" | docker login --password-stdin r\n')
    assert secrets_on_command_lines([planted]) == ["leaky.sh:1", "leaky.sh:2", "leaky.sh:3", "leaky.sh:4"]


# Under `set -o pipefail` a reader that stops early (head, grep -q, grep -m N)
# makes the writer die of SIGPIPE when it writes after the reader left, and the
# pipeline then fails with 141 -- depending on timing. FerretDB's `--version |
# head -3` failed a CI run this way. Readers that read to the end (sed -n 1p,
# grep >/dev/null) cannot.
# An awk program that exits stops reading too: a writer with more than a pipe
# buffer's worth left (ci/packages.txt grew past 4 KiB) dies of SIGPIPE.
EARLY_CLOSING_READER = re.compile(
    r"\|\s*(head\b|grep\s+(-\w*[qm]\w*\b|--quiet|--max-count)|awk\b[^|]*\bexit\b)")


def early_closing_pipes(paths):
    return code_lines_matching(paths, [EARLY_CLOSING_READER], only_if="pipefail")


def test_no_pipefail_script_pipes_into_a_reader_that_stops_early(tmp_path):
    scripts = [f for f in shell_and_task_files() if f.suffix == ".sh" or f.name == "run"]
    assert any(f.name == "build.sh" and f.parent.name == "ferretdb" for f in scripts)
    assert early_closing_pipes(scripts) == []
    planted = tmp_path / "flaky.sh"
    planted.write_text('set -euo pipefail\n'
                       '"$out" --version | head -3\n'
                       'docker port x | grep -q 8080\n'
                       'ps | grep -m1 host\n'
                       'ps | grep host >/dev/null\n'
                       'docker port x | sed -n 1p\n'
                       "sed 's/#.*//' list | awk '$2 == n { print; exit }'\n"
                       "sed 's/#.*//' list | awk '$2 == n { print }'\n")
    assert early_closing_pipes([planted]) == ["flaky.sh:2", "flaky.sh:3", "flaky.sh:4", "flaky.sh:7"]
