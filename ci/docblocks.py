"""pytest plugin for the shell blocks of the README and docs/, run by pytest-codeblocks.

pytest-codeblocks finds every fenced `bash` block and runs it with bash; this plugin
adds what running a user's journey needs:

- `<!--pytest.mark.stage("ID")-->` before a block: it runs in that `.ci/run` stage,
  where what it needs is up (the quick start's service, say). `--doc-stage ID` runs
  those blocks only; the default stage, `docs`, runs the unmarked ones and lists the
  others with the stage that runs them.
- `<!--pytest.mark.skip(reason="...")-->`: a block that cannot run here; the reason is
  printed with the run's results (`-rs`), so nothing hides.
- Every block runs as `set -euo pipefail` (ci/docblocks.bashrc through BASH_ENV): a
  failing command fails the block, not only the last one.
- A failure shows the block, its exit status and the end of its output.

Usage: ci/doc-blocks.sh [STAGE], which loads it (`-p docblocks`) and supplies the
stand-ins (docs/testing.md). Exit codes are pytest's: 0 passed, 1 a block failed.
"""

import os
import pathlib
import subprocess

import pytest

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_STAGE = "docs"


def pytest_addoption(parser):
    parser.addoption("--doc-stage", default=DEFAULT_STAGE,
                     help="run the blocks marked stage(ID); default: the unmarked ones")


def pytest_configure(config):
    config.addinivalue_line("markers", "stage(id): the block runs in that .ci/run stage")
    os.environ["BASH_ENV"] = str(HERE / "docblocks.bashrc")


def block_stage(item):
    mark = item.get_closest_marker("stage")
    return mark.args[0] if mark else DEFAULT_STAGE


def located(item):
    """A skipped block's reason says where the block is (pytest folds unconditional
    skips without their line)."""
    lineno = getattr(getattr(item, "obj", None), "lineno", "?")
    mark = item.get_closest_marker("skip")
    if mark is not None:
        reason = mark.kwargs.get("reason", mark.args[0] if mark.args else "no reason given")
        item.add_marker(pytest.mark.skip(reason=f"line {lineno}: {reason}"), append=False)


def pytest_collection_modifyitems(config, items):
    want = config.getoption("doc_stage")
    keep, other = [], []
    for item in items:
        located(item)
        stage = block_stage(item)
        if stage == want:
            keep.append(item)
        elif want == DEFAULT_STAGE:
            item.add_marker(pytest.mark.skip(reason=f"line {item.obj.lineno}: runs in .ci/run's {stage} stage"))
            keep.append(item)
        else:
            other.append(item)
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = keep


def tail(data, lines=40):
    text = (data or b"").decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:]) + "\n"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except subprocess.CalledProcessError as e:
        block = getattr(item, "obj", None)
        code = getattr(block, "code", "?\n")
        raise RuntimeError(
            f"{item.path.name}, block at line {getattr(block, 'lineno', '?')}: exit status {e.returncode}\n"
            f"--- the block\n{code}--- its stdout (end)\n{tail(e.stdout)}--- its stderr (end)\n{tail(e.stderr)}"
        ) from None
