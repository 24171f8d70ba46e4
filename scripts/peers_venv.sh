#!/usr/bin/env bash
# Creates (or updates) the Python venv with the Open Inference Protocol peers the OIP interop
# tests talk to: MLServer (+ its scikit-learn runtime) as a server, tritonclient[http] as a
# client, numpy and pillow for the fixtures. Idempotent: the venv holds a stamp with the
# requirement list; when it matches, the script exits at once. Prints the venv path last.
#
#   MODELDECK_PEERS_VENV  where the venv lives (default: <repo>/target/peers-venv)
#   PYTHON                interpreter that creates it (default: python3)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MODELDECK_PEERS_VENV:-$ROOT/target/peers-venv}"
PYTHON="${PYTHON:-python3}"

# Versions pip resolved with Python 3.11; bump them together.
REQUIREMENTS=(
  "mlserver==1.7.1"
  "mlserver-sklearn==1.7.1"
  "scikit-learn==1.9.1"
  "tritonclient[http]==2.73.0"
  "numpy==2.4.6"
  "pillow==13.0.0"
)
STAMP="$VENV/.modeldeck-peers-stamp"
want="$(printf '%s\n' "${REQUIREMENTS[@]}")"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "$VENV"
  exit 0
fi

# python3 -m venv needs the venv and ensurepip modules (Debian ships them as python3-venv).
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "peers_venv: $PYTHON lacks venv/ensurepip; installing python3-venv" >&2
    sudo_cmd=()
    [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
    ${sudo_cmd[@]+"${sudo_cmd[@]}"} apt-get update -qq
    ${sudo_cmd[@]+"${sudo_cmd[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    # python3-venv serves the system interpreter; use it if $PYTHON (e.g. pyenv) still lacks venv.
    if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then PYTHON=/usr/bin/python3; fi
  fi
  "$PYTHON" -c 'import venv, ensurepip' || {
    echo "peers_venv: $PYTHON cannot create venvs (install python3-venv)" >&2
    exit 1
  }
fi

# A venv whose interpreter vanished (Python upgraded, folder copied) is rebuilt from scratch.
if [ -d "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
fi
rm -f "$STAMP"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" >&2
"$VENV/bin/python" -c 'import mlserver, mlserver_sklearn, sklearn, tritonclient.http, numpy, PIL' >&2
printf '%s\n' "$want" >"$STAMP"
echo "$VENV"
