"""ci/packages.txt is complete: every external command the project's shell scripts
run is in that list, in the machine's base image (../shared/machine-baseline.txt, one
Debian package a line), or built by the project. A green CI on a machine where someone
once installed a tool by hand would otherwise hide a missing install step.

The commands are read from each script's syntax tree (shfmt's parser, mvdan.cc/sh, the
parser shfmt and gopls use), not from regular expressions: every simple command's first
word, and the command that wrappers run (`command -v X`, `need X`, `timeout N X`,
`nice -n N X`, `xargs -r X`, `exec X`, `"$VENV/bin/X"`)."""

import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIST = ROOT / "ci" / "packages.txt"
BASELINE = Path(os.environ.get("MACHINE_BASELINE", ROOT.parent / "shared" / "machine-baseline.txt"))

BASH_BUILTINS = set("""
. : [ [[ alias bg bind break builtin caller cd command compgen complete continue declare dirs
disown echo enable eval exec exit export false fc fg getopts hash help history jobs kill let local
logout mapfile popd printf pushd pwd read readarray readonly return set shift shopt source suspend
test times trap true type typeset ulimit umask unalias unset wait
""".split())
# Wrappers whose argument is the command that really runs: (name, how many leading
# non-option words to skip before it).
WRAPPERS = {"timeout": 1, "nice": 0, "xargs": 0, "exec": 0, "env": 0, "sudo": 0, "command": 0}
# Options of those wrappers that take a value (`nice -n 10`, `xargs -I {}`).
VALUE_OPTIONS = {"-n", "-I", "-s", "-k", "--signal", "--kill-after"}


def parse_list(path=LIST):
    """{kind: {name: {"version": v, "commands": [...], ...}}}"""
    entries = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        kind, name, version, *rest = line
        attrs = dict(tok.split("=", 1) for tok in rest if "=" in tok)
        commands = [tok for tok in rest if "=" not in tok and tok != "-"]
        entries.setdefault(kind, {})[name] = {"version": version, "commands": commands, **attrs}
    return entries


def provided_commands(entries):
    return {c: kind for kind, items in entries.items() for item in items.values() for c in item["commands"]}


@cache
def shfmt():
    out = subprocess.run(["bash", "ci/go-tool.sh", "mvdan.cc/sh/v3/cmd/shfmt"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def scripts():
    tracked = subprocess.run(["git", "ls-files", "*.sh", ".ci/run"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    return [ROOT / f for f in tracked]


def word_text(word):
    """The literal text of a shell word, or None when it expands anything but $VENV/$ROOT."""
    out = ""
    for part in word.get("Parts") or []:
        kind = part["Type"]
        if kind in ("Lit", "SglQuoted"):
            # shfmt's JSON leaves Value out of an empty string ('').
            out += part.get("Value", "")
        elif kind == "DblQuoted":
            inner = word_text(part)
            if inner is None:
                return None
            out += inner
        elif kind == "ParamExp" and part["Param"]["Value"] in ("VENV", "ROOT") \
                and not any(k in part for k in ("Exp", "Repl", "Index", "Slice", "Length", "Excl")):
            out += "$" + part["Param"]["Value"]
        else:
            return None
    return out


def commands_in(path):
    """{command: [line, ...]} for every command the script runs, and its own function names."""
    tree = json.loads(subprocess.run([shfmt(), "--to-json", "-ln", "bash"], stdin=path.open(),
                                     capture_output=True, text=True, check=True).stdout)
    found, functions = {}, set()

    def add(word, line):
        if word:
            found.setdefault(word, []).append(line)

    def call(args, line):
        words = [word_text(a) for a in args]
        if not words or words[0] is None:
            return
        head = words[0]
        add(head, line)
        rest = words[1:]
        if head == "command" and rest[:1] == ["-v"]:
            for w in rest[1:]:
                add(w, line)
            return
        if head == "need" or (head.endswith("packages.sh") and rest[:1] == ["need"]):
            for w in rest[1 if rest[:1] == ["need"] else 0:]:
                add(w, line)
            return
        if head in WRAPPERS:
            skip = WRAPPERS[head]
            i = 0
            while i < len(rest):
                w = rest[i]
                if w is None:
                    return
                if w in VALUE_OPTIONS:
                    i += 2
                    continue
                if w.startswith("-") or (head == "env" and "=" in w):
                    i += 1
                    continue
                if skip:
                    skip -= 1
                    i += 1
                    continue
                call(args[1 + i:], line)
                return

    def walk(node):
        if isinstance(node, dict):
            if node.get("Type") == "FuncDecl":
                functions.add(node["Name"]["Value"])
            if node.get("Type") == "CallExpr" and node.get("Args"):
                call(node["Args"], node["Pos"]["Line"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return found, functions


@cache
def baseline_packages():
    if not BASELINE.exists():
        pytest.fail(f"{BASELINE} is missing: the base image's package list this check compares with")
    names = set()
    for line in BASELINE.read_text().splitlines():
        cols = line.split("\t")
        if len(cols) >= 2 and cols[0] == "apt":
            names.add(cols[1].split(":", 1)[0])
    return names


@cache
def debian_package_of(command):
    """The installed Debian package that ships COMMAND, or None."""
    candidates = [f"{d}/{command}" for d in ("/usr/bin", "/bin", "/usr/sbin", "/sbin")]
    # Through alternatives (awk -> mawk) and the merged /usr (dpkg knows /bin/tar).
    candidates += [os.path.realpath(c) for c in candidates if os.path.exists(c)]
    candidates += ["/bin/" + Path(c).name for c in candidates if c.startswith("/usr/bin/")]
    for path in candidates:
        out = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True)
        if out.returncode == 0:
            return out.stdout.split(":", 1)[0].split(",")[0].strip()
    return None


def unexplained_commands(entries):
    """[(command, where, why)] for each command neither listed, in the base image, nor the project's."""
    provided = provided_commands(entries)
    venv = set(provided_commands({"pypi": entries.get("pypi", {})})) | {"python", "python3", "pip"}
    found, functions = {}, set()
    for path in scripts():
        cmds, funcs = commands_in(path)
        functions |= funcs
        for cmd, lines in cmds.items():
            found.setdefault(cmd, []).append(f"{path.relative_to(ROOT)}:{lines[0]}")
    problems = []
    for cmd, where in sorted(found.items()):
        if cmd in BASH_BUILTINS or cmd in functions or cmd.startswith("-"):
            continue
        if cmd.startswith("$VENV/bin/"):
            if cmd.removeprefix("$VENV/bin/") not in venv:
                problems.append((cmd, where, "not a command of the pypi entry"))
            continue
        if cmd.startswith("$ROOT/"):
            cmd = cmd.removeprefix("$ROOT/")
        if "/" in cmd:
            if cmd.startswith("/"):
                base = Path(cmd).name
                if cmd.startswith("/tmp/") or base in provided or (debian_package_of(base) in baseline_packages()):
                    continue
                problems.append((cmd, where, "an absolute path nothing installs"))
            elif cmd.startswith("tools/bin/"):
                if Path(cmd).name not in provided:
                    problems.append((cmd, where, "not built by a `built` entry"))
            elif not (ROOT / cmd).exists() and not cmd.startswith("./"):
                problems.append((cmd, where, "no such file in the repository"))
            continue
        if cmd in provided:
            continue
        pkg = debian_package_of(cmd)
        if pkg is not None and pkg in baseline_packages():
            continue
        why = f"from Debian package {pkg}, which the base image lacks" if pkg else "installed by nothing"
        problems.append((cmd, where, why))
    return problems


def test_every_command_is_listed_in_the_base_image_or_built():
    problems = unexplained_commands(parse_list())
    assert not problems, "commands ci/packages.txt does not cover:\n" + "\n".join(
        f"  {cmd} ({', '.join(where[:3])}): {why}" for cmd, where, why in problems)


def test_a_removed_entry_is_caught():
    # The check must be able to fail: without wrk's line, bench/lib.sh's `need wrk`
    # (and the scripts calling wrk) are unexplained, whether or not wrk is installed
    # on this machine.
    entries = parse_list()
    del entries["apt"]["wrk"]
    problems = unexplained_commands(entries)
    assert "wrk" in {cmd for cmd, _, _ in problems}, problems


def test_the_extractor_sees_wrappers(tmp_path):
    script = tmp_path / "x.sh"
    script.write_text('f() { :; }\ncommand -v aa >/dev/null\nneed bb cc\ntimeout 5 dd x\nnice -n 10 ee\n'
                      'xargs -r ff <x\n"$VENV/bin/gg" --v\nx=$(hh | ii)\nf\n')
    found, functions = commands_in(script)
    assert {"aa", "bb", "cc", "dd", "ee", "ff", "$VENV/bin/gg", "hh", "ii"} <= set(found)
    assert functions == {"f"}


def test_only_the_list_installs_debian_packages():
    offenders = []
    for path in scripts():
        if path.name == "packages.sh":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"\bapt-get\b.*\binstall\b", code):
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert not offenders, "install Debian packages through ci/packages.sh install: " + ", ".join(offenders)


def test_versions_agree_with_their_other_pins():
    entries = parse_list()
    cargo_toml = (ROOT / "Cargo.toml").read_text()
    wasmtime = re.search(r'^wasmtime = \{ version = "=([^"]+)"', cargo_toml, re.M).group(1)
    assert entries["cargo"]["wasmtime-cli"]["version"] == wasmtime
    # The image's binary is made auditable by the Dockerfile's build stage or by
    # ci/build-image.sh --prebuilt: one version of the tool for both.
    dockerfile = (ROOT / "Dockerfile").read_text()
    auditable = re.search(r"--version (\S+) cargo-auditable", dockerfile).group(1)
    assert entries["cargo"]["cargo-auditable"]["version"] == auditable
    # The Jenkins agent installs rustup with the same installer CI does.
    agent = (ROOT / "jenkins" / "agent.Dockerfile").read_text()
    assert f"ARG RUSTUP_VERSION={entries['rustup']['rustup-init']['version']}\n" in agent
    assert f"ARG RUSTUP_SHA256={entries['rustup']['rustup-init']['sha256']}\n" in agent
    channel = re.search(r'channel = "([^"]+)"', (ROOT / "rust-toolchain.toml").read_text()).group(1)
    assert channel, "rust-toolchain.toml pins the toolchain rustup installs"
    k8s_build = (ROOT / "tools" / "k8s" / "build.sh").read_text()
    assert f"KUBE_VERSION={entries['built']['tools/k8s/build.sh']['version']}" in k8s_build
    compose_version = entries['built']['tools/compose/build.sh']['version']
    assert f"VERSION={compose_version}\n" in (ROOT / "tools" / "compose" / "build.sh").read_text()
    assert f"github.com/docker/compose/v5 {compose_version}\n" in (ROOT / "tools" / "compose" / "go.mod").read_text()
    ferret = (ROOT / "tools" / "ferretdb" / "go.mod").read_text()
    assert f"github.com/FerretDB/FerretDB {entries['built']['tools/ferretdb/build.sh']['version']}" in ferret
    for kind in ("maven",):
        for name, item in entries[kind].items():
            assert re.fullmatch(r"[0-9a-f]{64}", item.get("sha256", "")), f"{name}: a download needs a pinned sha256"
    assert re.fullmatch(r"[0-9a-f]{64}", entries["rustup"]["rustup-init"]["sha256"])


def test_listed_debian_packages_are_installed_after_ci_packages_install():
    # .ci/run runs `ci/packages.sh install` first; this holds from then on.
    missing = [name for name in parse_list()["apt"]
               if "install ok installed" not in subprocess.run(
                   ["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True).stdout]
    assert not missing
