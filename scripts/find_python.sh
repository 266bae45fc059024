#!/bin/sh
# Prints the path of a Python 3.12 or newer, for README's commands:
#   PY=$(sh scripts/find_python.sh) && "$PY" -m venv .venv && ...
# Looks on PATH first, then in pyenv's versions (a pyenv machine whose global Python is
# older has python3.12 only as a shim that fails, and the real one under
# ~/.pyenv/versions/3.12.*/bin). Each candidate is run, not just found: a pyenv shim
# exists on PATH whether or not it works. 3.12 is tried first: it is what CI tests.
# With none, says in one line how to get one and exits 1.

is_new_enough() {
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

for name in python3.12 python3.13 python3.14 python3; do
  path=$(command -v "$name" 2>/dev/null) || continue
  if is_new_enough "$path"; then
    echo "$path"
    exit 0
  fi
done

for path in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
  if [ -x "$path" ] && is_new_enough "$path"; then
    echo "$path"
    exit 0
  fi
done

echo "colorjax needs Python 3.12 or newer and found none on PATH or in pyenv; install one (e.g. 'pyenv install 3.12', or your system's python3.12 package) and rerun" >&2
exit 1
