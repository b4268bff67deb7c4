"""FusionClient: the Fusion Platform REST API from Python, thread-safe and frugal with requests.

One client holds one pooled HTTP session and one login. Everything above it (STAC, fsspec, xarray,
CLI) goes through it. Highlights:

* every request has a (connect, read) timeout and is retried per :mod:`fusion_stac.storage._http`;
* an expired session (401) is renewed transparently, once per request, by a single thread;
* creating data and processes and executing take effect exactly once even when answers are lost:
  after a 5xx or a broken connection the platform is re-checked before anything is repeated;
* lookups by id or name make one request; list iterators page lazily with the ``last`` cursor and
  push filters and search to the server;
* ``map`` and ``group_tree`` fan out over a bounded thread pool; ``stats`` counts requests;
* secrets (password, token, URL signatures) never appear in reprs, logs or error messages.

Progress callbacks receive one float: the fraction done, from 0.0 to 1.0. They may be called from
worker threads, one call at a time.

The package is split by concern; :class:`FusionClient` (``_core``) is composed of one mixin per
concern: ``_session`` (login, requests, error mapping, exactly-once POSTs, paging, fan-out),
``_resources`` (user, organisations, data items, services), ``_processes`` (processes, executions,
components, logs), ``_transfers`` (uploads, downloads, signed GETs) and ``_tree`` (concurrent walks
and their result trees); ``_draft`` holds :class:`ProcessDraft` and ``_common`` the constants and
small helpers. Import from ``fusion_stac.client``, never from its private modules.
"""

from __future__ import annotations

from fusion_stac.client._common import (
    CLOCK_SKEW,
    DEFAULT_API_URL,
    DEFAULT_MAX_WORKERS,
    DEFAULT_PAGE_SIZE,
    DEFAULT_TIMEOUT,
    ENV_API_URL,
    ENV_EMAIL,
    ENV_PASSWORD,
    ENV_USER_ID,
    LOOKUP_LIMIT,
    MAX_RELOGINS,
    Progress,
    is_uuid,
    partial_path,
    safe_file_name,
)
from fusion_stac.client._core import FusionClient, login
from fusion_stac.client._draft import ProcessDraft
from fusion_stac.client._session import Fanout
from fusion_stac.client._tree import ComponentNode, ExecutionNode, GroupTree, OutputNode
from fusion_stac.storage import RequestStats, RetryPolicy

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_API_URL",
    "DEFAULT_MAX_WORKERS",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_TIMEOUT",
    "ENV_API_URL",
    "ENV_EMAIL",
    "ENV_PASSWORD",
    "ENV_USER_ID",
    "LOOKUP_LIMIT",
    "MAX_RELOGINS",
    "ComponentNode",
    "ExecutionNode",
    "Fanout",
    "FusionClient",
    "GroupTree",
    "OutputNode",
    "ProcessDraft",
    "Progress",
    "RequestStats",
    "RetryPolicy",
    "is_uuid",
    "login",
    "partial_path",
    "safe_file_name",
]
