"""The data plane: every byte and every HTTP request of the library goes through here.

One module per concern, all public through this package:

* :class:`RetryPolicy` -- how hard to try, with :data:`API_RETRY` and :data:`STORAGE_RETRY` defaults;
* :class:`APITransport` -- API requests: pooling, timeouts, retries, counters (:class:`RequestStats`),
  JSON bodies parsed inside the retry loop (:class:`JSONResponse`);
* :class:`FileKey`, :class:`URLBroker` -- pre-signed URLs signed by stable file id, re-signed in time
  and after a refusal; :class:`VersionPin` / :class:`FileChangedError` -- one version per read;
* :class:`Transport` -- verified ranged GETs (status, Content-Range, Content-Length, bytes received,
  ETag), resumed from the last good byte, retried; :class:`RangeReader` streams one range;
* :class:`TransferStats` -- storage counters; :class:`TransferError` -- a range that kept failing;
* :func:`download` / :func:`download_to` -- a whole file to a local path (atomic, resumable into the
  same version only, MD5-verified, locked against a second writer, cancellable) or into an open file,
  returning a :class:`DownloadResult`; :class:`DownloadCancelled`, :class:`ChecksumError`;
* :func:`local_name` / :func:`unique_local_names` -- the platform's file names on disk, kept where the
  OS allows and mapped deterministically (:class:`LocalName` says why) where it does not;
* :func:`upload` -- ``PUT`` a local file to a pre-signed URL, re-signed through an optional ``sign()``,
  verified against the ETag (:class:`UploadResult`, :class:`UploadRefusedError`).

The client, the STAC view, the ``fusion://`` file system and the xarray readers all use these
objects; none of them sends a storage request of its own.
"""

from __future__ import annotations

from fusion_stac.storage._broker import FileChangedError, FileKey, Lease, Signer, URLBroker, VersionPin
from fusion_stac.storage._download import (
    ChecksumError,
    DownloadCancelled,
    DownloadResult,
    download,
    download_to,
    partial_path,
)
from fusion_stac.storage._http import (
    NO_AUTH,
    APITransport,
    BearerAuth,
    JSONResponse,
    RequestStats,
    install_log_redaction,
    shown_url,
)
from fusion_stac.storage._names import LocalName, local_name, name_max, unique_local_names
from fusion_stac.storage._policy import API_RETRY, STORAGE_RETRY, RetryPolicy, parse_retry_after
from fusion_stac.storage._stats import COUNTERS, TransferStats
from fusion_stac.storage._transport import (
    Block,
    RangeReader,
    TransferError,
    Transport,
    merge_ranges,
    slice_ranges,
)
from fusion_stac.storage._upload import UploadRefusedError, UploadResult, upload

__all__ = [
    "API_RETRY",
    "COUNTERS",
    "NO_AUTH",
    "STORAGE_RETRY",
    "APITransport",
    "BearerAuth",
    "Block",
    "ChecksumError",
    "DownloadCancelled",
    "DownloadResult",
    "FileChangedError",
    "FileKey",
    "JSONResponse",
    "Lease",
    "LocalName",
    "RangeReader",
    "RequestStats",
    "RetryPolicy",
    "Signer",
    "TransferError",
    "TransferStats",
    "Transport",
    "URLBroker",
    "UploadRefusedError",
    "UploadResult",
    "VersionPin",
    "download",
    "download_to",
    "install_log_redaction",
    "local_name",
    "merge_ranges",
    "name_max",
    "parse_retry_after",
    "partial_path",
    "shown_url",
    "slice_ranges",
    "unique_local_names",
    "upload",
]
