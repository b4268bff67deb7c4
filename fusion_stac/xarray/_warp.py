"""Exact, chunk-independent warping: which source pixel feeds which output pixel.

Nearest-neighbour warps are computed here, not by GDAL's approximate transformer: for every output
pixel, its centre is computed from the *whole* output grid and its global index
(``x = c + a * (col + 0.5) + b * (row + 0.5)``, one rounding per operation, whatever the window),
transformed exactly by PROJ (pyproj, point by point), and mapped to a source pixel with the source's
inverse geotransform, ``floor(.. + 1e-10)`` as GDAL's nearest kernel does. So an output pixel always
comes from the same source pixel, however the work is chunked, threaded or spread over processes;
with ``error_threshold=0`` GDAL's warper picks the same pixels (the tests hold the two together).
Other resamplings still go through GDAL, with ``error_threshold=0`` (exact transforms, no
interpolation of coordinates between chunk edges).

Windows (which output pixels a source may touch, which source pixels a window needs) are computed
from densified outlines, longitudes unwrapped around the output grid's centre when the output is in
a geographic CRS: a slice in UTM zone 1 lands east of 180° on a grid that runs past 180° (odc-geo's
``compute_reproject_roi`` wraps it to -179° and misses it).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
from affine import Affine
from odc.geo import XY, xy_
from odc.geo.geobox import GeoBox
from odc.geo.overlap import LinearPointTransform, ReprojectInfo
from pyproj import Transformer

__all__ = ["EXACT_TOLERANCE", "Placement", "exact_index", "reproject_info"]

#: GDAL's approximate-transformer tolerance for warps that GDAL does (non-nearest resampling), in
#: source pixels: small enough that every coordinate is in effect exact (GDAL refuses 0 for a
#: warped VRT; rasterio.warp.reproject always uses 0.125).
EXACT_TOLERANCE = 1e-9

_LOCAL = threading.local()
_EDGE_POINTS = 64
_PAD = 2


@dataclass(frozen=True)
class Placement:
    """Where a window sits in the whole output grid: the parent grid and the window's first
    row/column in it (so pixel centres are computed the same way for every chunking)."""

    parent: GeoBox
    row0: int
    col0: int


def _transformer(src: str, dst: str) -> Transformer:
    """A cached always-xy transformer, one per thread (pyproj transformers are not thread-safe)."""
    cache: dict[tuple[str, str], Transformer] | None = getattr(_LOCAL, "cache", None)
    if cache is None:
        cache = _LOCAL.cache = {}
    t = cache.get((src, dst))
    if t is None:
        t = cache[(src, dst)] = Transformer.from_crs(src, dst, always_xy=True)
    return t


def _crs_key(gbox: GeoBox) -> str:
    crs = gbox.crs
    assert crs is not None
    return crs.to_wkt()


def _transform(src: GeoBox, dst: GeoBox, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if src.crs == dst.crs:
        return x, y
    xx, yy = _transformer(_crs_key(src), _crs_key(dst)).transform(x, y, errcheck=False)
    xx = np.asarray(xx, dtype=np.float64)
    yy = np.asarray(yy, dtype=np.float64)
    bad = ~(np.isfinite(xx) & np.isfinite(yy))
    if bad.any():
        xx = np.where(bad, np.nan, xx)
        yy = np.where(bad, np.nan, yy)
    return xx, yy


def _unwrap_lons(lons: np.ndarray, centre: float) -> np.ndarray:
    """Longitudes shifted by whole turns into [centre - 180, centre + 180)."""
    return lons - 360.0 * np.floor((lons - centre + 180.0) / 360.0)


def _geographic(gbox: GeoBox) -> bool:
    return gbox.crs is not None and gbox.crs.geographic


def _outline(gbox: GeoBox, n: int = _EDGE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-edge outline of ``gbox`` (densified) plus an interior lattice, in its CRS."""
    h, w = gbox.shape.yx
    t = np.linspace(0.0, 1.0, n + 1)
    cols = np.concatenate([t * w, np.full_like(t, w), t[::-1] * w, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), t[::-1] * h])
    lattice = np.linspace(0.0, 1.0, 9)
    lc, lr = np.meshgrid(lattice * w, lattice * h)
    cols = np.concatenate([cols, lc.ravel()])
    rows = np.concatenate([rows, lr.ravel()])
    A = gbox.transform
    return A.a * cols + A.b * rows + A.c, A.d * cols + A.e * rows + A.f


def _to_pixels(gbox: GeoBox, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inv = ~gbox.transform
    return inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f


def _centre_lon(gbox: GeoBox) -> float:
    h, w = gbox.shape.yx
    A = gbox.transform
    return float(A.a * w / 2 + A.b * h / 2 + A.c)


def _window(cols: np.ndarray, rows: np.ndarray, shape: tuple[int, int], pad: int) -> tuple[slice, slice]:
    ok = np.isfinite(cols) & np.isfinite(rows)
    if not ok.any():
        return slice(0, 0), slice(0, 0)
    c0 = max(0, math.floor(float(cols[ok].min())) - pad)
    c1 = min(shape[1], math.ceil(float(cols[ok].max())) + pad)
    r0 = max(0, math.floor(float(rows[ok].min())) - pad)
    r1 = min(shape[0], math.ceil(float(rows[ok].max())) + pad)
    if c1 <= c0 or r1 <= r0:
        return slice(0, 0), slice(0, 0)
    return slice(r0, r1), slice(c0, c1)


def reproject_info(src: GeoBox, dst: GeoBox) -> ReprojectInfo:
    """The windows of ``src`` and ``dst`` that feed each other (padded supersets, never short) and
    the scale of the read, for a warp (``paste_ok`` is always False)."""
    # Output pixels the source may cover: the source's outline, projected onto the output grid.
    x, y = _transform(src, dst, *_outline(src))
    if _geographic(dst):
        x = _unwrap_lons(x, _centre_lon(dst))
    cols, rows = _to_pixels(dst, x, y)
    roi_dst = _window(cols, rows, dst.shape.yx, _PAD)
    empty = (slice(0, 0), slice(0, 0))
    if roi_dst[0].stop <= roi_dst[0].start:
        return ReprojectInfo(roi_src=empty, roi_dst=empty, paste_ok=False, read_shrink=1, scale=1.0,
                             scale2=_xy(1.0, 1.0), transform=LinearPointTransform(Affine.identity()))
    # Source pixels that window needs: its outline and interior, taken back to the source.
    sub = dst[roi_dst]
    sx, sy = _transform(dst, src, *_outline(sub))
    if _geographic(src):
        sx = _unwrap_lons(sx, _centre_lon(src))
    scol, srow = _to_pixels(src, sx, sy)
    roi_src = _window(scol, srow, src.shape.yx, _PAD)
    scale_x, scale_y = _local_scale(src, sub)
    scale = min(scale_x, scale_y)
    shrink = 1 if not math.isfinite(scale) or scale < 1 else int(scale + 1e-3)
    if roi_src[0].stop <= roi_src[0].start:
        roi_dst = empty
    return ReprojectInfo(roi_src=roi_src, roi_dst=roi_dst, paste_ok=False, read_shrink=max(1, shrink),
                         scale=scale if math.isfinite(scale) else 1.0, scale2=_xy(scale_x, scale_y),
                         transform=LinearPointTransform(Affine.identity()))


def _xy(x: float, y: float) -> XY[float]:
    return xy_(x if math.isfinite(x) else 1.0, y if math.isfinite(y) else 1.0)


def _local_scale(src: GeoBox, dst: GeoBox) -> tuple[float, float]:
    """Source pixels per output pixel along x and y, at the centre of ``dst``."""
    h, w = dst.shape.yx
    A = dst.transform
    cols = np.array([w / 2, w / 2 + 1, w / 2])
    rows = np.array([h / 2, h / 2, h / 2 + 1])
    x, y = _transform(dst, src, A.a * cols + A.b * rows + A.c, A.d * cols + A.e * rows + A.f)
    if _geographic(src):
        x = _unwrap_lons(x, float(x[0]) if np.isfinite(x[0]) else 0.0)
    c, r = _to_pixels(src, x, y)
    return float(math.hypot(c[1] - c[0], r[1] - r[0])), float(math.hypot(c[2] - c[0], r[2] - r[0]))


def exact_index(src_transform: Affine, src_shape: tuple[int, int], src: GeoBox, where: Placement,
                rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For output pixels ``[rows, cols]`` of the window placed at ``where``: the source row and column
    of each (``src_transform``/``src_shape``: the level read, full resolution or an overview) and a
    mask of those inside the source. Depends on the global pixel index only (see module doc)."""
    A = where.parent.transform
    gr = (np.arange(rows.start, rows.stop, dtype=np.float64) + (where.row0 + 0.5))[:, None]
    gc = (np.arange(cols.start, cols.stop, dtype=np.float64) + (where.col0 + 0.5))[None, :]
    x = A.a * gc + A.b * gr + A.c
    y = A.d * gc + A.e * gr + A.f
    x, y = np.broadcast_to(x, (gr.size, gc.size)), np.broadcast_to(y, (gr.size, gc.size))
    sx, sy = _transform(where.parent, src, x.ravel(), y.ravel())
    if _geographic(src) and src.crs != where.parent.crs:
        sx = _unwrap_lons(sx, _centre_lon(src))
    inv = ~src_transform
    fc = inv.a * sx + inv.b * sy + inv.c
    fr = inv.d * sx + inv.e * sy + inv.f
    ok = np.isfinite(fc) & np.isfinite(fr)
    fc = np.where(ok, fc, -1.0)
    fr = np.where(ok, fr, -1.0)
    ci = np.floor(fc + 1e-10).astype(np.int64)
    ri = np.floor(fr + 1e-10).astype(np.int64)
    ok &= (ci >= 0) & (ci < src_shape[1]) & (ri >= 0) & (ri < src_shape[0])
    shape = (gr.size, gc.size)
    return ri.reshape(shape), ci.reshape(shape), ok.reshape(shape)
