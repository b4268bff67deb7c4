"""Assemble stacks of mosaics into xarray objects: lazily indexed (no dask) or dask-backed.

A *stack* is one list of sources per time step, all read onto one GeoBox with one
:class:`~fusion_stac.xarray._reader.ReadConfig`. Without ``chunks`` the result is lazily indexed
the way ``xr.open_dataset`` results are: nothing is read until values are needed, and then only
the window asked for, into one buffer (sources read concurrently). With ``chunks`` it is a dask
array whose tasks are, per chunk, *empty* (a fill, no request), or a read of exactly the sources
that touch the chunk; each task carries file ids, grid and plain settings, never a URL.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords
from xarray.backends.common import BackendArray
from xarray.core import indexing

from fusion_stac.xarray._errors import MosaicError
from fusion_stac.xarray._grid import bin_sources, chunk_sizes
from fusion_stac.xarray._reader import ReadConfig, adopt_thread, warm_opener
from fusion_stac.xarray._region import _quietly, fill_region
from fusion_stac.xarray._source import RasterSource
from fusion_stac.xarray._storage import Storage
from fusion_stac.xarray._warp import Placement

__all__ = ["Stack", "build_dataarray", "read_window"]


@dataclass(frozen=True)
class Stack:
    """Everything needed to read any window of the output, and nothing secret."""

    layers: tuple[tuple[RasterSource, ...], ...]  # one tuple of sources per time step
    geobox: GeoBox
    cfg: ReadConfig
    storage: Storage

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.layers), len(self.cfg.bands), *self.geobox.shape.yx)

    @functools.cached_property
    def crs(self) -> tuple[frozenset[str], frozenset[str]]:
        """CRSs of the sources, and those of them read by warping (computed once per stack)."""
        every = frozenset(s.crs for layer in self.layers for s in layer)
        warped = frozenset(s.crs for layer in self.layers for s in layer if s.geobox.crs != self.geobox.crs)
        return every, warped

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("crs", None)  # derived: not carried in the graph
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __dask_tokenize__(self) -> Any:
        from dask.base import tokenize

        return ("fusion-stack", tokenize(self.layers, self.geobox, self.cfg, self.storage))


# ------------------------------------------------------------------------------------------
# reading windows


class _Executor:
    """One reading pool per process (its threads borrow the datasets the opener thread opened)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0

    def get(self, crs: Iterable[str] = ()) -> ThreadPoolExecutor:
        """The pool, its threads started; warmed for warping from ``crs`` (in the background)."""
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._workers = int(os.environ.get("FUSION_STAC_READ_THREADS", 0)) or 2 * (os.cpu_count() or 1)
                self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="fusion-read",
                                                initializer=adopt_thread)
                self._pid = os.getpid()
                self._warm: set[str] = set()
                prestart(self._pool)
            new = sorted(set(crs) - self._warm)
            self._warm.update(new)
            pool = self._pool
        # GDAL gives each thread its own PROJ context and CRS cache, filled on the thread's first
        # warp from a CRS (tens of ms): do that now, while the caller is still planning, rather
        # than on the first read, best effort. (Opening needs none of this here: datasets are
        # opened by the opener thread, warmed by warm_opener.)
        for _ in range(self._workers if new else 0):
            pool.submit(_quietly, _warm_crs, new)
        return pool


def prestart(pool: ThreadPoolExecutor) -> None:
    """Start every thread of ``pool`` now. A pool starts a thread per submit, and each start waits
    for the new thread to run: at read time, with busy threads holding the GIL, up to a switch
    interval (5 ms) each, on the critical path."""
    missing = getattr(pool, "_max_workers", 0) - len(getattr(pool, "_threads", ()))
    # Each task holds its thread until every submit is done, so each submit finds no idle thread
    # and starts one; released right after the loop (never a wait on threads busy elsewhere).
    go = threading.Event()
    try:
        for _ in range(max(0, missing)):
            pool.submit(go.wait, 5)
    finally:
        go.set()


def _warm_crs(crs: list[str]) -> None:
    import rasterio.crs

    for code in crs:
        rasterio.crs.CRS.from_user_input(code).to_wkt()


def start_reading(stack: Stack) -> ThreadPoolExecutor:
    """What a read needs, started on the first read of a stack rather than at open time (an open
    starts no thread and waits for none): the reading threads (warmed in the background for the
    CRSs they warp from). Later calls cost a set difference. The opener thread is not warmed here
    (:func:`warm_opener`): its ~20 ms of GDAL work held the GIL while the first header fetches and
    thread starts waited for it, and a cold 1024² window over four slices took 58 ms with it, 52 ms
    without (medians of 9, benchmarks/mosaic.py's worker). The fetching threads start on demand:
    starting them all cost more than it saved."""
    _every, warped = stack.crs
    return _EXECUTOR.get(warped)


_EXECUTOR = _Executor()


def read_window(stack: Stack, t: int, bands: Sequence[int], ys: slice, xs: slice, *,
                parallel: bool = True) -> np.ndarray:
    """Pixels ``[bands, ys, xs]`` of time step ``t`` (``bands`` index into ``stack.cfg.bands``)."""
    cfg = stack.cfg
    sub_cfg = cfg if list(bands) == list(range(len(cfg.bands))) else _with_bands(cfg, [cfg.bands[b] for b in bands])
    region = stack.geobox[ys, xs]
    out = np.empty((len(bands), *region.shape.yx), dtype=cfg.dtype)
    if out.size == 0:
        return out
    executor = start_reading(stack) if parallel else None
    fill_region(out, region, stack.layers[t], sub_cfg, stack.storage, executor=executor, filled=False,
                where=Placement(stack.geobox, ys.start, xs.start))
    return out


def _with_bands(cfg: ReadConfig, bands: Sequence[int]) -> ReadConfig:
    from dataclasses import replace

    return replace(cfg, bands=tuple(bands))


class StackArray(BackendArray):
    """xarray's lazy-array protocol over a :class:`Stack`: (time, band, y, x)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.shape = stack.shape
        self.dtype = np.dtype(stack.cfg.dtype)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.BASIC, self._raw)

    def _raw(self, key: tuple[Any, ...]) -> np.ndarray:
        nt, nb, ny, nx = self.shape
        kt, kb, ky, kx = key
        times = _positions(kt, nt)
        bands = _positions(kb, nb)
        ys, ystep = _span(ky, ny)
        xs, xstep = _span(kx, nx)
        blocks = [read_window(self.stack, t, bands, ys, xs) for t in times]
        out = np.stack(blocks) if len(blocks) != 1 else blocks[0][np.newaxis]
        if ystep != 1 or xstep != 1:
            out = out[:, :, ::ystep, ::xstep]
        # Integer keys drop their axis, as numpy does.
        drop = tuple(i for i, k in enumerate(key) if isinstance(k, (int, np.integer)))
        if drop:
            out = out.reshape(tuple(n for i, n in enumerate(out.shape) if i not in drop))
        return out


def _positions(k: Any, n: int) -> list[int]:
    if isinstance(k, (int, np.integer)):
        return [int(k) % n]
    return list(range(n))[k]


def _span(k: Any, n: int) -> tuple[slice, int]:
    if isinstance(k, (int, np.integer)):
        i = int(k) % n
        return slice(i, i + 1), 1
    start, stop, step = k.indices(n)
    if step < 0:  # pragma: no cover - BASIC indexers given to backends have positive steps
        raise IndexError("negative steps are not supported")
    stop = max(start, stop)
    # The last element actually selected, so that a strided window is not over-read.
    if stop > start:
        stop = start + ((stop - start - 1) // step) * step + 1
    return slice(start, stop), step


# ------------------------------------------------------------------------------------------
# dask graph


def _load_chunk(sources: tuple[RasterSource, ...], geobox: GeoBox, cfg: ReadConfig, storage: Storage,
                expand_time: bool, where: Placement | None = None) -> np.ndarray:
    out = np.empty((len(cfg.bands), *geobox.shape.yx), dtype=cfg.dtype)
    warm_opener({s.crs for s in sources})  # a head start for the opener thread (no-op once warm)
    fill_region(out, geobox, sources, cfg, storage, executor=None, filled=False, where=where)
    return out[np.newaxis] if expand_time else out


def _fill_chunk(shape: tuple[int, ...], dtype: str, fill: float) -> np.ndarray:
    return np.full(shape, np.dtype(dtype).type(fill), dtype=dtype)


def dask_array(stack: Stack, chunks: tuple[int, int], *, with_time: bool) -> Any:
    """(time,) band, y, x dask array: per chunk a fill or a read of the sources touching it."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    cfg = stack.cfg
    nb = len(cfg.bands)
    name = "fusion-mosaic-" + tokenize(stack, chunks, with_time)
    ny, nx = stack.geobox.shape.yx
    ych, xch = chunk_sizes(ny, chunks[0]), chunk_sizes(nx, chunks[1])
    dsk: dict[Any, Any] = {}
    for t, layer in enumerate(stack.layers):
        tiles, bins = bin_sources(stack.geobox, chunks, layer)
        for iy, h in enumerate(ych):
            for ix, w in enumerate(xch):
                key = (name, t, 0, iy, ix) if with_time else (name, 0, iy, ix)
                idx = bins.get((iy, ix))
                if not idx:
                    shape = (1, nb, h, w) if with_time else (nb, h, w)
                    dsk[key] = (_fill_chunk, shape, cfg.dtype, cfg.fill_value)
                else:
                    srcs = tuple(layer[i] for i in idx)
                    where = Placement(stack.geobox, iy * chunks[0], ix * chunks[1])
                    dsk[key] = (_load_chunk, srcs, tiles[iy, ix], cfg, stack.storage, with_time, where)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=())
    all_chunks: tuple[tuple[int, ...], ...] = ((nb,), ych, xch)
    if with_time:
        all_chunks = ((1,) * len(stack.layers), *all_chunks)
    return da.Array(graph, name, all_chunks, dtype=np.dtype(cfg.dtype))


# ------------------------------------------------------------------------------------------
# xarray objects


def resolve_chunks(chunks: Any, geobox: GeoBox, dtype: np.dtype, nbands: int) -> tuple[int, int] | None:
    """``None`` (lazy, no dask), or (y, x) chunk sizes from a dict/int/"auto"/``{}``."""
    if chunks is None:
        return None
    ny, nx = geobox.shape.yx
    y = x = None
    if isinstance(chunks, int) or chunks == "auto":
        y = x = chunks
    elif isinstance(chunks, Mapping):
        unknown = set(chunks) - {"x", "y", "band", "time", "longitude", "latitude"}
        if unknown:
            raise MosaicError(f"chunks: unknown dimension(s) {sorted(unknown)}; use y and x", field="chunks")
        y = chunks.get("y", chunks.get("latitude"))
        x = chunks.get("x", chunks.get("longitude"))
    elif isinstance(chunks, (tuple, list)) and len(chunks) == 2:
        y, x = chunks
    else:
        raise MosaicError(f"chunks={chunks!r}: expected None, 'auto', an int or {{'y': .., 'x': ..}}", field="chunks")
    auto = _auto_chunk(dtype, nbands)
    return (_one(y, ny, auto), _one(x, nx, auto))


def _one(v: Any, n: int, auto: int) -> int:
    if v is None or v == "auto" or v == {}:
        return min(n, auto)
    if v == -1:
        return n
    v = int(v)
    if v <= 0:
        raise MosaicError(f"chunk size must be positive, got {v}", field="chunks")
    return min(n, v)


def _auto_chunk(dtype: np.dtype, nbands: int, target_bytes: int = 64 * 2**20) -> int:
    """Square chunks of about ``target_bytes``, a multiple of 512 (whole COG tiles)."""
    side = int(math.sqrt(target_bytes / max(1, dtype.itemsize * nbands)))
    side = max(512, (side // 512) * 512)
    return side


def build_dataarray(
    stack: Stack,
    *,
    chunks: Any,
    band_names: Sequence[str],
    attrs: Mapping[str, Any],
    times: Sequence[datetime] | None,
    name: Hashable | None = None,
) -> xr.DataArray:
    """The output DataArray: dims (time,) band, y, x; rioxarray/odc-geo compatible coordinates."""
    geobox = stack.geobox
    coords: dict[Hashable, Any] = dict(xr_coords(geobox, crs_coord_name="spatial_ref", always_yx=True))
    nb = len(stack.cfg.bands)
    coords["band"] = np.arange(1, nb + 1, dtype=np.int64)
    with_time = times is not None
    if times is not None:
        coords["time"] = np.array([np.datetime64(_naive_utc(t), "ns") for t in times])
    dims = ("time", "band", "y", "x") if with_time else ("band", "y", "x")
    resolved = resolve_chunks(chunks, geobox, np.dtype(stack.cfg.dtype), nb)
    if resolved is None:
        lazy = indexing.LazilyIndexedArray(StackArray(stack))
        var = xr.Variable(("time", "band", "y", "x"), lazy)
        if not with_time:
            var = var[0]
        data: Any = var
    else:
        data = dask_array(stack, resolved, with_time=with_time)
    out = xr.DataArray(data, dims=dims, coords=coords, name=name, attrs=dict(attrs))
    out.coords["band_name"] = ("band", list(band_names))
    out.encoding["grid_mapping"] = "spatial_ref"
    if resolved is not None:
        out.encoding["preferred_chunks"] = {"y": resolved[0], "x": resolved[1]}
    return out


def _naive_utc(t: datetime) -> datetime:
    if t.tzinfo is not None:
        from datetime import timezone

        t = t.astimezone(timezone.utc).replace(tzinfo=None)
    return t
