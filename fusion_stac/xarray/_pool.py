"""GDAL's threads: the one that opens datasets, the handles it lends to reading threads, and the
GDAL configuration and context every call of ours runs in.

Datasets are opened by one thread of the process (GDAL builds a PROJ context per thread that
opens a georeferenced file: paid once rather than once per reading thread), then lent to any
reading thread, one at a time, and kept open between reads, keyed by file id and overview level.
Nothing here starts at import or at open time: the opener thread starts with the first open, and
:func:`warm_opener` is called on a stack's first read.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import rasterio
from affine import Affine

from fusion_stac.storage import FileKey
from fusion_stac.xarray._http import SourceOpener

__all__ = ["GDAL_OPTIONS", "adopt_thread", "close_handles", "gdal_options", "in_gdal_context", "warm_opener"]

T = TypeVar("T")

#: GDAL configuration for every read. Side-car files are never looked for (no directory
#: listing, and the opener answers "no such file" without a request). The block cache is kept
#: small: decoded tiles land in the output arrays, and GDAL's default (5 % of RAM) would hold a
#: second copy of a whole mosaic; set ``GDAL_CACHEMAX`` in the environment to override.
GDAL_OPTIONS: dict[str, Any] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_PAM_ENABLED": "NO",
    "CPL_VSIL_CURL_USE_HEAD": "NO",
}
BLOCK_CACHE_MB = 64


def gdal_options() -> dict[str, Any]:
    """:data:`GDAL_OPTIONS`, plus our block cache size unless the user configured one."""
    if "GDAL_CACHEMAX" in GDAL_OPTIONS or "GDAL_CACHEMAX" in os.environ:
        return GDAL_OPTIONS
    return {**GDAL_OPTIONS, "GDAL_CACHEMAX": BLOCK_CACHE_MB}

# ------------------------------------------------------------------------------------------
# dataset handles: opened by one thread, lent to any


class _Handle:
    __slots__ = ("dataset", "opener")

    def __init__(self, dataset: rasterio.io.DatasetReader, opener: SourceOpener) -> None:
        self.dataset = dataset
        self.opener = opener


# rasterio keeps its opener registrations in context variables. A handle opened in one context
# and read or closed in another would fail to find them (a LookupError printed from C, and a
# GDAL I/O error). So every GDAL call of ours runs in a context owned by its thread, whose
# registries are process-wide dicts shared by all such contexts.
_SHARED_REGISTRIES: dict[str, dict[Any, Any]] = {}


def _install_shared_registries() -> None:
    try:
        from rasterio import _vsiopener
    except ImportError:  # pragma: no cover - rasterio without the opener plugin
        return
    for name in ("_OPENER_REGISTRY", "_OPEN_FILE_EXIT_STACKS"):
        var = getattr(_vsiopener, name, None)
        if isinstance(var, contextvars.ContextVar):
            var.set(_SHARED_REGISTRIES.setdefault(name, {}))


class _Local(threading.local):
    context: contextvars.Context | None = None
    depth = 0
    owned = False  # one of our pool threads: its GDAL configuration is set once, for good
    opener = False  # the opener thread


_LOCAL = _Local()


def adopt_thread() -> None:
    """Mark the calling thread as one of our readers (a pool initializer): GDAL options are
    thread-local in child threads, so ours keep theirs rather than set and unset them per call
    (a rasterio environment costs a few stat calls each time)."""
    _LOCAL.owned = True


def in_gdal_context(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in this thread's GDAL context, with our GDAL configuration."""
    local = _LOCAL
    if local.depth:
        return fn(*args)
    if local.context is None:
        local.context = contextvars.Context()
        local.context.run(_install_shared_registries)
        if local.owned:
            local.context.run(_enter_env_for_good)
    local.depth += 1
    try:
        if local.owned:
            return local.context.run(fn, *args)
        return local.context.run(_with_env, fn, args)
    finally:
        local.depth -= 1


def _enter_env_for_good() -> None:
    rasterio.Env(**gdal_options()).__enter__()


def _with_env(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    with rasterio.Env(**gdal_options()):
        return fn(*args)


class _Handles:
    """Open datasets shared by every reading thread, each lent to one thread at a time (a GDAL
    dataset may move between threads, but never be used by two at once). Idle ones are kept, up
    to ``capacity``, least recently used closed first; keyed by file id, never by URL. Datasets
    can be opened ahead: a reader that wants one still being opened waits for that open."""

    capacity = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: OrderedDict[tuple[Any, ...], list[_Handle]] = OrderedDict()
        self._pending: dict[tuple[Any, ...], Future[_Handle]] = {}

    def take(self, key: tuple[Any, ...]) -> _Handle | Future[_Handle] | None:
        """An idle dataset, or the open in flight for ``key`` (now the caller's), or None."""
        with self._lock:
            stack = self._idle.get(key)
            if not stack:
                return self._pending.pop(key, None)
            handle = stack.pop()
            if not stack:
                del self._idle[key]
            return handle

    def give(self, key: tuple[Any, ...], handle: _Handle) -> None:
        evicted = []
        with self._lock:
            self._idle.setdefault(key, []).append(handle)
            self._idle.move_to_end(key)
            excess = sum(map(len, self._idle.values())) - self.capacity
            for _ in range(excess):
                old_key, stack = next(iter(self._idle.items()))
                evicted.append(stack.pop(0))
                if not stack:
                    del self._idle[old_key]
        for old in evicted:
            _close(old)

    def known(self, key: tuple[Any, ...]) -> bool:
        with self._lock:
            return key in self._idle or key in self._pending

    def open_ahead(self, key: tuple[Any, ...], opener: Callable[[], _Handle]) -> None:
        """Open on the opener thread now; the dataset waits, idle, for its reader."""
        with self._lock:
            if key in self._idle or key in self._pending:
                return
            future = _OPENER.submit(opener)
            self._pending[key] = future
        future.add_done_callback(lambda f: self._landed(key, f))

    def _landed(self, key: tuple[Any, ...], future: Future[_Handle]) -> None:
        with self._lock:
            if self._pending.get(key) is not future:
                return  # a reader claimed it (or it was drained: closed there)
            del self._pending[key]
        if future.exception() is None:
            self.give(key, future.result())
        # A failed open ahead is forgotten: the reader opens again and meets the error itself.

    def forget_file(self, file: FileKey) -> None:
        """Close the idle datasets on one file (every level): they were opened from a stale header."""
        with self._lock:
            keys = [k for k in self._idle if k[0] == file]
            handles = [h for k in keys for h in self._idle.pop(k)]
        for handle in handles:
            _close(handle)

    def drain(self) -> list[_Handle]:
        with self._lock:
            handles = [h for stack in self._idle.values() for h in stack]
            self._idle.clear()
            orphans = list(self._pending.values())
            self._pending.clear()
        for future in orphans:
            future.add_done_callback(_close_result)
        return handles


def _close_result(future: Future[_Handle]) -> None:
    if future.exception() is None:
        _close(future.result())


_HANDLES = _Handles()


class _OpenerThread:
    """The one thread that opens datasets. On a thread's first open of a georeferenced file GDAL
    builds that thread's PROJ context and CRS cache (about 10 ms of CPU, 20 ms for the first in
    the process); reading needs neither. So opens go to one thread, which pays that once, and the
    datasets are then lent to any reading thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        if _LOCAL.opener:
            return fn(*args)
        return self.submit(fn, *args).result()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="fusion-open", initializer=self._mark)
                self._pid = os.getpid()
            pool = self._pool
        return pool.submit(in_gdal_context, fn, *args)

    @staticmethod
    def _mark() -> None:
        _LOCAL.opener = True
        adopt_thread()


_OPENER = _OpenerThread()
_WARMED: set[str] = set()
_WARMED_LOCK = threading.Lock()


def warm_opener(crs: Iterable[str]) -> None:
    """Have the opener thread build its PROJ context and CRS cache for ``crs`` now, in the
    background (a tiny in-memory GeoTIFF per CRS, opened the way a slice is): the first real open
    then costs ~1 ms rather than ~20, and that work overlaps the first header fetches instead of
    waiting for them."""
    with _WARMED_LOCK:
        new = sorted(set(crs) - _WARMED)
        _WARMED.update(new)
    if new:
        _OPENER.submit(_warm_open, new)


def _warm_open(crs: Sequence[str]) -> None:
    from rasterio.io import MemoryFile

    for code in crs:
        # A failure here is only a missed head start.
        with contextlib.suppress(Exception), MemoryFile() as mem:
            with mem.open(driver="GTiff", width=1, height=1, count=1, dtype="uint8", crs=code,
                          transform=Affine(30, 0, 300000, 0, -30, 5790000)) as ds:
                ds.write(np.zeros((1, 1, 1), dtype="uint8"))
            with mem.open() as ds:
                _ = ds.crs


def close_handles() -> None:
    """Close the idle dataset handles of every thread (they reopen on demand; handles in use are
    kept)."""
    handles = _HANDLES.drain()
    if handles:
        in_gdal_context(_close_all, handles)


atexit.register(close_handles)


def _close_all(handles: Iterable[_Handle]) -> None:
    for handle in handles:
        _close(handle)


def _close(handle: _Handle) -> None:
    # Closing a broken handle must not mask the error that broke it.
    with contextlib.suppress(Exception):
        in_gdal_context(handle.dataset.close)

