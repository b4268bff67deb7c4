"""Mosaics checked against an independent reference on regions of each kind: a UTM zone border, the
antimeridian (an RFC 7946 MultiPolygon split at 180), above 75°N, the southern hemisphere.

Reference: each slice warped by GDAL onto the mosaic's grid with exact nearest neighbour (a warped
VRT with a 1e-9 pixel tolerance: ``rasterio.warp.reproject`` always interpolates coordinates with
GDAL's 1/8-pixel approximate transformer, whatever ``error_threshold`` says), merged first-wins in
group order. Small rasters (500 m pixels, 10 km slices) so that each region takes seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import rasterio  # noqa: F401
import rioxarray  # noqa: F401 - registers .rio
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.vrt import WarpedVRT
from xr_helpers import isolated_credentials

from fusion_stac.xarray import open_mosaic
from fusion_stac.xarray._reader import close_handles

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"


def _ring(w: float, s: float, e: float, n: float) -> list[list[float]]:
    return [[w, s], [e, s], [e, n], [w, n], [w, s]]


REGIONS: dict[str, dict[str, Any]] = {
    "zone_border": {"type": "Polygon", "coordinates": [_ring(5.85, 50.0, 6.15, 50.12)]},
    # Fiji, across 180, as RFC 7946 3.1.9 asks: split into a part on either side
    "antimeridian": {"type": "MultiPolygon", "coordinates": [[_ring(179.85, -16.9, 180.0, -16.8)],
                                                             [_ring(-180.0, -16.9, -179.85, -16.8)]]},
    "arctic": {"type": "Polygon", "coordinates": [_ring(20.0, 78.0, 21.0, 78.1)]},
    "south": {"type": "Polygon", "coordinates": [_ring(25.2, -33.9, 25.45, -33.8)]},
}


@dataclass(frozen=True)
class Run:
    client: Any
    org_id: str
    data: Any
    process: Any
    items: list[Any]  # slice items, group order


@dataclass(frozen=True)
class Platform:
    client: Any
    org_id: str
    runs: dict[str, Run]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    from fusion_stac.client import FusionClient
    from fusion_stac.emulator import Emulator
    from fusion_stac.stac.catalog import open_catalog

    tmp = tmp_path_factory.mktemp("xr-regions")
    with isolated_credentials(tmp), Emulator(execution_duration=0, resolution_m=500.0, slice_size_m=10000.0, max_region_m=12000.0) as emu:
        client = FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.05)
        org = client.organisation()
        runs = {}
        for name, geometry in REGIONS.items():
            path = tmp / f"{name}.geojson"
            path.write_text(json.dumps({"type": "FeatureCollection", "features": [
                {"type": "Feature", "properties": {}, "geometry": geometry}]}))
            data = client.create_data(org.id, name, [path])
            proc = client.new_process(org.id, "Elevation", name).with_input(1, data).create()
            client.execute(org.id, proc.id, wait=True)
            coll = open_catalog(client, f"fusion://{org.id}/processes/{proc.id}/latest")
            items = sorted((i for i in coll.get_items(recursive=True)
                            if "raster:bands" in i.assets["data"].extra_fields),
                           key=lambda i: i.properties.get("fusion:group_index") or 0)
            runs[name] = Run(client, org.id, data, proc, items)
        yield Platform(client, org.id, runs)
        client.close()


@pytest.fixture(autouse=True)
def cold() -> Iterator[None]:
    yield
    close_handles()


def _reference(run: Run, gbox: Any) -> np.ndarray:
    """Each slice warped by GDAL (exact nearest) onto ``gbox``, merged first-wins in group order."""
    from fusion_stac.fs import FusionFileSystem

    fs = FusionFileSystem(client=run.client)
    ref: np.ndarray | None = None
    nodata = None
    for item in run.items:
        with MemoryFile(fs.cat_file(item.assets["data"].href)) as mem, mem.open() as ds:
            nodata = ds.nodata
            with WarpedVRT(ds, crs=gbox.crs.to_wkt(), transform=gbox.transform, width=gbox.shape.x,
                           height=gbox.shape.y, nodata=nodata, resampling=Resampling.nearest,
                           tolerance=1e-9) as vrt:
                pix = vrt.read(1)
        if ref is None:
            ref = pix
        else:
            empty = _invalid(ref, nodata)
            ref = np.where(empty & ~_invalid(pix, nodata), pix, ref)
    assert ref is not None
    return ref


def _invalid(a: np.ndarray, nodata: float | None) -> np.ndarray:
    bad = np.isnan(a) if a.dtype.kind == "f" else np.zeros(a.shape, bool)
    return bad | (a == nodata) if nodata is not None else bad


def _slice_crs(run: Run) -> str:
    codes = [i.properties.get("proj:code") or f"EPSG:{i.properties.get('proj:epsg')}" for i in run.items]
    return codes[0]


@pytest.mark.parametrize("region", sorted(REGIONS))
@pytest.mark.parametrize("target", ["slices", "EPSG:4326"])
def test_mosaic_matches_an_independent_gdal_reference(platform: Platform, region: str, target: str) -> None:
    run = platform.runs[region]
    assert len(run.items) >= 2, f"{region}: expected a grouped run, got {len(run.items)} slice(s)"
    crs = _slice_crs(run) if target == "slices" else target
    da = open_mosaic(run.client, process=run.process, crs=crs)
    ours = da.values[0]
    nodata = da.attrs.get("_FillValue", da.rio.nodata)
    ref = _reference(run, da.odc.geobox)
    ref_valid = ~_invalid(ref, nodata)
    ours_valid = ~_invalid(ours, nodata)
    assert ref_valid.sum() > 0
    missing = ref_valid & ~ours_valid
    assert not missing.any(), f"{region}/{target}: {missing.sum()} of {ref_valid.sum()} reference pixels missing"
    assert np.array_equal(ours[ref_valid], ref[ref_valid]), f"{region}/{target}: values differ"
    assert not (ours_valid & ~ref_valid).any(), f"{region}/{target}: pixels the reference does not have"
    # the same pixels however the work is chunked
    chunked = open_mosaic(run.client, process=run.process, crs=crs, chunks={"y": 7, "x": 5}).values[0]
    assert np.array_equal(chunked, ours, equal_nan=True)


def test_antimeridian_grid_spans_the_region_not_the_globe(platform: Platform) -> None:
    run = platform.runs["antimeridian"]
    epsgs = {i.properties.get("proj:code") or i.properties.get("proj:epsg") for i in run.items}
    assert len(epsgs) == 2, f"slices on both sides of 180 in two UTM zones, got {epsgs}"
    da = open_mosaic(run.client, process=run.process, crs="EPSG:4326")
    left, _, right, _ = da.odc.geobox.extent.boundingbox.bbox
    assert 179.7 < left < 180.0 < right < 180.3, (left, right)
    # a STAC antimeridian bbox (west > east) crops across 180
    cropped = open_mosaic(run.client, process=run.process, crs="EPSG:4326", bbox=(179.95, -16.9, -179.95, -16.8))
    cl, _, cr, _ = cropped.odc.geobox.extent.boundingbox.bbox
    assert 179.94 < cl < 180.0 < cr < 180.06, (cl, cr)
    same = da.sel(x=cropped.x, y=cropped.y, method="nearest")
    assert np.allclose(same.x, cropped.x, rtol=0, atol=1e-9) and np.allclose(same.y, cropped.y, rtol=0, atol=1e-9)
    assert np.array_equal(cropped.values, same.values, equal_nan=True)


def test_antimeridian_stac_items_extents_and_search(platform: Platform) -> None:
    from fusion_stac.stac import open_catalog, search

    run = platform.runs["antimeridian"]
    upload = open_catalog(run.client, f"fusion://{run.org_id}/uploads/{run.data.id}")
    items = list(upload.get_items(recursive=True))
    assert items
    for item in items:
        west, _, east, _ = item.bbox
        assert west > east and 179.8 < west < 180 and -180 < east < -179.8, item.bbox
        assert item.geometry["type"] == "MultiPolygon"
    group = open_catalog(run.client, f"fusion://{run.org_id}/processes/{run.process.id}/latest")
    extent = group.extent.spatial.bboxes[0]
    assert extent[0] > extent[2] and extent[0] > 179.7 and extent[2] < -179.7, extent
    ids = {i.id for i in run.items}
    upload_ids = {i.id for i in items}
    for box in ([179.9, -16.9, 179.95, -16.8], [-179.95, -16.9, -179.9, -16.8], [179.95, -16.9, -179.95, -16.8]):
        found = {i.id for i in search(run.client, bbox=box)}
        assert upload_ids <= found, (box, "upload missing")
        assert ids & found, (box, "no slice found")
    far = {i.id for i in search(run.client, bbox=[0.0, -16.9, 1.0, -16.8])}
    assert not (upload_ids | ids) & far
