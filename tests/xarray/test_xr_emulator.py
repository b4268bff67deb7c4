"""The loaders against the emulated platform: files, groups, two UTM zones, time series, dask workers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401 - registers .rio
import xarray as xr
from rasterio.io import MemoryFile
from xr_helpers import isolated_credentials

from fusion_stac.xarray import CRSConflictError, MosaicError, open_mosaic, open_timeseries
from fusion_stac.xarray._http import FILE_STATS, clear_headers
from fusion_stac.xarray._reader import close_handles

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
REGIONS = Path(__file__).parents[2] / "fusion_stac" / "emulator" / "regions"


def _square(path: Path, lon: float, lat: float, size: float) -> Path:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    return path


@dataclass(frozen=True)
class Platform:
    emu: Any
    client: Any
    org_id: str
    belt: Any  # Process: Central Belt elevation, one run, >= 4 slices in one zone
    thames: Any  # Process: Thames elevation, slices in two UTM zones
    small: Any  # Process: a small square, three runs of one execution each
    fine: Any  # Process: one slice at 30 m, large enough for internal overviews
    idle: Any  # Process never run


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    from fusion_stac.client import FusionClient
    from fusion_stac.emulator import Emulator

    tmp = tmp_path_factory.mktemp("xr-platform")
    with isolated_credentials(tmp), Emulator(execution_duration=0, resolution_m=250.0) as emu:
        client = FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.05)
        org = client.organisation()

        def run(name: str, region: Path, times: int = 1, **options: Any) -> Any:
            data = client.create_data(org.id, name, [region])
            proc = client.new_process(org.id, "Elevation", name).with_input(1, data).with_options(**options).create()
            for _ in range(times):
                client.execute(org.id, proc.id, wait=True)
            return proc

        belt = run("Belt DEM", REGIONS / "central_belt.geojson")
        thames = run("Thames DEM", REGIONS / "thames.geojson")
        small = run("Small DEM", _square(tmp / "small.geojson", -1.2, 52.0, 0.05), times=3)
        fine = run("Fine DEM", _square(tmp / "fine.geojson", -2.0, 53.0, 0.12), resolution=30)
        idle_data = client.create_data(org.id, "Idle region", [_square(tmp / "idle.geojson", 1.0, 50.0, 0.05)])
        idle = client.new_process(org.id, "Elevation", "Idle DEM").with_input(1, idle_data).create()
        yield Platform(emu, client, org.id, belt, thames, small, fine, idle)
        client.close()


@pytest.fixture(autouse=True)
def cold() -> Iterator[None]:
    clear_headers()
    close_handles()
    FILE_STATS.reset()
    yield
    close_handles()


def _items(platform: Platform, process: Any) -> list[Any]:
    from fusion_stac.stac.catalog import open_catalog

    coll = open_catalog(platform.client, f"fusion://{platform.org_id}/processes/{process.id}/latest")
    return sorted((i for i in coll.get_items(recursive=True) if "raster:bands" in i.assets["data"].extra_fields),
                  key=lambda i: i.properties.get("fusion:group_index") or 0)


@contextmanager
def _local(platform: Platform, item: Any) -> Iterator[Any]:
    """The item's file as a rasterio dataset opened from memory (downloaded through the fs)."""
    from fusion_stac.fs import FusionFileSystem

    fs = FusionFileSystem(client=platform.client)
    with MemoryFile(fs.cat_file(item.assets["data"].href)) as mem, mem.open() as ds:
        yield ds


def _slice_in(mosaic: xr.DataArray, ds: Any) -> np.ndarray:
    gbox = mosaic.odc.geobox
    col = round((ds.transform.c - gbox.affine.c) / gbox.affine.a)
    row = round((ds.transform.f - gbox.affine.f) / gbox.affine.e)
    return mosaic.values[0, row:row + ds.height, col:col + ds.width]


def test_a_single_file_opens_with_xarray(platform: Platform) -> None:
    item = _items(platform, platform.small)[0]
    href = item.assets["data"].href
    ds = xr.open_dataset(href, engine="fusion", client=platform.client)
    guessed = xr.open_dataset(href, client=platform.client)  # the engine recognises fusion:// itself
    band = ds["band_data"]
    assert band.dtype == np.float32 and band.rio.nodata == -9999
    with _local(platform, item) as local:
        assert ds.rio.crs == local.crs and tuple(ds.rio.transform())[:6] == tuple(local.transform)[:6]
        np.testing.assert_array_equal(band.values[0], local.read(1))
    np.testing.assert_array_equal(guessed["band_data"].values, band.values)
    by_item = xr.open_dataset(item, engine="fusion", client=platform.client, chunks={})
    np.testing.assert_array_equal(by_item["band_data"].values, band.values)


def test_group_in_one_crs(platform: Platform) -> None:
    items = _items(platform, platform.belt)
    assert len(items) >= 4 and len({i.properties["proj:code"] for i in items}) == 1
    mosaic = open_mosaic(platform.client, process=platform.belt)
    assert mosaic.dtype == np.float32 and mosaic.attrs["_FillValue"] == -9999
    assert mosaic.attrs["fusion:slices"] == len(items) and mosaic.attrs["fusion:group_id"]
    assert mosaic.rio.crs.to_string() == items[0].properties["proj:code"]
    for item in items:
        with _local(platform, item) as local:
            np.testing.assert_array_equal(_slice_in(mosaic, local), local.read(1))
    chunked = open_mosaic(platform.client, process=platform.belt, chunks={"x": 64, "y": 64})
    np.testing.assert_array_equal(chunked.values, mosaic.values)


def test_group_across_two_utm_zones(platform: Platform) -> None:
    items = _items(platform, platform.thames)
    zones: dict[str, list[Any]] = {}
    for item in items:
        zones.setdefault(item.properties["proj:code"], []).append(item)
    assert len(zones) == 2
    counts = sorted(len(v) for v in zones.values())
    if counts[0] == counts[1]:
        with pytest.raises(CRSConflictError):
            open_mosaic(platform.client, process=platform.thames)
        target = sorted(zones)[0]
    else:
        target = max(zones, key=lambda k: len(zones[k]))
        assert open_mosaic(platform.client, process=platform.thames).rio.crs.to_string() == target
    other = next(k for k in zones if k != target)
    # Where a warped slice overlaps native ones, the method decides (group order); pick the one
    # under which the native slices win, so that they must appear verbatim.
    index = {k: [i.properties["fusion:group_index"] for i in v] for k, v in zones.items()}
    method = "last" if min(index[target]) > max(index[other]) else "first"
    mosaic = open_mosaic(platform.client, process=platform.thames, crs=target, method=method)
    for item in zones[target]:
        with _local(platform, item) as local:
            np.testing.assert_array_equal(_slice_in(mosaic, local), local.read(1))
    from rasterio.warp import Resampling, reproject

    gbox = mosaic.odc.geobox
    values = mosaic.values[0]
    item = zones[other][0]
    expected = np.full(gbox.shape.yx, -9999, dtype=np.float32)
    with _local(platform, item) as local:
        reproject(rasterio.band(local, 1), expected, dst_transform=gbox.transform, dst_crs=target,
                  dst_nodata=-9999, resampling=Resampling.nearest)
    warped = expected != -9999
    assert warped.sum() > 100
    # Where no slice of the target zone covers the pixel, the warped slice shows through exactly.
    covered = np.zeros(gbox.shape.yx, dtype=bool)
    for it in zones[target]:
        with _local(platform, it) as local:
            col = round((local.transform.c - gbox.affine.c) / gbox.affine.a)
            row = round((local.transform.f - gbox.affine.f) / gbox.affine.e)
            covered[max(row, 0):row + local.height, max(col, 0):col + local.width] = True
    only = warped & ~covered
    assert only.sum() > 50
    # GDAL's approximate transformer may pick the other neighbour at a tie (warping a sub-window
    # rather than the whole grid): allow a handful of such pixels, no more.
    same = values[only] == expected[only]
    assert same.mean() > 0.995, same.mean()


def test_bbox_touching_one_slice_requests_that_slice_only(platform: Platform) -> None:
    items = _items(platform, platform.belt)
    item = items[len(items) // 2]
    w, s, e, n = item.bbox
    cx, cy = (w + e) / 2, (s + n) / 2
    mosaic = open_mosaic(platform.client, process=platform.belt, bbox=(cx - 0.01, cy - 0.005, cx + 0.01, cy + 0.005))
    platform.emu.reset_stats()
    FILE_STATS.reset()
    values = mosaic.values
    assert (values != -9999).any()
    per_file = {k.file_id: v for k, v in FILE_STATS.snapshot().items()}
    assert set(per_file) == {item.properties["fusion:file_id"]}
    requests = per_file[item.properties["fusion:file_id"]][0]
    assert 1 <= requests <= 2
    assert platform.emu.stats()["storage_requests"] == requests


def test_coarse_mosaic_reads_overviews(platform: Platform) -> None:
    from fusion_stac.xarray import FetchSettings

    item = _items(platform, platform.fine)[0]
    with _local(platform, item) as local:
        factors = local.overviews(1)
        assert factors, "the fine slice should have internal overviews"
        size = local.width
    small_reads = FetchSettings(header_bytes=4096, readahead=4096, merge_gap=0)
    full = open_mosaic(platform.client, process=platform.fine, fetch=small_reads)
    full.values  # noqa: B018
    full_bytes = sum(b for _, b in FILE_STATS.snapshot().values())
    clear_headers()
    close_handles()
    FILE_STATS.reset()
    factor = factors[-1]
    coarse = open_mosaic(platform.client, process=platform.fine, resolution=30.0 * factor, fetch=small_reads)
    assert abs(coarse.sizes["x"] - size / factor) <= 1
    values = coarse.values
    coarse_bytes = sum(b for _, b in FILE_STATS.snapshot().values())
    assert coarse_bytes < full_bytes / 2, (coarse_bytes, full_bytes)
    with _local(platform, item) as local:  # what GDAL itself returns for that decimation
        gbox = coarse.odc.geobox
        assert (values != -9999).mean() > 0.9
        assert np.isfinite(values).all() and local.read(1, out_shape=gbox.shape.yx).shape == gbox.shape.yx


def test_time_series_of_three_executions(platform: Platform) -> None:
    ts = open_timeseries(platform.client, platform.small)
    assert ts.dims == ("time", "band", "y", "x") and ts.sizes["time"] == 3
    starts = sorted(e.started_at for e in platform.client.iter_executions(platform.org_id, platform.small.id))
    assert [np.datetime64(t.replace(tzinfo=None), "ns") for t in starts] == list(ts.time.values)
    values = ts.values
    assert not (values == -9999).all()
    np.testing.assert_array_equal(values[0], values[2])  # elevation does not change between runs
    chunked = open_timeseries(platform.client, platform.small, chunks={})
    np.testing.assert_array_equal(chunked.values, values)


def test_bad_input_names_what_is_wrong(platform: Platform) -> None:
    with pytest.raises(MosaicError, match="has not run yet"):
        open_mosaic(platform.client, process=platform.idle)
    with pytest.raises(MosaicError, match="unknown band 'red'"):
        open_mosaic(platform.client, process=platform.belt, bands=["red"])
    with pytest.raises(MosaicError, match="does not intersect"):
        open_mosaic(platform.client, process=platform.belt, bbox=(10.0, 10.0, 10.1, 10.1))
    with pytest.raises(MosaicError, match="items= is empty"):
        open_mosaic(platform.client, items=[])
    with pytest.raises(MosaicError, match="only one of"):
        open_mosaic(platform.client, process=platform.belt, group_id="x", items=[1])


def test_urls_signed_again_when_they_expire(platform: Platform) -> None:
    from fusion_stac.fs import FusionFileSystem
    from fusion_stac.xarray._storage import FileSystemStorage

    platform.emu.configure(url_lifetime=1.0)
    try:
        fs = FusionFileSystem(client=platform.client, url_margin=0.0)
        mosaic = open_mosaic(platform.client, process=platform.belt, storage=FileSystemStorage(fs),
                             chunks={"x": 64, "y": 64})
        first = mosaic.isel(x=slice(0, 64), y=slice(0, 64)).values
        import time

        time.sleep(1.5)  # every URL signed so far has expired
        fs.reset_stats()
        rest = mosaic.values
        np.testing.assert_array_equal(rest[:, :64, :64], first)
        assert fs.stats["urls_signed"] >= 1
    finally:
        platform.emu.configure(url_lifetime=3600.0)


def test_distributed_workers_sign_their_own_urls(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    distributed = pytest.importorskip("distributed")
    import cloudpickle

    monkeypatch.setenv("FUSION_PLATFORM_API_URL", platform.emu.url)
    monkeypatch.setenv("FUSION_PLATFORM_EMAIL", EMAIL)
    monkeypatch.setenv("FUSION_PLATFORM_PASSWORD", PASSWORD)
    mosaic = open_mosaic(platform.client, process=platform.belt, chunks={"x": 64, "y": 64})
    expected = open_mosaic(platform.client, process=platform.belt).values
    blob = cloudpickle.dumps(dict(mosaic.data.__dask_graph__()))
    token = platform.client.session_token
    assert PASSWORD.encode() not in blob and (token is None or token.encode() not in blob)
    assert b"signature" not in blob.lower() and b"_storage/" not in blob and b"X-Amz" not in blob
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as dask_client:
        values = mosaic.compute().values
        workers = dask_client.run(os.getpid)
    assert len(set(workers.values())) == 2 and os.getpid() not in workers.values()
    np.testing.assert_array_equal(values, expected)
