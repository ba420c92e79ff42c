#!/usr/bin/env bash
# Makes the Python virtualenv .venv at the repo root (the black-box tests' alembic and
# web apps run from it) and installs tests/requirements.txt into it, only when that file
# changed since the last install (a stamp inside .venv holds its hash). Safe to run twice,
# and concurrently (a lock inside .venv). Everything goes to stderr except the last line
# on stdout: the venv's bin directory, e.g.  BIN=$(scripts/venv.sh)
# Needs python3; on a fresh Debian machine installs python3-venv with apt-get (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
exec 3>&1 1>&2

python=${PYTHON:-python3}
venv=$root/.venv
req=$root/tests/requirements.txt
stamp=$venv/.requirements.sha256

mkdir -p "$venv"
exec 9>"$venv/.lock"
flock 9

if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  # Debian's python3 lacks ensurepip (so `python3 -m venv` fails) until python3-venv is in.
  if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "venv.sh: installing python3-venv" >&2
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    # Update the package lists first only when there are none, or the install can't find it.
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
      "${sudo[@]}" apt-get update -qq
    fi
    if ! "${sudo[@]}" apt-get install -y -qq python3-venv >/dev/null; then
      "${sudo[@]}" apt-get update -qq
      "${sudo[@]}" apt-get install -y -qq python3-venv >/dev/null
    fi
  fi
  rm -f "$stamp"
  "$python" -m venv "$venv"
fi

# The hash covers the files it includes with -r too (the FastAPI example's pins).
want=$(cat "$req" "$root/examples/fastapi-alembic/requirements.txt" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "venv.sh: installing $(basename "$req") into .venv" >&2
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install -q -r "$req"
  echo "$want" >"$stamp"
fi

echo "$venv/bin" >&3
