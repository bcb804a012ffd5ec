#!/usr/bin/env python3
"""Run the Jenkinsfile's declarative pipeline as Jenkins runs it, with this machine
as the build agent: .ci/run's CD stage (Jenkins itself cannot be obtained here;
docs/cicd.md, "What .ci/run runs of the pipeline").

  ci/jenkins-pipeline.py JOB_DIR --repo PATH [--param NAME=VALUE]...
      [--agent-env NAME=VALUE]... [--controller-env NAME=VALUE]... [--secrets DIR]
      [--webhook-log FILE] [--target-cache DIR] [--unavailable 'STAGE=why']...

Exit codes: 0 the build succeeded, 1 it failed, 2 usage or a construct the runner
does not know.

The pipeline is the Jenkinsfile of the commit checked out, read with Groovy's own
parser (ci/jenkinsfile-structure.groovy); the controller is jenkins/casc/jenkins.yaml
of the same commit. What Jenkins does, this does:

- parameters with their defaults (--param overrides one; an undeclared one is an
  error), `environment {}`, and the variables Jenkins gives every step (BUILD_NUMBER
  from JOB_DIR/nextBuildNumber, BUILD_ID, BUILD_TAG, JOB_NAME, WORKSPACE,
  NODE_NAME, NODE_LABELS, STAGE_NAME); the agent must be placeable on a node of
  JCasC (label expression against its labels);
- `checkout scm`: a clone of --repo at its checked-out commit into
  JOB_DIR/workspace, as the job's Git SCM makes one;
- `sh`: the script in a file, run by `sh -xe` in the workspace (Jenkins'
  durable-task), its output with every bound secret masked;
- credentials from JCasC's `credentials:` with JCasC's own placeholders resolved
  (`${VAR}` from --controller-env, the controller's environment, which is nothing
  else of this process's, or from the file VAR of --secrets, which stands for
  /run/secrets; `${readFile:/run/secrets/F}`, `${base64:...}`): withCredentials
  (usernamePassword, string, file), withKubeConfig (a file credential, written to
  a temporary kubeconfig), withSonarQubeEnv (the installation's URL and token);
- waitForQualityGate: the task id of the analysis run in this build (from the
  scanner's log, as the SonarQube plugin reads it), then SonarQube's webhook
  delivery for that task in --webhook-log (ci/webhook-receiver.py, the stand-in
  for Jenkins' endpoint, checks its HMAC), and abortPipeline on a gate not OK;
- `when { expression { params.NAME } }`, `timeout` (options and step), `post`
  (always, success, failure, cleanup), archiveArtifacts (into
  JOB_DIR/builds/N/archive), cleanWs;
- a failed step fails its stage, later stages are skipped, `post` still runs.

Any other step, option or condition is refused (exit 2): the runner says what it
cannot emulate instead of guessing. --unavailable names a stage that cannot run on
this machine and why (printed, listed as NOT RUN in the summary); every other stage
runs. --target-cache links the workspace's target/ to a directory kept between
builds (an agent's cache volume), so a build compiles only what changed.
--agent-env sets what the agent's image provides (DOCKER_HOST, tool paths).
"""

import argparse
import base64
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
UNITS = {"SECONDS": 1, "MINUTES": 60, "HOURS": 3600}
NO_OP_OPTIONS = {"timestamps", "disableConcurrentBuilds", "buildDiscarder", "skipDefaultCheckout"}


class Unsupported(Exception):
    """A construct of the Jenkinsfile this runner does not emulate (exit 2)."""


class StepFailed(Exception):
    """A step failed: its stage fails and the build is a failure."""


# --- the controller's configuration (JCasC) -------------------------------------

def build_nodes(casc):
    """(name, labels, mode) of every node or cloud template JCasC defines with
    executors. Jenkins' rule: a NORMAL node takes any build, an EXCLUSIVE one only
    builds whose label expression it matches."""
    j = casc.get("jenkins", {})
    nodes = []
    if int(j.get("numExecutors", 2)) > 0:
        nodes.append(("built-in", set(str(j.get("labelString", "")).split()) | {"built-in"}, j.get("mode", "NORMAL")))
    for entry in j.get("nodes", []):
        for spec in entry.values():
            if int(spec.get("numExecutors", 1)) > 0:
                nodes.append((spec["name"], set(str(spec.get("labelString", "")).split()) | {spec["name"]},
                              spec.get("mode", "NORMAL")))
    for cloud in j.get("clouds", []):
        for spec in cloud.values():
            for t in spec.get("templates", []):
                nodes.append((t.get("name", "template"), set(str(t.get("labelString", "")).split()), t.get("mode", "NORMAL")))
    return nodes


def label_matches(expr, labels):
    """A Jenkins label expression (atoms, &&, ||, !, parentheses) against a node's labels."""
    tokens = re.findall(r"&&|\|\||!|\(|\)|[^\s&|!()]+", expr)
    words = {"&&": "and", "||": "or", "!": "not", "(": "(", ")": ")"}
    python = " ".join(words.get(t, str(t in labels)) for t in tokens)
    return eval(python, {"__builtins__": {}})  # only True, False, and, or, not, parentheses


def place(agent, nodes):
    """The node a stage's agent runs on, or None when no node can take it."""
    label = agent.get("label") if isinstance(agent, dict) else None
    for name, labels, mode in nodes:
        if label and label_matches(label, labels):
            return name, labels
        if not label and agent not in (None, "none") and mode == "NORMAL":
            return name, labels
    return None


class Controller:
    """What the controller knows: JCasC's credentials and SonarQube installations,
    with JCasC's placeholders resolved from the environment and the secrets dir."""

    def __init__(self, casc, secrets, env):
        self.casc = casc
        self.secrets = secrets
        self.env = env
        self.credentials = {}
        for domain in casc.get("credentials", {}).get("system", {}).get("domainCredentials", []):
            for cred in domain.get("credentials", []):
                for kind, spec in cred.items():
                    self.credentials[spec["id"]] = (kind, spec)

    def resolve(self, text):
        """JCasC's variable syntax: ${VAR}, ${VAR:-default}, ${readFile:PATH}, ${base64:...}."""
        def secret_file(name):
            path = self.secrets / name if self.secrets else None
            return path.read_text().rstrip("\n") if path and path.is_file() else None

        def one(expr):
            if expr.startswith("readFile:"):
                path = resolve_inner(expr[len("readFile:"):])
                if path.startswith("/run/secrets/") and self.secrets:
                    path = str(self.secrets / path[len("/run/secrets/"):])
                try:
                    return Path(path).read_text()
                except OSError as e:
                    raise StepFailed(f"JCasC: cannot read {path}: {e.strerror}") from None
            if expr.startswith("base64:"):
                return base64.b64encode(resolve_inner(expr[len("base64:"):]).encode()).decode()
            name, _, default = expr.partition(":-")
            value = self.env.get(name)
            if value is None:
                value = secret_file(name)
            if value is None:
                if ":-" in expr:
                    return default
                raise StepFailed(f"JCasC: ${{{name}}} is neither in the environment nor a secret file")
            return value

        def resolve_inner(s):
            out, i = [], 0
            while i < len(s):
                if not s.startswith("${", i):
                    out.append(s[i])
                    i += 1
                    continue
                depth, j = 1, i + 2
                while j < len(s) and depth:
                    if s.startswith("${", j):
                        depth, j = depth + 1, j + 2
                        continue
                    depth -= s[j] == "}"
                    j += 1
                if depth:
                    raise StepFailed(f"JCasC: unbalanced ${{ in {s!r}")
                out.append(one(s[i + 2:j - 1]))
                i = j
            return "".join(out)

        return resolve_inner(str(text))

    def credential(self, cid, want):
        if cid not in self.credentials:
            raise StepFailed(f"credential {cid!r} is not defined in JCasC")
        kind, spec = self.credentials[cid]
        if kind != want:
            raise StepFailed(f"credential {cid!r} is a {kind}, not a {want}")
        return spec

    def sonar_installation(self, name):
        conf = self.casc.get("unclassified", {}).get("sonarGlobalConfiguration", {})
        for inst in conf.get("installations", []):
            if inst.get("name") == name:
                return inst
        raise StepFailed(f"no SonarQube installation {name!r} in JCasC")


# --- the build ------------------------------------------------------------------

class Build:
    def __init__(self, args, structure, casc, repo_commit):
        self.args = args
        self.s = structure
        self.job_dir = args.job_dir.resolve()
        self.workspace = self.job_dir / "workspace"
        self.tmp = self.job_dir / "workspace@tmp"
        number_file = self.job_dir / "nextBuildNumber"
        self.number = int(number_file.read_text()) if number_file.exists() else 1
        number_file.write_text(str(self.number + 1))
        self.build_dir = self.job_dir / "builds" / str(self.number)
        self.build_dir.mkdir(parents=True, exist_ok=True)
        self.commit = repo_commit
        self.masks = []
        self.sonar_task = None
        self.params = self.parameters()
        base = {k: os.environ[k] for k in ("PATH", "HOME", "USER", "LANG", "LC_ALL", "RUSTUP_HOME", "CARGO_HOME",
                                           "RUSTUP_TOOLCHAIN", "RUSTUP_AUTO_INSTALL", "TASKS_CI_CACHE")
                if k in os.environ}
        base.update(args.agent_env)
        self.controller = Controller(casc, args.secrets, args.controller_env)
        placed = place(structure.get("agent"), build_nodes(casc))
        if placed is None:
            raise StepFailed(f"no node in JCasC can run agent {structure.get('agent')}: Jenkins would wait for ever")
        self.node, labels = placed
        job = args.job_name
        self.env = {**base, "BUILD_NUMBER": str(self.number), "BUILD_ID": str(self.number),
                    "BUILD_DISPLAY_NAME": f"#{self.number}", "BUILD_TAG": f"jenkins-{job}-{self.number}",
                    "JOB_NAME": job, "JOB_BASE_NAME": job, "EXECUTOR_NUMBER": "0",
                    "NODE_NAME": self.node, "NODE_LABELS": " ".join(sorted(labels)),
                    "WORKSPACE": str(self.workspace), "WORKSPACE_TMP": str(self.tmp)}
        # Jenkins exposes the build's parameters as environment variables too.
        self.env.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in self.params.items()})
        for entry in structure.get("environment", []):
            if "assign" not in entry or not isinstance(entry["value"], (str, int, bool)):
                raise Unsupported(f"environment entry {entry}")
            self.env[entry["assign"]] = str(entry["value"])
        self.deadline = None
        for option in structure.get("options", []):
            name = option.get("call")
            if name == "timeout":
                self.deadline = time.monotonic() + self.seconds(option["named"])
            elif name not in NO_OP_OPTIONS:
                raise Unsupported(f"option {name}")
        self.default_checkout = not any(o.get("call") == "skipDefaultCheckout" and o["args"] in ([], [True])
                                        for o in structure.get("options", []))

    def parameters(self):
        declared = {}
        for p in self.s.get("parameters", []):
            kind, named = p.get("call"), p.get("named", {})
            if kind not in ("string", "booleanParam", "choice"):
                raise Unsupported(f"parameter type {kind}")
            default = named.get("choices", [""])[0] if kind == "choice" else named.get("defaultValue")
            declared[named["name"]] = (kind, default)
        values = {name: default for name, (_, default) in declared.items()}
        for name, value in self.args.param.items():
            if name not in declared:
                raise StepFailed(f"--param {name}: the Jenkinsfile declares no such parameter")
            values[name] = value.lower() == "true" if declared[name][0] == "booleanParam" else value
        return values

    @staticmethod
    def seconds(named):
        unit = named.get("unit", "MINUTES")
        if unit not in UNITS:
            raise Unsupported(f"timeout unit {unit}")
        return int(named["time"]) * UNITS[unit]

    def value(self, v):
        """A step argument: a constant, or `params.NAME`."""
        if isinstance(v, dict) and "expr" in v:
            m = re.fullmatch(r"params\.(\w+)", v["expr"])
            if not m or m.group(1) not in self.params:
                raise Unsupported(f"expression {v['expr']!r}")
            return self.params[m.group(1)]
        if isinstance(v, dict) and "gstring" in v:
            raise Unsupported(f"Groovy-interpolated string {v['gstring']!r} (Jenkins warns on secrets in these)")
        return v

    def log(self, line):
        for secret in self.masks:
            line = line.replace(secret, "****")
        print(line, flush=True)

    # -- steps --------------------------------------------------------------------

    def run_steps(self, steps, env, deadline):
        for step in steps:
            self.run_step(step, env, deadline)

    def run_step(self, step, env, deadline):
        name = step.get("call")
        if name is None:
            raise Unsupported(f"statement {step}")
        handler = getattr(self, "step_" + name, None)
        if handler is None:
            raise Unsupported(f"step {name}")
        handler(step, env, deadline)

    def step_sh(self, step, env, deadline):
        args, named = step["args"], step["named"]
        script = self.value(args[0] if args else named.get("script"))
        if set(named) - {"script", "label"} or not isinstance(script, str):
            raise Unsupported(f"sh with {sorted(named)}")
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="script-", suffix=".sh", dir=self.tmp)
        with os.fdopen(fd, "w") as f:
            f.write(script)
        command = [path] if script.startswith("#!") else ["sh", "-xe", path]
        os.chmod(path, 0o700)
        self.log(f"[Pipeline] sh: {script.strip()}")
        timeout = None if deadline is None else max(1.0, deadline - time.monotonic())
        proc = subprocess.Popen(command, cwd=self.workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", start_new_session=True)
        expired = threading.Event()

        def expire():
            expired.set()
            os.killpg(proc.pid, signal.SIGKILL)
        # A silent step times out too: the watchdog does not wait for output.
        timer = threading.Timer(timeout, expire) if timeout is not None else None
        # The SonarQube plugin finds the analysis of this build in its log; the log
        # itself is streamed, not kept.
        in_sonar_env = bool(env.get("SONAR_CONFIG_NAME"))
        try:
            if timer:
                timer.start()
            for line in proc.stdout:
                self.log(line.rstrip("\n"))
                m = in_sonar_env and re.search(r"/api/ce/task\?id=([\w-]+)", line)
                if m:
                    self.sonar_task = m.group(1)
            proc.wait()
        finally:
            if timer:
                timer.cancel()
            os.unlink(path)
        if expired.is_set():
            raise StepFailed(f"sh timed out after {timeout:.0f} s")
        if proc.returncode != 0:
            raise StepFailed(f"script returned exit code {proc.returncode}")

    def step_checkout(self, step, env, deadline):
        if step["args"] != [{"expr": "scm"}]:
            raise Unsupported(f"checkout {step['args']}")
        self.checkout()

    def checkout(self):
        shutil.rmtree(self.workspace, ignore_errors=True)
        self.log(f"[Pipeline] checkout scm: {self.args.repo} at {self.commit}")
        subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(self.args.repo), str(self.workspace)], check=True)
        subprocess.run(["git", "-C", str(self.workspace), "checkout", "--quiet", "--detach", self.commit], check=True)
        if self.args.target_cache:
            self.args.target_cache.mkdir(parents=True, exist_ok=True)
            (self.workspace / "target").symlink_to(self.args.target_cache.resolve())

    def step_echo(self, step, env, deadline):
        self.log(str(self.value(step["args"][0])))

    def step_timeout(self, step, env, deadline):
        own = time.monotonic() + self.seconds(step["named"])
        self.run_steps(step["body"], env, own if deadline is None else min(deadline, own))

    def with_bindings(self, body, env, deadline, bound, files=()):
        self.masks.extend(v for v in bound.values() if v and v not in self.masks)
        try:
            self.run_steps(body, {**env, **bound}, deadline)
        finally:
            for f in files:
                Path(f).unlink(missing_ok=True)

    def file_credential(self, cid):
        """A file credential written to a temporary file of the workspace's @tmp
        (0600); the caller deletes it when its block ends."""
        spec = self.controller.credential(cid, "file")
        content = base64.b64decode(self.controller.resolve(spec["secretBytes"]))
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="secret-", dir=self.tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        return path

    def step_withCredentials(self, step, env, deadline):  # noqa: N802 (Jenkins' step name)
        bound, files = {}, []
        for binding in step["args"][0]:
            kind, named = binding["call"], binding["named"]
            cid = self.value(named["credentialsId"])
            if kind == "usernamePassword":
                spec = self.controller.credential(cid, "usernamePassword")
                bound[named["usernameVariable"]] = self.controller.resolve(spec["username"])
                bound[named["passwordVariable"]] = self.controller.resolve(spec["password"])
            elif kind == "string":
                spec = self.controller.credential(cid, "string")
                bound[named["variable"]] = self.controller.resolve(spec["secret"])
            elif kind == "file":
                path = self.file_credential(cid)
                bound[named["variable"]] = path
                files.append(path)
            else:
                raise Unsupported(f"credential binding {kind}")
        self.with_bindings(step["body"], env, deadline, bound, files)

    def step_withKubeConfig(self, step, env, deadline):  # noqa: N802
        named = step["named"] or (step["args"][0] if step["args"] else {})
        if set(named) != {"credentialsId"}:
            raise Unsupported(f"withKubeConfig with {sorted(named)}")
        cid = self.value(named["credentialsId"])
        path = self.file_credential(cid)
        self.log(f"[Pipeline] withKubeConfig: credential {cid}")
        try:
            self.run_steps(step["body"], {**env, "KUBECONFIG": path}, deadline)
        finally:
            Path(path).unlink(missing_ok=True)

    def step_withSonarQubeEnv(self, step, env, deadline):  # noqa: N802
        name = self.value(step["args"][0])
        inst = self.controller.sonar_installation(name)
        token = self.controller.resolve(self.controller.credential(inst["credentialsId"], "string")["secret"])
        bound = {"SONAR_HOST_URL": self.controller.resolve(inst["serverUrl"]), "SONAR_AUTH_TOKEN": token,
                 "SONAR_CONFIG_NAME": name}
        self.masks.append(token)
        self.run_steps(step["body"], {**env, **bound}, deadline)

    def step_waitForQualityGate(self, step, env, deadline):  # noqa: N802
        if set(step["named"]) - {"abortPipeline"}:
            raise Unsupported(f"waitForQualityGate with {sorted(step['named'])}")
        if self.sonar_task is None:
            raise StepFailed("waitForQualityGate: no SonarQube analysis ran in this build (withSonarQubeEnv)")
        if self.args.webhook_log is None:
            raise StepFailed("waitForQualityGate: no webhook endpoint (--webhook-log)")
        self.log(f"[Pipeline] waitForQualityGate: task {self.sonar_task}")
        while deadline is None or time.monotonic() < deadline:
            lines = self.args.webhook_log.read_text().splitlines() if self.args.webhook_log.exists() else []
            for record in map(json.loads, lines):
                # Jenkins refuses a delivery whose HMAC is wrong (403): it never counts.
                if record.get("valid") and record.get("task") == self.sonar_task:
                    status = record.get("gate")
                    self.log(f"SonarQube task '{self.sonar_task}' completed. Quality gate is '{status}'")
                    if status != "OK" and step["named"].get("abortPipeline"):
                        raise StepFailed(f"Pipeline aborted due to quality gate failure: {status}")
                    return
            time.sleep(1)
        raise StepFailed("waitForQualityGate: timed out waiting for SonarQube's webhook")

    def step_archiveArtifacts(self, step, env, deadline):  # noqa: N802
        named = step["named"]
        patterns = [p.strip() for p in str(self.value(named["artifacts"])).split(",") if p.strip()]
        found = []
        for pattern in patterns:
            found += sorted(glob.glob(pattern, root_dir=self.workspace, recursive=True))
        if not found and not named.get("allowEmptyArchive"):
            raise StepFailed(f"archiveArtifacts: nothing matches {patterns}")
        for rel in found:
            src = self.workspace / rel
            if src.is_file():
                dst = self.build_dir / "archive" / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        self.log(f"[Pipeline] archiveArtifacts: {len(found)} file(s) into {self.build_dir / 'archive'}")

    def step_cleanWs(self, step, env, deadline):  # noqa: N802
        shutil.rmtree(self.workspace, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.log("[Pipeline] cleanWs: workspace deleted")

    # -- stages -------------------------------------------------------------------

    def when_allows(self, when):
        if not when:
            return True
        if len(when) != 1 or when[0].get("call") != "expression" or len(when[0]["body"]) != 1:
            raise Unsupported(f"when {when}")
        return bool(self.value(when[0]["body"][0]))

    def run(self):
        results, failed = [], False
        # Jenkins makes the workspace when the node is allocated.
        self.workspace.mkdir(parents=True, exist_ok=True)
        try:
            if self.default_checkout:
                self.checkout()
            for st in self.s["stages"]:
                name, start = st["name"], time.monotonic()
                print(f"\n[Pipeline] {{ ({name})  [{time.strftime('%H:%M:%S')}]", flush=True)
                extra = set(st.get("sections", [])) - {"steps", "when"}
                if extra or st.get("agent") is not None:
                    raise Unsupported(f"stage {name!r}: sections {sorted(extra)}, agent {st.get('agent')}")
                if failed:
                    results.append((name, "SKIPPED (earlier failure)", 0))
                    self.log(f'Stage "{name}" skipped due to earlier failure(s)')
                    continue
                if name in self.args.unavailable:
                    results.append((name, "NOT RUN HERE", 0))
                    self.log(f'Stage "{name}" cannot run on this machine: {self.args.unavailable[name]}')
                    continue
                if not self.when_allows(st.get("when")):
                    results.append((name, "SKIPPED (when)", 0))
                    self.log(f'Stage "{name}" skipped due to when conditional')
                    continue
                env = {**self.env, "STAGE_NAME": name}
                try:
                    self.run_steps(st["run"], env, self.deadline)
                    results.append((name, "SUCCESS", time.monotonic() - start))
                except StepFailed as e:
                    self.log(f"ERROR: {e}")
                    results.append((name, "FAILED", time.monotonic() - start))
                    failed = True
        except StepFailed as e:
            self.log(f"ERROR: {e}")
            failed = True
        finally:
            post = self.s.get("postRun", {})
            unknown = set(post) - {"always", "success", "failure", "cleanup"}
            if unknown:
                raise Unsupported(f"post conditions {sorted(unknown)}")
            for cond in ("always", "success" if not failed else "failure", "cleanup"):
                if cond in post:
                    print(f"\n[Pipeline] post ({cond})", flush=True)
                    try:
                        self.run_steps(post[cond], {**self.env}, None)
                    except StepFailed as e:
                        self.log(f"ERROR: {e}")
                        failed = True
        print(f"\n=== build #{self.number}: {'FAILURE' if failed else 'SUCCESS'}")
        for name, result, took in results:
            print(f"    {name:<22} {result:<26} {took:6.0f}s")
        for name, why in self.args.unavailable.items():
            print(f"    not run here: {name}: {why}")
        (self.build_dir / "result").write_text("FAILURE\n" if failed else "SUCCESS\n")
        return 1 if failed else 0


def pairs(values, what):
    out = {}
    for v in values or []:
        name, sep, value = v.partition("=")
        if not sep or not name:
            raise SystemExit(f"{what} {v!r}: want NAME=VALUE")
        out[name] = value
    return out


def structure_of(jenkinsfile):
    cp = subprocess.run([str(ROOT / "ci" / "groovy-classpath.sh")], check=True, capture_output=True, text=True).stdout.strip()
    out = subprocess.run(["java", "-cp", cp, "groovy.ui.GroovyMain", str(ROOT / "ci" / "jenkinsfile-structure.groovy"),
                          str(jenkinsfile)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("job_dir", type=Path)
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--param", action="append")
    p.add_argument("--agent-env", action="append")
    p.add_argument("--controller-env", action="append")
    p.add_argument("--job-name", default="tasks-api")
    p.add_argument("--secrets", type=Path)
    p.add_argument("--webhook-log", type=Path)
    p.add_argument("--target-cache", type=Path)
    p.add_argument("--unavailable", action="append")
    args = p.parse_args()
    args.param = pairs(args.param, "--param")
    args.agent_env = pairs(args.agent_env, "--agent-env")
    args.controller_env = pairs(args.controller_env, "--controller-env")
    args.unavailable = pairs(args.unavailable, "--unavailable")
    args.job_dir.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(args.repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    # The controller reads the Jenkinsfile and JCasC of the commit it builds.
    with tempfile.TemporaryDirectory() as tmp:
        for rel in ("Jenkinsfile", "jenkins/casc/jenkins.yaml"):
            dst = Path(tmp) / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(subprocess.run(["git", "-C", str(args.repo), "show", f"{commit}:{rel}"], check=True,
                                           capture_output=True).stdout)
        structure = structure_of(Path(tmp) / "Jenkinsfile")
        casc = yaml.safe_load((Path(tmp) / "jenkins/casc/jenkins.yaml").read_text())
    unknown = set(args.unavailable) - {st["name"] for st in structure["stages"]}
    if unknown:
        print(f"--unavailable names no stage of the Jenkinsfile: {sorted(unknown)}", file=sys.stderr)
        return 2
    try:
        build = Build(args, structure, casc, commit)
        return build.run()
    except Unsupported as e:
        print(f"ci/jenkins-pipeline.py cannot emulate: {e}", file=sys.stderr)
        return 2
    except StepFailed as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
