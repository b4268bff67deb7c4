"""FusionClient's transfers: uploads into new data items, signed download URLs and atomic resumable
downloads, and GETs of pre-signed URLs.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from fusion_stac.client._common import Progress, _bool_param, _flat, logger, partial_path, safe_file_name
from fusion_stac.client._resources import _Resources
from fusion_stac.errors import APIError, FusionError, NotFoundError, TransportError, ValidationError
from fusion_stac.models import Data, DataFile, SignedURL, file_type_for_path
from fusion_stac.storage import shown_url


class _Transfers(_Resources):
    """Uploads (``create_data``), download URLs, ``download_file`` and ``signed_get``."""

    def create_data(
        self,
        org_id: str,
        name: str,
        files: Sequence[str | os.PathLike[str]],
        *,
        file_type: str | None = None,
        wait: bool = True,
        poll_interval: float | None = None,
        timeout: float | None = 1800.0,
        progress: Progress | None = None,
        data_id: str | None = None,
        extended_analysis: bool = False,
    ) -> Data:
        """Upload local files as a new data item, in parallel, and wait for their analysis.

        ``file_type`` defaults to the type implied by each file's extension. ``progress`` gets the
        fraction of bytes uploaded. If an upload fails the half-made data item is deleted. With
        ``wait`` (default) returns once the platform has analysed every file, raising
        :class:`AnalysisError` naming the files it could not analyse.
        """
        paths = [Path(p) for p in files]
        if not paths:
            raise ValidationError("create_data needs at least one file", field="files")
        for p in paths:
            if not p.is_file():
                raise ValidationError(f"no such file to upload: {p}", field="files")
        types = [file_type or file_type_for_path(p.name) for p in paths]
        template = self.request("GET", f"/organisations/{org_id}/data/new").get("model") or {}
        fields = {k: v for k, v in dict(template).items() if v is not None}
        fields.update({"organisation_id": org_id, "name": name})
        # A client-chosen id (API doc 5.1) makes the create POST safe to re-check and repeat.
        item_id = data_id or str(uuid.uuid4())
        rounds = 3
        for round_no in range(1, rounds + 1):
            data = self._create_item(org_id, name, dict(fields, id=item_id))
            try:
                registered: dict[str, int] = {}
                urls = [self._add_file(org_id, data.id, path, ftype, registered)  # in order, each once
                        for path, ftype in zip(paths, types, strict=True)]
                total = sum(p.stat().st_size for p in paths) or 1
                report = _ProgressReporter(progress, total)
                self.map(lambda pair, report=report: self._upload(pair[0], pair[1], report),
                         list(zip(paths, urls, strict=True)))
            except _Unsettled as exc:
                logger.info("data %s: %s; starting the upload over", data.id, exc)
                self._discard_data(org_id, data.id)
                if round_no == rounds:
                    raise TransportError(f"upload of data {name!r} kept losing answers from the platform ({exc})",
                                         path=f"/organisations/{org_id}/data", method="POST") from None
                item_id = data_id or str(uuid.uuid4())
                continue
            except BaseException:
                logger.warning("upload to data %s failed; deleting the incomplete item", data.id)
                try:
                    self.delete_data(org_id, data.id)
                except FusionError:
                    logger.warning("could not delete incomplete data %s", data.id)
                raise
            break
        if wait:
            self.wait_for_analysis(org_id, data.id, poll_interval=poll_interval, timeout=timeout,
                                   extended=extended_analysis, name=name)
        return data

    def _create_item(self, org_id: str, name: str, fields: Mapping[str, Any]) -> Data:
        """``POST /data`` with a client-chosen id, exactly once (re-checked by id after a failure)."""
        item_id = str(fields["id"])
        path = f"/organisations/{org_id}/data"

        def recheck() -> Data | None:
            try:
                return self.get_data(org_id, item_id)
            except NotFoundError:
                return None

        return self._post_once(f"create data {name!r}",
                               lambda: self._model(Data, "POST", path, body=_flat("Data", fields)), recheck)

    def _add_file(self, org_id: str, data_id: str, path: Path, file_type: str, registered: dict[str, int]) -> str:
        """``add_file`` exactly once; returns the upload URL.

        A lost answer after the platform registered the file leaves a record whose upload URL we
        never got (it would never be uploaded nor analysed): that raises :class:`_Unsettled`, and
        the caller starts the data item over.
        """
        where = f"/organisations/{org_id}/data/{data_id}/add_file"

        def post() -> str:
            payload = self.request("POST", where, body={"Data": {"name": path.name, "file_type": file_type}})
            extras = payload.get("extras") or {}
            if not extras.get("url"):
                raise APIError(f"add_file for {path.name} gave no upload URL", path=where, method="POST")
            return str(extras["url"])

        def recheck() -> str | None:
            present = sum(1 for f in self.list_files(org_id, data_id) if f.file_name == path.name)
            if present > registered.get(path.name, 0):
                raise _Unsettled(f"the platform registered {path.name!r} but its upload URL was lost")
            return None

        url = self._post_once(f"add file {path.name!r} to data {data_id}", post, recheck)
        registered[path.name] = registered.get(path.name, 0) + 1
        return url

    def _discard_data(self, org_id: str, data_id: str) -> None:
        """Delete a half-made data item of ours (already gone is fine)."""
        with contextlib.suppress(NotFoundError):
            self.delete_data(org_id, data_id)

    def _upload(self, path: Path, url: str, report: _ProgressReporter) -> None:
        shown = shown_url(url)
        size = path.stat().st_size
        handle = path.open("rb")
        reader = _CountingReader(handle, size, report)

        def rewind() -> _CountingReader:
            reader.rewind()
            return reader

        try:
            response = self._http.send("PUT", url, shown=shown, signed=True, data=reader, rewind=rewind,
                                       headers={"Content-Length": str(size)})
        finally:
            handle.close()
        if response.status_code >= 400:
            error = self._error_from(response, "PUT", shown)
            raise type(error)(f"upload of {path.name} failed: {error.message}", status=error.status, path=shown,
                              method="PUT", request_id=error.request_id)

    # -- files and downloads -----------------------------------------------------------------------------
    def download_url(self, org_id: str, data_id: str, file_id: str, *, preview: bool = False) -> SignedURL:
        """A fresh pre-signed URL for a file (``file_id`` of the DataFile) or its PNG preview."""
        file_id = file_id.file_id if isinstance(file_id, DataFile) else file_id  # type: ignore[union-attr]
        path = f"/organisations/{org_id}/data/{data_id}/download_file/{file_id}"
        issued = datetime.now(timezone.utc)
        payload = self.request("GET", path, params={"preview": _bool_param(preview)})
        extras = payload.get("extras") or {}
        url = extras.get("url")
        if not url:
            raise APIError("the answer has no download URL", path=path, method="GET")
        expires = None
        for key in ("expires_at", "expiry", "expires"):
            if extras.get(key):
                try:
                    from fusion_stac.models import parse_datetime

                    expires = parse_datetime(extras[key])
                except (TypeError, ValueError):
                    expires = None
                break
        return SignedURL.issued(str(url), issued_at=issued, expires_at=expires, lifetime=self.url_lifetime)

    def download_file(
        self,
        org_id: str,
        data_id: str,
        file: DataFile | str,
        dest: str | os.PathLike[str],
        *,
        preview: bool = False,
        progress: Progress | None = None,
        chunk_size: int = 1 << 20,
        attempts: int | None = None,
    ) -> Path:
        """Download a file to ``dest`` (a file path, or an existing directory) atomically.

        Streams into ``<dest>.<file tag>.part`` (named after the file id, so that a partial left by
        an interrupted download of *another* file to the same ``dest`` is never resumed into this
        one), resumes an existing partial with ``Range``, re-signs the URL if it expires (403),
        verifies the size (against ``DataFile.size`` when known, else the server's length) and
        renames into place. Returns the final path.
        """
        file_id = file.file_id if isinstance(file, DataFile) else str(file)
        if not file_id:
            raise ValidationError("the file has no file_id", field="file_id")
        target = Path(dest)
        if target.is_dir():
            # The name comes from the server: reduced to one harmless component, it cannot leave ``dest``.
            base = safe_file_name(file.file_name if isinstance(file, DataFile) else None, file_id)
            target = target / (Path(base).with_suffix(".png").name if preview else base)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = partial_path(target, file_id, preview=preview)
        expected = file.size if isinstance(file, DataFile) and not preview else None
        label = f"{file.file_name!r} ({file_id})" if isinstance(file, DataFile) else file_id
        signed: SignedURL | None = None
        tries = attempts or self._retry.attempts
        last_problem = "no attempt made"
        for attempt in range(1, tries + 1):
            if signed is None or signed.is_expired():
                signed = self.download_url(org_id, data_id, file_id, preview=preview)
            offset = part.stat().st_size if part.exists() else 0
            if expected is not None and offset > expected:
                part.unlink()
                offset = 0
            if expected is not None and offset == expected and offset > 0:
                break
            shown = shown_url(signed.url)
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            response = self._http.send("GET", signed.url, shown=shown, signed=True, headers=headers, stream=True)
            try:
                status = response.status_code
                if status == 416 and offset:
                    total = _content_range_total(response.headers.get("Content-Range"))
                    if total is not None and total == offset and (expected is None or expected == total):
                        break
                    part.unlink()  # our partial does not fit the object any more: start over
                    last_problem = "range not satisfiable"
                    continue
                if status == 403 and attempt < tries:
                    signed = None  # probably expired: sign again
                    last_problem = "403 from storage"
                    continue
                if status >= 400:
                    error = self._error_from(response, "GET", shown)
                    raise type(error)(f"download of {label} failed: {error.message}", status=status, path=shown,
                                      method="GET", request_id=error.request_id)
                if status == 206:
                    start = _content_range_start(response.headers.get("Content-Range"))
                    if start != offset:
                        part.unlink(missing_ok=True)
                        last_problem = "server resumed at the wrong offset"
                        continue
                    total = _content_range_total(response.headers.get("Content-Range"))
                    mode = "ab"
                else:
                    offset = 0
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    mode = "wb"
                if expected is None:
                    expected = total
                report = _ProgressReporter(progress, expected or 0)
                report.add(offset)
                try:
                    with part.open(mode) as out:
                        for chunk in response.iter_content(chunk_size=chunk_size):
                            if chunk:
                                out.write(chunk)
                                self.stats._bytes(len(chunk))
                                report.add(len(chunk))
                except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                    last_problem = f"connection lost mid-download ({type(exc).__name__})"
                    logger.info("download of %s interrupted at %d bytes; resuming", label, part.stat().st_size)
                    self.stats._retry()
                    continue
            finally:
                response.close()
            size = part.stat().st_size
            if expected is not None and size < expected:
                last_problem = f"got {size} of {expected} bytes"
                self.stats._retry()
                continue
            if expected is not None and size > expected:
                part.unlink()
                last_problem = f"got {size} bytes, more than the expected {expected}"
                continue
            break
        else:
            raise TransportError(f"download of {label} did not complete after {tries} attempts: {last_problem}",
                                 path=f"/organisations/{org_id}/data/{data_id}/download_file/{file_id}",
                                 method="GET", attempts=tries)
        if not part.exists():
            part.touch()  # an empty file
        os.replace(part, target)
        return target

    def signed_get(self, url: SignedURL | str, *, headers: Mapping[str, str] | None = None,
                   stream: bool = False) -> requests.Response:
        """GET a pre-signed URL through the client's pool, timeout, retry policy and counters.

        Returns the response whatever its status (the caller decides; 403 usually means the URL
        expired: sign again). No ``Authorization`` header and no netrc credentials are sent.
        """
        raw = url.url if isinstance(url, SignedURL) else url
        return self._http.send("GET", raw, shown=shown_url(raw), signed=True, headers=dict(headers or {}),
                               stream=stream)


def _content_range_total(value: str | None) -> int | None:
    """Total size from ``Content-Range: bytes a-b/N`` or ``bytes */N``."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(match.group(1)) if match else None


class _Unsettled(Exception):
    """Internal: a lost answer left a half-done step on the platform; the step starts over."""


class _ProgressReporter:
    """Thread-safe fraction reporting for uploads and downloads."""

    def __init__(self, callback: Progress | None, total: int) -> None:
        self._callback = callback
        self._total = total
        self._done = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        if self._callback is None or n == 0:
            return
        with self._lock:
            self._done += n
            if self._total:
                self._callback(min(1.0, self._done / self._total))


class _CountingReader:
    """A file wrapper that reports bytes as ``requests`` streams them (keeps ``Content-Length``)."""

    def __init__(self, handle: Any, size: int, report: _ProgressReporter) -> None:
        self._handle = handle
        self._size = size
        self._report = report
        self._sent = 0

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        chunk = self._handle.read(n)
        self._sent += len(chunk)
        self._report.add(len(chunk))
        return chunk

    def rewind(self) -> None:
        self._handle.seek(0)
        self._report.add(-self._sent)
        self._sent = 0
