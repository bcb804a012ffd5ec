#!/usr/bin/env bash
# CycloneDX SBOMs (JSON) of what the image contains: the host binary's crate graph
# (for the build target) and the built-in component's (app-wasm, for wasm32-wasip2).
#
#   ci/sbom.sh [OUT_DIR]     # default target/sbom
#
# cargo-cyclonedx writes next to every Cargo.toml; the two files that describe the
# image are moved to OUT_DIR and the rest removed, so the tree stays clean.
# Exit codes: 0 written, 1 failed.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/sbom}
CDX=$(ci/cargo-tool.sh cargo-cyclonedx)
mkdir -p "$OUT"
sbom() { # target, crate dir, crate name, output name
  "$CDX" cyclonedx --format json --all --target "$1" --override-filename sbom-tmp --quiet
  mv "$2/sbom-tmp.json" "$OUT/$4"
  find . -name 'sbom-tmp.json' -not -path './target/*' -delete
}
sbom "$(rustc -vV | sed -n 's/^host: //p')" host host "host.cdx.json"
sbom wasm32-wasip2 app-wasm app-wasm "app-wasm.wasm32-wasip2.cdx.json"
python3 - "$OUT" <<'PY'
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.cdx.json")):
    d = json.loads(f.read_text())
    assert d["bomFormat"] == "CycloneDX", f
    names = {c["name"] for c in d.get("components", [])}
    print(f"{f}: CycloneDX {d['specVersion']}, {len(names)} components")
PY
