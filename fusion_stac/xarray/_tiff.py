"""Tiled GeoTIFFs read without GDAL, for the plain pastes of a mosaic (pure functions, no I/O).

A group's slices share the output grid: a window of the mosaic is, for each slice, a rectangle of
its tiles copied as they are (or every k-th pixel of an overview level). GDAL does that well, but a
cold process pays for it before the first pixel: driver registration and the first open (~20 ms),
then one ``rasterio.open`` per file on one thread (GDAL's Python opener holds the GIL), every header
byte crossing into Python and back. For the layouts GDAL itself writes by default for COGs
(tiled, 8 to 64-bit integer or float samples, no compression or DEFLATE, predictor none,
horizontal or floating point) the same pixels come from a few lines of ``struct``, :mod:`zlib` and
numpy, on the reading threads, from the header bytes already in hand.

:func:`parse_tiff` reads the IFDs of a file's first bytes into a :class:`TiffLayout` (``None`` when
anything is outside what this module decodes: the caller then uses GDAL, which reads everything).
:meth:`TiffLayout.plan` says which level, tiles and pixels a read of a window into a buffer of a
given shape takes, choosing the overview level and the source pixels exactly as GDAL's nearest
neighbour ``RasterIO`` does (``GDALBandGetBestOverviewLevel2``, then a source pixel
``floor((i + 0.5) * step + offset + 1e-10)``); :func:`decode_tile` turns one tile's bytes into
samples. Tests hold every path to GDAL's pixels (dtypes, predictors, band layouts, byte orders,
overview choices, sparse tiles).

Written by hand rather than with tifffile/imagecodecs: ~20 tags and two codecs are needed, the
parse must work on a prefix of the file (no seek past the header), and tifffile alone costs more
import time than the read it would speed up. This parser also finds where a file's metadata ends
for the header cache (:func:`tiff_data_start`).
"""

from __future__ import annotations

import math
import re
import struct
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ReadPlan", "TiffError", "TiffLayout", "TiffLevel", "decode_tile", "parse_tiff", "paste_tiles", "read_ifds",
           "tiff_data_start"]

# TIFF field types: (struct code, size)
_FIELD = {1: ("B", 1), 2: ("s", 1), 3: ("H", 2), 4: ("I", 4), 5: ("II", 8), 6: ("b", 1), 7: ("B", 1),
          8: ("h", 2), 9: ("i", 4), 10: ("ii", 8), 11: ("f", 4), 12: ("d", 8), 16: ("Q", 8), 17: ("q", 8),
          18: ("Q", 8)}

# Tags read (everything else is skipped).
NEW_SUBFILE_TYPE, WIDTH, HEIGHT, BITS, COMPRESSION, PHOTOMETRIC = 254, 256, 257, 258, 259, 262
FILL_ORDER, STRIP_OFFSETS, ORIENTATION, SAMPLES, PLANAR = 266, 273, 274, 277, 284
PREDICTOR, TILE_WIDTH, TILE_HEIGHT, TILE_OFFSETS, TILE_COUNTS, SAMPLE_FORMAT = 317, 322, 323, 324, 325, 339
PIXEL_SCALE, TIEPOINT, MODEL_TRANSFORM, GEO_KEYS, GDAL_NODATA = 33550, 33922, 34264, 34735, 42113
_WANTED = {NEW_SUBFILE_TYPE, WIDTH, HEIGHT, BITS, COMPRESSION, PHOTOMETRIC, FILL_ORDER, STRIP_OFFSETS,
           ORIENTATION, SAMPLES, PLANAR, PREDICTOR, TILE_WIDTH, TILE_HEIGHT, TILE_OFFSETS, TILE_COUNTS,
           SAMPLE_FORMAT, PIXEL_SCALE, TIEPOINT, MODEL_TRANSFORM, GEO_KEYS, GDAL_NODATA}

NO_COMPRESSION, DEFLATE, OLD_DEFLATE = 1, 8, 32946
_KINDS = {1: "u", 2: "i", 3: "f"}  # SampleFormat -> numpy kind
_MAX_IFDS = 64
_EPS = 1e-10  # GDAL's nudge when it rounds a source pixel position down

try:  # libdeflate (GDAL's own inflater): ~1.5x zlib-ng, 2x the system zlib; it lets go of the GIL
    import deflate as _libdeflate
except ImportError:  # pragma: no cover - the xarray extra installs it
    _libdeflate = None  # type: ignore[assignment]


def _inflate(data: bytes | memoryview, size: int) -> bytes | bytearray:
    """A zlib stream's bytes; ``size``: what it should hold (libdeflate needs it up front)."""
    if _libdeflate is not None:
        try:
            return _libdeflate.zlib_decompress(data, size)
        except _libdeflate.DeflateError:
            pass  # corrupt, or more than ``size``: zlib says which (and names the error)
    return zlib.decompress(data)


class TiffError(ValueError):
    """Bytes that do not decode as the layout says (a corrupt or truncated tile)."""


def read_ifds(data: bytes | memoryview) -> list[dict[int, tuple[int | float | bytes, ...]]] | None:
    """The IFDs in ``data`` (a TIFF's first bytes), each as ``{tag: values}`` for the tags this
    module uses; ``None`` when ``data`` is not a TIFF or does not hold every IFD and value."""
    if len(data) < 16 or bytes(data[:2]) not in (b"II", b"MM"):
        return None
    e = "<" if bytes(data[:2]) == b"II" else ">"
    try:
        magic = struct.unpack_from(e + "H", data, 2)[0]
        if magic not in (42, 43):
            return None
        big = magic == 43
        word, count_fmt, entry, head, inline = ("Q", "Q", 20, 8, 8) if big else ("I", "H", 12, 2, 4)
        ifd = struct.unpack_from(e + word, data, 8 if big else 4)[0]
        ifds: list[dict[int, tuple[int | float | bytes, ...]]] = []
        seen: set[int] = set()
        while ifd:
            if ifd in seen or len(seen) >= _MAX_IFDS:
                return None
            seen.add(ifd)
            n = struct.unpack_from(e + count_fmt, data, ifd)[0]
            tags: dict[int, tuple[int | float | bytes, ...]] = {}
            for i in range(n):
                at = ifd + head + i * entry
                tag, typ = struct.unpack_from(e + "HH", data, at)
                if tag not in _WANTED:
                    continue
                if typ not in _FIELD:
                    return None
                count = struct.unpack_from(e + word, data, at + 4)[0]
                code, size = _FIELD[typ]
                where = at + 4 + (8 if big else 4)
                if count * size > inline:
                    where = struct.unpack_from(e + word, data, where)[0]
                if where + count * size > len(data):
                    return None
                if typ == 2:
                    tags[tag] = (bytes(data[where:where + count]).rstrip(b"\0"),)
                elif typ in (5, 10):
                    pairs = struct.unpack_from(f"{e}{2 * count}{code[0]}", data, where)
                    tags[tag] = tuple(pairs[k] / pairs[k + 1] if pairs[k + 1] else math.nan
                                      for k in range(0, len(pairs), 2))
                else:
                    tags[tag] = struct.unpack_from(f"{e}{count}{code}", data, where)
            ifds.append(tags)
            ifd = struct.unpack_from(e + word, data, ifd + head + n * entry)[0]
    except struct.error:
        return None
    return ifds


def tiff_data_start(data: bytes | memoryview) -> int | None:
    """Where the first tile (or strip) of a TIFF starts, from its first bytes: every byte before it
    is metadata (IFDs, tile index arrays; a COG keeps them all first). ``None`` when ``data`` is not a
    TIFF or does not hold every IFD and offset array (then nothing of it is known to be metadata)."""
    ifds = read_ifds(data)
    if ifds is None:
        return None
    starts = [int(o) for tags in ifds for tag in (STRIP_OFFSETS, TILE_OFFSETS) for o in tags.get(tag, ()) if o]
    return min(starts) if starts else None


@dataclass(frozen=True)
class TiffLevel:
    """One resolution level: the full image or an overview, its tiles in file order."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    offsets: tuple[int, ...]
    counts: tuple[int, ...]

    @property
    def tiles_across(self) -> int:
        return -(-self.width // self.tile_width)

    @property
    def tiles_down(self) -> int:
        return -(-self.height // self.tile_height)


@dataclass(frozen=True)
class ReadPlan:
    """Where a read's pixels come from: ``level`` of the layout; for each output row and column, the
    source row and column in that level (``rows``, ``cols``, non-decreasing)."""

    level: int
    rows: np.ndarray
    cols: np.ndarray

    def tiles(self, layout: TiffLayout) -> list[tuple[int, int]]:
        """``(tile row, tile column)`` of every tile the read touches."""
        lv = layout.levels[self.level]
        trows = np.unique(self.rows // lv.tile_height)
        tcols = np.unique(self.cols // lv.tile_width)
        return [(int(r), int(c)) for r in trows for c in tcols]


@dataclass(frozen=True)
class TiffLayout:
    """What reading pixels out of a tiled TIFF takes, for the layouts :func:`decode_tile` handles."""

    dtype: np.dtype  # samples as stored (byte order of the file)
    samples: int  # samples per pixel
    planar: int  # 1: all samples of a pixel together; 2: one plane per sample
    compression: int
    predictor: int
    levels: tuple[TiffLevel, ...]  # the full image, then its overviews in file order
    nodata: float | int | None  # GDAL_NODATA, what GDAL fills missing (sparse) tiles with
    transform: tuple[float, float, float, float, float, float] | None  # from the GeoTIFF tags

    def tile_index(self, level: int, row: int, col: int, band: int) -> int:
        """Position in the level's offset arrays of a tile (``band``: 0-based, planar layouts)."""
        lv = self.levels[level]
        index = row * lv.tiles_across + col
        return index + band * lv.tiles_across * lv.tiles_down if self.planar == 2 else index

    def plan(self, rows: tuple[int, int], cols: tuple[int, int], out_shape: tuple[int, int]) -> ReadPlan | None:
        """Which level and pixels GDAL's nearest neighbour read of full-resolution ``rows`` x ``cols``
        into a buffer of ``out_shape`` takes; ``None`` for anything but reading at full resolution or
        decimating (the caller lets GDAL do it)."""
        (y0, y1), (x0, x1) = rows, cols
        out_h, out_w = out_shape
        full = self.levels[0]
        if not (0 <= y0 < y1 <= full.height and 0 <= x0 < x1 <= full.width) or out_h < 1 or out_w < 1:
            return None
        if out_h > y1 - y0 or out_w > x1 - x0:
            return None  # upsampling: not a paste this module does
        if out_h == y1 - y0 and out_w == x1 - x0:
            return ReadPlan(0, np.arange(y0, y1), np.arange(x0, x1))
        level = self._best_overview((x1 - x0) / out_w, (y1 - y0) / out_h, out_h)
        if level is None:
            return None
        lv = self.levels[level]
        fx, fy = full.width / lv.width, full.height / lv.height
        if level:
            # GDAL's window in the overview (GDALBandGetBestOverviewLevel2): floating point.
            ox, oy, ow, oh = x0 / fx, y0 / fy, (x1 - x0) / fx, (y1 - y0) / fy
        else:
            ox, oy, ow, oh = x0, y0, x1 - x0, y1 - y0
        return ReadPlan(level, _nearest(oy, oh, out_h, lv.height), _nearest(ox, ow, out_w, lv.width))

    def _best_overview(self, xres: float, yres: float, out_h: int) -> int | None:
        """GDAL's choice for nearest neighbour (``GDALBandGetBestOverviewLevel2``, oversampling
        threshold 1.2): the factor asked is the less reduced axis' (the x axis' for a buffer one row
        high); the coarsest overview below 1.2 times it wins, 0 (the full image) if none. GDAL 3.10
        also takes overviews up to 0.1 past that and stops at the first within 0.1 of the factor
        asked; 3.9 does neither. ``None`` where the two rules differ: that read is GDAL's."""
        desired = xres if (xres < yres or out_h == 1) else yres
        full = self.levels[0]
        ratios = [(i, min(full.width / lv.width, full.height / lv.height)) for i, lv in enumerate(self.levels[1:], 1)
                  if lv.width <= full.width and lv.height <= full.height]
        choices = []
        for slack, stop_early in ((0.0, False), (0.1, True)):
            best, best_ratio = 0, 0.0
            for i, ratio in ratios:
                if ratio >= desired * 1.2 + slack or ratio <= best_ratio:
                    continue
                best, best_ratio = i, ratio
                if stop_early and abs(desired - ratio) < 0.1:
                    break
            choices.append(best)
        return choices[0] if choices[0] == choices[1] else None


def _nearest(offset: float, size: float, n: int, limit: int) -> np.ndarray:
    """Source pixel of each of ``n`` output pixels over ``size`` source pixels from ``offset``
    (GDAL's nearest neighbour subsampling)."""
    step = size / n
    pos = np.floor((np.arange(n) + 0.5) * step + offset + _EPS)
    return np.clip(pos, 0, limit - 1).astype(np.intp)


def _first(tags: dict[int, tuple[int | float | bytes, ...]], tag: int, default: int | None = None) -> int | None:
    values = tags.get(tag)
    if not values:
        return default
    value = values[0]
    return int(value) if isinstance(value, (int, float)) else default


def _uniform(tags: dict[int, tuple[int | float | bytes, ...]], tag: int, samples: int, default: int) -> int | None:
    values = tags.get(tag, (default,))
    if len(values) not in (1, samples) or len(set(values)) != 1 or not isinstance(values[0], int):
        return None
    return int(values[0])


def _level(tags: dict[int, tuple[int | float | bytes, ...]]) -> tuple[TiffLevel, tuple[int | None, ...]] | None:
    width, height = _first(tags, WIDTH), _first(tags, HEIGHT)
    tw, th = _first(tags, TILE_WIDTH), _first(tags, TILE_HEIGHT)
    offsets, counts = tags.get(TILE_OFFSETS), tags.get(TILE_COUNTS)
    if not (width and height and tw and th and offsets and counts) or len(offsets) != len(counts):
        return None  # stripped, or not an image this module reads
    samples = _first(tags, SAMPLES, 1) or 1
    bits = _uniform(tags, BITS, samples, 1)
    fmt = _uniform(tags, SAMPLE_FORMAT, samples, 1)
    level = TiffLevel(width, height, tw, th, tuple(int(o) for o in offsets), tuple(int(c) for c in counts))
    key = (samples, bits, fmt, _first(tags, PLANAR, 1), _first(tags, COMPRESSION, 1), _first(tags, PREDICTOR, 1),
           _first(tags, PHOTOMETRIC, 1), _first(tags, FILL_ORDER, 1), _first(tags, ORIENTATION, 1))
    return level, key


def parse_tiff(data: bytes | memoryview) -> TiffLayout | None:
    """The layout of a tiled TIFF from its first bytes, or ``None`` when this module cannot read its
    pixels as GDAL would (stripped, another codec, odd sample sizes, a point-registered or rotated
    geotransform, IFDs or tile arrays beyond ``data``, overviews unlike the image)."""
    ifds = read_ifds(data)
    if not ifds:
        return None
    main = ifds[0]
    first = _level(main)
    if first is None or (_first(main, NEW_SUBFILE_TYPE, 0) or 0) & 5:
        return None
    level0, key = first
    samples, bits, fmt, planar, compression, predictor, photometric, fill_order, orientation = key
    if (bits not in (8, 16, 32, 64) or fmt not in _KINDS or planar not in (1, 2) or fill_order != 1
            or orientation != 1 or compression not in (NO_COMPRESSION, DEFLATE, OLD_DEFLATE)
            or photometric == 6 or samples is None or samples < 1):
        return None
    kind = _KINDS[fmt]
    if (kind == "f" and bits not in (32, 64)) or predictor not in (1, 2, 3) or (predictor == 2 and kind == "f") or (
            predictor == 3 and kind != "f"):
        return None
    assert bits is not None
    dtype = np.dtype(f"{kind}{bits // 8}").newbyteorder("<" if bytes(data[:2]) == b"II" else ">")
    per_plane = level0.tiles_across * level0.tiles_down
    if len(level0.offsets) != per_plane * (samples if planar == 2 else 1):
        return None
    levels = [level0]
    for tags in ifds[1:]:
        subtype = _first(tags, NEW_SUBFILE_TYPE, 0) or 0
        if subtype & 4 or not subtype & 1:
            continue  # a mask, or another image: GDAL does not read either as an overview
        got = _level(tags)
        if got is None or got[1] != key:
            return None  # an overview GDAL may read differently: let GDAL do it
        lv = got[0]
        if len(lv.offsets) != lv.tiles_across * lv.tiles_down * (samples if planar == 2 else 1):
            return None
        levels.append(lv)
    transform = _geotransform(main)
    if transform is False or transform is True:
        return None
    nodata = _nodata(main, dtype)
    if nodata is False:
        return None
    return TiffLayout(dtype, samples, planar or 1, compression, predictor, tuple(levels), nodata, transform or None)


def _nodata(tags: dict[int, tuple[int | float | bytes, ...]], dtype: np.dtype) -> float | int | bool | None:
    """GDAL_NODATA as GDAL reads it for ``dtype``: a double, rounded to float32 in float32 files
    (1e39 is inf there); for 64-bit integer files only a plain integer in range is taken (GDAL
    parses those with strtoll/strtoull: ``False`` sends anything else to GDAL)."""
    raw = tags.get(GDAL_NODATA)
    if not raw or not isinstance(raw[0], bytes):
        return None
    text = raw[0].decode("ascii", "replace").strip()
    if dtype.kind in "iu" and dtype.itemsize == 8:
        info = np.iinfo(dtype)
        if not _INTEGER.fullmatch(text) or not info.min <= int(text) <= info.max:
            return False
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return None
    if dtype.kind == "f" and dtype.itemsize == 4:
        with np.errstate(over="ignore", under="ignore"):
            value = float(np.float32(value))
    return value


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _geotransform(tags: dict[int, tuple[int | float | bytes, ...]]
                  ) -> tuple[float, float, float, float, float, float] | bool | None:
    """The affine transform GDAL reads from the GeoTIFF tags; ``None`` without any, ``False`` when
    GDAL would shift or refuse it (a point-registered raster, several tie points)."""
    keys = tags.get(GEO_KEYS, ())
    for k in range(4, len(keys) - 3, 4):
        if keys[k] == 1025 and keys[k + 1] == 0 and keys[k + 3] == 2:  # GTRasterTypeGeoKey: RasterPixelIsPoint
            return False
    matrix = tags.get(MODEL_TRANSFORM)
    if matrix:
        if len(matrix) != 16:
            return False
        m = [float(v) for v in matrix if isinstance(v, (int, float))]
        return (m[0], m[1], m[3], m[4], m[5], m[7])
    scale, tie = tags.get(PIXEL_SCALE), tags.get(TIEPOINT)
    if not scale and not tie:
        return None
    if not scale or not tie or len(tie) != 6 or len(scale) < 2:
        return False
    sx, sy = float(scale[0]), float(scale[1])
    i, j, _, x, y, _ = (float(v) for v in tie)
    return (sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy)


def decode_tile(layout: TiffLayout, data: bytes | memoryview, level: int, rows: np.ndarray | None = None,
                cols: np.ndarray | None = None) -> np.ndarray:
    """A tile's samples, native byte order, ``(rows, cols, samples)`` (one sample for a plane of a
    planar file); only the tile ``rows`` and ``cols`` given (indexes, increasing; default all):
    a decimated read undoes the predictor of the rows it keeps and reorders the pixels it keeps.
    Raises :class:`TiffError` when the bytes do not hold a whole tile."""
    lv = layout.levels[level]
    height, width = lv.tile_height, lv.tile_width
    per_pixel = layout.samples if layout.planar == 1 else 1
    item = layout.dtype.itemsize
    want = height * width * per_pixel * item
    raw: bytes | bytearray | memoryview
    if layout.compression in (DEFLATE, OLD_DEFLATE):
        try:
            raw = _inflate(data, want)
        except zlib.error as exc:
            raise TiffError(f"a tile does not inflate: {exc}") from exc
    else:
        raw = data
    if len(raw) < want:
        raise TiffError(f"a tile holds {len(raw)} bytes, {want} expected")
    ry = _index(rows, height)
    rx = _index(cols, width)
    native = layout.dtype.newbyteorder("=")
    if layout.predictor == 3:
        # Floating point predictor: each row holds its samples' bytes as planes, most significant
        # first, differenced along the row (stride: samples per pixel).
        planes = np.frombuffer(raw, dtype=np.uint8, count=want).reshape(height, width * item * per_pixel)[ry]
        planes = _undo_differences(planes, per_pixel)
        n = planes.shape[0]
        kept = planes.reshape(n, item, width, per_pixel)[:, :, rx]
        m = kept.shape[2]
        out = np.empty((n, m, per_pixel), dtype=native)
        msb_first = kept.reshape(n, item, m * per_pixel).transpose(0, 2, 1)
        out.view(np.uint8).reshape(n, m * per_pixel, item)[...] = (
            msb_first[..., ::-1] if sys.byteorder == "little" else msb_first)
        return out
    samples = np.frombuffer(raw, dtype=layout.dtype, count=want // item).reshape(height, width * per_pixel)[ry]
    if layout.predictor == 2:
        values = _undo_differences(samples.astype(native), per_pixel)  # adds wrap around, as libtiff's do
        return values.reshape(values.shape[0], width, per_pixel)[:, rx]
    return samples.reshape(samples.shape[0], width, per_pixel)[:, rx].astype(native)


def _index(idx: np.ndarray | None, n: int) -> slice | np.ndarray:
    """``idx`` (increasing) as a slice when it is evenly spaced (a view, not a copy)."""
    if idx is None:
        return slice(0, n)
    if len(idx) == 1:
        return slice(int(idx[0]), int(idx[0]) + 1)
    if len(idx) > 1:
        steps = np.diff(idx)
        step = int(steps[0])
        if step > 0 and (steps == step).all():
            return slice(int(idx[0]), int(idx[-1]) + 1, step)
    return idx


def _undo_differences(a: np.ndarray, stride: int) -> np.ndarray:
    """Running sums along each row of ``a`` (in its own type; ``a`` is overwritten), every
    ``stride``-th element together: a prefix sum by doubling, log2(row) whole-array adds between
    two buffers (numpy's cumsum along a row is a scalar loop, ~2.5x slower here)."""
    n = a.shape[1]
    src, dst = a, np.empty_like(a)
    spare = a if a.flags.writeable else None  # a read-only input is only read
    k = stride
    while k < n:
        dst[:, :k] = src[:, :k]
        np.add(src[:, k:], src[:, : n - k], out=dst[:, k:])
        if spare is None:
            spare = np.empty_like(a)
        src, dst = dst, (spare if src is a else src)
        k *= 2
    return src


def paste_tiles(layout: TiffLayout, plan: ReadPlan, tiles: dict[tuple[int, int, int], bytes | None],
                bands: Sequence[int], out: np.ndarray) -> None:
    """Fill ``out`` (len(bands), rows, cols) from decoded tiles of ``plan``. ``tiles`` maps
    ``(tile row, tile column, band)`` (band 0 for pixel-interleaved files) to the tile's bytes, or
    ``None`` for a sparse tile (GDAL fills those with the file's nodata, else 0)."""
    lv = layout.levels[plan.level]
    trow_of = plan.rows // lv.tile_height
    tcol_of = plan.cols // lv.tile_width
    fill = layout.nodata if layout.nodata is not None else 0
    for (trow, tcol, band), data in tiles.items():
        ysel = np.flatnonzero(trow_of == trow)
        xsel = np.flatnonzero(tcol_of == tcol)
        if not len(ysel) or not len(xsel):
            continue
        ys = slice(ysel[0], ysel[-1] + 1)
        xs = slice(xsel[0], xsel[-1] + 1)
        targets = list(range(len(bands))) if layout.planar == 1 else [i for i, b in enumerate(bands) if b - 1 == band]
        if data is None:
            for t in targets:
                out[t, ys, xs] = _cast_fill(fill, out.dtype)
            continue
        block = decode_tile(layout, data, plan.level, plan.rows[ysel] - trow * lv.tile_height,
                            plan.cols[xsel] - tcol * lv.tile_width)
        for t in targets:
            sample = bands[t] - 1 if layout.planar == 1 else 0
            out[t, ys, xs] = block[:, :, sample]


def _cast_fill(fill: float | int, dtype: np.dtype) -> float | int:
    """``fill`` in ``dtype`` as GDAL copies a double into it: NaN is 0, halves rounded away from
    zero, saturated."""
    if dtype.kind not in "iu":
        return fill
    if isinstance(fill, float):
        if math.isnan(fill):
            return 0
        if math.isinf(fill):
            fill = int(np.iinfo(dtype).max if fill > 0 else np.iinfo(dtype).min)
        else:
            fill = int(math.copysign(math.floor(abs(fill) + 0.5), fill))
    info = np.iinfo(dtype)
    return min(max(int(fill), int(info.min)), int(info.max))
