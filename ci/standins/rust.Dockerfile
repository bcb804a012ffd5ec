# Stand-in for docker.io/library/rust:1.95-slim-bookworm, built where no registry can
# be pulled from (these CI machines): the same Debian release, toolchain and paths
# (RUSTUP_HOME, CARGO_HOME) as the official image. Never used for production builds.
# hadolint ignore=DL3007
FROM tasks-ci/debian:bookworm-minbase
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# This machine re-signs outbound HTTPS with a local CA: the stand-in (only) trusts it,
# so rustup and cargo can download inside builds.
COPY machine-ca.crt /usr/local/share/ca-certificates/machine-ca.crt
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gcc libc6-dev \
 && update-ca-certificates \
 && curl --proto '=https' --tlsv1.2 -sSf -o /tmp/rustup-init \
      https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init \
 && chmod +x /tmp/rustup-init \
 && /tmp/rustup-init -y --no-modify-path --profile minimal --default-toolchain 1.95.0 \
 && rm -rf /tmp/rustup-init /var/lib/apt/lists/* \
 && rustc --version
# A build image: no service to check, and builds run as root in it like the official image.
# checkov:skip=CKV_DOCKER_3:a build-only stand-in; the official rust image has no user either
HEALTHCHECK NONE
