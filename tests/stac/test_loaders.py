"""Loaders read our items unmodified: odc-stac plans and loads from the metadata we publish."""

from __future__ import annotations

from typing import Any

import numpy as np
import pystac
import pytest

from fusion_stac.stac.catalog import GDAL_GET_ONLY, open_catalog

from .conftest import World

odc_stac = pytest.importorskip("odc.stac")
rasterio = pytest.importorskip("rasterio")

# Pre-signed URLs answer GET only (as S3's do): GDAL must not send HEAD nor list directories.
GDAL_ENV = GDAL_GET_ONLY


@pytest.fixture(autouse=True)
def _gdal_get_only() -> Any:
    with rasterio.Env(**GDAL_ENV):
        yield


def _rasters(world: World, client: Any) -> list[pystac.Item]:
    # odc.stac.load opens asset hrefs with rasterio: pre-signed https hrefs need no fusion filesystem
    coll = open_catalog(client, f"fusion://{world.org_id}/processes/{world.group_process.id}/latest",
                        asset_hrefs="signed")
    return [i for i in coll.get_items() if i.properties.get("fusion:file_type") == "GeoTIFF"]


def test_odc_stac_loads_one_slice_exactly(world: World, client: Any) -> None:
    item = _rasters(world, client)[0]
    ds = odc_stac.load([item], bands=["data"])
    asset = item.assets["data"].to_dict()
    assert ds["data"].shape == (1, *asset["proj:shape"])
    assert ds.odc.geobox.crs.epsg == int(item.properties["proj:code"].split(":")[1])
    assert tuple(ds.odc.geobox.affine)[:6] == pytest.approx(asset["proj:transform"])
    assert ds["data"].dtype == np.uint8 and ds["data"].attrs["nodata"] == asset["raster:bands"][0]["nodata"]
    with rasterio.open(item.assets["data"].href) as src:
        np.testing.assert_array_equal(ds["data"].values[0], src.read(1))


def test_odc_stac_mosaics_a_group_across_two_utm_zones(world: World, client: Any) -> None:
    items = _rasters(world, client)
    zone31 = [i for i in items if i.properties["proj:code"] == "EPSG:32631"]
    assert len(zone31) >= 2 and len(zone31) < len(items)  # the group also has slices in zone 30
    res = abs(zone31[0].assets["data"].extra_fields["proj:transform"][0])
    ds = odc_stac.load(items, bands=["data"], crs="EPSG:32631", resolution=res, groupby="time")
    assert ds.sizes["time"] == 1  # every slice shares the group's datetime: one mosaic
    mosaic = ds["data"].values[0]
    nodata = ds["data"].attrs["nodata"]
    gbox = ds.odc.geobox
    for item in zone31:  # same CRS and grid: each slice appears verbatim in the mosaic
        with rasterio.open(item.assets["data"].href) as src:
            sl = src.read(1)
            col = round((src.transform.c - gbox.affine.c) / res)
            row = round((gbox.affine.f - src.transform.f) / res)
        window = mosaic[row:row + sl.shape[0], col:col + sl.shape[1]]
        valid = sl != nodata
        np.testing.assert_array_equal(window[valid], sl[valid])
    # the zone-30 slices were reprojected in, not dropped
    west = [i for i in items if i.properties["proj:code"] == "EPSG:32630"]
    x_west = min(i.bbox[0] for i in west)
    assert gbox.extent.to_crs("EPSG:4326").boundingbox.left <= x_west + 0.01
