# syntax=docker/dockerfile:1
# The build agent: where every stage of the Jenkinsfile runs (label `linux docker
# rust`, jenkins/casc/jenkins.yaml). The controller starts it over SSH with the
# `jenkins-agent-ssh` key; builds run as `jenkins` with the tools the ci/ scripts
# call: Rust with the wasm32-wasip2 target and llvm-tools (cargo-llvm-cov), Java
# (the base's JDK, for sonar-scanner), the Docker CLI, kubectl and trivy.
# docs/cicd.md: build, run, the socket-mount risk and the rootless alternative.
# Pin by digest where you build it (`docker buildx imagetools inspect`): no
# registry is reachable where this file was written, so only the tag is fixed.
ARG AGENT_IMAGE=docker.io/jenkins/ssh-agent:bookworm-jdk21
# checkov:skip=CKV_DOCKER_7:the base is a build argument whose default names a fixed tag; checkov cannot see through the argument
FROM ${AGENT_IMAGE}

ARG RUST_VERSION=1.95.0
ARG KUBECTL_VERSION=v1.33.13
ARG TRIVY_VERSION=0.69.3

USER 0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Docker CLI (client only; the engine is the host's, through the socket), build
# tools for cargo, and what the scripts use (curl, git, python3, unzip). Versions
# are the base release's (Debian stable updates only security fixes), rebuilt often.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential ca-certificates curl docker.io git pkg-config python3 python3-venv unzip \
 && rm -rf /var/lib/apt/lists/*
# kubectl and trivy: release binaries, verified against their published checksums.
RUN curl -fsSLo /usr/local/bin/kubectl "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/amd64/kubectl" \
 && echo "$(curl -fsSL "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/amd64/kubectl.sha256")  /usr/local/bin/kubectl" | sha256sum -c - \
 && chmod 0755 /usr/local/bin/kubectl \
 && curl -fsSLo /tmp/trivy.tgz "https://github.com/aquasecurity/trivy/releases/download/v${TRIVY_VERSION}/trivy_${TRIVY_VERSION}_Linux-64bit.tar.gz" \
 && curl -fsSLo /tmp/trivy.sums "https://github.com/aquasecurity/trivy/releases/download/v${TRIVY_VERSION}/trivy_${TRIVY_VERSION}_checksums.txt" \
 && echo "$(grep " trivy_${TRIVY_VERSION}_Linux-64bit.tar.gz\$" /tmp/trivy.sums | cut -d' ' -f1)  /tmp/trivy.tgz" | sha256sum -c - \
 && tar -xzf /tmp/trivy.tgz -C /usr/local/bin trivy \
 && rm -f /tmp/trivy.tgz /tmp/trivy.sums

# Rust outside the agent's work directory (the base declares it a VOLUME). SSH
# sessions do not see the image's ENV: the node's environment in JCasC puts
# /opt/rust/cargo/bin on PATH and sets RUSTUP_HOME and CARGO_HOME for builds.
ENV RUSTUP_HOME=/opt/rust/rustup CARGO_HOME=/opt/rust/cargo PATH="/opt/rust/cargo/bin:${PATH}"
RUN install -d -o 1000 -g 1000 /opt/rust
USER 1000
# The pinned toolchain with its wasm target and llvm-tools (cargo-llvm-cov).
# rustup-init from the versioned archive, checked against a hash pinned here, not
# one fetched from the same server: the version and sha256 of ci/packages.txt,
# which .ci/run installs with (a test keeps them equal). The installer then
# fetches the toolchain, which rustup verifies itself.
ARG RUSTUP_VERSION=1.29.0
ARG RUSTUP_SHA256=4acc9acc76d5079515b46346a485974457b5a79893cfb01112423c89aeb5aa10
RUN curl -fsSLo /tmp/rustup-init "https://static.rust-lang.org/rustup/archive/${RUSTUP_VERSION}/x86_64-unknown-linux-gnu/rustup-init" \
 && echo "${RUSTUP_SHA256}  /tmp/rustup-init" | sha256sum -c - \
 && chmod +x /tmp/rustup-init \
 && /tmp/rustup-init -y --no-modify-path --profile minimal --default-toolchain "${RUST_VERSION}" \
      --component rustfmt --component clippy --component llvm-tools-preview --target wasm32-wasip2 \
 && rm /tmp/rustup-init

# The base's entrypoint starts sshd, which needs root; builds run in the SSH
# sessions of `jenkins`, never as root.
# checkov:skip=CKV_DOCKER_8:sshd starts as root (the base image's design); every build runs as the jenkins user it logs in as
# hadolint ignore=DL3002
USER 0
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/bin/sh", "-c", "pgrep -x sshd >/dev/null || exit 1"]
