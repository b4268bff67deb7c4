"""Whole-file downloads: atomic, resumable, verified, cancellable.

:func:`download` puts one stored file at a local path; :func:`download_to` streams it into an open
binary file (what ``fs.get_file(..., outfile=f)`` and ``cat`` need). Both sit on
:class:`~fusion_stac.storage.Transport`'s verified ranged GETs (one HTTP road, one retry loop:
re-signing, resuming a body that ended early, backoff) and add what a whole file needs.

Guarantees of :func:`download`:

* **Never a partial or truncated file at the final path.** Bytes go to a *partial* file beside it,
  named after the destination and a tag of the file id (``<name>.<tag>.part``; a hash of the name
  instead when the suffix would push it past the file system's ``PC_NAME_MAX``). Once complete and
  verified it is flushed, ``fsync``-ed, moved into place with :func:`os.replace` and the directory is
  ``fsync``-ed.
* **Verified.** The byte count must equal the size (from the caller's metadata, else from the first
  ``206``'s ``Content-Range`` total: a bare ``Content-Length`` is never trusted over it, and a ``200``
  whose ``Content-Length`` disagrees with the size is a fault that is retried, never remembered).
  The MD5 is computed while writing (over a resumed prefix too, by re-reading it) and compared with
  the caller's ``md5``, a ``Content-MD5`` of a whole-file answer, or an S3-style single-part ``ETag``
  (the quoted MD5 hex). On a mismatch the partial is deleted and the file fetched once more from
  zero; a second mismatch is a :class:`ChecksumError` naming the file.
* **Resumable, but only into the same version.** A sidecar ``<partial>.meta`` (file id, ETag, size)
  is written before the first byte; an existing partial is resumed from its size only if the sidecar
  matches the file id, the size and -- checked by storage on the first request -- the ETag. Anything
  else (no sidecar, another version, larger than the file) is discarded. Nothing of either is left
  after success.
* **One writer per partial.** The partial is locked exclusively (``fcntl.flock``; an ``O_EXCL`` lock
  file where there is no ``fcntl``). A second download of the same file to the same place, in a thread
  or another process, does not wait: it writes a private temporary file and also renames it into
  place, so both end with one good file.
* **Cancellable.** ``cancel`` (a :class:`threading.Event`) is checked between chunks of at most
  1 MiB; :class:`DownloadCancelled` carries the partial path and byte count so a CLI can say how to
  resume. A read that stalls is bounded by the transport's socket read timeout.

On failure or cancellation the partial stays (the next call resumes it) unless it cannot be resumed
(a private temporary file, nothing written yet, or a file whose version changed).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import IO, Any

import requests

from fusion_stac.storage._answer import parse_content_range
from fusion_stac.storage._broker import FileChangedError, FileKey, VersionPin
from fusion_stac.storage._names import name_length, name_max
from fusion_stac.storage._transport import RangeReader, TransferError, Transport

__all__ = ["ChecksumError", "DownloadCancelled", "DownloadResult", "download", "download_to", "partial_path"]

Progress = Callable[[int], object]

#: Bytes read between two looks at ``cancel`` (and two progress reports); at most 1 MiB.
CHUNK_SIZE = 256 * 1024
_MAX_CHUNK = 1 << 20
_META = ".meta"
_LOCK = ".lock"
_MD5_ETAG_RE = re.compile(r'^(?:W/)?"?([0-9a-fA-F]{32})"?$')


class ChecksumError(TransferError):
    """The downloaded bytes did not match the file's MD5, twice (also an :class:`OSError`)."""


class DownloadCancelled(Exception):
    """The caller's ``cancel`` event stopped a download; the partial file stays for a later resume.

    ``path`` names the remote file, ``partial`` the local partial file (``None`` when streaming into
    a file object or when nothing could be kept), ``received`` the bytes it holds, ``size`` the
    file's size when known.

    Deliberately *not* a :class:`~fusion_stac.errors.FusionError` nor an :class:`OSError`: code that
    retries or translates those (the client's retry loops, fsspec's error handling) must let a
    cancellation through untouched. Nor a :class:`BaseException` like :class:`KeyboardInterrupt`:
    it is an ordinary outcome the caller asked for, and thread pools and ``except Exception``
    clean-ups should handle it as one.
    """

    def __init__(self, path: str, partial: Path | None, received: int, size: int | None) -> None:
        self.path = path
        self.partial = partial
        self.received = received
        self.size = size
        of = f" of {size}" if size is not None else ""
        where = f"; the partial file {partial} resumes on the next download" if partial else ""
        super().__init__(f"{path}: download cancelled after {received}{of} bytes{where}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.partial, self.received, self.size))


@dataclass(frozen=True)
class DownloadResult:
    """What one download did.

    ``path``: the final local path (``None`` for :func:`download_to`); ``size``: bytes in the file;
    ``resumed_from``: bytes of an earlier partial that were kept; ``received``: bytes fetched from
    storage by this call; ``md5``: hex MD5 of the file's bytes; ``md5_verified``: whether it was
    checked against an MD5 from metadata or storage (else only the size was); ``etag``: storage's
    ETag, if it sent one.
    """

    path: Path | None
    size: int
    resumed_from: int
    received: int
    md5: str
    md5_verified: bool
    etag: str | None


def partial_path(dest: str | os.PathLike[str], file_id: str) -> Path:
    """Where a download of ``file_id`` to ``dest`` keeps its bytes until complete.

    ``<name>.<tag>.part`` with a 10-hex tag of the file id (the name ``client.partial_path`` used, so
    partials left by earlier versions are found); ``.<hash of name>.<tag>.part`` when that name plus
    the ``.meta``/``.lock`` suffix would exceed the directory's ``PC_NAME_MAX``.
    """
    dest = Path(dest)
    tag = hashlib.sha256(file_id.encode()).hexdigest()[:10]
    name = f"{dest.name}.{tag}.part"
    if name_length(name + _META) > name_max(dest.parent):
        digest = hashlib.sha256(os.fsencode(dest.name)).hexdigest()[:16]
        name = f".{digest}.{tag}.part"
    return dest.with_name(name)


# -- reading ---------------------------------------------------------------------------------------
class _Reader(RangeReader):
    """A :class:`RangeReader` that also remembers what a whole-file download needs.

    The base class verifies every answer (range, lengths, size claims, ETag) and resumes short
    bodies; this adds two things: when the size must be learnt (``require_range``) a ``200`` that
    ignored ``Range`` is a fault to retry (its length alone is never trusted for the size), and a
    ``Content-MD5`` of an answer carrying the whole file is kept for the checksum.
    """

    def __init__(self, *args: Any, require_range: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.require_range = require_range
        self.content_md5: str | None = None

    def _accept(self, response: requests.Response) -> None:
        headers = response.headers
        parsed = parse_content_range(headers.get("Content-Range"))
        if parsed is None and self.require_range:
            raise HTTPException("storage ignored the Range header; the file size cannot be learnt")
        super()._accept(response)
        whole = parsed is None or (parsed[0] == 0 and parsed[2] is not None and parsed[1] == parsed[2] - 1)
        if whole:
            self.content_md5 = _md5_from_content_md5(headers.get("Content-MD5"))


def _md5_from_content_md5(value: str | None) -> str | None:
    if not value:
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None


def _md5_from_etag(etag: str | None) -> str | None:
    """The MD5 an S3-style ETag of a single-part upload is (``"<32 hex>"``); ``None`` otherwise."""
    match = _MD5_ETAG_RE.match(etag.strip()) if etag else None
    return match[1].lower() if match else None


def _learn_size(transport: Transport, key: FileKey, shown: str, pin: VersionPin) -> int:
    """The file's size from a one-byte ranged GET's ``Content-Range`` total (never ``Content-Length``).

    The reader learns a total only from an answer whose headers agree with each other; one that did
    not (a wrong ``Content-Length``) is asked again, up to the policy's attempts.
    """
    attempts = transport.policy.attempts
    for attempt in range(1, attempts + 1):
        probe = _Reader(transport, key, 0, 1, path=shown, size=None, pin=pin, require_range=True)
        with probe:
            probe.read(1)
        if probe.end == 0:
            return 0  # an empty object (416 to bytes=0-0)
        if probe.total is not None:
            return probe.total
        if attempt < attempts:
            transport.stats.add("retries")
            time.sleep(transport.policy.wait(attempt))
    raise TransferError(f"{shown}: storage did not say how large the file is in {attempts} answers "
                        "(no Content-Range total, or headers that disagree); pass its size", path=shown)


@dataclass
class _Stream:
    """One pass over bytes ``[start, size)`` into ``out``."""

    received: int = 0
    content_md5: str | None = None


def _stream(transport: Transport, key: FileKey, out: IO[bytes], *, start: int, size: int, pin: VersionPin,
            hasher: Any, shown: str, progress: Progress | None, cancel: threading.Event | None,
            chunk_size: int, before_first_write: Callable[[], None] | None, partial: Path | None,
            done: _Stream) -> None:
    if start >= size:
        return
    buffer = memoryview(bytearray(min(chunk_size, size - start)))
    reader = _Reader(transport, key, start, size, path=shown, size=size, pin=pin)
    with reader:
        while reader.remaining:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(shown, partial, start + done.received, size)
            n = reader.readinto(buffer[:min(len(buffer), reader.remaining)])
            if before_first_write is not None:
                before_first_write()
                before_first_write = None
            out.write(buffer[:n])
            hasher.update(buffer[:n])
            done.received += n
            if progress is not None:
                progress(n)
    done.content_md5 = reader.content_md5


def _expected_md5(md5: str | None, stream: _Stream, pin: VersionPin, trust_etag: bool) -> str | None:
    if md5:
        return md5.strip().lower()
    if stream.content_md5:
        return stream.content_md5
    return _md5_from_etag(pin.etag) if trust_etag else None


def _chunk(chunk_size: int) -> int:
    return max(1, min(int(chunk_size), _MAX_CHUNK))


# -- streaming into a file object -----------------------------------------------------------------------
def download_to(
    transport: Transport,
    key: FileKey,
    out: IO[bytes],
    *,
    path: str | None = None,
    size: int | None = None,
    md5: str | None = None,
    etag: str | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    trust_etag_md5: bool = True,
    chunk_size: int = CHUNK_SIZE,
    checksum: bool = True,
) -> DownloadResult:
    """Stream the whole file into ``out`` (an open binary file), verified like :func:`download`.

    On an MD5 mismatch a seekable ``out`` is rewound to where it started, truncated and written once
    more; an unseekable one gets a :class:`ChecksumError` (its bytes are then not to be trusted).
    ``progress(n)`` gets the bytes written since the last call (negative when a rewind discards them).
    ``checksum=False`` skips the MD5 (hashing costs about as much CPU as receiving the bytes): every
    answer is still verified (status, ranges, lengths, version) and the byte count checked against
    the size, as for any range read; a download to a path (:func:`download`) always hashes.
    """
    shown = path or key.url
    chunk_size = _chunk(chunk_size)
    origin: int | None = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if out.seekable():
            origin = out.tell()
    for round_no in (1, 2):
        pin = VersionPin()
        if etag:
            pin.check(key, etag, shown)
        total = size if size is not None else _learn_size(transport, key, shown, pin)
        hasher: Any = hashlib.md5(usedforsecurity=False) if checksum else _NoHash()
        done = _Stream()
        _stream(transport, key, out, start=0, size=total, pin=pin, hasher=hasher, shown=shown,
                progress=progress, cancel=cancel, chunk_size=chunk_size, before_first_write=None,
                partial=None, done=done)
        expected = _expected_md5(md5, done, pin, trust_etag_md5) if checksum else None
        digest = hasher.hexdigest()
        if expected is None or digest == expected:
            return DownloadResult(None, total, 0, done.received, digest, expected is not None, pin.etag)
        if origin is None or round_no == 2:
            break
        out.seek(origin)
        out.truncate()
        if progress is not None:
            progress(-done.received)
    raise ChecksumError(f"{shown}: the downloaded bytes do not match the file's MD5 {expected} (got {digest})",
                        path=shown)


class _NoHash:
    """A hasher that does nothing (``download_to(..., checksum=False)``)."""

    def update(self, data: Any) -> None:
        pass

    def hexdigest(self) -> str:
        return ""


# -- downloading to a path -------------------------------------------------------------------------------
@dataclass
class _Claim:
    """An open partial file this download may write."""

    path: Path
    fd: int
    private: bool
    lock_file: Path | None = None


def _claim(part: Path) -> _Claim:
    """Open (creating it) and lock ``part``; a private temporary file if another writer holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: an O_EXCL lock file instead
        fcntl = None  # type: ignore[assignment]
    for _ in range(16):
        if fcntl is None:  # pragma: no cover
            lock_file = part.with_name(part.name + _LOCK)
            try:
                os.close(os.open(lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            except FileExistsError:
                break
            return _Claim(part, os.open(part, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666),
                          False, lock_file)
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            break
        # The file we locked must still be the partial: a writer that just finished renamed it into
        # place (the lock was then released on what is now the final file). Then open again.
        try:
            same = os.path.samestat(os.stat(part), os.fstat(fd))
        except FileNotFoundError:
            same = False
        if same:
            return _Claim(part, fd, False)
        os.close(fd)
    fd, name = tempfile.mkstemp(prefix=".fusion-", suffix=".part", dir=part.parent)
    return _Claim(Path(name), fd, True)


def _release(claim: _Claim) -> None:
    with contextlib.suppress(OSError):
        os.close(claim.fd)
    if claim.lock_file is not None:  # pragma: no cover - Windows
        with contextlib.suppress(OSError):
            claim.lock_file.unlink()


@dataclass(frozen=True)
class _Meta:
    file_id: str
    etag: str | None
    size: int


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + _META)


def _read_meta(part: Path) -> _Meta | None:
    try:
        data = json.loads(_meta_path(part).read_text(encoding="utf-8"))
        return _Meta(str(data["file_id"]), data.get("etag"), int(data["size"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_meta(part: Path, meta: _Meta) -> None:
    text = json.dumps({"file_id": meta.file_id, "etag": meta.etag, "size": meta.size})
    _meta_path(part).write_text(text, encoding="utf-8")


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":  # pragma: no cover - directories cannot be opened for fsync there
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _rehash(handle: IO[bytes], have: int, hasher: Any, shown: str, part: Path, size: int | None,
            cancel: threading.Event | None) -> None:
    """Feed the first ``have`` bytes of the partial to ``hasher`` (a resumed file is verified whole)."""
    handle.seek(0)
    left = have
    while left:
        if cancel is not None and cancel.is_set():
            raise DownloadCancelled(shown, part, have, size)
        data = handle.read(min(left, _MAX_CHUNK))
        if not data:
            raise OSError(errno.EIO, "the partial file shrank while it was being read", str(part))
        hasher.update(data)
        left -= len(data)


def download(
    transport: Transport,
    key: FileKey,
    dest: str | os.PathLike[str],
    *,
    path: str | None = None,
    size: int | None = None,
    md5: str | None = None,
    etag: str | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    trust_etag_md5: bool = True,
    chunk_size: int = CHUNK_SIZE,
) -> DownloadResult:
    """Download the stored file ``key`` to the local path ``dest`` atomically (see the module docstring).

    ``path`` is the ``fusion://`` name used in errors (default: ``key.url``). ``size``, ``md5`` and
    ``etag`` come from the API's metadata when known; without ``size`` it is learnt from storage's
    ``Content-Range`` (one extra one-byte request). ``progress(n)`` gets the bytes added to the file
    since the last call (a resumed prefix in one call first; negative when bytes are discarded).
    ``trust_etag_md5=False`` stops a 32-hex ETag from being taken for the MD5 (for storage whose
    ETags are opaque hex). The parent directory is created. Raises :class:`DownloadCancelled`,
    :class:`ChecksumError`, :class:`FileChangedError`, :class:`TransferError`, or the built-in
    :class:`PermissionError` / :class:`FileNotFoundError` storage's answers map to.
    """
    dest = Path(dest)
    shown = path or key.url
    chunk_size = _chunk(chunk_size)
    dest.parent.mkdir(parents=True, exist_ok=True)
    claim = _claim(partial_path(dest, key.tag))
    try:
        return _download_claimed(transport, key, dest, claim, shown=shown, size=size, md5=md5, etag=etag,
                                 progress=progress, cancel=cancel, trust_etag=trust_etag_md5,
                                 chunk_size=chunk_size)
    finally:
        _release(claim)


def _download_claimed(transport: Transport, key: FileKey, dest: Path, claim: _Claim, *, shown: str,
                      size: int | None, md5: str | None, etag: str | None, progress: Progress | None,
                      cancel: threading.Event | None, trust_etag: bool, chunk_size: int) -> DownloadResult:
    part = claim.path
    handle = os.fdopen(claim.fd, "r+b", closefd=False)
    keep = False  # whether the partial may stay after a failure (it has a sidecar and bytes)
    with handle:
        meta = None if claim.private else _read_meta(part)
        have = handle.seek(0, os.SEEK_END)
        wanted_etag = VersionPin()
        if etag:
            wanted_etag.check(key, etag, shown)
        if have and (meta is None or meta.file_id != key.tag or have > meta.size
                     or (size is not None and meta.size != size)
                     or (wanted_etag.etag is not None and meta.etag not in (None, wanted_etag.etag))):
            have, meta = 0, None  # not a partial of this version of this file: start over
        if not have:
            handle.truncate(0)
            with contextlib.suppress(FileNotFoundError):
                _meta_path(part).unlink()
        resumed_from = have
        restarted = False
        try:
            while True:
                pin = VersionPin()
                if wanted_etag.etag is not None:
                    pin.etag = wanted_etag.etag
                elif have and meta is not None and meta.etag:
                    pin.etag = meta.etag  # storage must still hold the version the partial is of
                hasher = hashlib.md5(usedforsecurity=False)
                total = size if size is not None else (meta.size if have and meta is not None else None)
                _rehash(handle, have, hasher, shown, part, total, cancel)
                handle.seek(have)
                if progress is not None and have:
                    progress(have)
                done = _Stream()
                keep = bool(have) and not claim.private  # a partial with its sidecar: resumable
                try:
                    if total is None:
                        total = _learn_size(transport, key, shown, pin)
                    if have > total:
                        raise FileChangedError(f"{shown}: the partial file is larger than the file", path=shown)

                    def first_write(total: int = total, pin: VersionPin = pin) -> None:
                        nonlocal keep
                        if not claim.private:
                            _write_meta(part, _Meta(key.tag, pin.etag, total))
                            keep = True

                    _stream(transport, key, handle, start=have, size=total, pin=pin, hasher=hasher, shown=shown,
                            progress=progress, cancel=cancel, chunk_size=chunk_size,
                            before_first_write=None if have else first_write,
                            partial=None if claim.private else part, done=done)
                except FileChangedError:
                    if have and not restarted and wanted_etag.etag is None:
                        restarted = True  # the partial was of another version: start over, once
                        keep = False
                        have = resumed_from = 0
                        meta = None
                        _discard(handle, part, progress, have_before=handle.tell())
                        continue
                    keep = False
                    raise
                handle.flush()
                written = os.fstat(handle.fileno()).st_size
                if written != total:  # cannot happen through the reader; a last guard for the final path
                    keep = False
                    raise TransferError(f"{shown}: {written} bytes on disk, expected {total}", path=shown)
                expected = _expected_md5(md5, done, pin, trust_etag)
                digest = hasher.hexdigest()
                if expected is not None and digest != expected:
                    keep = False
                    _discard(handle, part, progress, have_before=written)
                    if restarted:
                        raise ChecksumError(
                            f"{shown}: the downloaded bytes do not match the file's MD5 {expected} "
                            f"(got {digest}, twice)", path=shown)
                    restarted = True
                    have = resumed_from = 0
                    meta = None
                    continue
                os.fsync(handle.fileno())
                if claim.lock_file is not None:  # pragma: no cover - Windows cannot rename an open file
                    handle.close()
                    os.close(claim.fd)
                    claim.fd = -1
                os.replace(part, dest)
                keep = True  # nothing left to delete
                with contextlib.suppress(FileNotFoundError):
                    _meta_path(part).unlink()
                _fsync_directory(dest.parent)
                return DownloadResult(dest, total, resumed_from, done.received, digest, expected is not None,
                                      pin.etag)
        except BaseException as exc:
            if claim.private or not keep:
                with contextlib.suppress(OSError):
                    os.unlink(part)
                with contextlib.suppress(OSError):
                    _meta_path(part).unlink()
                if isinstance(exc, DownloadCancelled):
                    exc.partial = None
            raise


def _discard(handle: IO[bytes], part: Path, progress: Progress | None, *, have_before: int) -> None:
    """Empty the partial and forget its sidecar (its bytes are of no use)."""
    handle.seek(0)
    handle.truncate(0)
    with contextlib.suppress(FileNotFoundError):
        _meta_path(part).unlink()
    if progress is not None and have_before:
        progress(-have_before)
