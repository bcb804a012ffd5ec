#!/usr/bin/env bash
# Keyless signature (Sigstore cosign, OIDC identity of the CI job) of a pushed
# image, by digest, then a verification of that signature against the identity.
#
#   ci/sign-image.sh REPOSITORY@sha256:DIGEST
#
# GitHub Actions: needs `id-token: write`; the identity is the workflow file at the
# ref (CERT_IDENTITY_REGEXP overrides the check). Jenkins has no OIDC issuer of its
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
    --certificate-identity-regexp "${CERT_IDENTITY_REGEXP:-^https://github.com/${GITHUB_REPOSITORY:?}/.github/workflows/}" >/dev/null
fi
echo "signed and verified $REF"
