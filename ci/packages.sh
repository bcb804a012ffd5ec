#!/usr/bin/env bash
# Reads ci/packages.txt, the one list of what the CI run installs.
#
#   ci/packages.sh install [NAME...]   # the missing apt packages (all, or the named ones),
#                                      # with one `apt-get update` when any is missing
#   ci/packages.sh version NAME        # the pinned version of NAME
#   ci/packages.sh sha256 NAME         # its pinned checksum, where the list has one
#   ci/packages.sh flags NAME          # extra install flags (flags=A,B), may be empty
#   ci/packages.sh fetch NAME DIR      # a maven entry, downloaded into DIR once and checked
#                                      # against its pinned sha256; prints the file's path
#   ci/packages.sh need COMMAND...     # fails, naming the list, when a command is missing
#
# Exit codes: 0 done, 1 a package failed to install or a command is missing, 2 usage
# or a name the list does not have.
set -euo pipefail
LIST="$(cd "$(dirname "$0")" && pwd)/packages.txt"

# entries KIND: "name version rest..." for each line of that kind, comments dropped.
entries() {
  awk -v k="$1" '{ sub(/#.*/, "") } $1 == k { $1 = ""; sub(/^ /, ""); print }' "$LIST"
}

# awk reads the list itself: behind a pipe, its early exit would kill the writer
# with SIGPIPE once the list outgrows a pipe buffer (it did, at 4 KiB).
field() {  # field NAME: the whole entry line of NAME, or exit 2
  local line
  line=$(awk -v n="$1" '{ sub(/#.*/, "") } $2 == n { print; exit }' "$LIST")
  [ -n "$line" ] || { echo "$1 is not in $LIST" >&2; exit 2; }
  echo "$line"
}

case "${1:-}" in
install)
  shift
  missing=()
  while read -r name _; do
    if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -xF "$name" >/dev/null; then continue; fi
    dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$name")
  done < <(entries apt)
  for n in "$@"; do entries apt | awk '{print $1}' | grep -xF "$n" >/dev/null || { echo "$n is not an apt entry of $LIST" >&2; exit 2; }; done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing from Debian (ci/packages.txt): ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
  ;;
version)
  [ $# -eq 2 ] || { echo "usage: $0 version NAME" >&2; exit 2; }
  field "$2" | awk '{ print $3 }'
  ;;
sha256)
  [ $# -eq 2 ] || { echo "usage: $0 sha256 NAME" >&2; exit 2; }
  sum=$(field "$2" | tr ' ' '\n' | sed -n 's/^sha256=//p')
  [ -n "$sum" ] || { echo "$2 has no sha256 in $LIST" >&2; exit 2; }
  echo "$sum"
  ;;
flags)
  [ $# -eq 2 ] || { echo "usage: $0 flags NAME" >&2; exit 2; }
  field "$2" | tr ' ' '\n' | sed -n 's/^flags=//p' | tr ',' ' '
  ;;
fetch)
  [ $# -eq 3 ] || { echo "usage: $0 fetch NAME DIR" >&2; exit 2; }
  line=$(field "$2")
  [ "$(echo "$line" | awk '{print $1}')" = maven ] || { echo "$2 is not a maven entry" >&2; exit 2; }
  version=$(echo "$line" | awk '{print $3}')
  sum=$("$0" sha256 "$2")
  ext=$(echo "$line" | tr ' ' '\n' | sed -n 's/^ext=//p')
  group=${2%%:*} artifact=${2#*:}
  file="$3/$artifact-$version.${ext:-jar}"
  if [ ! -f "$file" ]; then
    mkdir -p "$3"
    echo "downloading $artifact $version from Maven Central (once per machine) ..." >&2
    curl -sSfL --retry 3 -o "$file.part" \
      "https://repo1.maven.org/maven2/${group//.//}/$artifact/$version/$artifact-$version.${ext:-jar}"
    if ! echo "$sum  $file.part" | sha256sum -c --quiet - >&2; then
      rm -f "$file.part"
      echo "$artifact $version does not match the sha256 pinned in $LIST" >&2
      exit 1
    fi
    mv "$file.part" "$file"
  fi
  echo "$file"
  ;;
need)
  shift
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || { echo "$c is missing: it comes from ci/packages.txt (run ci/packages.sh install)" >&2; exit 1; }
  done
  ;;
*) echo "usage: $0 install [NAME...] | version NAME | sha256 NAME | need COMMAND..." >&2; exit 2 ;;
esac
