"""The mosaic engine on local COGs behind a presigned-URL server: values, requests, errors."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401 - registers .rio
from conftest import NODATA, RES, X0, Y0, N, World
from odc.geo.geobox import GeoBox

from fusion_stac.errors import FusionError
from fusion_stac.xarray import CRSConflictError, FetchSettings, MosaicError, open_mosaic
from fusion_stac.xarray._http import clear_headers
from fusion_stac.xarray._reader import close_handles

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _requests(world: World, sources: list[Any]) -> list[int]:
    return [world.server.requests.get(world.name(s), 0) for s in sources]


def test_full_mosaic_is_the_slices_side_by_side(world: World) -> None:
    da = open_mosaic(items=world.grid, storage=world.storage())
    assert sum(world.server.requests.values()) == 0, "opening must not read anything"
    assert da.dims == ("band", "y", "x") and da.shape == (1, 2 * N, 2 * N)
    assert da.dtype == np.float32
    assert da.rio.crs.to_epsg() == 32630
    assert tuple(da.rio.transform())[:6] == (RES, 0.0, X0, 0.0, -RES, Y0)
    assert da.rio.nodata == NODATA and da.attrs["_FillValue"] == NODATA
    assert da.attrs["fusion:group_id"] == "g1" and da.attrs["fusion:slices"] == 4
    np.testing.assert_array_equal(da.values[0], world.grid_expected)
    # Each slice was fetched whole in two requests: the header, then all its tiles merged.
    assert _requests(world, world.grid) == [2, 2, 2, 2]


def test_dask_chunks_read_only_the_slices_that_touch_them(world: World) -> None:
    base = GeoBox((2 * N, 2 * N), rasterio.Affine(RES, 0, X0, 0, -RES, Y0), "EPSG:32630")
    padded = base.pad(N // 2)  # a ring of chunks that no slice touches
    da = open_mosaic(items=world.grid, storage=world.storage(), geobox=padded, chunks={"y": 256, "x": 256})
    graph = dict(da.data.__dask_graph__())
    funcs = {task[0].__name__ if isinstance(task, tuple) else type(task).__name__ for task in graph.values()}
    assert {"_fill_chunk", "_load_chunk"} <= funcs
    empty = [k for k, t in graph.items() if isinstance(t, tuple) and t[0].__name__ == "_fill_chunk"]
    assert len(empty) == 6 * 6 - 4 * 4  # the padding ring of chunks around the 4x4 the slices cover
    values = da.compute().values[0]
    np.testing.assert_array_equal(values[256:-256, 256:-256], world.grid_expected)
    assert (values[:256] == NODATA).all() and (values[:, -256:] == NODATA).all()
    # Chunk-aligned slices: every slice is read by the 4 chunks it covers, header fetched once.
    assert all(n <= 1 + 4 for n in _requests(world, world.grid)), _requests(world, world.grid)


def test_window_requests_at_most_two_per_slice(world: World) -> None:
    da = open_mosaic(items=world.grid, storage=world.storage())
    corner = da.isel(y=slice(N - 32, N + 32), x=slice(N - 32, N + 32)).values[0]
    np.testing.assert_array_equal(corner, world.grid_expected[N - 32:N + 32, N - 32:N + 32])
    # Header, then the window's tiles in one request (tiles within the header bytes cost nothing).
    assert all(1 <= n <= 2 for n in _requests(world, world.grid)), _requests(world, world.grid)
    world.server.reset()
    inside = da.isel(y=slice(980, 1010), x=slice(900, 1010)).values[0]  # the last tiles of slice 4
    np.testing.assert_array_equal(inside, world.grid_expected[980:1010, 900:1010])
    assert _requests(world, world.grid) == [0, 0, 0, 1], "header cached, one request for the tiles"


def test_bbox_touching_one_slice_reads_that_slice_only(world: World) -> None:
    src = world.grid[3]
    left, bottom, _, _ = src.geobox.extent.boundingbox.bbox
    bbox = (left + 500, bottom + 500, left + 1000, bottom + 1000)
    da = open_mosaic(items=world.grid, storage=world.storage(), bbox=bbox, bbox_crs="EPSG:32630")
    assert da.shape == (1, 50, 50)
    values = da.values[0]
    row0 = round((Y0 - (bottom + 1000)) / RES)
    col0 = round((left + 500 - X0) / RES)
    np.testing.assert_array_equal(values, world.grid_expected[row0:row0 + 50, col0:col0 + 50])
    assert _requests(world, world.grid) == [0, 0, 0, 2]


def test_bbox_in_lonlat(world: World) -> None:
    src = world.grid[0]
    box = src.geobox.extent.to_crs("EPSG:4326").boundingbox
    da = open_mosaic(items=world.grid, storage=world.storage(), bbox=box.bbox)
    # The lon/lat box of slice 0 reaches a little into its neighbours, never beyond the group.
    assert N <= da.sizes["x"] < 2 * N and N <= da.sizes["y"] < 2 * N


def test_coarse_resolution_reads_overviews(world: World) -> None:
    da = open_mosaic(items=world.grid, storage=world.storage(), resolution=RES * 8)
    assert da.shape == (1, N // 4, N // 4)
    values = da.values[0]
    m = N // 8
    for i, src in enumerate(world.grid):
        r, c = divmod(i, 2)
        with rasterio.open(world.root / world.name(src)) as ds:
            assert ds.overviews(1) == [2, 4]
            local = ds.read(1, out_shape=(m, m))  # GDAL picks the overview itself
        np.testing.assert_array_equal(values[r * m:(r + 1) * m, c * m:(c + 1) * m], local)
        size = (world.root / world.name(src)).stat().st_size
        assert world.server.bytes[world.name(src)] < size / 3, "should read the 1/8 overview, not the full tiles"


def test_a_coarse_read_takes_its_overview_with_the_header(world: World) -> None:
    """At 1/4, a COG's 4x level sits right behind its header: one request per slice, not two."""
    small_header = FetchSettings(header_bytes=4096)
    expected = open_mosaic(items=world.grid, storage=world.storage(), resolution=RES * 4,
                           fetch=FetchSettings(header_bytes=4096, coarse_bytes=0)).values[0]
    assert _requests(world, world.grid) == [2, 2, 2, 2], "without the guess: the header, then the tile"
    close_handles()
    clear_headers()
    world.server.reset()
    values = open_mosaic(items=world.grid, storage=world.storage(), resolution=RES * 4, fetch=small_header).values[0]
    np.testing.assert_array_equal(values, expected)
    assert _requests(world, world.grid) == [1, 1, 1, 1]
    m = N // 4
    for i, src in enumerate(world.grid):
        r, c = divmod(i, 2)
        with rasterio.open(world.root / world.name(src)) as ds:
            local = ds.read(1, out_shape=(m, m))
        np.testing.assert_array_equal(values[r * m:(r + 1) * m, c * m:(c + 1) * m], local)
        size = (world.root / world.name(src)).stat().st_size
        assert world.server.bytes[world.name(src)] <= 4096 + size // 8
    # A file not known to be a COG keeps the plain header request (its overviews may sit anywhere).
    close_handles()
    clear_headers()
    world.server.reset()
    plain = [replace(s, cog=False) for s in world.grid]
    values = open_mosaic(items=plain, storage=world.storage(), resolution=RES * 4, fetch=small_header).values[0]
    np.testing.assert_array_equal(values, expected)
    assert _requests(world, plain) == [2, 2, 2, 2]


def _overlap_expected(world: World, method: str) -> np.ndarray:
    a = np.full((64, 192), np.nan, dtype=np.float32)
    b = a.copy()
    with rasterio.open(world.root / world.name(world.overlap[0])) as ds:
        a[:, :128] = ds.read(1)
    with rasterio.open(world.root / world.name(world.overlap[1])) as ds:
        b[:, 64:] = ds.read(1)
    a[a == NODATA] = np.nan
    b[b == NODATA] = np.nan
    stack = np.stack([a, b])
    with np.errstate(all="ignore"):
        if method == "first":
            out = np.where(np.isnan(a), b, a)
        elif method == "last":
            out = np.where(np.isnan(b), a, b)
        elif method == "min":
            out = np.fmin(a, b)
        elif method == "max":
            out = np.fmax(a, b)
        else:
            count = (~np.isnan(stack)).sum(0)
            out = np.where(count > 0, np.nansum(stack, 0) / np.maximum(count, 1), np.nan)
    return np.where(np.isnan(out), NODATA, out).astype(np.float32)


@pytest.mark.parametrize("method", ["first", "last", "min", "max", "mean"])
@pytest.mark.parametrize("chunks", [None, {"x": 48, "y": 32}])
def test_overlap_methods(world: World, method: str, chunks: Any) -> None:
    da = open_mosaic(items=world.overlap, storage=world.storage(), method=method, chunks=chunks)
    assert da.shape == (1, 64, 192) and da.attrs["fusion:method"] == method
    np.testing.assert_allclose(da.values[0], _overlap_expected(world, method))


def test_native_dtype_nodata_and_scale_kept(world: World) -> None:
    da = open_mosaic(items=world.int16, storage=world.storage())
    assert da.dtype == np.int16 and da.attrs["_FillValue"] == -32768
    assert da.attrs["scale_factor"] == 0.5 and da.attrs["add_offset"] == 10.0 and da.attrs["units"] == "m"
    values = da.values[0]
    with rasterio.open(world.root / world.name(world.int16[1])) as ds:
        np.testing.assert_array_equal(values[:, 64:], ds.read(1))
    assert (values[:5, :5] == -32768).all()
    # Another type on request: nodata pixels stay nodata, values are converted.
    as_float = open_mosaic(items=world.int16, storage=world.storage(), dtype="float32").values[0]
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, values.astype(np.float32))
    remapped = open_mosaic(items=world.int16, storage=world.storage(), dtype="float32", nodata=float("nan")).values[0]
    assert np.isnan(remapped[:5, :5]).all() and not np.isnan(remapped[5:, 5:]).any()
    with pytest.raises(MosaicError, match="not representable in uint8"):
        open_mosaic(items=world.int16, storage=world.storage(), dtype="uint8")


def test_default_crs_is_the_most_common_and_others_are_warped(world: World) -> None:
    da = open_mosaic(items=world.zones, storage=world.storage())
    assert da.rio.crs.to_epsg() == 32630
    values = da.values[0]
    gbox = da.odc.geobox
    with rasterio.open(world.root / world.name(world.zones[0])) as ds:
        roi = gbox.overlap_roi(rasterio_geobox(ds))
        np.testing.assert_array_equal(values[roi], ds.read(1))  # same grid: pasted verbatim
    # The zone-31 slice, warped: compare with GDAL warping the local file onto the same grid.
    from rasterio.warp import Resampling, reproject

    expected = np.full(gbox.shape.yx, NODATA, dtype=np.float32)
    with rasterio.open(world.root / world.name(world.zones[2])) as ds:
        reproject(rasterio.band(ds, 1), expected, dst_transform=gbox.transform, dst_crs="EPSG:32630",
                  dst_nodata=NODATA, resampling=Resampling.nearest)
    warped = expected != NODATA
    assert warped.sum() > 3000
    np.testing.assert_array_equal(values[warped], expected[warped])


def rasterio_geobox(ds: Any) -> GeoBox:
    return GeoBox((ds.height, ds.width), ds.transform, ds.crs)


def test_even_crs_split_is_an_error_naming_the_slices(world: World) -> None:
    with pytest.raises(CRSConflictError) as info:
        open_mosaic(items=world.tie, storage=world.storage())
    err = info.value
    assert "crs=" in str(err)
    assert set(err.slices) == {"EPSG:32630", "EPSG:32631"}
    for src in world.tie:
        assert src.label in str(err)
    da = open_mosaic(items=world.tie, storage=world.storage(), crs="EPSG:32631")
    assert da.rio.crs.to_epsg() == 32631 and not (da.values == NODATA).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"items": []}, "empty"),
        ({"bands": [2]}, "band 2 does not exist"),
        ({"bands": ["red"]}, "unknown band 'red'"),
        ({"bbox": (10.0, 10.0, 11.0, 11.0)}, "does not intersect"),
        ({"bbox": (1.0, 3.0, 2.0, 2.0)}, "south < north"),
        ({"bbox": (1.0, 2.0, 1.0, 3.0)}, "zero-width"),
        ({"bbox": (200.0, 2.0, 201.0, 3.0)}, "within -180..180"),
        ({"bbox": (5e5, 2.0, 4e5, 3.0), "bbox_crs": "EPSG:32630"}, "west must be < east"),
        ({"method": "median"}, "method='median'"),
        ({"resampling": "fancy"}, "resampling='fancy'"),
        ({"chunks": {"y": -5}}, "positive"),
        ({"resolution": 0}, "positive"),
        ({"crs": "EPSG:999999"}, "not a CRS"),
    ],
)
def test_bad_input_is_a_clear_typed_error(world: World, kwargs: dict[str, Any], match: str) -> None:
    args = {"items": world.grid, "storage": world.storage(), **kwargs}
    with pytest.raises(MosaicError, match=match) as info:
        open_mosaic(**args)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FusionError)
    pickle.loads(pickle.dumps(info.value))  # crosses process boundaries


def test_expired_urls_are_signed_again_at_read_time(world: World, tmp_path: Path) -> None:
    counter = tmp_path / "signed.txt"
    storage = world.storage(lifetime=3600.0, counter_file=str(counter))
    da = open_mosaic(items=world.grid[:1], storage=storage, chunks={"x": 64, "y": 64})
    first = da.isel(x=slice(0, 64), y=slice(0, 64)).data.compute()
    assert len(counter.read_text().splitlines()) == 1
    world.server.expire_issued()  # every URL signed so far now answers 403
    second = da.isel(x=slice(448, 512), y=slice(448, 512)).data.compute()  # same handle, new tiles
    np.testing.assert_array_equal(first[0], world.grid_expected[:64, :64])
    np.testing.assert_array_equal(second[0], world.grid_expected[448:512, 448:512])
    assert len(counter.read_text().splitlines()) == 2, "one refusal, one new signature"


def test_storage_failures_raise_errors_naming_the_slice(world: World) -> None:
    src = world.grid[1]
    world.server.fail_next(world.name(src), *([503] * 20))
    da = open_mosaic(items=world.grid, storage=world.storage())
    with pytest.raises(OSError, match=src.label.replace("(", r"\(").replace(")", r"\)")) as info:
        da.values  # noqa: B018
    assert "sig=" not in str(info.value) and "expires=" not in str(info.value)
    world.server.reset()
    np.testing.assert_array_equal(da.values[0], world.grid_expected)  # nothing bad was cached

    world.server.fail_next(world.name(src), *([404] * 5))
    from fusion_stac.xarray._http import clear_headers
    from fusion_stac.xarray._reader import close_handles

    clear_headers()
    close_handles()
    with pytest.raises(FileNotFoundError):
        open_mosaic(items=world.grid, storage=world.storage()).values  # noqa: B018


def test_a_failed_tile_read_is_never_silent_zeros(world: World) -> None:
    src = world.grid[0]
    da = open_mosaic(items=[src], storage=world.storage())
    da.isel(x=slice(0, 8), y=slice(0, 8)).values  # noqa: B018 - header read and cached
    world.server.fail_next(world.name(src), *([500] * 20))
    with pytest.raises(OSError):
        da.isel(x=slice(400, 512), y=slice(400, 512)).values  # noqa: B018
    world.server.reset()
    np.testing.assert_array_equal(da.isel(x=slice(400, 512), y=slice(400, 512)).values[0],
                                  world.grid_expected[400:512, 400:512])


def test_graph_pickles_without_urls_or_secrets(world: World) -> None:
    import cloudpickle

    da = open_mosaic(items=world.grid, storage=world.storage(), chunks={"x": 128, "y": 128})
    da.isel(x=slice(0, 4), y=slice(0, 4)).values  # noqa: B018 - a URL is now cached in this process
    blob = cloudpickle.dumps(dict(da.data.__dask_graph__()))
    assert b"sig=" not in blob and b"expires=" not in blob
    restored = pickle.loads(pickle.dumps(da))
    np.testing.assert_array_equal(restored.values[0], world.grid_expected)


@pytest.mark.parametrize("native", [False, True], ids=["gdal", "native"])
def test_a_dataset_opened_once_serves_every_thread(world: World, native: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Datasets are opened by one thread and lent to any: a window read again from other threads
    (a user's thread pool, dask's) costs no second header and no second open. A small plain read
    opens no dataset at all (:mod:`fusion_stac.xarray._tiff`), at the same cost in requests."""
    import threading

    from fusion_stac.xarray import _reader

    if not native:
        from fusion_stac.xarray import _native

        monkeypatch.setattr(_native, "NATIVE_MAX_TILES", 0)
    opened: list[str] = []
    real_open = _reader._open_dataset

    def counting_open(source: Any, *args: Any) -> Any:
        opened.append(threading.current_thread().name)
        return real_open(source, *args)

    da = open_mosaic(items=world.grid, storage=world.storage())
    window = da.isel(y=slice(0, 64), x=slice(0, 64))  # inside slice 1 only
    _reader._open_dataset = counting_open
    try:
        results: list[np.ndarray] = []
        for _ in range(3):
            thread = threading.Thread(target=lambda: results.append(window.values[0]))
            thread.start()
            thread.join()
    finally:
        _reader._open_dataset = real_open
    for got in results:
        np.testing.assert_array_equal(got, world.grid_expected[:64, :64])
    assert len(results) == 3
    assert opened == ([] if native else ["fusion-open_0"]), opened  # once, and on the opener thread
    assert _requests(world, world.grid)[0] == 1 + 3  # the header once, then one request per read for the tiles


def test_slices_waiting_for_a_reader_are_opened_ahead(world: World, monkeypatch: pytest.MonkeyPatch,
                                                      gdal_opens: list[Any]) -> None:
    """With one reading thread, the slices after the first are signed, fetched and opened in the
    background: each is still opened once and its header fetched once."""
    from fusion_stac.xarray import _build

    opened = gdal_opens
    monkeypatch.setenv("FUSION_STAC_READ_THREADS", "1")
    monkeypatch.setattr(_build, "_EXECUTOR", _build._Executor())  # a pool of one thread
    da = open_mosaic(items=world.grid, storage=world.storage())
    np.testing.assert_array_equal(da.values[0], world.grid_expected)
    assert sorted(map(str, opened)) == sorted(str(s.key) for s in world.grid)
    assert _requests(world, world.grid) == [2, 2, 2, 2]


@pytest.mark.parametrize("answers_in", [0.001, 0.05], ids=["fast-storage", "slow-storage"])
def test_small_reads_fetch_ahead_only_from_slow_storage(world: World, monkeypatch: pytest.MonkeyPatch,
                                                        answers_in: float) -> None:
    """Slices read without GDAL are fetched ahead only when storage is slow to answer: from a fast
    one the background fetches only compete with decoding. Either way nothing is opened with GDAL
    and each slice costs its header and its tile."""
    import threading

    from fusion_stac.storage import Transport
    from fusion_stac.xarray import _build, _native, _reader, _region

    fetched_on: list[str] = []
    real_load = _native.load_header

    def recording_load(*args: Any, **kwargs: Any) -> Any:
        fetched_on.append(threading.current_thread().name)
        return real_load(*args, **kwargs)

    opened: list[Any] = []
    monkeypatch.setattr(_reader, "_open_dataset", lambda *a: opened.append(a) or pytest.fail("opened with GDAL"))
    monkeypatch.setattr(_native, "load_header", recording_load)  # readers and ahead of them
    monkeypatch.setattr(_region, "load_header", recording_load)
    monkeypatch.setattr(Transport, "round_trip", lambda self, wait=0.0: answers_in)
    monkeypatch.setenv("FUSION_STAC_READ_THREADS", "1")
    monkeypatch.setattr(_build, "_EXECUTOR", _build._Executor())  # a pool of one thread
    da = open_mosaic(items=world.grid, storage=world.storage())
    window = da.isel(y=slice(N - 64, N + 64), x=slice(N - 64, N + 64))  # one tile of each slice
    np.testing.assert_array_equal(window.values[0], world.grid_expected[N - 64:N + 64, N - 64:N + 64])
    ahead = [name for name in fetched_on if name.startswith("fusion-fs")]
    assert (len(ahead) == 3) if answers_in >= _region.FAST_STORAGE else not ahead, fetched_on
    assert not opened
    assert _requests(world, world.grid) == [2, 2, 2, 2]
