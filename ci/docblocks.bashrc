# shellcheck shell=bash
# Read by every bash block ci/docblocks.py runs (BASH_ENV): a block stops at its
# first failing command, unset variable or failing pipe stage, as a user watching
# the terminal would. Not passed on to the scripts a block calls.
set -euo pipefail
unset BASH_ENV
