#!/usr/bin/env bash
# Vulnerability scan of a built image with Trivy: fails on HIGH or CRITICAL
# findings that have a fix (unfixed ones are reported, not blocking), and writes
# a SARIF report for code scanning.
#
#   ci/scan-image.sh IMAGE [SARIF_OUT]       # default target/trivy.sarif
#
# Needs `trivy` on PATH and its vulnerability database (downloaded by trivy from
# its OCI mirror; not obtainable on the machines .ci/run runs on, docs/cicd.md).
# Exit codes: 0 no fixable HIGH/CRITICAL, 1 findings or the scan failed, 2 usage.
set -euo pipefail
[ $# -ge 1 ] && [ "${1:0:1}" != - ] || { echo "usage: $0 IMAGE [SARIF_OUT]" >&2; exit 2; }
IMAGE=$1
OUT=${2:-target/trivy.sarif}
cd "$(dirname "$0")/.."
command -v trivy >/dev/null || { echo "trivy is not installed" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
# The full report first (every severity, as SARIF), then the gate.
trivy image --quiet --format sarif --output "$OUT" "$IMAGE"
trivy image --quiet --exit-code 1 --ignore-unfixed --severity HIGH,CRITICAL --format table "$IMAGE"
