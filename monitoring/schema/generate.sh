#!/usr/bin/env bash
# The JSON Schema of a Grafana dashboard, generated offline from the `Dashboard`
# type of the pinned @grafana/schema npm package (package.json, package-lock.json),
# with additional properties allowed, plus the schemaVersion that package's
# default dashboard carries. No Grafana is needed (none can be obtained here).
#
#   monitoring/schema/generate.sh OUT_DIR   # writes dashboard.schema.json, schema-version
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: $0 OUT_DIR}
mkdir -p "$out"
cd "$here"
npm ci --silent --no-audit --no-fund
pkg=node_modules/@grafana/schema/dist
./node_modules/.bin/ts-json-schema-generator \
  --path "$pkg/types/raw/dashboard/x/types.gen.d.ts" --type Dashboard \
  --additional-properties --no-type-check -o "$out/dashboard.schema.json"
# defaultDashboard's schemaVersion, the one Grafana of this schema writes.
sed -n 's/^ *schemaVersion: \([0-9][0-9]*\),$/\1/p' "$pkg"/esm/raw/dashboard/x/*.mjs | sed -n 1p >"$out/schema-version"
[ -s "$out/schema-version" ] || { echo "no schemaVersion found in @grafana/schema" >&2; exit 1; }
echo "[grafana-schema] @grafana/schema $(node -p 'require("./node_modules/@grafana/schema/package.json").version'), schemaVersion $(cat "$out/schema-version")" >&2
