#!/usr/bin/env bash
# The README's test command: fresh virtual environment, everything installed, the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${FUSION_STAC_VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[test]"
export MPLBACKEND=Agg
"$VENV/bin/python" -m pytest -n 2 --dist loadgroup -q "$@"
