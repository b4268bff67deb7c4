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
# nginx: the static server of benchmarks/mosaic.py, which tests/benchmarks exercise (Debian's package)
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx) >/dev/null 2>&1 \
    || echo "scripts/test.sh: could not install nginx; tests/benchmarks/test_static_server.py will fail" >&2
fi
export MPLBACKEND=Agg
"$VENV/bin/python" -m pytest -n 2 --dist loadgroup -q "$@"
