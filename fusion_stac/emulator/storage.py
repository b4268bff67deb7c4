"""File storage behind pre-signed URLs: blobs on disk, HMAC-signed URLs, ranged downloads.

Blobs live at ``<data_dir>/storage/blobs/<aa>/<file_id>``; uploads are streamed to ``storage/tmp`` and renamed
into place only when complete, so a blob is never half-written. A blob outlives the database rows that
reference it: deleting a data item only marks its blobs orphaned with a ``keep_until`` time no earlier than
the expiry of the last URL issued for them, and :meth:`BlobStore.collect_garbage` removes them later. This is
what lets the official SDK's quick example download outputs after it has deleted the process.

Pre-signed URLs look like cloud-storage URLs: ``/_storage/<method>/<file_id>?expires=<unix>&signature=<hex>``.
The signature is an HMAC-SHA256 over method, file id and expiry with a secret generated per data directory,
so a URL is bound to one file and one HTTP method and stops working when it expires.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import anyio

from fusion_stac.emulator.faults import Send
from fusion_stac.emulator.store import Store

#: Body chunk size for downloads: large enough that per-chunk overhead is negligible.
CHUNK_SIZE = 1024 * 1024

CONTENT_TYPES: dict[str, str] = {
    "GeoTIFF": "image/tiff; application=geotiff",
    "DEM": "image/tiff; application=geotiff",
    "JPEG2000": "image/jp2",
    "GeoJSON": "application/geo+json",
    "KML": "application/vnd.google-earth.kml+xml",
    "KMZ": "application/vnd.google-earth.kmz",
    "CSV": "text/csv",
    "ESRI Shapefile": "application/zip",
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "PDF": "application/pdf",
    "GZIP": "application/gzip",
    "ZIP": "application/zip",
    "Other": "application/octet-stream",
}


class UploadError(Exception):
    """An upload could not be stored (too large, incomplete)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class BlobInfo:
    """Metadata of a stored blob (what a download needs, independent of the data item rows)."""

    file_id: str
    size: int
    etag: str
    content_type: str
    file_name: str
    modified: float = 0.0


class UrlSigner:
    """Creates and checks HMAC-signed storage URLs."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _signature(self, method: str, file_id: str, expires: int) -> str:
        message = f"{method.upper()}\n{file_id}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, base_url: str, method: str, file_id: str, lifetime: float) -> tuple[str, int]:
        """(absolute URL, expiry as unix seconds) for ``method`` on ``file_id``."""
        expires = math.ceil(time.time() + lifetime)
        kind = "upload" if method.upper() == "PUT" else "download"
        signature = self._signature(method, file_id, expires)
        return f"{base_url}/_storage/{kind}/{file_id}?expires={expires}&signature={signature}", expires

    def check(self, method: str, file_id: str, expires: str | None, signature: str | None) -> str | None:
        """None when the URL is valid for ``method``, else the reason it is refused."""
        if not expires or not signature:
            return "Query-string authentication requires the expires and signature parameters"
        try:
            expiry = int(expires)
        except ValueError:
            return "Invalid expires parameter"
        expected = self._signature(method, file_id, expiry)
        if not hmac.compare_digest(expected, signature.lower()):
            return "The request signature we calculated does not match the signature you provided"
        if expiry < time.time():
            return "Request has expired"
        return None


class BlobStore:
    """Blobs on disk plus their metadata rows (``blobs`` table)."""

    def __init__(self, root: Path, store: Store) -> None:
        self.root = root
        self.store = store
        self.blob_dir = root / "blobs"
        self.tmp_dir = root / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        # Blob metadata is immutable per file id until a re-upload or collection, both of which go through
        # this object: caching it keeps downloads off the database.
        self._cache: dict[str, BlobInfo] = {}
        self._cache_lock = threading.Lock()
        # Partial uploads from a previous run are garbage.
        for leftover in self.tmp_dir.iterdir():
            leftover.unlink(missing_ok=True)

    def path(self, file_id: str) -> Path:
        """Where the blob of ``file_id`` lives."""
        return self.blob_dir / file_id[:2] / file_id

    def temp_path(self) -> Path:
        """A fresh temporary path on the same file system as the blobs (so rename is atomic)."""
        return self.tmp_dir / f"{uuid.uuid4().hex}.part"

    def info(self, file_id: str) -> BlobInfo | None:
        """Metadata of a blob that is present (orphaned or not), or None."""
        with self._cache_lock:
            cached = self._cache.get(file_id)
        if cached is not None:
            return cached
        rows = self.store.execute("SELECT * FROM blobs WHERE file_id = ?", (file_id,))
        if not rows:
            return None
        row = rows[0]
        info = BlobInfo(row["file_id"], row["size"], row["etag"], row["content_type"], row["file_name"],
                        row["created_at"])
        with self._cache_lock:
            self._cache[file_id] = info
        return info

    async def receive_upload(self, file_id: str, chunks: AsyncIterator[bytes], declared: int | None,
                             max_bytes: int) -> tuple[Path, int, str]:
        """Stream an upload body to a temporary file; returns (temp path, size, md5 hex).

        The caller commits it with :meth:`commit`. Raises :class:`UploadError` when the body is larger than
        allowed or shorter than its declared ``Content-Length``.
        """
        if declared is not None and declared > max_bytes:
            raise UploadError(413, "EntityTooLarge", f"Your proposed upload exceeds the maximum of {max_bytes} bytes")
        temp = self.temp_path()
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        pending = bytearray()

        def flush(handle: BinaryIO, block: bytes) -> None:
            digest.update(block)
            handle.write(block)

        try:
            with open(temp, "wb") as handle:
                # Request bodies arrive in small pieces; hashing and writing them a megabyte at a time in a worker
                # thread keeps the event loop free without paying a thread hop per piece.
                async for chunk in chunks:
                    if not chunk:
                        continue
                    size += len(chunk)
                    if size > max_bytes:
                        raise UploadError(413, "EntityTooLarge",
                                          f"Your proposed upload exceeds the maximum of {max_bytes} bytes")
                    pending += chunk
                    if len(pending) >= CHUNK_SIZE:
                        block, pending = bytes(pending), bytearray()
                        await anyio.to_thread.run_sync(flush, handle, block)
                if pending:
                    await anyio.to_thread.run_sync(flush, handle, bytes(pending))
            if declared is not None and size != declared:
                raise UploadError(400, "IncompleteBody",
                                  f"The request body has {size} bytes but Content-Length declared {declared}")
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return temp, size, digest.hexdigest()

    def commit(self, file_id: str, temp: Path, size: int, md5: str, content_type: str, file_name: str) -> BlobInfo:
        """Move a complete temporary file into place and record its metadata (replacing any old blob)."""
        target = self.path(file_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)
        now = time.time()
        with self.store.tx():
            self.store.execute(
                "INSERT INTO blobs (file_id, size, etag, content_type, file_name, created_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(file_id) DO UPDATE SET size = excluded.size, etag = excluded.etag, "
                "content_type = excluded.content_type, file_name = excluded.file_name, created_at = excluded.created_at",
                (file_id, size, md5, content_type, file_name, now),
            )
            info = BlobInfo(file_id, size, md5, content_type, file_name, now)
            with self._cache_lock:
                self._cache[file_id] = info
        return info

    def add_file(self, file_id: str, source: Path, content_type: str, file_name: str) -> BlobInfo:
        """Store a file produced by the emulator itself (copied, hashed, then renamed into place)."""
        temp = self.temp_path()
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        with open(source, "rb") as src, open(temp, "wb") as dst:
            while True:
                chunk = src.read(CHUNK_SIZE)
                if not chunk:
                    break
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
        return self.commit(file_id, temp, size, digest.hexdigest(), content_type, file_name)

    def add_bytes(self, file_id: str, payload: bytes, content_type: str, file_name: str) -> BlobInfo:
        """Store bytes produced by the emulator (e.g. a PNG preview)."""
        temp = self.temp_path()
        temp.write_bytes(payload)
        md5 = hashlib.md5(payload, usedforsecurity=False).hexdigest()
        return self.commit(file_id, temp, len(payload), md5, content_type, file_name)

    def copy_blob(self, source_id: str, target_id: str) -> BlobInfo | None:
        """Duplicate a blob under a new file id (hard link when possible: blobs are never modified in place)."""
        info = self.info(source_id)
        if info is None:
            return None
        target = self.path(target_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = self.temp_path()
        try:
            os.link(self.path(source_id), temp)
        except OSError:
            shutil.copyfile(self.path(source_id), temp)
        return self.commit(target_id, temp, info.size, info.etag, info.content_type, info.file_name)

    def note_url(self, file_id: str, expires: float) -> None:
        """Remember the latest expiry of a download URL issued for a blob (garbage collection waits for it)."""
        self.store.execute("UPDATE blobs SET url_expiry = MAX(url_expiry, ?) WHERE file_id = ?", (expires, file_id))

    def orphan(self, file_ids: list[str], grace: float) -> None:
        """Mark blobs as no longer referenced; they stay downloadable until their URLs expire (and ``grace``)."""
        now = time.time()
        for file_id in file_ids:
            self.store.execute(
                "UPDATE blobs SET orphaned_at = ?, keep_until = MAX(url_expiry, ?) WHERE file_id = ?",
                (now, now + grace, file_id),
            )

    def collect_garbage(self, now: float | None = None) -> int:
        """Delete orphaned blobs whose retention has passed; returns how many were removed."""
        now = time.time() if now is None else now
        rows = self.store.execute(
            "SELECT file_id FROM blobs WHERE orphaned_at IS NOT NULL AND keep_until < ?", (now,)
        )
        for row in rows:
            with self._cache_lock:
                self._cache.pop(row["file_id"], None)
            self.path(row["file_id"]).unlink(missing_ok=True)
            self.store.execute("DELETE FROM blobs WHERE file_id = ?", (row["file_id"],))
        return len(rows)


_RANGE_RE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """Interpret a ``Range`` header for a body of ``size`` bytes.

    Returns None to send the whole body (no header, a syntactically invalid one, or several ranges, which
    cloud object stores also answer with the whole object), an inclusive ``(start, end)`` pair, or the string
    ``"unsatisfiable"``.
    """
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec or "," in spec:
        return None
    match = _RANGE_RE.match(spec)
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = int(last) if last != "" else size - 1
    if last != "" and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


async def send_file_body(send: Send, fd: int, start: int, length: int, name: str = "") -> None:
    """Send ``length`` bytes of the open file ``fd`` from ``start`` as ASGI body messages, then close ``fd``.

    Chunks are read with ``os.pread`` directly on the event loop: blobs are local files, mostly in the page
    cache, and a 1 MiB read costs far less than handing it to a worker thread and back (measured: a thread hop
    per chunk halved the throughput of 1 MiB range requests). ``pread`` has no shared file position, so
    concurrent responses on the same blob cannot interfere.
    """
    try:
        offset = start
        remaining = length
        if remaining == 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        while remaining > 0:
            chunk = os.pread(fd, min(CHUNK_SIZE, remaining), offset)
            if not chunk:  # the file shrank underneath us: never pad with zeros
                raise OSError(f"blob {name} is shorter than expected")
            offset += len(chunk)
            remaining -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
    finally:
        os.close(fd)


def storage_error_xml(code: str, message: str, resource: str = "") -> bytes:
    """A small S3-style XML error document."""
    from xml.sax.saxutils import escape

    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    ).encode()


def content_disposition(file_name: str) -> str:
    """``attachment`` with an ASCII fallback and an RFC 5987 UTF-8 name."""
    from urllib.parse import quote

    ascii_name = file_name.encode("ascii", "replace").decode().replace('"', "")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(file_name)}"


def describe(info: BlobInfo) -> dict[str, Any]:
    """Blob metadata as plain data (for debugging endpoints and tests)."""
    return {"file_id": info.file_id, "size": info.size, "etag": info.etag, "content_type": info.content_type}
