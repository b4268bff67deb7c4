"""The unmodified official SDK runs its own quick and detailed examples against the emulator to the end."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.sdk

fusion_platform = pytest.importorskip("fusion_platform")
SDK_DIR = Path(fusion_platform.__file__).parent

LAUNCHER = """
import runpy
import sys

import fusion_platform.session

# Point the SDK's default base URL at the emulator, then run the example file exactly as shipped.
fusion_platform.session.Session.API_URL_DEFAULT = sys.argv[1]
runpy.run_path(sys.argv[2], run_name="__main__")
"""


@pytest.fixture(scope="module")
def sdk_emulator() -> Iterator[Any]:
    """An emulator with cloud-like storage latency.

    The detailed example starts each download with ``file.download(path)`` (which checks completion once,
    without waiting, and forgets a download that has already finished) and later calls
    ``file.download_complete(wait=True)``, which raises "No download is in progress" for a forgotten one. Real
    cloud storage never finishes a download that fast; a loopback server on a busy machine occasionally does,
    so the storage URLs here answer after 50 ms, like a cloud object store's first byte.
    """
    from fusion_stac.emulator import Emulator

    with Emulator(execution_duration=0, storage_latency=0.05) as emu:
        yield emu


def run_example(emu: Any, name: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    launcher = cwd / "launcher.py"
    launcher.write_text(LAUNCHER)
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run(
        [sys.executable, str(launcher), emu.url, str(SDK_DIR / name)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False,
    )


def test_quick_example_runs_to_the_end(sdk_emulator: Any, tmp_path: Path) -> None:
    result = run_example(sdk_emulator, "quick_example.py", tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Price: " in result.stdout
    assert "Downloading Elevation" in result.stdout
    downloaded = tmp_path / "component_0" / "0" / "elevation.tif"
    assert downloaded.exists()

    import rasterio

    with rasterio.open(downloaded) as src:
        assert src.count == 1
        assert src.dtypes[0] == "float32"
        assert src.crs.to_epsg() == 32630  # Glasgow is in UTM zone 30N
        data = src.read(1, masked=True)
        assert data.count() > 0 and float(data.std()) > 0  # real terrain, not a constant


def test_detailed_example_runs_to_the_end_with_a_seamless_mosaic(sdk_emulator: Any, tmp_path: Path) -> None:
    result = run_example(sdk_emulator, "detailed_example.py", tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Downloading statistics from" in result.stdout
    rasters = sorted(tmp_path.glob("*_classification.tif"))
    assert len(rasters) > 1, "the Lake District should be processed as a group of slices"
    statistics = tmp_path / "statistics.csv"
    assert statistics.exists()

    import pandas
    import rasterio

    table = pandas.read_csv(statistics)
    assert len(table) == len(rasters)

    mosaic_path = tmp_path / "mosaic.tif"
    with rasterio.open(mosaic_path) as mosaic:
        assert mosaic.count == 1 and mosaic.dtypes[0] == "uint8"
        crs = mosaic.crs
        transform = mosaic.transform
        data = mosaic.read(1)
        nodata = mosaic.nodata
        # The mosaic covers the union of the slices.
        union = [np.inf, np.inf, -np.inf, -np.inf]
        for path in rasters:
            with rasterio.open(path) as src:
                assert src.crs == crs
                assert src.res == mosaic.res
                left, bottom, right, top = src.bounds
                union = [min(union[0], left), min(union[1], bottom), max(union[2], right), max(union[3], top)]
        assert mosaic.bounds.left == pytest.approx(union[0])
        assert mosaic.bounds.top == pytest.approx(union[3])
        assert mosaic.width == round((union[2] - union[0]) / mosaic.res[0])
        assert mosaic.height == round((union[3] - union[1]) / mosaic.res[1])
    assert set(np.unique(data)) <= {0, 3, 6, 9, nodata}

    # Values are continuous across slice borders: two neighbouring slices share a pixel grid and the class on
    # each side of the border comes from the same underlying field, so the mosaic row crossing a border equals
    # each slice's own row there (no seams, no shifted pixels).
    checked = 0
    for path in rasters:
        with rasterio.open(path) as src:
            own = src.read(1)
            col_off = round((src.bounds.left - transform.c) / transform.a)
            row_off = round((src.bounds.top - transform.f) / transform.e)
            assert col_off == pytest.approx((src.bounds.left - transform.c) / transform.a, abs=1e-6)
            window = data[row_off:row_off + src.height, col_off:col_off + src.width]
            valid = own != src.nodata
            assert np.array_equal(window[valid], own[valid])
            checked += int(valid.sum())
    assert checked > 0

    # And across a border between two horizontally adjacent slices, neighbouring pixels agree about as often as
    # neighbouring pixels inside a slice do (a seam would show up as a drop in agreement).
    bounds = {}
    for path in rasters:
        with rasterio.open(path) as src:
            bounds[path] = src.bounds
    pairs = [(a, b) for a in rasters for b in rasters
             if a != b and bounds[a].right == pytest.approx(bounds[b].left)
             and min(bounds[a].top, bounds[b].top) > max(bounds[a].bottom, bounds[b].bottom)]
    assert pairs, "expected horizontally adjacent slices"
    across_pairs, inside_pairs = 0, 0
    across_same, inside_same = 0, 0
    for left, _right in pairs:
        border = round((bounds[left].right - transform.c) / transform.a)
        for columns, is_border in (((border - 1, border), True), ((border - 3, border - 2), False)):
            a, b = data[:, columns[0]], data[:, columns[1]]
            both = (a != nodata) & (b != nodata)
            if is_border:
                across_pairs += int(both.sum())
                across_same += int((a[both] == b[both]).sum())
            else:
                inside_pairs += int(both.sum())
                inside_same += int((a[both] == b[both]).sum())
    assert across_pairs > 0 and inside_pairs > 0
    assert across_same / across_pairs >= inside_same / inside_pairs - 0.15
