"""FusionClient's transfers: uploads into new data items, signed download URLs and atomic resumable
downloads, and GETs of pre-signed URLs.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from fusion_stac import _urls
from fusion_stac.client._common import Progress, _bool_param, _flat, logger
from fusion_stac.client._resources import _Resources
from fusion_stac.errors import APIError, FusionError, NotFoundError, TransportError, ValidationError
from fusion_stac.models import Data, DataFile, SignedURL, file_type_for_path
from fusion_stac.storage import (
    FileKey,
    Transport,
    UploadRefusedError,
    URLBroker,
    download,
    local_name,
    shown_url,
    upload,
)


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

                def send(pair: tuple[Path, str], report: _ProgressReporter = report) -> None:
                    self._upload(pair[0], pair[1], report)

                self.map(send, list(zip(paths, urls, strict=True)))
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
        """PUT one file to its pre-signed upload URL through the storage layer (retried, verified).

        The platform cannot sign a second upload URL for a registered file, so a refused URL (expired
        mid-upload) raises :class:`_Unsettled`: :meth:`create_data` then starts the data item over,
        which gets fresh URLs (the only way to re-sign an upload).
        """
        try:
            upload(self._http, path, url, path=path.name, progress=report.add)
        except UploadRefusedError as exc:
            raise _Unsettled(f"storage refused the upload URL of {path.name!r} ({exc.strerror or exc})") from None

    # -- files and downloads -----------------------------------------------------------------------------
    def download_url(self, org_id: str, data_id: str, file_id: str, *, preview: bool = False) -> SignedURL:
        """A fresh pre-signed URL for a file (``file_id`` of the DataFile) or its PNG preview."""
        file_id = (file_id.file_id or "") if isinstance(file_id, DataFile) else file_id
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

    @property
    def storage(self) -> Transport:
        """The storage transport of this client (created on first use): every download, range read and
        header read goes through it. Download URLs are signed by file id when needed and re-signed
        before they expire or after storage refused them (:class:`~fusion_stac.storage.URLBroker`);
        answers are verified and short bodies resumed (:class:`~fusion_stac.storage.Transport`). It
        shares the client's HTTP session (one connection pool per client)."""
        transport = self._storage
        if transport is None:
            with self._storage_lock:
                transport = self._storage
                if transport is None:
                    broker = URLBroker(self._sign_file, margin=self._url_margin)
                    transport = Transport(broker, policy=self._storage_retry, session=self._http.session,
                                          max_workers=self.max_workers)
                    self._storage = transport
        return transport

    def _sign_file(self, key: FileKey) -> SignedURL:
        return self.download_url(key.organisation_id, key.data_id, key.file_id, preview=key.preview)

    def download_file(
        self,
        org_id: str,
        data_id: str,
        file: DataFile | str,
        dest: str | os.PathLike[str],
        *,
        preview: bool = False,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        """Download a file (a :class:`DataFile` or its file id) to ``dest``: a file path, or an
        existing directory to download into under the platform's file name.

        Goes through the storage layer (:func:`fusion_stac.storage.download`): the bytes go to a
        partial file beside the destination (named after the file id, so that a partial of another
        file is never resumed into this one), an interrupted download resumes from the partial if it
        is of the same file version, every answer is verified, the size is checked against the
        platform's metadata (looked up when given only an id) and the MD5 against storage's ETag
        when it is one; then the file is synced and renamed into place. ``progress`` gets the
        fraction done; setting ``cancel`` stops the download within a chunk, keeps the partial and
        raises :class:`~fusion_stac.storage.DownloadCancelled`. A name the local file system does not
        allow is mapped (:func:`fusion_stac.storage.local_name`). Returns the final path.
        """
        if isinstance(file, DataFile):
            model: DataFile | None = file
            file_id = file.file_id
        else:
            model, file_id = None, str(file)
        if not file_id:
            raise ValidationError("the file has no file_id", field="file_id")
        if model is None:
            model = self._file_model(org_id, data_id, file_id)
        target = Path(dest)
        if target.is_dir():
            name = model.file_name or file_id
            if preview:
                stem = name.rsplit(".", 1)[0] if "." in name.strip(".") else name
                name = f"{stem or file_id}.png"
            target = local_name(name, file_id=file_id, directory=target).path
        size = None if preview else model.size
        key = FileKey(org_id, data_id, file_id, preview=preview)
        label = _urls.file_url(org_id, data_id, file_id) + (" (preview)" if preview else "")
        if model.file_name:
            label = f"{label} ({model.file_name!r})"
        report = _ProgressReporter(progress, size or 0) if progress is not None else None
        result = download(self.storage, key, target, path=label, size=size, cancel=cancel,
                          progress=None if report is None else report.add)
        if progress is not None and not size:
            progress(1.0)
        return result.path or target

    def _file_model(self, org_id: str, data_id: str, file_id: str) -> DataFile:
        """The platform's metadata of one file (its size and name), from the data item's file list."""
        for candidate in self.iter_files(org_id, data_id):
            if candidate.file_id == file_id:
                return candidate
        raise NotFoundError(f"data {data_id} has no file {file_id}",
                            path=f"/organisations/{org_id}/data/{data_id}/files", method="GET")

    def signed_get(self, url: SignedURL | str, *, headers: Mapping[str, str] | None = None,
                   stream: bool = False) -> requests.Response:
        """GET a pre-signed URL through the client's pool, timeout, retry policy and counters.

        Returns the response whatever its status (the caller decides; 403 usually means the URL
        expired: sign again). No ``Authorization`` header and no netrc credentials are sent.
        """
        raw = url.url if isinstance(url, SignedURL) else url
        return self._http.send("GET", raw, shown=shown_url(raw), signed=True, headers=dict(headers or {}),
                               stream=stream)


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
