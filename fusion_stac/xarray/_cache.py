"""A small on-disk cache shared by the processes of one user: COG headers and finished runs' metadata.

Where: ``$FUSION_STAC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fusion-stac`` (``~/.cache/fusion-stac``);
``FUSION_STAC_CACHE=off`` (or ``0``/``no``/``false``) turns it off. One file per entry, named by a hash
of its key (stable ids only, never a URL); each written to a temporary file and renamed into place
(readers see a whole entry or none, whichever process wrote it) and carrying a checksum of its
content (a damaged entry is deleted and reported as a miss). Each area is bounded in bytes: a hit
touches the entry's mtime, and when an area grows past its bound the least recently used entries are
deleted (several processes may prune at once: a file already gone is fine).

What an entry means, and when it is stale, is the caller's business (headers carry the file's ETag,
run metadata the executions' modification times).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
from pathlib import Path

from fusion_stac._paths import cache_root

__all__ = ["DiskCache", "cache_root"]

_MAGIC = b"FSC1"


class DiskCache:
    """One area of the cache (``headers``, ``runs``): ``get``/``put``/``delete`` bytes by a string key."""

    def __init__(self, area: str, max_bytes: int) -> None:
        self.area = area
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._written = 0  # bytes written by this process since it last pruned
        self._checked: str | None = None  # the directory last made sure of

    def directory(self) -> Path | None:
        root = cache_root()
        if root is None:
            return None
        path = root / self.area
        if self._checked != str(path):
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError:
                return None
            self._checked = str(path)
            self._written = self.max_bytes // 8  # look at its size once in each process
        return path

    @staticmethod
    def _name(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()[:40]

    def get(self, key: str) -> bytes | None:
        d = self.directory()
        if d is None:
            return None
        path = d / self._name(key)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        payload = raw[len(_MAGIC) + 32:]
        if not raw.startswith(_MAGIC) or hashlib.sha256(payload).digest() != raw[len(_MAGIC):len(_MAGIC) + 32]:
            self._unlink(path)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # least recently used goes first
        return payload

    def put(self, key: str, payload: bytes) -> None:
        d = self.directory()
        if d is None:
            return
        data = _MAGIC + hashlib.sha256(payload).digest() + payload
        try:
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, d / self._name(key))
            except BaseException:
                self._unlink(Path(tmp))
                raise
        except OSError:
            return  # a full or read-only disk costs the cache, never the read
        with self._lock:
            self._written += len(data)
            due = self._written >= self.max_bytes // 8
            if due:
                self._written = 0
        if due:
            self.prune()

    def delete(self, key: str) -> None:
        d = self.directory()
        if d is not None:
            self._unlink(d / self._name(key))

    def clear(self) -> None:
        d = self.directory()
        if d is None:
            return
        for path in d.iterdir():
            self._unlink(path)

    def prune(self) -> None:
        """Delete the least recently used entries until the area is within 3/4 of its bound."""
        d = self.directory()
        if d is None:
            return
        entries = []
        total = 0
        with os.scandir(d) as it:
            for entry in it:
                try:
                    st = entry.stat()
                except OSError:
                    continue
                if entry.name.startswith(".tmp-"):
                    if st.st_mtime < time.time() - 3600:  # left by a process that died mid-write
                        DiskCache._unlink(Path(entry.path))
                    continue
                entries.append((st.st_mtime, st.st_size, entry.path))
                total += st.st_size
        if total <= self.max_bytes:
            return
        entries.sort()
        for _, size, path in entries:
            if total <= self.max_bytes * 3 // 4:
                break
            self._unlink(Path(path))
            total -= size

    @staticmethod
    def _unlink(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()
