# The tasks API as one container: the host binary with the tasks component built in
# and precompiled for a baseline CPU. Build (BuildKit):
#
#   DOCKER_BUILDKIT=1 docker build -t tasks-api .
#
# Base images are build arguments, pinned by digest for production; ci/base-images.sh
# builds local stand-ins for machines that cannot pull (docs/container.md).
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
# Where the host binary comes from: `build` compiles it in the stage below (the
# default: GitHub Actions and Jenkins); `prebuilt` takes /out from a context made by
# `ci/build-image.sh --prebuilt` out of a release build that already exists (.ci/run
# feeds its one release build to the image this way instead of compiling again).
# BuildKit builds only the stages the image needs, so one path never runs the other.
ARG HOST_FROM=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# rust-toolchain.toml pins the compiler; the components' target is added here, and
# cargo-auditable, which records the dependency tree inside the binary so scanners
# (cargo audit bin, Trivy) see exactly what was linked.
# (rustfmt and clippy too: rust-toolchain.toml lists them, and rustup would otherwise
# fetch them again whenever the build step below reruns.)
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    rustup target add wasm32-wasip2 \
 && rustup component add rustfmt clippy \
 && cargo install --locked --version 0.7.7 cargo-auditable
COPY . .
# Dependencies are cached across builds in BuildKit cache mounts (the registry and
# the target directory, guests' nested build included), so a source change
# recompiles only the workspace crates. The binary is stripped (33 MB instead of
# 43), and the built-in component precompiled for the x86-64 baseline so the image
# starts without compiling on any x86-64 CPU; the host falls back to compiling if
# its engine refuses the file.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo auditable build --locked --release -p host --config profile.release.strip=true \
 && mkdir -p /out/precompiled /out/data \
 && cp target/release/host /out/host \
 && /out/host precompile --portable --dir /out/precompiled

# The same /out as the build stage: host (stripped, auditable), precompiled/, data/.
FROM scratch AS prebuilt
COPY out/ /out/

# hadolint ignore=DL3006
FROM ${HOST_FROM} AS host

# checkov:skip=CKV_DOCKER_7:the base is a build argument whose default is pinned by digest; checkov cannot see through the argument
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://git.example.com/devsecops/tasks-api
LABEL org.opencontainers.image.title="tasks-api" \
      org.opencontainers.image.description="Tasks API: sandboxed WebAssembly handlers behind a Rust host" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=host /out/host /usr/local/bin/host
# Native code made by this build, owned by root and read-only to the runtime user:
# the one precompiled artifact the image opts in to (ALLOW_PRECOMPILED below).
COPY --from=host /out/precompiled /opt/tasks/precompiled
# The only writable path: the embedded store (unused with MONGODB_URI).
COPY --from=host --chown=65532:65532 /out/data /data
ENV LISTEN_ADDR=0.0.0.0:8080 \
    ADMIN_LISTEN_ADDR=0.0.0.0:9090 \
    DATA_DIR=/data \
    PRECOMPILED_DIR=/opt/tasks/precompiled \
    ALLOW_PRECOMPILED=true \
    LOG_FORMAT=json
USER 65532:65532
VOLUME ["/data"]
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/host", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/host"]
