#!/usr/bin/env python3
"""Secret scan (detect-secrets, PyPI) of every tracked file against the committed,
audited baseline .secrets.baseline. A finding fails the scan unless the baseline
lists it (same file, type and secret hash) as audited and not a secret; line numbers
may move. The secret itself is never printed.

    ci/secret-scan.py [FILE...]       # default: git ls-files

To accept a false positive: `detect-secrets scan --baseline .secrets.baseline`, then
`detect-secrets audit .secrets.baseline`, and commit the baseline.
detect-secrets from $VENV/bin (default .venv). Exit codes: 0 clean, 1 findings, 2 usage.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    args = sys.argv[1:]
    if args and args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    os.chdir(ROOT)
    venv = Path(os.environ.get("VENV", ".venv"))
    files = args or subprocess.run(["git", "ls-files"], check=True, capture_output=True, text=True).stdout.split()
    # The baseline holds hashes of the audited findings, which look like secrets.
    files = [f for f in files if f != ".secrets.baseline"]
    scan = subprocess.run([str(venv / "bin" / "detect-secrets"), "scan", *files],
                          check=True, capture_output=True, text=True)
    found = json.loads(scan.stdout)["results"]
    base = json.loads(Path(".secrets.baseline").read_text())["results"]
    audited = {(f, r["type"], r["hashed_secret"]) for f, rs in base.items() for r in rs if r.get("is_secret") is False}
    new = [(f, r) for f, rs in found.items() for r in rs if (f, r["type"], r["hashed_secret"]) not in audited]
    for f, r in new:
        print(f"secret-scan: {f}:{r['line_number']}: {r['type']} (not audited in .secrets.baseline)", file=sys.stderr)
    total = sum(len(rs) for rs in found.values())
    print(f"secret-scan: {len(files)} files, {total} finding(s), {total - len(new)} audited false positive(s), {len(new)} new")
    return 1 if new else 0


if __name__ == "__main__":
    sys.exit(main())
