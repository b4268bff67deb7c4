"""The same pixels however the work is chunked, and in any process (property tests).

Random output grids (CRS, resolution, anchor) over small COG slices in two UTM zones:
``open_mosaic(...).values`` is byte-identical for ``chunks=None``, ``{}`` and random chunk sizes,
and identical again when computed in a fresh Python process.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine
from conftest import World
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xr_helpers import new_id, source_for, write_cog

from fusion_stac.xarray import open_mosaic

CRSS = ["EPSG:4326", "EPSG:3857", "EPSG:32630", "EPSG:32631", "EPSG:3035"]


@pytest.fixture(scope="module")
def slices(world: World) -> list[Any]:
    """Three 48x40 float32 slices: two in UTM 30, one in UTM 31, near the zone border."""
    out = []
    rng = np.random.default_rng(7)
    for i, (crs, x0) in enumerate((("EPSG:32630", 790000.0), ("EPSG:32630", 790000.0 + 48 * 30),
                                   ("EPSG:32631", 210000.0))):
        arr = rng.integers(0, 30000, size=(40, 48)).astype(np.float32)
        arr[3:6, 10:14] = -9999.0
        path = world.root / f"{new_id()}.tif"
        write_cog(path, arr, Affine(30.0, 0, x0, 0, -30.0, 5600000.0 - i * 200), crs, nodata=-9999.0,
                  blocksize=128, overviews=False)
        out.append(source_for(path, group_index=i + 1))
    return out



def _mosaic(items: list[Any], storage: Any, crs: str, scale: float, chunks: Any) -> np.ndarray:
    from fusion_stac.xarray._grid import output_geobox

    gbox = output_geobox(items, crs=crs)
    res = abs(gbox.resolution.x) * scale, abs(gbox.resolution.y) * scale
    da = open_mosaic(items=items, storage=storage, crs=crs, resolution=res, chunks=chunks)
    return np.ascontiguousarray(da.values)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(crs=st.sampled_from(CRSS), scale=st.floats(0.7, 2.9), cy=st.integers(8, 48), cx=st.integers(8, 48))
def test_values_do_not_depend_on_chunking(world: World, slices: list[Any], crs: str, scale: float, cy: int,
                                          cx: int) -> None:
    storage = world.storage()
    whole = _mosaic(slices, storage, crs, scale, None)
    assert (whole != -9999.0).any()
    for chunks in ({}, {"y": cy, "x": cx}, {"y": cx, "x": cy}):
        other = _mosaic(slices, storage, crs, scale, chunks)
        assert other.tobytes() == whole.tobytes(), (crs, scale, chunks)


_CHILD = r"""
import hashlib, json, pickle, sys
sys.path[:0] = json.loads(sys.argv[1])
from fusion_stac.xarray import SignerStorage
from xr_helpers import LocalSigner
from test_xr_chunking import _mosaic
items, base, cases = pickle.loads(sys.stdin.buffer.read())
storage = SignerStorage(LocalSigner(base))
out = [hashlib.sha256(_mosaic(items, storage, crs, scale, chunks).tobytes()).hexdigest()
       for crs, scale, chunks in cases]
print(json.dumps(out))
"""


def test_values_are_the_same_in_another_process(world: World, slices: list[Any]) -> None:
    rng = np.random.default_rng(11)
    cases = [(CRSS[i % len(CRSS)], float(rng.uniform(0.7, 2.5)),
              None if i % 2 else {"y": int(rng.integers(8, 40)), "x": int(rng.integers(8, 40))})
             for i in range(8)]
    storage = world.storage()
    here = [hashlib.sha256(_mosaic(slices, storage, crs, scale, chunks).tobytes()).hexdigest()
            for crs, scale, chunks in cases]
    tests_dir = str(Path(__file__).parent)
    root = str(Path(__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, tests_dir])}
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([root, tests_dir])],
                          input=pickle.dumps((slices, world.server.base_url, cases)), capture_output=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    there = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert there == here
