#!/usr/bin/env bash
# The declared lower bounds, tested: a separate virtual environment (.venv-lowest) holding the lowest
# version pyproject.toml allows of every direct dependency (uv's --resolution lowest-direct; test tools
# included), then a fast subset of the suite that touches every layer: storage, client (and the
# official SDK against the emulator), fs, stac, xarray, cli, emulator. Extra arguments go to pytest.
#   bash scripts/test-lowest.sh            # about 2 minutes of tests on 2 cores, plus the install
#   bash scripts/test-lowest.sh -x -k fs   # the same subset, pytest options added
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${FUSION_STAC_LOWEST_VENV:-.venv-lowest}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# uv lives in the venv it installs into: `uv pip install` only touches what the resolution names.
if [ ! -x "$VENV/bin/uv" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv>=0.4"
fi
# --upgrade: resolve afresh, so versions left in a reused venv do not mask the lowest ones.
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --upgrade \
  --resolution lowest-direct -e ".[test]"
echo "lowest versions: $("$VENV/bin/uv" pip freeze --python "$VENV/bin/python" 2>/dev/null \
  | grep -iE '^(requests|pystac|fsspec|tqdm|tenacity|numpy|rasterio|xarray|rioxarray|dask|odc-geo|pyproj|matplotlib|fastapi|uvicorn|shapely|pillow|pyogrio|pyjwt|pandas|deflate|pytest)==' \
  | tr '\n' ' ')"
export MPLBACKEND=Agg
SUBSET=(
  tests/unit
  tests/client
  tests/fs
  tests/stac
  tests/xarray/test_xr_emulator.py
  tests/xarray/test_xr_api.py
  tests/xarray/test_xr_tiff.py
  tests/cli/test_cli_basics.py
  tests/emulator/test_storage.py
  tests/emulator/test_geodata.py
)
# mypy's verdict is about our code, not about the lowest versions: the main run checks it
"$VENV/bin/python" -m pytest -n 2 --dist loadgroup -q "${SUBSET[@]}" --ignore=tests/unit/test_typing.py "$@"
