"""The data plane: every byte and every HTTP request of the library goes through here.

One module per concern, all public through this package:

* :class:`RetryPolicy` -- how hard to try, with :data:`API_RETRY` and :data:`STORAGE_RETRY` defaults;
* :class:`APITransport` -- API requests: pooling, timeouts, retries, counters (:class:`RequestStats`),
  JSON bodies parsed inside the retry loop (:class:`JSONResponse`);
* :class:`FileKey`, :class:`URLBroker` -- pre-signed URLs signed by stable file id, re-signed in time
  and after a refusal; :class:`VersionPin` / :class:`FileChangedError` -- one version per read;
* :class:`Transport` -- verified ranged GETs (status, Content-Range, Content-Length, bytes received,
  ETag), resumed from the last good byte, retried; :class:`RangeReader` streams one range;
* :class:`TransferStats` -- storage counters; :class:`TransferError` -- a range that kept failing.

The client, the STAC view, the ``fusion://`` file system and the xarray readers all use these
objects; none of them sends a storage request of its own.
"""

from __future__ import annotations

from fusion_stac.storage._broker import FileChangedError, FileKey, Lease, Signer, URLBroker, VersionPin
from fusion_stac.storage._http import (
    NO_AUTH,
    APITransport,
    BearerAuth,
    JSONResponse,
    RequestStats,
    install_log_redaction,
    shown_url,
)
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

__all__ = [
    "API_RETRY",
    "COUNTERS",
    "NO_AUTH",
    "STORAGE_RETRY",
    "APITransport",
    "BearerAuth",
    "Block",
    "FileChangedError",
    "FileKey",
    "JSONResponse",
    "Lease",
    "RangeReader",
    "RequestStats",
    "RetryPolicy",
    "Signer",
    "TransferError",
    "TransferStats",
    "Transport",
    "URLBroker",
    "VersionPin",
    "install_log_redaction",
    "merge_ranges",
    "parse_retry_after",
    "shown_url",
    "slice_ranges",
]
