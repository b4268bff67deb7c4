"""Uploads: ``PUT`` one local file to a pre-signed URL, retried, re-signed, verified.

The platform hands out an upload URL once, in the answer to ``POST .../data/{did}/add_file``; the
API has **no** endpoint that re-issues an upload URL for a file it already registered (section 9 of
the API notes: one URL per file), and calling ``add_file`` again would register a second file. So
``sign`` is optional and the caller decides what a fresh URL is:

* with the real platform there is none: pass ``sign=None`` and a refused URL (401/403, or 400
  saying it expired) is an :class:`UploadRefusedError` naming the file, which tells the caller to
  start the data item over (what the client already does for other unsettled uploads);
* a storage or emulator that can re-sign (or a future API endpoint) passes ``sign() -> url``; the
  body is rewound and sent again, at most ``policy.refreshes`` times.

Everything else is :meth:`APITransport.send`'s job (the one API retry loop: 5xx, 429 with
``Retry-After``, connection errors -- a ``PUT`` is idempotent -- each time rewinding the body). The
answer is verified: a 2xx status, and when storage returns an MD5-style ``ETag`` (S3 single-part) it
must equal the MD5 of the bytes sent, computed while sending. Errors name the file, never the URL's
signature.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fusion_stac.storage._download import _md5_from_etag
from fusion_stac.storage._http import APITransport, shown_url
from fusion_stac.storage._transport import _EXPIRED_RE, TransferError

__all__ = ["UploadRefusedError", "UploadResult", "upload"]

Progress = Callable[[int], object]


class UploadRefusedError(TransferError, PermissionError):
    """Storage refused the upload URL (expired or invalid) and no fresh one could be had.

    Also a :class:`PermissionError`. ``status`` is storage's answer. With the real platform this means
    the data item's upload has to be started over (the API cannot re-issue an upload URL).
    """


@dataclass(frozen=True)
class UploadResult:
    """What one upload did: ``size`` bytes sent, their ``md5`` (hex), whether storage confirmed it
    (``md5_verified``, from an MD5-style ETag), storage's ``etag``, ``status``, and how many fresh
    URLs were needed (``resigned``)."""

    size: int
    md5: str
    md5_verified: bool
    etag: str | None
    status: int
    resigned: int


class _Body:
    """The file as a request body: counts, hashes and reports bytes as ``requests`` reads them.

    ``__len__`` keeps ``Content-Length`` (no chunked encoding); :meth:`rewind` starts over for a retry,
    and progress is reported only past the furthest point reached, so a retry never counts twice.
    """

    def __init__(self, handle: BinaryIO, size: int, progress: Progress | None) -> None:
        self._handle = handle
        self._size = size
        self._progress = progress
        self._sent = 0
        self._reported = 0
        self.hasher = hashlib.md5(usedforsecurity=False)

    def __len__(self) -> int:
        return self._size

    @property
    def sent(self) -> int:
        return self._sent

    def read(self, n: int = -1) -> bytes:
        chunk = self._handle.read(n)
        self._sent += len(chunk)
        self.hasher.update(chunk)
        if self._progress is not None and self._sent > self._reported:
            self._progress(self._sent - self._reported)
            self._reported = self._sent
        return chunk

    def rewind(self) -> _Body:
        self._handle.seek(0)
        self._sent = 0
        self.hasher = hashlib.md5(usedforsecurity=False)
        return self


def _refused(status: int, body: bytes) -> bool:
    return status in (401, 403) or (status == 400 and bool(_EXPIRED_RE.search(body)))


def upload(
    http: APITransport,
    source: str | os.PathLike[str],
    url: str,
    *,
    path: str | None = None,
    sign: Callable[[], str] | None = None,
    progress: Progress | None = None,
    trust_etag_md5: bool = True,
) -> UploadResult:
    """``PUT`` the local file ``source`` to the pre-signed ``url``; see the module docstring.

    ``path`` names the file in errors (default: the local path). ``sign()`` returns a fresh upload
    URL for the same file after a refusal (``None``: there is no way to get one). ``progress(n)`` gets
    the bytes sent since the last call. Raises :class:`UploadRefusedError` (refused, no fresh URL),
    :class:`TransferError` (other non-2xx answers, or an ETag that is not the MD5 of what was sent)
    and :class:`~fusion_stac.errors.TransportError` (no answer after every retry).
    """
    source = Path(source)
    label = path or str(source)
    resigned = 0
    with source.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        body = _Body(handle, size, progress)
        while True:
            body.rewind()
            response = http.send("PUT", url, shown=shown_url(url), signed=True, data=body, rewind=body.rewind,
                                 headers={"Content-Length": str(size)})
            status = response.status_code
            text = b"" if 200 <= status < 300 else response.content[:4096]
            response.close()
            if _refused(status, text):
                limit = http.retry.refreshes
                if sign is None or resigned >= limit:
                    why = "no fresh upload URL can be had" if sign is None else f"even after {resigned} fresh URLs"
                    raise UploadRefusedError(
                        f"{label}: storage refused the upload URL (HTTP {status}); {why}. The API gives an "
                        "upload URL only when the file is added: start the upload of the data item over",
                        path=label, method="PUT")
                url = sign()
                resigned += 1
                continue
            if not 200 <= status < 300:
                raise TransferError(f"{label}: storage answered HTTP {status} to the upload", path=label,
                                    method="PUT")
            break
    digest = body.hasher.hexdigest()
    if body.sent != size:
        raise TransferError(f"{label}: sent {body.sent} bytes but the file has {size}; it changed while "
                            "being uploaded", path=label, method="PUT")
    etag = response.headers.get("ETag")
    stored = _md5_from_etag(etag) if trust_etag_md5 else None
    if stored is not None and stored != digest:
        raise TransferError(f"{label}: storage stored bytes with MD5 {stored}, but {digest} were sent",
                            path=label, method="PUT")
    return UploadResult(size, digest, stored is not None, etag, status, resigned)

