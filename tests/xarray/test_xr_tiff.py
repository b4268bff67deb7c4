"""Tiled GeoTIFFs read without GDAL (:mod:`fusion_stac.xarray._tiff`) give GDAL's pixels exactly.

Every file here is written by GDAL (rasterio) and read back both ways: GDAL's nearest-neighbour
``read(window=..., out_shape=...)`` and :func:`parse_tiff` / :meth:`TiffLayout.plan` /
:func:`paste_tiles` on the file's bytes, for many windows, decimations and band selections.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from conftest import RES, X0, Y0, World
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.windows import Window
from xr_helpers import write_cog

from fusion_stac.xarray import open_mosaic
from fusion_stac.xarray._errors import RasterReadError
from fusion_stac.xarray._http import clear_headers
from fusion_stac.xarray._reader import close_handles
from fusion_stac.xarray._tiff import TiffError, TiffLayout, decode_tile, parse_tiff, paste_tiles

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

T = Affine(10.0, 0, 500000.0, 0, -10.0, 5700000.0)
H, W = 300, 500  # not a multiple of any block size: edge tiles are partial


def _values(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Random samples over the whole range of ``dtype`` (floats: with NaN, infinities and -0)."""
    rng, dt = np.random.default_rng(seed), np.dtype(dtype)
    if dt.kind != "f":
        return rng.integers(np.iinfo(dt).min, np.iinfo(dt).max, shape, dtype=dt, endpoint=True)
    a = (rng.standard_normal(shape) * 1000).astype(dt)
    for value, n in ((np.nan, 50), (np.inf, 20), (-0.0, 20)):
        a.reshape(-1)[rng.integers(0, a.size, n)] = value
    return a


def _write(path: Path, data: np.ndarray, overviews: Sequence[int] = (2, 4), sparse: Sequence[Window] = (),
           transform: Affine = T, tags: dict[str, str] | None = None, mask: bool = False, **opts: Any) -> bytes:
    """A tiled GTiff (``opts``: creation options); ``sparse``: write only these windows of ``data``;
    ``mask``: with an internal mask (its own IFDs, one per level)."""
    count, height, width = data.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count, "dtype": data.dtype.name,
               "crs": "EPSG:32630", "transform": transform, "tiled": True, "blockxsize": 128, "blockysize": 128, **opts}
    try:
        with rasterio.open(path, "w", **profile) as ds:
            ds.update_tags(**(tags or {}))
            for w in sparse or [Window(0, 0, width, height)]:
                ds.write(data[(slice(None), *w.toslices())], window=w)
            if mask:
                ds.write_mask(np.arange(width)[None, :] % 3 > np.arange(height)[:, None] % 2)
            if overviews:
                ds.build_overviews(list(overviews), Resampling.nearest)
    except rasterio.errors.RasterioIOError as exc:  # GDAL 3.9's wheels bundle libtiff 4.3
        if "PREDICTOR=2 is supported on 64 bit samples" in str(exc):
            pytest.skip(f"this GDAL cannot write the case: {exc}")
        raise
    return path.read_bytes()


def _native(data: bytes, layout: TiffLayout, rows: tuple[int, int], cols: tuple[int, int],
            out_shape: tuple[int, int], bands: Sequence[int]) -> tuple[np.ndarray, int]:
    """Our read of a window into ``out_shape``, from the file's bytes; and the level it came from."""
    plan = layout.plan(rows, cols, out_shape)
    assert plan is not None, (rows, cols, out_shape)
    lv = layout.levels[plan.level]
    planes = sorted({b - 1 for b in bands}) if layout.planar == 2 else [0]
    tiles: dict[tuple[int, int, int], bytes | None] = {}
    for r, c in plan.tiles(layout):
        for p in planes:
            i = layout.tile_index(plan.level, r, c, p)
            off, n = lv.offsets[i], lv.counts[i]
            tiles[(r, c, p)] = data[off:off + n] if off and n else None
    out = np.empty((len(bands), *out_shape), dtype=layout.dtype.newbyteorder("="))
    paste_tiles(layout, plan, tiles, bands, out)
    return out, plan.level


# Window / output ratios (per axis) away from GDAL's overview thresholds for overview factors 2, 4 and
# 8: the pixels, not the choice of level, are what the layout tests check (see the overview tests).
STEPS = (1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 7, 8)


def _axis(rng: np.random.Generator, size: int, step: float, to_edge: bool, least: int = 1) -> tuple[tuple[int, int], int]:
    """A window of ``size`` pixels read ``step`` to one: (start, stop) and the output length."""
    n = int(rng.integers(least, int(size // step) + 1))
    if step % 1:
        n = max(2, n - n % 2)  # the window is n * step pixels exactly
    length = int(n * step)
    start = size - length if to_edge else int(rng.integers(0, size - length + 1))
    return (start, start + length), n


Read = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def _reads(height: int, width: int, n: int = 40, seed: int = 1) -> list[Read]:
    """The whole image read 1 to k (k in 1, 2, 3, 4, 5, 8; out = size // k leaves remainders), then
    random windows (some reaching the bottom or right edge) at the ratios of STEPS."""
    rng = np.random.default_rng(seed)
    reads = [((0, height), (0, width), (max(1, height // k), max(1, width // k))) for k in (1, 2, 3, 4, 5, 8)]
    for i in range(n):
        sy, sx = (float(s) for s in rng.choice(STEPS, 2))
        if i % 3 == 0:
            sx = sy
        # A one-row buffer takes GDAL's x factor (test_the_overview_gdal_reads[one-row]): sx <= sy then.
        rows, out_h = _axis(rng, height, sy, i % 4 == 0, least=1 if sx <= sy else 2)
        cols, out_w = _axis(rng, width, sx, i % 3 == 1)
        reads.append((rows, cols, (out_h, out_w)))
    return reads


def _compare(path: Path, data: bytes, band_sets: Sequence[Sequence[int]] = ((1,),), n: int = 40,
             ) -> tuple[TiffLayout, set[int]]:
    """Every read of :func:`_reads` (each band set): ours equals GDAL's, value for value (NaN == NaN,
    -0 is -0); fails listing the reads that differ. The layout (asserted accepted), the levels read."""
    layout = parse_tiff(data)
    assert layout is not None, "parse_tiff refused a file it should read"
    bad, levels = [], set()
    with rasterio.open(path) as ds:
        for rows, cols, shape in _reads(ds.height, ds.width, n):
            for bands in band_sets:
                theirs = ds.read(list(bands), window=Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0]),
                                 out_shape=(len(bands), *shape))
                ours, level = _native(data, layout, rows, cols, shape, bands)
                levels.add(level)
                if not _same(ours, theirs):
                    bad.append(f"rows {rows} cols {cols} -> {shape} bands {list(bands)} (our level {level}): "
                               f"{int((~_equal(ours, theirs)).sum())} of {ours.size} differ, {ours.dtype} / {theirs.dtype}")
    assert not bad, f"{len(bad)} reads differ from GDAL:\n" + "\n".join(bad[:20])
    return layout, levels


def _equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind != "f":
        return a == b
    return ((a == b) & (np.signbit(a) == np.signbit(b))) | (np.isnan(a) & np.isnan(b))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(_equal(a, b).all())


def _same_nodata(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


# ------------------------------------------------------------------------------------------
# pixels: every layout parse_tiff accepts reads as GDAL reads it

INTS = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "uint64")
FLOATS = ("float32", "float64")
LAYOUTS = [pytest.param(dt, opts, id=f"{dt}-{name}") for dt in INTS + FLOATS for name, opts in (
    ("raw", {}), ("deflate", {"compress": "deflate"}),
    ("deflate-predictor", {"compress": "deflate", "predictor": 3 if dt in FLOATS else 2}))]
LAYOUTS += [pytest.param(dt, {"compress": "deflate", "predictor": p, "endianness": "big"}, id=f"big-endian-{dt}-{p}")
            for dt, p in (("uint16", 2), ("int32", 1), ("int64", 2), ("float32", 3), ("float64", 3), ("float64", 1))]
LAYOUTS += [pytest.param("uint16", {"endianness": "big"}, id="big-endian-uint16-raw"),
            pytest.param("float32", {"bigtiff": "yes", "compress": "deflate", "predictor": 3}, id="bigtiff-float32"),
            pytest.param("uint8", {"bigtiff": "yes"}, id="bigtiff-uint8-raw"),
            pytest.param("int16", {"blockxsize": 256, "blockysize": 256, "compress": "deflate"}, id="blocks-256"),
            pytest.param("int16", {"blockxsize": 256, "blockysize": 128}, id="blocks-256x128"),
            pytest.param("float64", {"bigtiff": "yes", "endianness": "big", "compress": "deflate", "predictor": 3},
                         id="big-endian-bigtiff"),
            pytest.param("uint8", {"photometric": "miniswhite"}, id="miniswhite"),
            pytest.param("uint8", {"pixeltype": "signedbyte"}, id="signedbyte"),
            pytest.param("uint16", {"compress": "deflate", "mask": True}, id="internal-mask")]


@pytest.mark.parametrize(("dtype", "opts"), LAYOUTS)
def test_one_band_layouts_read_as_gdal_does(tmp_path: Path, dtype: str, opts: dict[str, Any]) -> None:
    path = tmp_path / "a.tif"
    data = _write(path, _values(dtype, (1, H, W)), **opts)
    layout, levels = _compare(path, data)
    assert [lv.width for lv in layout.levels] == [500, 250, 125] and levels == {0, 1, 2}


@pytest.mark.parametrize("interleave", ["pixel", "band"])
@pytest.mark.parametrize(("dtype", "opts"), [
    ("uint8", {}), ("uint16", {"compress": "deflate", "predictor": 2}), ("float32", {"compress": "deflate", "predictor": 3}),
    ("int16", {"compress": "deflate", "predictor": 2, "endianness": "big"}),
    ("uint8", {"photometric": "rgb", "compress": "deflate", "predictor": 2})])
def test_three_bands_read_as_gdal_does(tmp_path: Path, interleave: str, dtype: str, opts: dict[str, Any]) -> None:
    path = tmp_path / "a.tif"
    data = _write(path, _values(dtype, (3, H, W)), interleave=interleave, **opts)
    layout, levels = _compare(path, data, [(2,), (3, 1), (1, 2, 3), (3, 2, 1), (2, 2)], n=25)
    assert (layout.samples, layout.planar, levels) == (3, 1 if interleave == "pixel" else 2, {0, 1, 2})


@pytest.mark.parametrize(("height", "width", "factors"), [(301, 499, (2, 4, 8)), (299, 501, (2, 4)),
                                                          (257, 129, (2, 4, 8)), (600, 800, (2, 4, 8))])
def test_sizes_that_overviews_do_not_divide(tmp_path: Path, height: int, width: int, factors: tuple[int, ...]) -> None:
    """GDAL's window in an overview is fractional here (301 / 2 rows: 151 overview rows)."""
    path = tmp_path / "a.tif"
    data = _write(path, _values("float32", (1, height, width)), overviews=factors, compress="deflate", predictor=3)
    layout, levels = _compare(path, data, n=80)
    assert len(layout.levels) == len(levels) == 1 + len(factors)


# Sparse files: tiles never written (offset and count 0) are GDAL's nodata, else 0.
QUARTER = [Window(0, 0, 128, 128), Window(256, 128, 128, 128), Window(384, 256, 116, 44)]


@pytest.mark.parametrize(("dtype", "nodata", "interleave"), [
    ("uint8", None, "pixel"), ("int16", -32768, "pixel"), ("float32", math.nan, "pixel"),
    ("float64", -9999.0, "band"), ("uint16", 7, "band"), ("int8", -128, "pixel"),
    ("int64", -(2**53), "pixel"), ("uint64", 10**15 + 1, "band"), ("float32", -math.inf, "pixel")])
def test_sparse_tiles_read_as_gdal_does(tmp_path: Path, dtype: str, nodata: float | None, interleave: str) -> None:
    path = tmp_path / "a.tif"
    data = _write(path, _values(dtype, (2, H, W)), sparse=QUARTER, sparse_ok=True, nodata=nodata,
                  interleave=interleave, compress="deflate")
    layout, levels = _compare(path, data, [(1,), (2, 1)], n=25)
    assert 0 in layout.levels[0].offsets and levels == {0, 1, 2}
    with rasterio.open(path) as ds:
        assert _same_nodata(layout.nodata, ds.nodata)


def _set_nodata_text(data: bytes, text: bytes) -> bytes:
    """The (classic) TIFF with its GDAL_NODATA text replaced by ``text`` (of the length written): a
    nodata rasterio refuses to write, as GDAL reads it."""
    e = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack_from(e + "I", data, 4)[0]
    for i in range(struct.unpack_from(e + "H", data, ifd)[0]):
        at = ifd + 2 + 12 * i
        tag, _, count = struct.unpack_from(e + "HHI", data, at)
        if tag == 42113:
            where = at + 8 if count <= 4 else struct.unpack_from(e + "I", data, at + 8)[0]
            assert count == len(text) + 1
            return data[:where] + text + b"\0" + data[where + count:]
    raise AssertionError("no GDAL_NODATA tag")


@pytest.mark.parametrize(("dtype", "written", "text"), [
    ("uint8", 100, b"300"), ("uint8", 10, b"-1"), ("int16", 100, b"1e9"), ("int16", 100, b"nan"),
    ("int8", 100, b"128"), ("uint16", 100, b"2.7"), ("int32", 100, b"-.6"), ("int16", 100, b"1.5"),
    ("uint32", 100, b"-.5"), ("float32", 10000, b"1e-50"), ("float32", 1000, b"1e39"),
    # GDAL rounds halves away from zero into an integer tile
    ("int16", 100, b"2.5"), ("int16", 100, b"0.5"), ("int16", 1000, b"-2.5"), ("uint32", 100, b"4.5"),
    ("int64", 100, b"-17"), ("uint64", 100, b"255")])
def test_sparse_with_an_odd_nodata(tmp_path: Path, dtype: str, written: int, text: bytes) -> None:
    """GDAL fills a missing tile with its nodata saturated and rounded to the dtype (NaN: 0)."""
    path = tmp_path / "a.tif"
    data = _write(path, _values(dtype, (1, H, W)), sparse=QUARTER, sparse_ok=True, nodata=written, overviews=())
    data = _set_nodata_text(data, text)
    path.write_bytes(data)
    layout, _ = _compare(path, data, n=10)
    with rasterio.open(path) as ds:
        if ds.nodata is not None:  # rasterio hides a nodata outside the dtype's range
            assert _same_nodata(layout.nodata, ds.nodata)


# ------------------------------------------------------------------------------------------
# the overview GDAL reads a decimated window from


def _one(path: Path, data: bytes, rows: tuple[int, int], cols: tuple[int, int], shape: tuple[int, int]) -> bool:
    """Our read against GDAL's, if we read it (``False``: the plan leaves it to GDAL)."""
    layout = parse_tiff(data)
    assert layout is not None
    if layout.plan(rows, cols, shape) is None:
        return False
    with rasterio.open(path) as ds:
        theirs = ds.read([1], window=Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0]),
                         out_shape=(1, *shape))
    ours, level = _native(data, layout, rows, cols, shape, [1])
    assert _same(ours, theirs), f"our level {level}: {int((~_equal(ours, theirs)).sum())} of {ours.size} differ"
    return True


@pytest.mark.parametrize(("factors", "rows", "cols", "shape", "ours"), [
    ((2, 4), (0, 300), (10, 13), (75, 1), True), ((2, 4), (5, 300), (499, 500), (50, 1), True),
    ((2, 4), (0, 8), (0, 3), (1, 1), True),
    ((2, 4), (10, 12), (0, 400), (1, 200), True),  # one row, x and y factor 2
    pytest.param((2, 4), (10, 13), (0, 400), (1, 100), True, id="one-row"),  # the x factor, 4: the 1/4 level
    # GDAL 3.10 reads the 1/2 level (2 < 1.653 * 1.2 + 0.1), 3.9 the full image (no + 0.1): left to GDAL
    pytest.param((2, 4), (0, 200), (0, 300), (121, 181), False, id="threshold"),
    # GDAL 3.10 stops at the 1/5 level (within 0.1 of 5.05), 3.9 goes on to the 1/6: left to GDAL
    pytest.param((5, 6), (0, 202), (0, 404), (40, 80), False, id="first-close-enough")])
def test_the_overview_gdal_reads(tmp_path: Path, factors: tuple[int, ...], rows: tuple[int, int],
                                 cols: tuple[int, int], shape: tuple[int, int], ours: bool) -> None:
    path = tmp_path / "a.tif"
    assert _one(path, _write(path, _values("uint16", (1, H, 600)), overviews=factors), rows, cols, shape) is ours


def test_any_window_and_buffer(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    data = _write(path, _values("int16", (1, 301, 499)), overviews=(2, 4, 8))
    rng = np.random.default_rng(11)
    ours = 0
    for _ in range(300):
        y0, x0 = int(rng.integers(0, 300)), int(rng.integers(0, 498))
        y1, x1 = int(rng.integers(y0 + 1, 302)), int(rng.integers(x0 + 1, 500))
        shape = (int(rng.integers(1, y1 - y0 + 1)), int(rng.integers(1, x1 - x0 + 1)))
        ours += _one(path, data, (y0, y1), (x0, x1), shape)
    assert ours >= 250  # only reads near an overview threshold, where GDAL versions differ, are left to GDAL


# ------------------------------------------------------------------------------------------
# COGs


def _cog(path: Path, data: np.ndarray, **opts: Any) -> bytes:
    count, height, width = data.shape
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name,
                      crs="EPSG:32630", transform=T) as ds:
            ds.write(data)
        with mem.open() as src:
            rasterio.shutil.copy(src, path, driver="COG", blocksize=128, overview_resampling="nearest", **opts)
    return path.read_bytes()


@pytest.mark.parametrize(("dtype", "count", "opts"), [
    ("float32", 1, {"compress": "deflate", "predictor": "yes"}), ("uint16", 3, {"compress": "deflate", "predictor": "yes"}),
    ("int8", 1, {"compress": "none"}), ("float64", 2, {"compress": "deflate", "bigtiff": "yes"})])
def test_cog_driver_files(tmp_path: Path, dtype: str, count: int, opts: dict[str, Any]) -> None:
    path = tmp_path / "a.tif"
    data = _cog(path, _values(dtype, (count, H, W)), **opts)
    layout, levels = _compare(path, data, [(1,), tuple(range(count, 0, -1))], n=30)
    assert len(layout.levels) == len(levels) == 3


def test_the_projects_own_cogs(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    values = _values("float32", (1, 700, 900))
    values[0, 10:40, 20:70] = -9999.0
    write_cog(path, values, T, "EPSG:32630", nodata=-9999.0, blocksize=128)
    layout, levels = _compare(path, path.read_bytes(), n=60)
    assert layout.nodata == -9999.0 and [lv.width for lv in layout.levels] == [900, 450, 225, 112]
    assert levels == {0, 1, 2, 3}


# ------------------------------------------------------------------------------------------
# what parse_tiff leaves to GDAL


@pytest.mark.parametrize(("dtype", "count", "opts"), [
    ("uint16", 1, {"compress": "lzw"}), ("float32", 1, {"compress": "zstd", "predictor": 3}),
    ("uint8", 3, {"compress": "jpeg"}), ("uint8", 3, {"compress": "jpeg", "photometric": "ycbcr"}),
    ("int16", 1, {"tiled": False}), ("uint8", 1, {"nbits": 1}), ("float32", 1, {"compress": "lerc"}),
    ("uint8", 1, {"area_or_point": "Point"}), ("float32", 1, {"nbits": 16, "compress": "deflate", "predictor": 3})],
    ids=["lzw", "zstd", "jpeg", "jpeg-ycbcr", "stripped", "1-bit", "lerc", "pixel-is-point", "half-float"])
def test_layouts_left_to_gdal(tmp_path: Path, dtype: str, count: int, opts: dict[str, Any]) -> None:
    path, point = tmp_path / "a.tif", opts.pop("area_or_point", None)
    values = _values(dtype, (count, H, W))
    if opts.get("nbits") == 1:
        values &= 1
    data = _write(path, values, tags={"AREA_OR_POINT": point} if point else None, **opts)
    with rasterio.open(path) as ds:  # a file GDAL reads, as we meant to write it
        assert ds.read().shape == (count, H, W) and ds.tags()["AREA_OR_POINT"] == (point or "Area")
        assert (ds.compression.name.lower() if ds.compression else "") == opts.get("compress", "")
    assert parse_tiff(data) is None


def test_truncated_or_foreign_bytes_are_left_to_gdal(tmp_path: Path) -> None:
    data = _cog(tmp_path / "a.tif", _values("uint16", (1, H, W)), compress="deflate")
    assert parse_tiff(data) is not None
    for cut in (100, 16, 8, 0):  # into the first IFD, the header, nothing
        assert parse_tiff(data[:cut]) is None
    for foreign in (b"not a tiff" * 10, b"\x89PNG\r\n\x1a\n" + bytes(200), b"II*\x00" + bytes(100)):
        assert parse_tiff(foreign) is None


# ------------------------------------------------------------------------------------------
# georeferencing


@pytest.mark.parametrize("transform", [T, Affine(0.25, 0, -180.125, 0, -0.5, 90.0), Affine(3, 0, 0, 0, -7, 0),
                                       T @ Affine.rotation(20.0) @ Affine.shear(5.0, 0)])
def test_the_transform_is_gdals(tmp_path: Path, transform: Affine) -> None:
    """PixelScale + ModelTiepoint; a rotated one (ModelTransformation): GDAL's too, or left to GDAL."""
    path = tmp_path / "a.tif"
    layout = parse_tiff(_write(path, _values("uint8", (1, 64, 64)), transform=transform, overviews=()))
    with rasterio.open(path) as ds:
        assert ds.transform.almost_equals(transform)
        if ds.transform.is_rectilinear:
            assert layout is not None and layout.transform == tuple(ds.transform)[:6]
        else:
            assert layout is None or layout.transform == tuple(ds.transform)[:6]


# ------------------------------------------------------------------------------------------
# bytes that are not a whole tile


def test_bad_tile_bytes_raise_never_pixels(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    for opts in ({"compress": "deflate", "predictor": 3}, {}):
        data = _write(path, _values("float32", (1, H, W)), overviews=(), **opts)
        layout = parse_tiff(data)
        assert layout is not None
        lv = layout.levels[0]
        tile = data[lv.offsets[0]:lv.offsets[0] + lv.counts[0]]
        with rasterio.open(path) as ds:
            assert _same(decode_tile(layout, tile, 0)[:, :, 0], ds.read(1, window=Window(0, 0, 128, 128)))
        bad = [tile[:-1], tile[: len(tile) // 2], tile[:10], b""]
        if opts:
            garbage = np.random.default_rng(0).integers(0, 256, len(tile), dtype=np.uint8).tobytes()
            bad += [garbage, zlib.compress(bytes(1000)), tile[:100] + bytes([tile[100] ^ 0xFF]) + tile[101:]]
        for b in bad:
            with pytest.raises(TiffError):
                decode_tile(layout, b, 0)
        plan = layout.plan((0, 200), (0, 200), (200, 200))
        assert plan is not None
        tiles: dict[tuple[int, int, int], bytes | None] = {
            (r, c, 0): data[lv.offsets[i]:lv.offsets[i] + lv.counts[i]]
            for r, c in plan.tiles(layout) for i in [layout.tile_index(0, r, c, 0)]}
        tiles[(1, 1, 0)] = tiles[(1, 1, 0)][:-8]  # type: ignore[index]
        with pytest.raises(TiffError):
            paste_tiles(layout, plan, tiles, [1], np.empty((1, 200, 200), dtype="float32"))


# ------------------------------------------------------------------------------------------
# through the public loader


def test_a_mosaic_reads_the_same_with_and_without_gdal(world: World, monkeypatch: pytest.MonkeyPatch,
                                                      gdal_opens: list[Any]) -> None:
    from fusion_stac.xarray import _native

    opened = gdal_opens

    def read() -> list[np.ndarray]:
        clear_headers()
        close_handles()
        full = open_mosaic(items=world.grid, storage=world.storage())
        coarse = open_mosaic(items=world.grid, storage=world.storage(), resolution=RES * 4)
        return [full[0, 100:200, 450:600].values, full[0, 500:520, 0:1024].values,
                coarse[0, 10:200, 20:250].values, coarse.values[0]]

    native = read()
    assert opened == [], "these reads touch at most 4 tiles a file: no GDAL dataset is opened"
    monkeypatch.setattr(_native, "NATIVE_MAX_TILES", 0)
    gdal = read()
    assert set(opened) == {s.key for s in world.grid}
    for ours, theirs in zip(native, gdal, strict=True):
        assert _same(ours, theirs)
    assert _same(native[0], world.grid_expected[100:200, 450:600])


@pytest.mark.parametrize(("change", "warm"), [("shape", False), ("dtype", False), ("transform", False),
                                              ("shape", True), ("transform", True)])
def test_a_file_unlike_its_metadata_is_not_read_natively(world: World, monkeypatch: pytest.MonkeyPatch,
                                                          change: str, warm: bool) -> None:
    """GDAL reads it (``paste_tiles`` is never called) and says what does not match (a dtype: GDAL
    converts; _check_matches compares none). ``warm``: after a read with the right metadata."""
    from fusion_stac.xarray import _native

    src = world.grid[0]
    wrong = {"shape": replace(src, shape=(src.shape[0] - 1, src.shape[1])), "dtype": replace(src, dtype="int32"),
             "transform": replace(src, transform=(RES, 0.0, X0 + RES, 0.0, -RES, Y0))}[change]
    if warm:
        open_mosaic(items=[src], storage=world.storage())[0, :64, :64].values  # noqa: B018
        clear_headers()
        close_handles()
    else:
        monkeypatch.setattr(_native, "_LAYOUTS", type(_native._LAYOUTS)())  # nothing parsed yet in this process
        layout = parse_tiff((world.root / world.name(src)).read_bytes())
        assert layout is not None and _native._matches(src, layout)
        assert not _native._matches(wrong, layout)
    pasted: list[Any] = []
    monkeypatch.setattr(_native, "paste_tiles", lambda *args: pasted.append(args))
    da = open_mosaic(items=[wrong], storage=world.storage())[0, :64, :64]
    if change == "dtype":
        assert _same(da.values, world.grid_expected[:64, :64].astype("int32"))
    else:
        with pytest.raises(RasterReadError, match=f"does not match its metadata: {change}"):
            da.values  # noqa: B018
    assert pasted == [], "read without GDAL"


@pytest.mark.parametrize(("dtype", "written", "text"), [
    ("int64", 100, b"nan"), ("int64", 100, b"1e3"), ("int64", 100, b"2.7"), ("int64", 100, b"-.6"),
    ("uint64", 10, b"-1"), ("uint64", 10, b"-5"),
    # as rasterio writes them past 1e17: '-4.6116860184273879e+18', '9.2233720368547758e+18'
    ("int64", -(2**62) - 3, None), ("uint64", 2**63 + 5, None)])
def test_64_bit_nodata_gdal_reads_its_own_way_is_left_to_gdal(tmp_path: Path, dtype: str, written: int,
                                                              text: bytes | None) -> None:
    """GDAL parses a 64-bit band's nodata with strtoll/strtoull (the integer prefix: '1e3' is 1,
    '-1' is 2**64-1 in UInt64), which rasterio writes as a double past 1e17: anything but a plain
    integer in range is GDAL's to read."""
    path = tmp_path / "a.tif"
    data = _write(path, _values(dtype, (1, H, W)), sparse=QUARTER, sparse_ok=True, nodata=written, overviews=())
    if text is not None:
        assert parse_tiff(data) is not None
        data = _set_nodata_text(data, text)
    assert parse_tiff(data) is None
