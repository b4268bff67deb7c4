"""Read one source's pixels into part of an output chunk: paste, decimate (overviews) or warp.

For each (source, chunk) pair the geometry is worked out from metadata by odc-geo
(:func:`odc.geo.overlap.compute_reproject_roi`): which source window feeds which part of the
chunk, whether a plain read can paste it (same grid, integer scale: the right overview is read
by GDAL's rule) or it needs warping (another CRS, a non-integer scale: we pick the overview
level the way odc-stac does and let GDAL warp from it). A small paste of a file laid out as GDAL
writes COGs is read without GDAL (:mod:`._native`, same pixels); everything else goes through
GDAL. Many sources into one region, fused: :mod:`._region`.

Datasets are opened by one thread of the process and lent to the reading threads (:mod:`._pool`),
kept open between reads, keyed by file id and overview level: the header is read once per file
and process (and kept on disk for the next ones, :mod:`._headers`), and an expired URL is
re-signed underneath a dataset without reopening it.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
import rasterio
import rasterio.errors
import rasterio.vrt
from affine import Affine
from odc.geo import xy_
from odc.geo.geobox import GeoBox
from odc.geo.math import is_almost_int, maybe_int, snap_affine
from odc.geo.overlap import LinearPointTransform, ReprojectInfo, box_overlap
from odc.geo.roi import scaled_up_roi
from odc.geo.types import NormalizedROI, NormalizedSlice
from odc.geo.warp import resampling_s2rio
from rasterio._err import CPLE_BaseError
from rasterio.windows import Window

from fusion_stac.xarray._errors import RasterReadError
from fusion_stac.xarray._http import (
    DEFAULT_SETTINGS,
    FetchSettings,
    SourceOpener,
    StaleHeaderError,
    coarse_first_request,
    load_header,
)
from fusion_stac.xarray._native import read_native
from fusion_stac.xarray._pool import (
    _HANDLES,
    _OPENER,
    GDAL_OPTIONS,
    _close,
    _Handle,
    adopt_thread,
    close_handles,
    in_gdal_context,
    warm_opener,
)
from fusion_stac.xarray._source import FileKey, RasterSource
from fusion_stac.xarray._storage import Storage
from fusion_stac.xarray._warp import EXACT_TOLERANCE, Placement, exact_index, reproject_info

# rasterio.warp.reproject into a numpy array warns, now and then when warps run in several threads, that its
# in-memory destination "has no geotransform" while it has one (rasterio's MEM dataset; odc-geo #131): noise.
warnings.filterwarnings("ignore", message="Dataset has no geotransform", category=rasterio.errors.NotGeoreferencedWarning,
                        module=r"rasterio\.warp")

__all__ = ["GDAL_OPTIONS", "METHODS", "ReadConfig", "adopt_thread", "close_handles", "describe_file", "nodata_mask",
           "warm_opener"]

T = TypeVar("T")

METHODS = ("first", "last", "min", "max", "mean")


@dataclass(frozen=True)
class ReadConfig:
    """How to turn source pixels into output pixels (plain values: it travels in the graph)."""

    bands: tuple[int, ...]  # 1-based band indexes in the sources
    dtype: str  # output data type
    fill: float | None  # output nodata; None: integer output without nodata (fills with 0)
    resampling: str = "nearest"
    method: str = "first"
    use_overviews: bool = True
    settings: FetchSettings = DEFAULT_SETTINGS

    @property
    def fill_value(self) -> float:
        """What uncovered pixels hold."""
        return 0 if self.fill is None else self.fill

    @property
    def nearest(self) -> bool:
        return self.resampling == "nearest"


# ------------------------------------------------------------------------------------------
# nodata helpers


def nodata_mask(pix: np.ndarray, nodata: float | None) -> np.ndarray:
    """True where ``pix`` holds no data (``nodata``, or NaN in float arrays)."""
    if pix.dtype.kind in "fc":
        if nodata is None or math.isnan(nodata):
            return np.isnan(pix)
        return np.isnan(pix) | (pix == nodata)
    if nodata is None:
        return np.zeros(pix.shape, dtype=bool)
    return pix == nodata


def _same_nodata(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b



def _handle_key(source: RasterSource, overview: int | None, transport: Any) -> tuple[Any, ...]:
    # By file id (never URL); per transport, so that two accounts never share a handle.
    return (source.key, overview, id(transport))


@contextmanager
def _lease(source: RasterSource, storage: Storage, settings: FetchSettings,
           overview: int | None = None, first: int = 0) -> Iterator[_Handle]:
    """A dataset on ``source`` (or one of its overview levels) for this thread's exclusive use;
    given back afterwards, or closed if anything went wrong while it was out. ``first``: bytes for
    the file's first request, if it is made here (:func:`_first_request`)."""
    transport = storage.transport()
    key = _handle_key(source, overview, transport)
    got = _HANDLES.take(key)
    handle = None
    if isinstance(got, Future):
        with contextlib.suppress(Exception):  # opened ahead, and that failed: try again here
            handle = got.result()
    else:
        handle = got
    if handle is None:
        # The header travels on this thread (fetches run in parallel); the open, on the opener's.
        load_header(transport, source.key, source.label, settings, source.size, first)
        handle = _OPENER.run(_open_dataset, source, transport, settings, overview)
    ok = False
    try:
        yield handle
        ok = True
    finally:
        if ok:
            _HANDLES.give(key, handle)
        else:
            _close(handle)


def _open_dataset(source: RasterSource, transport: Any, settings: FetchSettings, overview: int | None) -> _Handle:
    name = source.key.url
    opener = SourceOpener(name, source.key, transport, source.label, settings, source.size)
    kwargs: dict[str, Any] = {} if overview is None else {"overview_level": overview}
    try:
        dataset = rasterio.open(name, opener=opener, **kwargs)
    except rasterio.errors.RasterioError as exc:
        failure = opener.take_failure()
        if failure is not None:
            raise failure from None
        raise RasterReadError(f"{source.label}: GDAL cannot open it as a raster: {exc}", source=source.label) from exc
    if overview is None:
        _check_matches(source, dataset)
    return _Handle(dataset, opener)


def _check_matches(source: RasterSource, ds: rasterio.io.DatasetReader) -> None:
    """Metadata said one grid, the file says another: reading would put pixels in the wrong place."""
    problems = source.mismatches((ds.height, ds.width), ds.count, tuple(ds.transform)[:6])
    if problems:
        ds.close()
        raise RasterReadError(f"{source.label}: the file does not match its metadata: {'; '.join(problems)}",
                              source=source.label)


@contextmanager
def _reading(source: RasterSource, handle: _Handle) -> Iterator[None]:
    """Turn GDAL failures into errors naming the slice (the lease then drops the handle and its
    cached blocks)."""
    try:
        yield
    except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
        failure = handle.opener.take_failure()
        if failure is not None:
            raise failure from None
        raise RasterReadError(f"{source.label}: GDAL could not read it: {exc}", source=source.label) from exc
    failure = handle.opener.take_failure()
    if failure is not None:
        # GDAL swallowed a failed fetch (or decoded a short buffer): never return those pixels.
        raise failure


# ------------------------------------------------------------------------------------------
# one source -> one array


def _reproject_info(source: RasterSource, dst: GeoBox, cfg: ReadConfig) -> ReprojectInfo:
    """Windows of a paste (odc-geo's rules), else of a warp (exact, antimeridian-aware: _warp)."""
    ttol = 0.9 if cfg.nearest else 0.05
    return _paste_info(source.geobox, dst, ttol) or reproject_info(source.geobox, dst)


def _paste_info(src: GeoBox, dst: GeoBox, ttol: float, stol: float = 1e-3) -> ReprojectInfo | None:
    """What :func:`~odc.geo.overlap.compute_reproject_roi` answers when ``src`` pastes into ``dst``
    (same CRS, north-up grids, integer scale, whole-pixel shift: a group's slices), in plain
    arithmetic; ``None`` for anything else. odc-geo takes the general route (a matrix decomposition,
    a few small numpy calls that each release and retake the GIL): ~0.25 ms a slice, several ms
    per window when reading threads hold the GIL, on the critical path of every read. Same rules,
    same helpers; a property test holds the two to the same windows."""
    if not (isinstance(src, GeoBox) and isinstance(dst, GeoBox)) or src.crs != dst.crs:
        return None
    st, dt = src.transform, dst.transform
    if st.b or st.d or dt.b or dt.d:
        return None
    fwd = (~dt) @ st  # src pixel -> dst pixel, as odc-geo computes it
    A = ~fwd  # dst pixel -> src pixel
    if A.a <= 0 or A.e <= 0:
        return None  # flipped axes: not a paste
    scale = min(A.a, A.e)
    if not is_almost_int(scale, stol):
        return None
    shrink = _read_shrink(scale)
    A_ = Affine.scale(1 / shrink, 1 / shrink) @ A
    if abs(A_.a - 1) > stol or abs(A_.e - 1) > stol or not (is_almost_int(A_.c, ttol) and is_almost_int(A_.f, ttol)):
        return None
    if shrink == 1:
        roi_src, roi_dst = box_overlap(src.shape, dst.shape, snap_affine(A, ttol=ttol, stol=stol))
    else:
        roi_src, roi_dst = box_overlap(src.zoom_out(shrink).shape, dst.shape, snap_affine(A_, ttol=ttol, stol=stol))
        roi_src = scaled_up_roi(roi_src, shrink)
    return ReprojectInfo(roi_src=roi_src, roi_dst=roi_dst, scale=scale, scale2=xy_(A.a, A.e), paste_ok=True,
                         read_shrink=shrink, transform=LinearPointTransform(fwd))


def _read_shrink(scale: float, tol: float = 1e-3) -> int:
    """The integer shrink factor odc-geo reads at (2.9999 -> 3, 2.8 -> 2, below 1 -> 1)."""
    return 1 if scale < 1 else int(maybe_int(scale, tol))


def _pick_overview(read_shrink: int, factors: Sequence[int]) -> int | None:
    """Index of the coarsest overview that is still at least as fine as asked (odc-stac's rule)."""
    best = None
    for idx, factor in enumerate(factors):
        if factor <= read_shrink:
            best = idx
        else:
            break
    return best


def _first_request(source: RasterSource, rr: ReprojectInfo, cfg: ReadConfig) -> int:
    """Bytes for the first request of ``source`` when read as ``rr`` says: a COG read at a coarse
    level gets that level with its header, in one request (a round trip per file saved)."""
    if not (source.cog and cfg.use_overviews):
        return cfg.settings.header_bytes
    return coarse_first_request(cfg.settings, source.size, rr.read_shrink, source.overviews)


def native_candidate(rr: ReprojectInfo, cfg: ReadConfig) -> bool:
    """A read :mod:`._native` may do without GDAL (a nearest-neighbour paste), if the file allows."""
    return bool(rr.paste_ok) and cfg.nearest


def _read_source(source: RasterSource, rr: ReprojectInfo, dst_gbox: GeoBox, cfg: ReadConfig,
                 storage: Storage, out: np.ndarray, where: Placement) -> None:
    """Fill ``out`` (bands, rows, cols of ``dst_gbox[rr.roi_dst]``, output dtype) from ``source``.

    Pixels the source does not cover hold the output fill value. A header that turns out to be of
    another version of the file than storage now serves (kept on disk, :mod:`._headers`) is dropped,
    and the read done again from storage, once.
    """
    try:
        _read_source_once(source, rr, dst_gbox, cfg, storage, out, where)
    except StaleHeaderError:
        _HANDLES.forget_file(source.key)
        _read_source_once(source, rr, dst_gbox, cfg, storage, out, where)


def _read_source_once(source: RasterSource, rr: ReprojectInfo, dst_gbox: GeoBox, cfg: ReadConfig,
                      storage: Storage, out: np.ndarray, where: Placement) -> None:
    first = _first_request(source, rr, cfg)
    if native_candidate(rr, cfg):
        ys, xs = rr.roi_src
        pix = read_native(source, (ys.start, ys.stop), (xs.start, xs.stop), out.shape, cfg.bands, storage,
                          cfg.settings, first, out if np.dtype(source.dtype) == out.dtype else None)
        if pix is not None:
            _pasted(source, pix, cfg, out)
            return
    # GDAL's environment is entered here, not for every read: a thread's first one costs a few ms
    # (the first in a process registers GDAL's drivers), which reads without GDAL never pay.
    in_gdal_context(_read_with_gdal, source, rr, dst_gbox, cfg, storage, out, where, first)


def _read_with_gdal(source: RasterSource, rr: ReprojectInfo, dst_gbox: GeoBox, cfg: ReadConfig,
                    storage: Storage, out: np.ndarray, where: Placement, first: int) -> None:
    with _lease(source, storage, cfg.settings, first=first) as handle:
        ds = handle.dataset
        ys, xs = rr.roi_src
        in_bounds = ys.stop <= ds.height and xs.stop <= ds.width and ys.start >= 0 and xs.start >= 0
        if rr.paste_ok and in_bounds:
            _paste(source, ys, xs, cfg, handle, out)
            return
        # Warp: from the overview level that is still finer than the output.
        overview = None
        if cfg.use_overviews and rr.read_shrink > 1:
            overview = _pick_overview(rr.read_shrink, ds.overviews(cfg.bands[0]))
        if overview is None:
            _warp(source, rr, dst_gbox, cfg, handle, out, where)
            return
    with _lease(source, storage, cfg.settings, overview, first) as handle:
        _warp(source, rr, dst_gbox, cfg, handle, out, where)


def _paste(source: RasterSource, ys: NormalizedSlice, xs: NormalizedSlice, cfg: ReadConfig, handle: _Handle,
           out: np.ndarray) -> None:
    """Same grid (maybe decimated by an integer factor): one RasterIO call; with a smaller buffer
    than the window GDAL reads the matching overview itself."""
    resampling = resampling_s2rio(cfg.resampling)
    window = Window.from_slices(ys, xs)
    with _reading(source, handle):
        if np.dtype(source.dtype) == out.dtype:
            handle.dataset.read(list(cfg.bands), window=window, out=out, resampling=resampling)
            pix = out
        else:
            pix = handle.dataset.read(list(cfg.bands), window=window, out_shape=out.shape, resampling=resampling)
    _pasted(source, pix, cfg, out)


def _pasted(source: RasterSource, pix: np.ndarray, cfg: ReadConfig, out: np.ndarray) -> None:
    """Source pixels ``pix`` (``out`` itself when the types agree) made output pixels in ``out``."""
    src_nodata = source.nodata
    if pix is out:
        if not _same_nodata(src_nodata, cfg.fill) and src_nodata is not None:
            np.copyto(out, out.dtype.type(cfg.fill_value), where=nodata_mask(out, src_nodata))
    else:
        _convert_into(pix, src_nodata, out, cfg.fill_value)


def _warp(source: RasterSource, rr: ReprojectInfo, dst_gbox: GeoBox, cfg: ReadConfig, handle: _Handle,
          out: np.ndarray, where: Placement) -> None:
    if cfg.nearest:
        _warp_nearest(source, rr, cfg, handle, out, where)
        return
    src_nodata = source.nodata
    fill = cfg.fill_value
    native = np.dtype(source.dtype) == out.dtype
    sub = dst_gbox[rr.roi_dst]
    target = np.empty(out.shape, dtype=source.dtype)
    warp_fill = fill if native else (src_nodata if src_nodata is not None else _dtype_fill(source.dtype))
    # A warped VRT, not rasterio.warp.reproject: reproject always interpolates coordinates with
    # GDAL's approximate transformer (1/8 pixel, whatever error_threshold says); here the tolerance
    # is ~0, i.e. exact transforms (see _warp.py).
    with _reading(source, handle), rasterio.vrt.WarpedVRT(
        handle.dataset, crs=sub.crs.to_wkt() if sub.crs is not None else None, transform=sub.transform,
        width=sub.shape.x, height=sub.shape.y, nodata=warp_fill, src_nodata=src_nodata,
        resampling=resampling_s2rio(cfg.resampling), tolerance=EXACT_TOLERANCE,
    ) as vrt:
        vrt.read(list(cfg.bands), out=target)
    if native:
        out[...] = target
        if src_nodata is not None and not _same_nodata(src_nodata, cfg.fill):
            np.copyto(out, out.dtype.type(fill), where=nodata_mask(out, src_nodata))
    else:
        _convert_into(target, warp_fill, out, fill)


def _warp_nearest(source: RasterSource, rr: ReprojectInfo, cfg: ReadConfig, handle: _Handle, out: np.ndarray,
                  where: Placement) -> None:
    """Nearest neighbour, each output pixel from the source pixel its exact position falls in (see
    :mod:`fusion_stac.xarray._warp`): the same pixels whatever the chunking."""
    ds = handle.dataset
    ys, xs = _np_roi(rr.roi_dst)
    rows, cols, ok = exact_index(ds.transform, (ds.height, ds.width), source.geobox, where, ys, xs)
    fill = out.dtype.type(cfg.fill_value)
    if not ok.any():
        out[...] = fill
        return
    r, c = rows[ok], cols[ok]
    r0, c0 = int(r.min()), int(c.min())
    window = Window(c0, r0, int(c.max()) - c0 + 1, int(r.max()) - r0 + 1)
    with _reading(source, handle):
        pix = ds.read(list(cfg.bands), window=window)
    picked = pix[:, r - r0, c - c0]
    converted = np.empty(picked.shape, dtype=out.dtype)
    _convert_into(picked, source.nodata, converted, cfg.fill_value)
    out[...] = fill
    out[:, ok] = converted


def _dtype_fill(dtype: str) -> float:
    return float("nan") if np.dtype(dtype).kind == "f" else 0


def _convert_into(pix: np.ndarray, src_nodata: float | None, out: np.ndarray, fill: float) -> None:
    """Cast source pixels to the output type; source nodata becomes the output fill."""
    np.copyto(out, pix, casting="unsafe")
    if src_nodata is not None or pix.dtype.kind == "f":
        np.copyto(out, out.dtype.type(fill), where=nodata_mask(pix, src_nodata))


# ------------------------------------------------------------------------------------------
# many sources -> one region


def _np_roi(roi: NormalizedROI) -> tuple[slice, slice]:
    """``roi`` as numpy indices. odc-geo types its windows as the ``NormalizedSlice`` protocol (a
    slice whose start and stop are ints), which numpy's stubs do not take as an index; at run time
    they are builtin ``slice`` objects."""
    return cast("tuple[slice, slice]", roi)


# ------------------------------------------------------------------------------------------
# metadata from a header (for files known only by path)


def describe_file(key: FileKey, storage: Storage, *, size: int | None, label: str,
                  settings: FetchSettings = DEFAULT_SETTINGS) -> RasterSource:
    """A :class:`RasterSource` read from a file's header (one request; the header is then cached,
    so reading the pixels later costs no second header request)."""

    def run() -> RasterSource:
        opener = SourceOpener(key.url, key, storage.transport(), label, settings, size)
        try:
            ds = rasterio.open(key.url, opener=opener)
        except rasterio.errors.RasterioError as exc:
            failure = opener.take_failure()
            if failure is not None:
                raise failure from None
            raise RasterReadError(f"{label}: GDAL cannot open it as a raster: {exc}", source=label) from exc
        try:
            if ds.crs is None:
                raise RasterReadError(f"{label}: the raster has no CRS; it cannot be placed on a map", source=label)
            names = tuple(d or str(i + 1) for i, d in enumerate(ds.descriptions))
            return RasterSource(
                key=key, crs=ds.crs.to_wkt() if ds.crs.to_epsg() is None else f"EPSG:{ds.crs.to_epsg()}",
                transform=tuple(ds.transform)[:6],
                shape=(ds.height, ds.width), dtype=ds.dtypes[0], count=ds.count, nodata=ds.nodata,
                size=size, cog=ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "").upper() == "COG",
                overviews=tuple(ds.overviews(1)),
                band_names=names if len(set(names)) == len(names) else (),
                scales=tuple(ds.scales), offsets=tuple(ds.offsets), units=tuple(u or None for u in ds.units),
                label=label,
            )
        finally:
            ds.close()

    # A description is never taken from a header storage has not confirmed (nothing else is read).
    load_header(storage.transport(), key, label, settings, size, verify=True)
    return _OPENER.run(run)
