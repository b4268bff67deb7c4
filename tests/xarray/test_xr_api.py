"""The public surface on local COGs: the xarray engine, time series from items, COG output."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import dask.array
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401 - registers .rio
import xarray as xr
from conftest import NODATA, World
from xr_helpers import item_for

import fusion_stac
from fusion_stac.xarray import FusionBackendEntrypoint, MosaicError, open_mosaic, open_timeseries, to_cog


def test_engine_is_registered_and_guesses_fusion_urls() -> None:
    assert "fusion" in xr.backends.list_engines()
    backend = FusionBackendEntrypoint()
    assert backend.guess_can_open("fusion://org/data/a/b")
    assert not backend.guess_can_open("/tmp/x.tif") and not backend.guess_can_open(42)


def test_open_dataset_from_a_stac_item_is_lazy_and_rioxarray_compatible(world: World) -> None:
    src = world.grid[0]
    item = item_for(src, **{"fusion:group_id": "g1", "fusion:execution_id": "e1"})
    ds = xr.open_dataset(item, engine="fusion", storage=world.storage())
    assert sum(world.server.requests.values()) == 0
    band = ds["band_data"]
    assert band.dims == ("band", "y", "x") and band.dtype == np.float32
    assert ds.rio.crs.to_epsg() == 32630 and band.rio.nodata == NODATA
    assert tuple(ds.rio.transform())[:6] == src.transform
    assert band.attrs["fusion:group_id"] == "g1"
    with rasterio.open(world.root / world.name(src)) as local:
        np.testing.assert_array_equal(band.values[0], local.read(1))
    chunked = xr.open_dataset(item, engine="fusion", storage=world.storage(), chunks={})
    assert isinstance(chunked["band_data"].data, dask.array.Array)
    np.testing.assert_array_equal(chunked["band_data"].values, band.values)
    asset = xr.open_dataset(item.assets["data"], engine="fusion", storage=world.storage())
    np.testing.assert_array_equal(asset["band_data"].values, band.values)


def test_open_dataset_mask_and_scale(world: World) -> None:
    src = world.int16[0]
    raw = xr.open_dataset(src, engine="fusion", storage=world.storage())["band_data"]
    decoded = xr.open_dataset(src, engine="fusion", storage=world.storage(), mask_and_scale=True)["band_data"]
    assert raw.dtype == np.int16 and decoded.dtype.kind == "f"
    values = raw.values[0]
    expected = np.where(values == -32768, np.nan, values * 0.5 + 10.0)
    np.testing.assert_allclose(decoded.values[0], expected)


def test_timeseries_from_items_of_three_runs(world: World) -> None:
    runs = [("2024-03-01T10:00:00Z", "g-b"), ("2024-01-01T10:00:00Z", "g-a"), ("2024-05-01T10:00:00Z", "g-c")]
    items = [item_for(src, when=when, **{"fusion:group_id": gid, "fusion:group_index": i + 1})
             for when, gid in runs for i, src in enumerate(world.grid)]
    ts = open_timeseries(items=items, storage=world.storage())
    assert ts.dims == ("time", "band", "y", "x") and ts.sizes["time"] == 3
    assert [str(t)[:10] for t in ts.time.values] == ["2024-01-01", "2024-03-01", "2024-05-01"]
    np.testing.assert_array_equal(ts.isel(time=1).values[0], world.grid_expected)
    chunked = open_timeseries(items=items, storage=world.storage(), chunks={"x": 512, "y": 512})
    assert chunked.data.chunks[0] == (1, 1, 1)
    np.testing.assert_array_equal(chunked.isel(time=2).values, ts.isel(time=2).values)
    with pytest.raises(MosaicError, match="empty"):
        open_timeseries(items=[], storage=world.storage())


@pytest.mark.parametrize("chunks", [None, {"x": 384, "y": 384}])
def test_to_cog_writes_a_valid_cog_atomically(world: World, tmp_path: Path, chunks: Any) -> None:
    da = open_mosaic(items=world.grid, storage=world.storage(), chunks=chunks)
    out = to_cog(da, tmp_path / "mosaic.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mosaic.tif"]
    with rasterio.open(out) as ds:
        assert ds.driver == "GTiff" and ds.profile["tiled"] and ds.compression.name.lower() == "deflate"
        assert ds.overviews(1), "internal overviews"
        assert ds.nodata == NODATA and ds.crs.to_epsg() == 32630
        assert ds.tags()["fusion_group_id"] == "g1"
        assert tuple(ds.transform)[:6] == tuple(da.rio.transform())[:6]
        np.testing.assert_array_equal(ds.read(1), world.grid_expected)
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    # The accessor is the same call.
    again = da.fusion.to_cog(tmp_path / "again.tif", compress="zstd")
    with rasterio.open(again) as ds:
        assert ds.compression.name.lower() == "zstd"


def test_to_cog_leaves_nothing_behind_when_a_read_fails(world: World, tmp_path: Path) -> None:
    da = open_mosaic(items=world.grid, storage=world.storage(), chunks={"x": 512, "y": 512})
    world.server.fail_next(world.name(world.grid[3]), *([404] * 10))
    with pytest.raises(OSError):
        to_cog(da, tmp_path / "broken.tif")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "keep.tif").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        to_cog(da, tmp_path / "keep.tif", overwrite=False)
    assert (tmp_path / "keep.tif").read_bytes() == b"old"


def test_to_cog_rejects_stacks_and_plain_arrays(world: World, tmp_path: Path) -> None:
    items = [item_for(s, when=w) for w in ("2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z") for s in world.grid[:1]]
    ts = open_timeseries(items=[replace_props(i, k) for k, i in enumerate(items)], storage=world.storage())
    with pytest.raises(MosaicError, match="select one 'time'"):
        to_cog(ts, tmp_path / "x.tif")
    with pytest.raises(MosaicError, match="georeferenced"):
        to_cog(xr.DataArray(np.zeros((2, 2), "float32"), dims=("y", "x")), tmp_path / "y.tif")


def replace_props(item: Any, k: int) -> Any:
    item.properties["fusion:execution_id"] = f"e{k}"
    return item


def test_public_names() -> None:
    assert fusion_stac.open_mosaic is open_mosaic
    assert fusion_stac.open_timeseries is open_timeseries
    assert fusion_stac.to_cog is to_cog


def test_sources_reject_metadata_that_cannot_work(world: World) -> None:
    src = world.grid[0]
    with pytest.raises(MosaicError, match="not representable in int16"):
        replace(world.int16[0], nodata=1e9)
    item = item_for(src)
    del item.assets["data"].extra_fields["proj:transform"]
    with pytest.raises(MosaicError, match="missing proj:transform"):
        open_mosaic(items=[item], storage=world.storage())
    item = item_for(src)
    item.assets["data"].href = "https://example.com/x.tif"
    with pytest.raises(MosaicError, match="not a file URL"):
        open_mosaic(items=[item], storage=world.storage())
