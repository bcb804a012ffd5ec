"""The code's rooms: checks on how the host's modules depend on each other."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def module_imports(src):
    """Top-level module of host/src -> the top-level modules it names as crate::X."""
    graph = {}
    for f in src.rglob("*.rs"):
        top = f.relative_to(src).parts[0].removesuffix(".rs")
        names = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", f.read_text()))
        graph.setdefault(top, set()).update(n for n in names if n != top)
    return graph


def cycles(graph):
    """Every cycle, each as the list of its modules from its smallest name."""
    found = set()

    def walk(path):
        for nxt in sorted(graph.get(path[-1], ())):
            if nxt == path[0]:
                i = path.index(min(path))
                found.add(tuple(path[i:] + path[:i]))
            elif nxt not in path and nxt > path[0]:
                walk(path + [nxt])

    for start in sorted(graph):
        walk([start])
    return sorted(found)


def test_host_modules_import_no_circle(tmp_path):
    assert cycles(module_imports(ROOT / "host" / "src")) == []
    # Two modules that name each other, as ingress and bench_native once did.
    (tmp_path / "ingress.rs").write_text("use crate::bench_native::routes;\n")
    (tmp_path / "bench_native.rs").write_text("use crate::ingress::AppState;\n")
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "mod.rs").write_text("use crate::telemetry::Metrics;\n")
    (tmp_path / "telemetry.rs").write_text("fn f() { crate::budget::x(); }\n")
    (tmp_path / "budget.rs").write_text("use crate::engine::Limits;\n")
    assert cycles(module_imports(tmp_path)) == [("bench_native", "ingress"), ("budget", "engine", "telemetry")]


def test_one_free_port_helper():
    """Scripts ask ci/free-port.py for a port instead of repeating the one-liner."""
    import subprocess
    tracked = subprocess.run(["git", "ls-files", "*.sh", ".ci/run"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    copies = [p for p in tracked if 'bind(("127.0.0.1", 0))' in (ROOT / p).read_text()]
    assert copies == [], f"use ci/free-port.py: {copies}"


def test_the_ci_index_lists_every_file_in_ci():
    """ci/README.md has one row per file (or folder) of ci/, and names nothing
    that is not there."""
    index = (ROOT / "ci" / "README.md").read_text()
    listed = set(re.findall(r"^\| `([^`]+?)/?` \|", index, re.M))
    present = {p.name for p in (ROOT / "ci").iterdir() if p.name not in ("README.md", "__pycache__")}
    assert present - listed == set(), f"files of ci/ missing from ci/README.md: {sorted(present - listed)}"
    assert listed - present == set(), f"ci/README.md lists what is not in ci/: {sorted(listed - present)}"


def test_ci_run_stages_match_their_table():
    """.ci/run's stage table (what --list prints and STAGE... selects from) names
    every stage block once, in the order they run, and a stage needs only stages
    that run before it."""
    run = (ROOT / ".ci" / "run").read_text()
    table = re.findall(r'^  "([a-z0-9-]+)\|([a-z0-9,-]*)\|[^"]*"$', run, re.M)
    blocks = re.findall(r"^if stage ([a-z0-9-]+); then$", run, re.M)
    assert [sid for sid, _ in table] == blocks, "the table and the stage blocks differ"
    seen = set()
    for sid, needs in table:
        for need in filter(None, needs.split(",")):
            assert need in seen, f"{sid} needs {need}, which does not run before it"
        seen.add(sid)
    assert not re.search(r'^stage "', run, re.M), "a stage outside the table"


def cfg_test_module_files(src):
    """`mod NAME;` declarations compiled only for tests: test code living in src/."""
    found = []
    for f in sorted(src.rglob("*.rs")):
        found += [f"{f.relative_to(src)}: {m}" for m in re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\(crate\))? )?mod (\w+);", f.read_text())]
    return found


def test_no_test_only_module_file_in_src(tmp_path):
    assert cfg_test_module_files(ROOT / "host/src") == []
    (tmp_path / "data").mkdir()
    (tmp_path / "data/mod.rs").write_text("#[cfg(test)]\nmod conformance;\n#[cfg(test)]\nmod tests {}\n")
    assert cfg_test_module_files(tmp_path) == ["data/mod.rs: conformance"]
