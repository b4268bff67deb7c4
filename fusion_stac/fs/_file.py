"""File objects of ``fusion://``: reads tuned for how GDAL and xarray read, uploads through a temp file.

How GDAL (and h5netcdf, and zarr) read a remote raster: a burst of small reads near the header
(IFDs, tile offsets, attributes), then larger reads of tiles/chunks, often running on in file order
(neighbouring tiles of a row are adjacent). :class:`AdaptiveStreamCache` follows that:

* a read that jumps elsewhere fetches at least ``initial`` bytes (64 KiB): the small reads that follow
  near the header are then served from memory;
* each read that continues where the previous one ended doubles the readahead (to at least four
  times that read's size), up to ``maximum`` (64 MiB), and the bytes are *streamed*: one HTTP request
  serves a whole run of sequential reads, so a file read front to back costs a handful of requests
  and runs at the speed of one download. A large streamed range costs nothing if the reader stops
  early: bytes only flow as fast as they are read (TCP flow control), the unread rest is never
  downloaded (only what is in flight in socket buffers), and the connection is simply closed;
* a short forward skip inside the running request is read through rather than re-requested;
* recent small reads (up to 1 MiB each, ``keep`` bytes in all, 16 MiB by default) are kept for the
  re-reads GDAL makes near the header.

Any fsspec cache can still be chosen with ``cache_type=...``; then reads go through
:meth:`FusionFile._fetch_range`, which is retried and verified the same way. ``get_byte_ranges`` lets
rasterio's opener hand GDAL's multi-range reads over in one call (merged and fetched in parallel).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fsspec.caching import BaseCache
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from fusion_stac.storage import FileKey, RangeReader, Transport

__all__ = ["AdaptiveStreamCache", "FusionFile", "FusionUploadFile"]

KiB = 1024
MiB = 1024 * KiB
DEFAULT_INITIAL = 64 * KiB
DEFAULT_BLOCK = 8 * MiB  # the file's block size (what fsspec's own caches use, if chosen)
DEFAULT_MAXIMUM = 64 * MiB  # the largest streamed readahead
DEFAULT_KEEP = 16 * MiB
REMEMBER_LIMIT = 1 * MiB  # reads larger than this are not kept
SKIP_LIMIT = 256 * KiB  # forward gaps read through instead of opening a new request


class AdaptiveStreamCache(BaseCache):
    """Readahead that starts small after a jump and grows, streamed, while reads stay sequential.

    ``open_stream(start, end)`` returns a :class:`RangeReader`; ``fetcher(start, end)`` is the
    one-shot fallback. Thread-safe (one lock), though a file object normally has one reader.
    """

    name = "fusion"

    def __init__(
        self,
        blocksize: int,
        fetcher: Callable[[int, int], bytes],
        size: int,
        *,
        open_stream: Callable[[int, int], RangeReader],
        initial: int = DEFAULT_INITIAL,
        maximum: int = DEFAULT_MAXIMUM,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        super().__init__(blocksize, fetcher, size)
        self.maximum = max(int(maximum), 1)
        self.initial = max(1, min(int(initial), self.maximum))
        self.keep = max(int(keep), 0)
        self._open_stream = open_stream
        self._block = self.initial
        self._stream: RangeReader | None = None
        self._stream_end = -1  # end of the latest stream opened (continuing there is sequential)
        self._last_end = -1
        self._segments: OrderedDict[int, bytes] = OrderedDict()  # start -> bytes, least recent first
        self._kept = 0
        self._lock = threading.Lock()

    # -- BaseCache API -------------------------------------------------------------------------
    def _fetch(self, start: int | None, stop: int | None) -> bytes:
        start = 0 if start is None else max(0, start)
        stop = self.size if stop is None else min(stop, self.size)
        if start >= stop:
            return b""
        with self._lock:
            parts: list[bytes] = []
            pos = start
            hit = True
            while pos < stop:
                cached = self._from_segments(pos, stop)
                if cached:
                    parts.append(cached)
                    pos += len(cached)
                    continue
                hit = False
                data = self._read_through(pos, stop)
                parts.append(data)
                pos += len(data)
            if hit:
                self.hit_count += 1
            else:
                self.miss_count += 1
            self._last_end = stop
            return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None
            self._segments.clear()
            self._kept = 0

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("AdaptiveStreamCache is not picklable; pickle the file object instead")

    # -- internals -----------------------------------------------------------------------------
    def _from_segments(self, pos: int, stop: int) -> bytes:
        for seg_start, data in reversed(self._segments.items()):
            if seg_start <= pos < seg_start + len(data):
                self._segments.move_to_end(seg_start)
                return data[pos - seg_start:stop - seg_start]
        return b""

    def _remember(self, start: int, data: bytes) -> None:
        # Only small pieces are worth keeping: header bytes and short reads get re-read; keeping
        # large ones would only pin memory (and, when streaming, cost page faults per read).
        if not data or len(data) > min(REMEMBER_LIMIT, self.keep):
            return
        old = self._segments.pop(start, None)
        if old is not None:
            self._kept -= len(old)
        self._segments[start] = data
        self._kept += len(data)
        while self._kept > self.keep:
            _, evicted = self._segments.popitem(last=False)
            self._kept -= len(evicted)

    def _read_through(self, pos: int, stop: int) -> bytes:
        """Bytes from ``pos`` towards ``stop``, from the running stream or a new one."""
        stream = self._stream
        if stream is not None and stream.pos <= pos < stream.end and pos - stream.pos <= SKIP_LIMIT:
            if pos > stream.pos:
                gap_start = stream.pos
                self._remember(gap_start, stream.read(pos - stream.pos))
            data = stream.read(stop - pos)
            self._settle(stream)
            self._remember(pos, data)
            return data
        sequential = pos in (self._last_end, self._stream_end)
        self._abandon()
        # Sequential: at least double, and read ahead four reads' worth for callers reading big chunks.
        self._block = min(max(self._block * 2, 4 * (stop - pos)), self.maximum) if sequential else self.initial
        end = min(self.size, max(stop, pos + self._block))
        stream = self._open_stream(pos, end)
        self._stream = stream
        self._stream_end = end
        self.total_requested_bytes += end - pos
        self.nblocks += 1
        data = stream.read(stop - pos)
        self._settle(stream)
        self._remember(pos, data)
        return data

    def _settle(self, stream: RangeReader) -> None:
        if not stream.remaining and self._stream is stream:
            self._stream = None

    def _abandon(self) -> None:
        """Leave the running stream: keep a small unread rest (it is on the wire anyway), else close."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        if 0 < stream.remaining <= self.initial:
            start = stream.pos
            self._remember(start, stream.drain())
        stream.close()


class FusionFile(AbstractBufferedFile):
    """A read-only file of the Fusion Platform; its size comes from the API (no HEAD is ever sent)."""

    DEFAULT_BLOCK_SIZE = DEFAULT_BLOCK

    def __init__(
        self,
        fs: AbstractFileSystem,
        path: str,
        *,
        key: FileKey,
        details: dict[str, Any],
        transport: Transport,
        mode: str = "rb",
        block_size: int | str | None = "default",
        cache_type: str = "fusion",
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if mode != "rb":
            raise ValueError(f"FusionFile is read-only; got mode {mode!r}")
        self.key = key
        self.transport = transport
        options = dict(cache_options or {})
        ours = cache_type in ("fusion", None, "default")
        # An explicit block size caps the streamed readahead too.
        maximum = int(block_size) if block_size not in (None, "default") else DEFAULT_MAXIMUM
        super().__init__(
            fs, path, mode=mode, block_size=block_size, autocommit=True,
            cache_type="none" if ours else cache_type,
            cache_options={} if ours else options,
            size=details["size"], **kwargs,
        )
        self._details = details
        if ours:
            self.cache = AdaptiveStreamCache(
                self.blocksize, self._fetch_range, self.size, open_stream=self._open_stream,
                initial=int(options.pop("initial", DEFAULT_INITIAL)),
                maximum=int(options.pop("maximum", maximum)),
                keep=int(options.pop("keep", DEFAULT_KEEP)),
            )
            if options:
                raise TypeError(f"unknown cache_options for the fusion cache: {', '.join(sorted(options))}")

    # Identity, not fsspec's "same details" equality: an open file is a resource. rasterio's opener
    # keeps each open file in a dict keyed by the file object (shared between dask tasks through
    # copied contexts); two handles on one path comparing equal would overwrite each other there,
    # drop the only reference to one of them while GDAL still uses it, and crash the process.
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    @property
    def url_path(self) -> str:
        """The ``fusion://`` URL this file was opened with (used in every error message)."""
        return self.full_name

    def _open_stream(self, start: int, end: int) -> RangeReader:
        return self.transport.open_range(self.key, start, end, path=self.url_path, size=self.size)

    def _fetch_range(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        return self.transport.read_range(self.key, start, end, path=self.url_path, size=self.size)

    def get_byte_ranges(self, offsets: list[int], sizes: list[int]) -> list[bytes]:
        """Several ranges at once (rasterio's multi-range hook for GDAL): merged, fetched in parallel."""
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        ranges = [(int(o), min(int(o) + int(n), self.size)) for o, n in zip(offsets, sizes, strict=True)]
        return self.transport.read_ranges(self.key, ranges, path=self.url_path, size=self.size)

    def __reduce__(self) -> tuple[Any, ...]:
        # Re-open by path on the other side; the file system pickles without secrets.
        return _reopen, (self.fs, self.path, self.blocksize, self.loc)


def _reopen(fs: AbstractFileSystem, path: str, block_size: int, loc: int) -> FusionFile:
    f = fs.open(path, "rb", block_size=block_size)
    f.seek(loc)
    return f


class FusionUploadFile(AbstractBufferedFile):
    """A file being written into ``uploads/``: spooled to a local temporary file, uploaded on close.

    The upload creates a data item and waits for the platform's analysis (see
    :meth:`FusionFileSystem.put_file`); until then nothing exists remotely, and ``discard()``
    (or an exception inside a transaction) leaves no trace.
    """

    def __init__(self, fs: AbstractFileSystem, path: str, *, mode: str = "wb", autocommit: bool = True,
                 **kwargs: Any) -> None:
        if mode not in ("wb", "xb"):
            raise ValueError(f"{fs.unstrip_protocol(path)}: uploads can only be written whole (mode 'wb'), not {mode!r}")
        super().__init__(fs, path, mode="wb", block_size=8 * MiB, autocommit=autocommit, **kwargs)
        self._tmpdir = tempfile.mkdtemp(prefix="fusion-upload-")
        name = os.path.basename(path.rstrip("/")) or "upload"
        self._tmp_path = os.path.join(self._tmpdir, name)
        self._tmp = open(self._tmp_path, "wb")  # noqa: SIM115 - closed in commit/discard

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
            return
        # The block failed: upload nothing (a half-written file must not become data).
        self.discard()
        self.closed = True

    def _upload_chunk(self, final: bool = False) -> bool:
        self.buffer.seek(0)
        shutil.copyfileobj(self.buffer, self._tmp)
        if final:
            self._tmp.close()
            if self.autocommit:
                self.commit()
        return True

    def commit(self) -> None:
        try:
            if not self._tmp.closed:
                self._tmp.close()
            self.fs.put_file(self._tmp_path, self.path)
        finally:
            self._cleanup()

    def discard(self) -> None:
        if not self._tmp.closed:
            self._tmp.close()
        self._cleanup()

    def _cleanup(self) -> None:
        shutil.rmtree(self._tmpdir, ignore_errors=True)
