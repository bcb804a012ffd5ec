#!/usr/bin/env bash
# Keyless signature (Sigstore cosign, OIDC identity of the CI job) of a pushed
# image, by digest, then a verification of that signature against the identity.
#
#   ci/sign-image.sh REPOSITORY@sha256:DIGEST
#
# GitHub Actions: needs `id-token: write`. The verification pins the one identity
# allowed to sign: this repository's ci.yml on main (CERT_IDENTITY overrides it), so a
# signature made by any other workflow or ref, a pull request's included, fails it. Jenkins has no OIDC issuer of its
# own: there, sign with a key (COSIGN_KEY, a credential file) instead.
# Exit codes: 0 signed and verified, 1 failed, 2 usage.
set -euo pipefail
case "${1:-}" in *@sha256:*) REF=$1 ;; *) echo "usage: $0 REPOSITORY@sha256:DIGEST (sign digests, never tags)" >&2; exit 2 ;; esac
command -v cosign >/dev/null || { echo "cosign is not installed" >&2; exit 1; }
set +x
if [ -n "${COSIGN_KEY:-}" ]; then
  cosign sign --yes --key "$COSIGN_KEY" "$REF"
  cosign verify --key "${COSIGN_PUBLIC_KEY:-${COSIGN_KEY%.key}.pub}" "$REF" >/dev/null
else
  cosign sign --yes "$REF"
  cosign verify "$REF" \
    --certificate-oidc-issuer https://token.actions.githubusercontent.com \
    --certificate-identity "${CERT_IDENTITY:-https://github.com/${GITHUB_REPOSITORY:?}/.github/workflows/ci.yml@refs/heads/main}" >/dev/null
fi
echo "signed and verified $REF"
