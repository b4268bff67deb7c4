#!/usr/bin/env bash
# The README's demo command: a virtual environment with everything (.[all]), then `fusion-stac demo`.
# Arguments go to the demo, e.g. `bash scripts/demo.sh --out /tmp/demo --keep`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${FUSION_STAC_VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[all]"
export MPLBACKEND=Agg
exec "$VENV/bin/fusion-stac" demo "$@"
