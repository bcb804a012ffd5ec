# The tasks API as one container: the host binary with the tasks component built in
# and precompiled for a baseline CPU. Build (BuildKit):
#
#   DOCKER_BUILDKIT=1 docker build -t tasks-api .
#
# Base images are build arguments, pinned by digest for production; ci/base-images.sh
# builds local stand-ins for machines that cannot pull (docs/container.md).
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f

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
COPY --from=build /out/host /usr/local/bin/host
COPY --from=build /out/precompiled /opt/tasks/precompiled
# The only writable path: the embedded store (unused with MONGODB_URI).
COPY --from=build --chown=65532:65532 /out/data /data
ENV LISTEN_ADDR=0.0.0.0:8080 \
    ADMIN_LISTEN_ADDR=0.0.0.0:9090 \
    DATA_DIR=/data \
    PRECOMPILED_DIR=/opt/tasks/precompiled \
    LOG_FORMAT=json
USER 65532:65532
VOLUME ["/data"]
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/host", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/host"]
