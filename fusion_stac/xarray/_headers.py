"""The first bytes of stored files (a COG's header), kept in memory and on disk, keyed by file id.

A reader's first request of a file takes its header (the IFDs, and for a coarse read the overview
levels behind them). This process keeps them in memory (:class:`_HeaderCache`: reopening a file, on
another thread or at an overview level, costs no request). Their metadata part (up to
``meta_end``, the first tile's offset, from the TIFF's own IFDs) is also kept on disk (:mod:`._cache`,
area ``headers``), with the ETag storage answered it with: another process opens the file from there
without a request. Such a header is *unverified* until storage confirms the version: only its first
``meta_end`` bytes are served (what opening needs); every other read goes to storage, pinned to the
cached ETag, and the first answer either confirms it (the whole header is then served) or shows the
file changed (:class:`StaleHeaderError`: the entry is dropped on disk and in memory, and the reader
opens the file again, from storage). A file that is only described (its grid read from its header,
nothing else fetched) is never described from an unverified header.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Protocol

from fusion_stac.storage import FileChangedError, FileKey, Transport, VersionPin
from fusion_stac.xarray._cache import DiskCache
from fusion_stac.xarray._tiff import tiff_data_start

__all__ = ["FILE_STATS", "FileStats", "Header", "StaleHeaderError", "cached_header", "clear_headers", "drop_header",
           "load_header"]


class StaleHeaderError(FileChangedError):
    """A cached header belongs to another version of the file than storage now serves (dropped;
    opening the file again reads the new one)."""


@dataclass(frozen=True)
class Header:
    """``data``: the first bytes of a file of ``size`` bytes, as storage served them under ``etag``.

    ``verified``: this process saw storage answer that version (else the header came from disk and
    only its first ``meta_end`` bytes may be used before storage confirms it)."""

    size: int
    data: bytes
    etag: str | None
    verified: bool
    meta_end: int = 0
    on_disk: bool = False

    @property
    def usable(self) -> int:
        """How many of the first bytes may be served without asking storage."""
        return len(self.data) if self.verified else min(self.meta_end, len(self.data))


class FileStats:
    """Range requests and bytes the readers asked for, per file, in this process.

    The transport's ``stats`` count the same traffic in total (retries included); these say which
    file it went to (tests check that a window touches only the slices under it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[FileKey, list[int]] = {}

    def add(self, key: FileKey, requests: int, nbytes: int) -> None:
        with self._lock:
            entry = self._counts.setdefault(key, [0, 0])
            entry[0] += requests
            entry[1] += nbytes

    def snapshot(self) -> dict[FileKey, tuple[int, int]]:
        """``{file: (requests, bytes)}`` since the last :meth:`reset`."""
        with self._lock:
            return {k: (v[0], v[1]) for k, v in self._counts.items()}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


FILE_STATS = FileStats()


class _HeaderCache:
    """Headers of recently opened files: reopening one (another thread, an overview level) costs no
    request. Keyed by file id, never by URL; bounded in entries and in bytes (a coarse read's first
    request brings overview tiles along)."""

    def __init__(self, capacity: int = 1024, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._data: OrderedDict[FileKey, Header] = OrderedDict()
        self._bytes = 0
        self._locks: dict[FileKey, threading.Lock] = {}

    def get(self, key: FileKey) -> Header | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
            return hit

    def put(self, key: FileKey, header: Header) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= len(old.data)
            self._data[key] = header
            self._bytes += len(header.data)
            while len(self._data) > 1 and (len(self._data) > self.capacity or self._bytes > self.max_bytes):
                self._bytes -= len(self._data.popitem(last=False)[1].data)

    def pop(self, key: FileKey) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= len(old.data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def lock_for(self, key: FileKey) -> threading.Lock:
        """A lock per file, so that threads opening the same file fetch its header once."""
        with self._lock:
            lock = self._locks.get(key)
            if lock is None:
                if len(self._locks) > 4 * self.capacity:
                    self._locks = {k: v for k, v in self._locks.items() if v.locked()}
                lock = self._locks[key] = threading.Lock()
            return lock


class FetchSettingsLike(Protocol):
    """What :func:`load_header` reads of :class:`~._http.FetchSettings`."""

    @property
    def header_bytes(self) -> int: ...


_HEADERS = _HeaderCache()
_DISK = DiskCache("headers", 256 * 1024 * 1024)


def _disk_key(key: FileKey) -> str:
    return "header|" + key.url


def _from_disk(key: FileKey, size: int | None) -> Header | None:
    raw = _DISK.get(_disk_key(key))
    if raw is None:
        return None
    try:
        meta_line, data = raw.split(b"\n", 1)
        meta = json.loads(meta_line)
        header = Header(int(meta["size"]), data, str(meta["etag"]), False, int(meta["meta_end"]), on_disk=True)
        if meta["file"] != key.url or len(data) != int(meta["length"]) or not header.etag or header.meta_end <= 0:
            raise ValueError("not this file's entry")
    except (ValueError, KeyError, TypeError):
        _DISK.delete(_disk_key(key))
        return None
    if size is not None and header.size != size:  # metadata says another version: not this one
        _DISK.delete(_disk_key(key))
        return None
    return header


def cached_header(key: FileKey) -> Header | None:
    """The header of a file if this process has it in memory."""
    return _HEADERS.get(key)


def clear_headers(*, disk: bool = True) -> None:
    """Forget cached file headers, in memory and (``disk``) on disk: the next open of each file
    reads its header from storage again."""
    _HEADERS.clear()
    if disk:
        _DISK.clear()


def drop_header(key: FileKey) -> None:
    """Forget one file's header, in memory and on disk (it changed)."""
    _HEADERS.pop(key)
    _DISK.delete(_disk_key(key))


def verified(key: FileKey, etag: str | None) -> None:
    """Storage answered ``etag`` for this file: a header of that version is confirmed for this process."""
    hit = _HEADERS.get(key)
    if hit is not None and not hit.verified and hit.etag == etag:
        _HEADERS.put(key, replace(hit, verified=True))


def _to_disk(key: FileKey, header: Header) -> Header:
    """Keep the metadata part of a header this process fetched on disk (its bytes up to the first
    tile), with the ETag storage gave it (nothing is kept without both). Only that part: another
    process may use no more of an unconfirmed header, and the first request it makes confirms the
    version and brings what it reads anyway (writing and hashing a coarse read's ~1 MB of overview
    tiles per file cost a cold 1/8 read of 16 slices ~3 ms a file)."""
    end = tiff_data_start(header.data)
    if not header.etag or not end:
        return header
    end = min(end, len(header.data))
    meta = {"file": key.url, "size": header.size, "etag": header.etag, "meta_end": end, "length": end}
    _DISK.put(_disk_key(key), json.dumps(meta).encode() + b"\n" + header.data[:end])
    return replace(header, on_disk=True, meta_end=end)


def load_header(transport: Transport, key: FileKey, label: str, settings: FetchSettingsLike,
                size: int | None, first: int = 0, *, verify: bool = False) -> Header:
    """The header of a file: from memory, else from disk, else one request to storage.

    ``first``: how many bytes that request takes when more than ``settings.header_bytes`` are
    wanted (see :func:`~._http.coarse_first_request`). ``verify``: only a header storage confirmed
    will do (one request when it came from disk; the same bytes when the file did not change)."""
    hit = _HEADERS.get(key)
    if hit is not None and (hit.verified or not verify):
        return hit
    with _HEADERS.lock_for(key):
        hit = _HEADERS.get(key)
        if hit is None:
            hit = _from_disk(key, size)
            if hit is not None:
                _HEADERS.put(key, hit)
        if hit is not None and (hit.verified or not verify):
            return hit
        return _fetch_header(transport, key, label, settings, size, first, known=hit)


def _fetch_header(transport: Transport, key: FileKey, label: str, settings: FetchSettingsLike,
                  size: int | None, first: int = 0, *, known: Header | None = None) -> Header:
    if size is None:
        size = known.size if known is not None else None
    if size is None:
        # Metadata did not say: a 1-byte read reports the size (Content-Range), then the header.
        with transport.open_range(key, 0, 1, path=label) as probe:
            probe.read()
        if probe.total is None:
            raise OSError(f"{label}: storage did not report the file size")
        size = probe.total
        FILE_STATS.add(key, 1, 1)
    pin = VersionPin()
    data = transport.read_range(key, 0, min(max(settings.header_bytes, first), size), path=label, size=size, pin=pin)
    FILE_STATS.add(key, 1, len(data))
    header = Header(size, data, pin.etag, True)
    if known is not None and known.etag == pin.etag and len(known.data) >= len(data):
        header = replace(known, verified=True)  # the version kept on disk: confirmed
    else:
        header = _to_disk(key, header)
    _HEADERS.put(key, header)
    return header
