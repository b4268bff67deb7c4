"""File storage behind pre-signed URLs: blobs on disk, HMAC-signed URLs, ranged downloads.

Blobs live at ``<data_dir>/storage/blobs/<aa>/<file_id>``; uploads are streamed to ``storage/tmp`` and renamed
into place only when complete, so a blob is never half-written. A blob outlives the database rows that
reference it: deleting a data item only marks its blobs orphaned with a ``keep_until`` time no earlier than
the expiry of the last URL issued for them, and :meth:`BlobStore.collect_garbage` removes them later. This is
what lets the official SDK's quick example download outputs after it has deleted the process.

Pre-signed URLs are S3 presigned URLs in form (query-string SigV4, see :class:`UrlSigner`), on the storage
host of the emulator (a port of its own, as cloud storage is another host than the API):
``http://<storage host>/_storage/<download|upload>/<file_id>?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=..
&X-Amz-Date=..&X-Amz-Expires=..&X-Amz-SignedHeaders=host&X-Amz-Signature=..``. The signing key derives from a
secret generated per data directory, so a URL is bound to one file, one HTTP method and one host, and stops
working when it expires. :class:`StorageEndpoint` decides which host the URLs name.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import math
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, quote, urlsplit

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


#: Region and service named in the credential scope of signed URLs (the platform's storage is in London).
REGION = "eu-west-2"
SERVICE = "s3"
ALGORITHM = "AWS4-HMAC-SHA256"
#: The longest lifetime S3 accepts for a pre-signed URL (one week).
MAX_EXPIRES = 604800
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_REQUIRED = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
             "X-Amz-Signature")


def _uri_encode(text: str, *, encode_slash: bool = True) -> str:
    """SigV4 URI encoding: every byte but ``A-Za-z0-9-_.~`` percent-encoded (``/`` kept in paths)."""
    return quote(text, safe="-_.~" if encode_slash else "-_.~/")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class Refusal:
    """Why storage refuses a signed request: HTTP status, S3 error code and message."""

    status: int
    code: str
    message: str


class UrlSigner:
    """Creates and checks pre-signed storage URLs in the form of S3's query-string SigV4.

    A URL carries ``X-Amz-Algorithm=AWS4-HMAC-SHA256``, ``X-Amz-Credential`` (access key and scope
    ``<yyyymmdd>/eu-west-2/s3/aws4_request``), ``X-Amz-Date`` (``YYYYMMDDTHHMMSSZ``, UTC),
    ``X-Amz-Expires`` (seconds), ``X-Amz-SignedHeaders=host`` and ``X-Amz-Signature``: the hex
    HMAC-SHA256, with a key derived from a per-data-directory secret, of the canonical request
    (method, path, the other parameters sorted, the ``Host`` header). A URL is therefore bound to one
    method, one object, one host and one lifetime, like a real presigned URL.
    """

    def __init__(self, secret: bytes, *, access_key: str | None = None, secret_key: str | None = None,
                 region: str = REGION) -> None:
        self._secret_key = secret_key or hmac.new(secret, b"secret-access-key", hashlib.sha256).hexdigest()
        self.access_key = access_key or (
            "AKIA" + hmac.new(secret, b"access-key-id", hashlib.sha256).hexdigest()[:16].upper())
        self.region = region

    def _signature(self, method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str],
                   signed_headers: list[str], amz_date: str) -> str:
        day = amz_date[:8]
        canonical_query = "&".join(
            f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(query) if k != "X-Amz-Signature")
        canonical_headers = "".join(f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed_headers)
        canonical = "\n".join([method.upper(), _uri_encode(path, encode_slash=False), canonical_query, canonical_headers,
                               ";".join(signed_headers), "UNSIGNED-PAYLOAD"])
        scope = f"{day}/{self.region}/{SERVICE}/aws4_request"
        to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = _hmac(f"AWS4{self._secret_key}".encode(), day)
        for part in (self.region, SERVICE, "aws4_request"):
            key = _hmac(key, part)
        return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()

    def sign(self, base_url: str, method: str, file_id: str, lifetime: float,
             now: float | None = None) -> tuple[str, int]:
        """(absolute URL on ``base_url``, expiry as unix seconds) for ``method`` on ``file_id``.

        The URL lives at least ``lifetime`` seconds (``X-Amz-Expires`` is whole seconds from
        ``X-Amz-Date``, which is whole seconds too).
        """
        now = time.time() if now is None else now
        issued = math.floor(now)
        expires = max(1, math.ceil(now + lifetime) - issued)
        amz_date = time.strftime(_AMZ_DATE, time.gmtime(issued))
        kind = "upload" if method.upper() == "PUT" else "download"
        parts = urlsplit(base_url)
        path = f"{parts.path.rstrip('/')}/_storage/{kind}/{file_id}"
        query = [
            ("X-Amz-Algorithm", ALGORITHM),
            ("X-Amz-Credential", f"{self.access_key}/{amz_date[:8]}/{self.region}/{SERVICE}/aws4_request"),
            ("X-Amz-Date", amz_date),
            ("X-Amz-Expires", str(expires)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        signature = self._signature(method, path, query, {"host": parts.netloc.lower()}, ["host"], amz_date)
        query.append(("X-Amz-Signature", signature))
        text = "&".join(f"{k}={_uri_encode(v)}" for k, v in query)
        return f"{parts.scheme}://{parts.netloc}{path}?{text}", issued + expires

    def check(self, method: str, path: str, query_string: str, headers: Mapping[str, str],
              now: float | None = None) -> Refusal | None:
        """None when the request is validly signed and not expired, else why storage refuses it.

        ``headers`` maps lower-case header names to values (``host`` at least). Like S3: no
        signature at all is 403 ``AccessDenied``; malformed parameters 400
        ``AuthorizationQueryParametersError``; a wrong signature (any parameter, the path, the
        method or the host changed) 403 ``SignatureDoesNotMatch``; an expired URL 403 ``AccessDenied``.
        """
        pairs = parse_qsl(query_string, keep_blank_values=True)
        params: dict[str, str] = {}
        for key, value in pairs:
            params.setdefault(key, value)
        if not any(key in params for key in _REQUIRED):
            return Refusal(403, "AccessDenied", "Access Denied")
        missing = [key for key in _REQUIRED if not params.get(key)]
        if missing:
            return Refusal(400, "AuthorizationQueryParametersError",
                           "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
                           "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.")
        if params["X-Amz-Algorithm"] != ALGORITHM:
            return Refusal(400, "AuthorizationQueryParametersError",
                           f'X-Amz-Algorithm only supports "{ALGORITHM}"')
        amz_date = params["X-Amz-Date"]
        try:
            issued = calendar.timegm(time.strptime(amz_date, _AMZ_DATE))
        except ValueError:
            return Refusal(400, "AuthorizationQueryParametersError",
                           "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
        text = params["X-Amz-Expires"]
        if not text.isdigit():
            return Refusal(400, "AuthorizationQueryParametersError", "X-Amz-Expires should be a number")
        expires = int(text)
        if expires > MAX_EXPIRES:
            return Refusal(400, "AuthorizationQueryParametersError",
                           f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_EXPIRES}")
        credential = params["X-Amz-Credential"].split("/")
        if len(credential) != 5 or credential[4] != "aws4_request":
            return Refusal(400, "AuthorizationQueryParametersError",
                           "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; "
                           'expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".')
        if credential[0] != self.access_key:
            return Refusal(403, "InvalidAccessKeyId",
                           "The AWS Access Key Id you provided does not exist in our records.")
        signed_headers = params["X-Amz-SignedHeaders"].lower().split(";")
        if "host" not in signed_headers or credential[1:4] != [amz_date[:8], self.region, SERVICE]:
            return _MISMATCH
        expected = self._signature(method, path, pairs, headers, signed_headers, amz_date)
        if not hmac.compare_digest(expected, params["X-Amz-Signature"].lower()):
            return _MISMATCH
        now = time.time() if now is None else now
        if now > issued + expires:
            return Refusal(403, "AccessDenied", "Request has expired")
        return None


_MISMATCH = Refusal(403, "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided. "
                    "Check your key and signing method.")


@dataclass
class StorageEndpoint:
    """Which host signed storage URLs name, and which listening port serves storage.

    ``port``: the port of the storage listener (``None``: no listener of its own; URLs then name the
    host the API was reached at, and the API's listener serves storage too).
    ``base_url``: one fixed base URL for every storage URL (``EmulatorSettings.storage_base_url``).
    ``routes``: the base URL at which a caller reached the API -> the base URL its storage URLs name,
    for something put in front of both listeners (a proxy): see ``Emulator.route_storage``.
    Otherwise URLs name the host name the caller used for the API, with the storage port.
    """

    port: int | None = None
    base_url: str | None = None
    routes: dict[str, str] = field(default_factory=dict)

    def base_for(self, api_base: str) -> str:
        """The storage base URL for a caller that reached the API at ``api_base``."""
        routed = self.routes.get(normalise_base(api_base))
        if routed is not None:
            return routed
        if self.base_url is not None:
            return self.base_url
        if self.port is None:
            return api_base.rstrip("/")
        parts = urlsplit(api_base)
        host = parts.hostname or "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"{parts.scheme or 'http'}://{host}:{self.port}"

    def serves(self, local_port: int | None, path: str) -> bool:
        """Whether a listener on ``local_port`` answers ``path`` (storage and API have a port each)."""
        if self.port is None or local_port is None:
            return True
        return (local_port == self.port) == path.startswith(STORAGE_PATH)


STORAGE_PATH = "/_storage/"


def normalise_base(url: str) -> str:
    """``scheme://host:port`` of a base URL, lower-cased, without a trailing slash."""
    return url.strip().rstrip("/").lower()


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


async def send_file_body(send: Send, fd: int, start: int, length: int, name: str = "",
                         gone: Callable[[], bool] | None = None) -> None:
    """Send ``length`` bytes of the open file ``fd`` from ``start`` as ASGI body messages, then close ``fd``.

    ``gone()`` (optional) tells that the client has disconnected: the send stops there, as a cloud store
    stops at a reset (uvicorn would otherwise swallow, and we would read and count, the rest of the body).

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
            if gone is not None and gone():
                return
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
