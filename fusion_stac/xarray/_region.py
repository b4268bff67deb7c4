"""Many sources into one region of the output: which slices touch it, read concurrently, fused.

:func:`fill_region` reads every source that touches a region (:func:`plan_region`, from metadata)
on the reading threads, straight into the output where a source is alone in its part of it, else
into temporaries fused in order (:class:`_Fuser`: first, last, min, max, mean). Files that wait
for a free reader are fetched (and, for GDAL, opened) ahead when storage is slow to answer.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

import numpy as np
from odc.geo.geobox import GeoBox
from odc.geo.overlap import ReprojectInfo
from odc.geo.roi import roi_is_empty, roi_shape
from odc.geo.types import NormalizedROI

from fusion_stac.xarray._http import FetchSettings, cached_header, load_header
from fusion_stac.xarray._native import native_layout
from fusion_stac.xarray._pool import _HANDLES
from fusion_stac.xarray._reader import (
    ReadConfig,
    _first_request,
    _handle_key,
    _np_roi,
    _open_dataset,
    _read_source,
    _reproject_info,
    native_candidate,
    nodata_mask,
)
from fusion_stac.xarray._source import RasterSource
from fusion_stac.xarray._storage import Storage
from fusion_stac.xarray._warp import Placement

__all__ = ["FAST_STORAGE", "fill_region", "plan_region"]


def _intersects(a: NormalizedROI, b: NormalizedROI) -> bool:
    return all(x.start < y.stop and y.start < x.stop for x, y in zip(a, b, strict=True))


@dataclass
class _Part:
    source: RasterSource
    rr: ReprojectInfo
    alone: bool  # no other source writes into this part of the region


def plan_region(sources: Iterable[RasterSource], dst: GeoBox, cfg: ReadConfig) -> list[_Part]:
    """The sources that touch ``dst``, in fusing order, with their windows (no I/O)."""
    parts: list[_Part] = []
    ordered = list(sources)
    if cfg.method == "last":
        ordered.reverse()
    for source in ordered:
        rr = _reproject_info(source, dst, cfg)
        if roi_is_empty(rr.roi_dst) or roi_is_empty(rr.roi_src):
            continue
        parts.append(_Part(source, rr, True))
    for i, part in enumerate(parts):
        for j, other in enumerate(parts):
            if i != j and _intersects(part.rr.roi_dst, other.rr.roi_dst):
                part.alone = False
                break
    return parts


def fill_region(dst: np.ndarray, dst_gbox: GeoBox, sources: Sequence[RasterSource], cfg: ReadConfig,
                storage: Storage, executor: Executor | None = None, *, filled: bool = True,
                where: Placement | None = None) -> np.ndarray:
    """Read ``sources`` into ``dst`` (bands, rows, cols of ``dst_gbox``), fusing overlaps.

    ``filled``: ``dst`` already holds the fill value; otherwise it is filled here, except where
    sources are about to write every pixel anyway (a mosaic the slices tile exactly is never
    written twice). With an ``executor``, sources are read concurrently (reads that land in
    disjoint parts of ``dst`` write straight into it). ``where``: the place of ``dst_gbox`` in the
    whole output grid (default: it is the whole grid); warped pixels depend on that place only.
    """
    if where is None:
        where = Placement(dst_gbox, 0, 0)
    parts = plan_region(sources, dst_gbox, cfg)
    if len(parts) == 1 and cfg.method != "mean":
        parts[0].alone = True
    if not filled:
        direct_area = sum(int(np.prod(roi_shape(p.rr.roi_dst))) for p in parts if p.alone and cfg.method != "mean")
        if direct_area != dst.shape[1] * dst.shape[2] or len(parts) != sum(p.alone for p in parts):
            dst[...] = dst.dtype.type(cfg.fill_value)
    if not parts:
        return dst
    # Files that will wait for a free reader get their URL, header and dataset in the background;
    # the first ones are started by the readers themselves. One task hands the rest out: this
    # thread, about to start the readers, must not queue for the GIL once per file (each hand-off
    # to a busy pool can cost it a whole switch interval, 5 ms).
    readers = getattr(executor, "_max_workers", 1) if executor is not None else 1
    if len(parts) > readers:
        transport = storage.transport()
        ahead = [(p.source, _first_request(p.source, p.rr, cfg), native_candidate(p.rr, cfg))
                 for p in parts[readers:]]
        transport.pool.submit(_quietly, _prefetch, storage, ahead, cfg.settings)

    def direct(part: _Part) -> None:
        ys, xs = _np_roi(part.rr.roi_dst)
        _read_source(part.source, part.rr, dst_gbox, cfg, storage, dst[:, ys, xs], region_at)

    def to_temp(part: _Part) -> np.ndarray:
        shape = (dst.shape[0], *roi_shape(part.rr.roi_dst))
        tmp = np.empty(shape, dtype=dst.dtype)
        _read_source(part.source, part.rr, dst_gbox, cfg, storage, tmp, region_at)
        return tmp

    region_at = where
    fuser = _Fuser(dst, cfg)
    jobs: list[tuple[_Part, Callable[[_Part], Any]]] = [
        (p, direct if (p.alone and cfg.method != "mean") else to_temp) for p in parts
    ]
    def serial() -> None:
        for part, result in _run(jobs, executor):
            if result is not None:
                fuser.add(part.rr.roi_dst, result)

    serial()
    fuser.finish()
    return dst


def _prefetch(storage: Storage, sources: Sequence[tuple[RasterSource, int, bool]], settings: FetchSettings) -> None:
    """Sign the URLs and fetch the headers of the files a region needs, in the background, and
    open the datasets ahead on the opener thread (not for files read without GDAL, ``native``):
    while one file decodes, the next ones are ready (no-ops when open or cached; a reader that
    arrives first waits for the work in flight rather than repeating it). At most half the handle
    capacity is opened ahead.

    Files read without GDAL are fetched ahead only from slow storage (no answer within
    :data:`FAST_STORAGE`): from a fast one a reader has its header back before it could use a head
    start, and fetching ahead only takes CPU from the decoding threads (a cold 1/8 read of 16
    slices from nginx on loopback: 144 ms ahead, 116 ms without; with 20 ms per request, 174 ms
    ahead and 210 ms without)."""
    transport = storage.transport()
    if any(native for _, _, native in sources):
        answered = transport.round_trip(wait=0.1)
        if answered is not None and answered < FAST_STORAGE:
            sources = [s for s in sources if not s[2]]
    ahead = _HANDLES.capacity // 2
    for source, first, native in sources:
        key = _handle_key(source, None, transport)
        if _HANDLES.known(key):
            continue
        if ahead > 0:
            ahead -= 1
            transport.pool.submit(_quietly, _open_ahead, key, source, transport, settings, first, native)
        elif cached_header(source.key) is None:
            transport.pool.submit(_quietly, load_header, transport, source.key, source.label, settings, source.size,
                                  first)


#: Storage answering faster than this (seconds) is fast: reading ahead does not pay.
FAST_STORAGE = 0.015


def _open_ahead(key: tuple[Any, ...], source: RasterSource, transport: Any, settings: FetchSettings,
                first: int = 0, native: bool = False) -> None:
    header = load_header(transport, source.key, source.label, settings, source.size, first)
    if native and native_layout(source, header) is not None:
        return  # read without a dataset
    _HANDLES.open_ahead(key, functools.partial(_open_dataset, source, transport, settings, None))


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    # A failure here is only a missed head start: the reader hits it again and raises it.
    with contextlib.suppress(Exception):
        fn(*args)


def _run(jobs: list[tuple[_Part, Callable[[_Part], Any]]], executor: Executor | None
         ) -> Iterator[tuple[_Part, Any]]:
    """Run jobs, yielding results in job order; at most a few temporaries in flight."""
    if executor is None or len(jobs) == 1:
        for part, fn in jobs:
            yield part, fn(part)
        return
    window = 8
    pending: list[tuple[_Part, Future[Any]]] = []
    it = iter(jobs)
    try:
        for part, fn in it:
            pending.append((part, executor.submit(fn, part)))
            if len(pending) >= window:
                head, fut = pending.pop(0)
                yield head, fut.result()
        for head, fut in pending:
            yield head, fut.result()
    finally:
        for _, fut in pending:
            fut.cancel()


class _Fuser:
    """Combine overlapping source arrays into the region, in order."""

    def __init__(self, dst: np.ndarray, cfg: ReadConfig) -> None:
        self.dst, self.cfg = dst, cfg
        self.fill = cfg.fill
        self._sum: np.ndarray | None = None
        self._count: np.ndarray | None = None

    def add(self, roi: NormalizedROI, pix: np.ndarray) -> None:
        ys, xs = _np_roi(roi)
        view = self.dst[:, ys, xs]
        valid = ~nodata_mask(pix, self.cfg.fill_value)
        method = self.cfg.method
        if method in ("first", "last"):
            empty = nodata_mask(view, self.cfg.fill_value)
            np.copyto(view, pix, where=empty & valid)
        elif method in ("min", "max"):
            empty = nodata_mask(view, self.cfg.fill_value)
            op = np.minimum if method == "min" else np.maximum
            both = valid & ~empty
            np.copyto(view, op(view, pix), where=both)
            np.copyto(view, pix, where=valid & empty)
        elif method == "mean":
            if self._sum is None:
                acc = np.float64 if self.dst.dtype.itemsize >= 4 and self.dst.dtype.kind != "f" else np.float32
                if self.dst.dtype == np.float64:
                    acc = np.float64
                self._sum = np.zeros(self.dst.shape, dtype=acc)
                self._count = np.zeros(self.dst.shape, dtype=np.uint16)
            assert self._count is not None
            s = self._sum[:, ys, xs]
            c = self._count[:, ys, xs]
            s += np.where(valid, pix, 0)
            c += valid
        else:  # pragma: no cover - validated by the caller
            raise ValueError(f"unknown method {method!r}")

    def finish(self) -> None:
        if self._sum is None or self._count is None:
            return
        has = self._count > 0
        mean = np.divide(self._sum, self._count, out=np.zeros_like(self._sum), where=has)
        if self.dst.dtype.kind in "iu":
            mean = np.rint(mean)
        np.copyto(self.dst, mean, where=has, casting="unsafe")
