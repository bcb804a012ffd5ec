"""ci/jenkins-pipeline.py, the runner .ci/run's CD stage executes the Jenkinsfile
with, on small pipelines in a throw-away repository: each case is a Jenkins
behaviour the CD stage relies on, and each can fail."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "ci" / "jenkins-pipeline.py"

CASC = """
jenkins:
  numExecutors: 0
  mode: EXCLUSIVE
  nodes:
    - permanent: {name: agent, labelString: "linux docker", mode: EXCLUSIVE, numExecutors: 1}
credentials:
  system:
    domainCredentials:
      - credentials:
          - usernamePassword: {id: registry, username: "${REGISTRY_USER}", password: "${REGISTRY_TOKEN}"}
          - file: {id: kubeconfig, fileName: kubeconfig, secretBytes: "${base64:${readFile:/run/secrets/kubeconfig}}"}
          - string: {id: sonar-token, secret: "${SONAR_TOKEN}"}
unclassified:
  sonarGlobalConfiguration:
    installations:
      - {name: sonarqube, serverUrl: "${SONAR_HOST_URL}", credentialsId: sonar-token}
"""


def repo(tmp_path, jenkinsfile, casc=CASC):
    tmp_path.mkdir(parents=True, exist_ok=True)
    r = tmp_path / "repo"
    (r / "jenkins" / "casc").mkdir(parents=True)
    (r / "Jenkinsfile").write_text(textwrap.dedent(jenkinsfile))
    (r / "jenkins" / "casc" / "jenkins.yaml").write_text(casc)
    for cmd in (["init", "-q"], ["add", "-A"],
                ["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "pipeline"]):
        subprocess.run(["git", "-C", str(r), *cmd], check=True)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "REGISTRY_TOKEN").write_text("s3cret-token\n")
    (secrets / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    (secrets / "SONAR_TOKEN").write_text("sqp_analysis\n")
    return r, secrets


def run(tmp_path, jenkinsfile, *extra, casc=CASC):
    r, secrets = repo(tmp_path, jenkinsfile, casc)
    p = subprocess.run([sys.executable, str(RUNNER), str(tmp_path / "job"), "--repo", str(r), "--secrets", str(secrets),
                        "--controller-env", "REGISTRY_USER=ci", "--controller-env", "SONAR_HOST_URL=http://sonar.invalid",
                        *extra], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def pipeline(stages, post="always { sh 'echo post-always' }", params=""):
    return f"""
    pipeline {{
        agent {{ label 'linux && docker' }}
        options {{ skipDefaultCheckout(true); timeout(time: 5, unit: 'MINUTES') }}
        parameters {{ booleanParam(name: 'DEPLOY', defaultValue: false, description: 'd'){params} }}
        stages {{
            stage('Checkout') {{ steps {{ checkout scm }} }}
{stages}
        }}
        post {{ {post} }}
    }}
    """


def test_a_failed_step_fails_the_build_skips_the_rest_and_still_runs_post(tmp_path):
    rc, out = run(tmp_path, pipeline("""
            stage('One') { steps { sh 'test -f Jenkinsfile && echo "build $BUILD_NUMBER on $NODE_NAME in $STAGE_NAME"' } }
            stage('Two') { steps { sh 'exit 3' } }
            stage('Three') { steps { sh 'echo never' } }"""))
    assert rc == 1, out
    assert "build 1 on agent in One" in out
    assert "script returned exit code 3" in out
    assert 'Stage "Three" skipped due to earlier failure(s)' in out and "never" not in out.replace("echo never", "")
    assert "post-always" in out and "FAILURE" in out


def test_credentials_are_bound_masked_and_removed_and_params_decide_when(tmp_path):
    rc, out = run(tmp_path, pipeline("""
            stage('Push') { steps {
                withCredentials([usernamePassword(credentialsId: params.CRED, usernameVariable: 'U', passwordVariable: 'P')]) {
                    sh 'echo "user=$U pass=$P"'
                }
            } }
            stage('Deploy') {
                when { expression { params.DEPLOY } }
                steps { withKubeConfig([credentialsId: 'kubeconfig']) { sh 'grep -q "kind: Config" "$KUBECONFIG" && echo "$KUBECONFIG" > kc-path' } }
            }""", params="; string(name: 'CRED', defaultValue: 'registry', description: 'c')"), "--param", "DEPLOY=true")
    assert rc == 0, out
    assert "pass=****" in out and "s3cret-token" not in out
    kc = (tmp_path / "job" / "workspace" / "kc-path").read_text().strip()
    assert kc and not Path(kc).exists(), "the kubeconfig outlives its block"
    rc, out = run(tmp_path / "default", pipeline("""
            stage('Deploy') {
                when { expression { params.DEPLOY } }
                steps { sh 'echo deploying' }
            }"""))
    assert rc == 0 and 'Stage "Deploy" skipped due to when conditional' in out


def test_an_undefined_credential_or_an_unplaceable_agent_fails(tmp_path):
    rc, out = run(tmp_path, pipeline("""
            stage('Push') { steps { withCredentials([string(credentialsId: 'npm-token', variable: 'T')]) { sh 'true' } } }"""))
    assert rc == 1 and "credential 'npm-token' is not defined in JCasC" in out
    rc, out = run(tmp_path / "b", pipeline("").replace("linux && docker", "linux && arm64"))
    assert rc == 1 and "Jenkins would wait for ever" in out


def test_what_the_runner_cannot_emulate_is_refused(tmp_path):
    rc, out = run(tmp_path, pipeline("""
            stage('Odd') { steps { input message: 'ok?' } }"""))
    assert rc == 2 and "cannot emulate: step input" in out


def test_a_step_past_its_timeout_is_killed(tmp_path):
    rc, out = run(tmp_path, pipeline("""
            stage('Slow') { steps { timeout(time: 2, unit: 'SECONDS') { sh 'sleep 30; touch finished' } } }"""))
    assert rc == 1 and "sh timed out after 2 s" in out
    assert not (tmp_path / "job" / "workspace" / "finished").exists(), "the step ran on past its timeout"


@pytest.mark.parametrize("deliveries, want", [
    ([{"valid": True, "task": "AX1", "gate": "OK"}], "Quality gate is 'OK'"),
    ([{"valid": True, "task": "AX1", "gate": "ERROR"}], "Pipeline aborted due to quality gate failure: ERROR"),
    # A forged delivery (bad HMAC) and another task's never count.
    ([{"valid": False, "task": "AX1", "gate": "OK"}, {"valid": True, "task": "AX0", "gate": "OK"}],
     "timed out waiting for SonarQube's webhook"),
])
def test_the_quality_gate_is_the_signed_webhook_of_this_builds_analysis(tmp_path, deliveries, want):
    log = tmp_path / "deliveries.jsonl"
    log.write_text("".join(json.dumps(d) + "\n" for d in deliveries))
    rc, out = run(tmp_path, pipeline("""
            stage('Analysis') { steps { withSonarQubeEnv('sonarqube') {
                sh 'test "$SONAR_HOST_URL" = http://sonar.invalid && echo "token $SONAR_AUTH_TOKEN; More about the report processing at $SONAR_HOST_URL/api/ce/task?id=AX1"'
            } } }
            stage('Gate') { steps { timeout(time: 3, unit: 'SECONDS') { waitForQualityGate abortPipeline: true } } }"""),
        "--webhook-log", str(log))
    assert want in out, out
    assert "sqp_analysis" not in out
    assert rc == (0 if "'OK'" in want else 1)
