"""Tiny COG groups on a local presigned-URL server, for the engine tests (no platform needed)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine
from xr_helpers import LocalSigner, StorageServer, new_id, source_for, write_cog

from fusion_stac.xarray import SignerStorage
from fusion_stac.xarray._http import clear_headers
from fusion_stac.xarray._reader import close_handles

RES = 10.0
X0, Y0 = 500000.0, 5700000.0
N = 512  # slice side in pixels (4x4 tiles of 128, the smallest COG block size)
NODATA = -9999.0


def grid_values(rows: slice, cols: slice) -> np.ndarray:
    """The value of the mosaic pixel (row, col): a function of global position only."""
    r = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None]
    c = np.arange(cols.start, cols.stop, dtype=np.float32)[None, :]
    return r * 1000 + c


@dataclass
class World:
    root: Path
    server: StorageServer
    grid: list[Any]  # 2x2 float32 slices, row-major, with a nodata hole in slice 0
    grid_expected: np.ndarray  # (2N, 2N) with NODATA in the hole
    overlap: list[Any]  # two float32 slices overlapping by 64 columns
    int16: list[Any]  # two int16 slices with nodata and scale/offset
    zones: list[Any]  # two slices in EPSG:32630, one in EPSG:32631
    tie: list[Any]  # one slice in each zone

    def storage(self, **kw: Any) -> SignerStorage:
        return SignerStorage(LocalSigner(self.server.base_url, **kw))

    def name(self, source: Any) -> str:
        return f"{source.key.file_id}.tif"


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("xr-cogs")
    data_id = new_id()
    grid, expected = [], np.full((2 * N, 2 * N), NODATA, dtype=np.float32)
    for r in range(2):
        for c in range(2):
            rows, cols = slice(r * N, (r + 1) * N), slice(c * N, (c + 1) * N)
            values = grid_values(rows, cols)
            if (r, c) == (0, 0):
                values[10:40, 20:70] = NODATA
            expected[rows, cols] = values
            path = root / f"{new_id()}.tif"
            write_cog(path, values, Affine(RES, 0, X0 + c * N * RES, 0, -RES, Y0 - r * N * RES), "EPSG:32630",
                      nodata=NODATA, blocksize=128)
            grid.append(source_for(path, data_id=data_id, group_index=r * 2 + c + 1, **{"fusion:group_id": "g1"}))
    overlap = []
    for i, (value, x) in enumerate(((1.0, X0), (3.0, X0 + 64 * RES))):
        arr = np.full((64, 128), value, dtype=np.float32)
        arr[:, 100:110] = NODATA  # a hole in each, at different places of the overlap
        path = root / f"{new_id()}.tif"
        write_cog(path, arr, Affine(RES, 0, x, 0, -RES, Y0), "EPSG:32630", nodata=NODATA, blocksize=128,
                  overviews=False)
        overlap.append(source_for(path, group_index=i + 1))
    int16 = []
    for i in range(2):
        arr = (np.arange(64 * 64, dtype=np.int32).reshape(64, 64) % 3000 - 1000 + i).astype(np.int16)
        arr[:5, :5] = -32768
        path = root / f"{new_id()}.tif"
        write_cog(path, arr, Affine(RES, 0, X0 + i * 64 * RES, 0, -RES, Y0), "EPSG:32630", nodata=-32768,
                  blocksize=128, overviews=False)
        src = source_for(path, group_index=i + 1)
        from dataclasses import replace

        int16.append(replace(src, scales=(0.5,), offsets=(10.0,), units=("m",)))
    zones = []
    # Around 0 degrees longitude (the 30/31 boundary), 51.5 N.
    for i, (epsg, x, y) in enumerate(((32630, 695000.0, 5710000.0), (32630, 695000.0 + 64 * 30, 5710000.0),
                                      (32631, 292000.0, 5710000.0))):
        ys, xs = np.mgrid[0:64, 0:64]
        arr = (100 + i * 1000 + ys * 64 + xs).astype(np.float32)
        path = root / f"{new_id()}.tif"
        write_cog(path, arr, Affine(30.0, 0, x, 0, -30.0, y), f"EPSG:{epsg}", nodata=NODATA, blocksize=128,
                  overviews=False)
        zones.append(source_for(path, group_index=i + 1))
    tie = [zones[0], zones[2]]
    server = StorageServer(root).start()
    try:
        yield World(root, server, grid, expected, overlap, int16, zones, tie)
    finally:
        server.stop()


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The disk cache of these tests: their own directory, never the user's."""
    import os

    path = tmp_path_factory.mktemp("fusion-stac-cache")
    saved = os.environ.get("FUSION_STAC_CACHE_DIR")
    os.environ["FUSION_STAC_CACHE_DIR"] = str(path)
    try:
        yield path
    finally:
        if saved is None:
            os.environ.pop("FUSION_STAC_CACHE_DIR", None)
        else:
            os.environ["FUSION_STAC_CACHE_DIR"] = saved


@pytest.fixture(autouse=True)
def cold(world: World) -> Iterator[None]:
    """Every test starts cold: no cached headers (in memory or on disk) or handles, zeroed counters, no
    queued faults."""
    clear_headers()
    close_handles()
    world.server.reset()
    yield
    close_handles()


@pytest.fixture
def gdal_opens(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The file keys GDAL datasets are opened for during the test, in order."""
    from fusion_stac.xarray import _reader

    opened: list[Any] = []
    real_open = _reader._open_dataset

    def counting_open(source: Any, *args: Any) -> Any:
        opened.append(source.key)
        return real_open(source, *args)

    monkeypatch.setattr(_reader, "_open_dataset", counting_open)
    return opened
