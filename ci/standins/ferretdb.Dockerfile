# Stand-in for mongo:7 in the compose check, where no registry can be pulled from:
# FerretDB (MongoDB wire protocol, SQLite backend), the binary tools/ferretdb builds
# from the Go module proxy. Not for production (see docs/mongodb.md: FerretDB vs MongoDB).
FROM tasks-ci/distroless-cc:nonroot
COPY --chown=65532:65532 state /state
COPY ferretdb /usr/local/bin/ferretdb
USER 65532:65532
EXPOSE 27017
ENTRYPOINT ["/usr/local/bin/ferretdb", "--handler=sqlite", "--sqlite-url=file:/state/", \
            "--state-dir=/state", "--listen-addr=:27017", "--debug-addr=-", \
            "--telemetry=disable", "--log-level=warn"]
# No client in the image to probe with; the compose override starts the API after it.
HEALTHCHECK NONE
