"""The asset gateway read by GDAL, rasterio, rioxarray, odc-stac, stackstac and curl, before and after the
signed URLs behind the hrefs expired (the emulator signs for 2 s; the reads after expiry start 5 s later)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import requests

from .conftest import URL_LIFETIME, Served, World, new_client

rasterio = pytest.importorskip("rasterio")
pystac_client = pytest.importorskip("pystac_client")


def _rasters(served: Served, world: World) -> list[Any]:
    search = pystac_client.Client.open(served.url).search(
        collections=[world.group_id], filter={"op": "=", "args": [{"property": "fusion:file_type"}, "GeoTIFF"]},
        limit=100)
    items = list(search.items())
    assert len(items) >= 4
    return items


def _upload_href(served: Served, world: World) -> str:
    r = requests.get(f"{served.url}/collections/{world.upload_id}/items").json()
    (item,) = r["features"]
    return str(item["assets"]["data"]["href"])


def _expire() -> None:
    """Let every URL signed so far expire (the emulator's lifetime is 2 s)."""
    time.sleep(URL_LIFETIME + 3.0)


def test_head_redirect_and_stream_answers(served: Served, world: World) -> None:
    href = _upload_href(served, world)
    local = world.upload_tif.read_bytes()
    head = requests.head(href)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(local)
    assert head.headers["accept-ranges"] == "bytes"
    redirect = requests.get(href, allow_redirects=False)
    assert redirect.status_code == 307
    assert redirect.headers["cache-control"] == "no-store"
    assert redirect.headers["location"].startswith(world.emu.storage_url)
    assert requests.get(href).content == local
    part = requests.get(href + "?mode=stream", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == local[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(local)}"
    tail = requests.get(href + "?mode=stream", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == local[-10:]
    whole = requests.get(href + "?mode=stream")
    assert whole.status_code == 200 and whole.content == local
    past = requests.get(href + "?mode=stream", headers={"Range": f"bytes={len(local)}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(local)}"
    bad = requests.get(href + "?mode=teleport")
    assert bad.status_code == 400 and "mode" in bad.json()["description"]


def test_other_organisations_and_unknown_files_are_404(served: Served, world: World) -> None:
    requests.get(served.url + "/collections")  # indexed
    for path in (f"/assets/{world.other_org_id}/{world.other_data_id}/{world.other_file_id}",
                 f"/assets/{world.org_id}/{world.other_data_id}/{world.other_file_id}",
                 f"/assets/{world.org_id}/{world.upload_id}/00000000-0000-0000-0000-000000000000",
                 f"/assets/{world.other_org_id}/{world.other_data_id}/{world.other_file_id}/preview"):
        for method in ("GET", "HEAD"):
            r = requests.request(method, served.url + path, allow_redirects=False)
            assert r.status_code == 404, (method, path)
            assert "location" not in r.headers


@pytest.mark.parametrize("mode", ["redirect", "stream"])
def test_rasterio_and_rioxarray_read_after_the_signed_urls_expired(served: Served, streamed: Served, world: World,
                                                                   mode: str) -> None:
    rioxarray = pytest.importorskip("rioxarray")
    server = served if mode == "redirect" else streamed
    href = _upload_href(server, world)
    with rasterio.open(world.upload_tif) as src:
        expected = src.read(1)
    with rasterio.open(href) as src:  # no GDAL configuration at all
        np.testing.assert_array_equal(src.read(1), expected)
    _expire()
    with rasterio.open(href) as src:
        np.testing.assert_array_equal(src.read(1), expected)
    np.testing.assert_array_equal(rioxarray.open_rasterio(href).values[0], expected)
    _expire()
    np.testing.assert_array_equal(rioxarray.open_rasterio(href).values[0], expected)


def _odc_equals_open_mosaic(items: list[Any], world: World) -> None:
    import odc.stac

    from fusion_stac.xarray import open_mosaic

    client = new_client(world.emu)
    try:
        crs = "EPSG:32631"
        res = abs(next(i for i in items if i.properties["proj:code"] == crs).assets["data"].extra_fields[
            "proj:transform"][0])
        mosaic = open_mosaic(client, process=world.process_id, group_id=world.group_id, crs=crs, resolution=res)
        expected = mosaic.values[0]
        ds = odc.stac.load(items, bands=["data"], geobox=mosaic.odc.geobox, groupby="time", chunks={})
        got = ds["data"].compute().values[0]  # computing the pixels: every slice read through the gateway
    finally:
        client.close()
    assert got.shape == expected.shape
    nodata = mosaic.attrs.get("nodata", ds["data"].attrs.get("nodata"))
    both = (got != nodata) & (expected != nodata)
    assert both.mean() > 0.5  # most of the grid has data
    np.testing.assert_array_equal(got[both], expected[both])
    assert ((got != nodata) == (expected != nodata)).mean() > 0.99


@pytest.mark.parametrize("mode", ["redirect", "stream"])
def test_odc_stac_load_computes_the_mosaic_through_the_gateway_also_after_expiry(
        served: Served, streamed: Served, world: World, mode: str) -> None:
    pytest.importorskip("odc.stac")
    items = _rasters(served if mode == "redirect" else streamed, world)
    _odc_equals_open_mosaic(items, world)
    _expire()
    _odc_equals_open_mosaic(items, world)  # the same items (hrefs fetched before): they never expire


def test_stackstac_stacks_and_computes_through_the_gateway_also_after_expiry(served: Served, world: World) -> None:
    stackstac = pytest.importorskip("stackstac")
    items = [i for i in _rasters(served, world) if i.properties["proj:code"] == "EPSG:32631"]
    res = abs(items[0].assets["data"].extra_fields["proj:transform"][0])

    def stack() -> Any:
        return stackstac.stack(items, assets=["data"], epsg=32631, resolution=res, dtype="float64",
                               fill_value=np.nan, rescale=False).compute()

    first = stack()
    assert np.isfinite(first.values).any()
    with rasterio.open(items[0].assets["data"].href) as src:  # one slice appears verbatim in its time step
        assert np.nanmax(first.values) == pytest.approx(float(src.read(1).max()), abs=255)
    _expire()
    again = stack()
    np.testing.assert_array_equal(np.isnan(first.values), np.isnan(again.values))
    np.testing.assert_array_equal(np.nan_to_num(first.values), np.nan_to_num(again.values))


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl on this machine")
@pytest.mark.parametrize("stream", [False, True])
def test_curl_follows_the_gateway_also_after_expiry(served: Served, world: World, tmp_path: Any, stream: bool) -> None:
    href = _upload_href(served, world) + ("?mode=stream" if stream else "")
    out = tmp_path / "got.tif"

    def curl() -> Callable[[], None]:
        subprocess.run(["curl", "-sSfL", "-o", str(out), href], check=True, timeout=60)
        assert out.read_bytes() == world.upload_tif.read_bytes()
        return curl

    curl()
    _expire()
    curl()


def test_directory_listing_names_the_files_gdal_may_open_and_nothing_foreign(served: Served, world: World) -> None:
    href = _upload_href(served, world)
    directory = href.rsplit("/", 1)[0] + "/"
    r = requests.get(directory)
    path = directory.split(str(served.port), 1)[1].rstrip("/")
    assert r.status_code == 200 and f"<title>Index of {path}</title>" in r.text
    assert f'<a href="{href.rsplit("/", 1)[1]}">' in r.text and r.text.count("<a href=") == 1
    foreign = requests.get(f"{served.url}/assets/{world.other_org_id}/{world.other_data_id}/")
    assert foreign.status_code == 404 and world.other_file_id not in foreign.text
