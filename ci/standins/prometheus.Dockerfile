# Stand-in for prom/prometheus in the compose check, where no registry can be pulled
# from: Debian's prometheus package, laid out like the official image (runs as
# nobody, TSDB in /prometheus, config in /etc/prometheus).
FROM tasks-ci/debian:bookworm-minbase
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus \
 && chown 65534:65534 /prometheus
USER 65534:65534
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
# The compose check asks Prometheus itself over HTTP.
HEALTHCHECK NONE
