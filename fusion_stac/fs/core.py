"""``fusion://``: every Fusion Platform file, listed, streamed and copied like an object in a bucket.

::

    import fsspec
    fs = fsspec.filesystem("fusion")                       # credentials from the environment
    fs.ls("My Org/uploads")
    with fsspec.open("fusion://My Org/processes/NDVI/latest/execution/ndvi/ndvi/ndvi.tif") as f: ...
    xr.open_dataset("fusion://{org}/data/{data_id}/{file_id}", engine="rasterio")

**Paths** follow :mod:`fusion_stac._urls`: ``{organisation}/uploads/{data}/{file}``,
``{organisation}/processes/{process}/{execution}/{component}/{output}/{file}``, the whole latest run
``{organisation}/processes/{process}/latest`` (kind ``run``: every slice and aggregator of a sliced run)
with ``latest/{execution id|slice-N|aggregator-N|execution}/{component}/{output}/{file}`` below it, and
the short stable form ``{organisation}/data/{data_id}/{file_id}``. Every level accepts an id (always works) or
a name; a name shared by several items raises :class:`~fusion_stac.fs._errors.AmbiguousPathError`
listing the candidates.

**Listing rule.** ``ls`` names each child by its *name where that name is unique among its siblings*,
and by its *id otherwise* (executions, which have no names, always by id), so every listed path is
readable when it can be and unambiguous always. ``ls(org)`` shows ``uploads`` and ``processes``;
``data/`` is an addressing form (it lists uploaded items by id when asked) and is left out of
``find``/``glob``/``du`` from the organisation so nothing is counted twice. Info dicts carry ``name``
(the fsspec path), ``item_name`` (the platform's name), ``kind``, ``id``, ``size``, ``type``,
``file_type``, ``data_id``, ``file_id``, ``organisation_id``, ``crs``, ``bounds`` and
``fusion_url`` (the short stable form: ids only). ``size`` comes from the API's metadata, so opening a
file sends no ``HEAD`` (pre-signed URLs refuse it).

**Reads** go through a URL broker (one pre-signed URL per file id, re-signed before it expires and on
a refusal), a verified, resumed, retried transport, and file objects with adaptive streamed
readahead; see :mod:`._broker`, :mod:`._transport`, :mod:`._file`. ``fs.stats`` counts requests,
bytes, URL signings/refreshes and retries. Caches key on paths and file ids, never on signed URLs:
for a cache key that survives renames use ``info(path)["fusion_url"]`` (``simplecache::`` works with
any form, e.g. ``simplecache::fusion://{org}/data/{data_id}/{file_id}``).

**Writes**: ``put``/``open(..., "wb")`` into ``{organisation}/uploads/{data}[/{file}]`` create a new
data item (file type from the extension) and wait for the platform's analysis. Everything else is
read-only: writes, deletes and moves raise ``PermissionError``.

**Configuration**: storage options ``api_url``, ``email``, ``user_id``, ``password`` (or ``client=`` a
:class:`~fusion_stac.client.FusionClient` for in-process use), else the client's environment variables
``FUSION_PLATFORM_API_URL``, ``FUSION_PLATFORM_EMAIL``, ``FUSION_PLATFORM_USER_ID``,
``FUSION_PLATFORM_PASSWORD``, ``~/.netrc`` and the session kept by ``fusion-stac login``, in that order
(:func:`fusion_stac._credentials.resolve_credentials`, the CLI's lookup). **Pickles carry no secret** (no
password, token or URL): a worker rebuilds its login from the token cache of :mod:`fusion_stac._credentials` or its own
environment. All instances with the same settings in a process share one login, one URL broker
and one set of counters; each instance has its own listing cache.

**Errors** are built-ins naming the ``fusion://`` path, with the API error as ``__cause__``
(table in :mod:`._errors`).

**With GDAL**: ``rasterio.open(url, opener=rasterio_opener(fs))`` (or ``opener=fs``, or
``rasterio.open(fsspec.open(url))``) reads through our file objects; ``rasterio_opener`` also serves
GDAL's multi-range reads in one parallel batch. ``rasterio.open(file_object)`` works too, but rasterio
then copies the whole file into memory first.

**Listings are cached per instance** (a new instance lists afresh; see :mod:`._cache`): what can change
(uploads, processes, a process's runs, ``latest``, a running execution) for ``listings_ttl`` seconds,
10 by default; what is below a finished execution, which never changes, until ``invalidate_cache()``.
``refresh=True`` or ``invalidate_cache()`` see new data at once.

**Limits**: ``latest`` is an alias, not a listed entry, so a glob matches it only where it is spelled
out before the first wildcard (``.../NDVI/latest/*/*/*/*.tif``, not ``processes/*/latest/...``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import TYPE_CHECKING, Any

from fsspec.spec import AbstractFileSystem

from fusion_stac._credentials import ENV_API_URL, ENV_EMAIL, ENV_TOKEN_FILE, ENV_USER_ID
from fusion_stac.fs._cache import DEFAULT_FINAL_TTL, DEFAULT_LISTINGS_TTL, ListingCache
from fusion_stac.fs._conn import _Connection
from fusion_stac.fs._file import DEFAULT_BLOCK
from fusion_stac.fs._transfers import _Transfers
from fusion_stac.storage import STORAGE_RETRY, RetryPolicy, Transport

if TYPE_CHECKING:  # pragma: no cover
    from fusion_stac.client import FusionClient

__all__ = ["FusionFileSystem"]

#: Storage options that are secrets (or live objects): never pickled, serialised or tokenised.
SECRET_OPTIONS: frozenset[str] = frozenset({"password", "token", "client"})
DEFAULT_TOKEN_LIFETIME = 12 * 3600.0


# ==================================================================================================
# The file system


class _FusionMeta(type(AbstractFileSystem)):  # type: ignore[misc]
    """fsspec's instance cache keys on ``str()`` of the arguments; a live client object must not be
    confused with another one of the same repr, so instances built around one are never cached."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("client") is not None:
            kwargs["skip_instance_cache"] = True
        return super().__call__(*args, **kwargs)


class FusionFileSystem(_Transfers, metaclass=_FusionMeta):
    """fsspec file system over the Fusion Platform (protocol ``fusion``).

    Parameters
    ----------
    api_url, email, user_id, password:
        Account settings; missing ones come from ``FUSION_PLATFORM_*`` variables or ``~/.netrc``.
    client:
        An existing :class:`~fusion_stac.client.FusionClient` to use in this process.
    token_cache:
        Read and write the session-token cache of :mod:`fusion_stac._credentials` (default on).
    max_workers:
        Parallel requests for ``get``, ``cat_ranges`` and multi-range reads.
    url_margin:
        Seconds before a signed URL's expiry at which it is replaced.
    retries:
        A :class:`~fusion_stac.storage.RetryPolicy` (or a dict of its fields; storage defaults).
    upload_timeout:
        Seconds to wait for the platform's analysis of an upload.
    listings_ttl:
        Seconds a listing or resolved name of something that changes (uploads, processes, a process's
        runs, ``latest``, a running execution) is reused: default 10 s (``0`` or ``use_listings_cache=False``:
        never). ``listings_expiry_time`` (fsspec's name) sets it too.
    final_listings_ttl:
        The same below a finished execution named by id, which never changes: default ``None`` (kept
        until ``invalidate_cache()``).
    """

    protocol = "fusion"
    root_marker = ""
    blocksize = DEFAULT_BLOCK
    cachable = True

    def __init__(
        self,
        api_url: str | None = None,
        email: str | None = None,
        user_id: str | None = None,
        password: str | None = None,
        *,
        client: FusionClient | None = None,
        token: str | None = None,
        token_cache: bool = True,
        token_lifetime: float = DEFAULT_TOKEN_LIFETIME,
        max_workers: int = 8,
        url_margin: float = 60.0,
        retries: RetryPolicy | dict[str, Any] | None = None,
        upload_timeout: float = 1800.0,
        listings_ttl: float | None = DEFAULT_LISTINGS_TTL,
        final_listings_ttl: float | None = DEFAULT_FINAL_TTL,
        **storage_options: Any,
    ) -> None:
        super().__init__(**storage_options)
        if client is not None:
            api_url = api_url or client.api_url
            email = email or client.email
            user_id = user_id or client.user_id
        policy = RetryPolicy.coerce(retries, STORAGE_RETRY)
        secret = hashlib.sha256(f"{password}\0{token}".encode()).hexdigest() if (password or token) else None
        # Settings the credential lookup reads from the environment belong to the key too: an instance
        # made after they change (another API URL, account or token cache) gets its own login.
        env = tuple(os.environ.get(name) for name in (ENV_API_URL, ENV_EMAIL, ENV_USER_ID, ENV_TOKEN_FILE))
        key = (api_url, (email or "").lower() or None, user_id, secret, id(client) if client else None,
               token_cache, token_lifetime, max_workers, url_margin, policy, None if client else env,
               tuple(sorted((k, str(v)) for k, v in storage_options.items() if "listings" in k)))
        self._conn = _Connection.get(
            key, api_url=api_url, email=email, user_id=user_id, password=password, token=token, client=client,
            token_cache=token_cache, token_lifetime=float(token_lifetime), max_workers=max_workers,
            url_margin=url_margin, retry=policy,
        )
        # Listings belong to this instance (a new instance lists afresh) and age by what they describe.
        expiry = storage_options.get("listings_expiry_time")
        ttl = float(expiry) if expiry is not None and listings_ttl == DEFAULT_LISTINGS_TTL else listings_ttl
        enabled = bool(storage_options.get("use_listings_cache", True))
        self.dircache = ListingCache(ttl, final_listings_ttl, enabled=enabled)
        self._nodes = ListingCache(ttl, final_listings_ttl, enabled=enabled)
        self._nodes._final = self.dircache._final  # one notion of "finished" for both
        self.upload_timeout = upload_timeout
        self._collect = threading.local()

    # -- secrets never leave the process -----------------------------------------------------------
    @property
    def storage_options(self) -> dict[str, Any]:
        """The constructor's options without secrets: what pickles, ``to_json`` and dask see."""
        return self._public_options

    @storage_options.setter
    def storage_options(self, value: dict[str, Any]) -> None:
        self._public_options = {k: v for k, v in value.items() if k not in SECRET_OPTIONS}
        conn = getattr(self, "_conn", None)
        if conn is not None:
            # A worker needs to know whose token to look for, even if the client supplied it.
            for name in ("api_url", "email", "user_id"):
                if self._public_options.get(name) is None and getattr(conn, name, None):
                    self._public_options[name] = getattr(conn, name)

    @property
    def _fs_token(self) -> str:
        from fsspec.utils import tokenize

        return tokenize(type(self), self._public_options)

    def __dask_tokenize__(self) -> str:
        return self._fs_token

    def __reduce__(self) -> tuple[Any, ...]:
        conn = self._conn
        if conn._client is not None:
            conn.remember_token()  # so workers on this machine can reuse the session
        options = dict(self._public_options)
        for name in ("api_url", "email", "user_id"):
            value = getattr(conn, name, None)
            if value and not options.get(name):
                options[name] = value
        return (_rebuild_fs, (type(self), options))

    @property
    def fsid(self) -> str:
        conn = self._conn
        ident = f"{conn.api_url}|{(conn.email or '').lower()}|{conn.user_id}"
        return "fusion-" + hashlib.sha256(ident.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        conn = self._conn
        who = conn.email or conn.user_id or "from environment"
        return f"<FusionFileSystem {conn.api_url or 'default API'} {who}>"

    # -- plumbing ---------------------------------------------------------------------------------
    @property
    def client(self) -> FusionClient:
        """The API client (built on first use from the options, the token cache or the environment)."""
        return self._conn.client

    @property
    def transport(self) -> Transport:
        """The storage transport every read and download of this file system goes through (URLs
        signed by file id and refreshed, answers verified, short bodies resumed, retried): what the
        xarray readers and rasterio opener use too."""
        return self._conn.transport

    @property
    def stats(self) -> dict[str, int]:
        """Data-plane counters (``requests``, ``bytes``, ``urls_signed``, ``url_refreshes``,
        ``retries``) plus ``api_requests``; shared by instances with the same settings."""
        out = self._conn.stats.snapshot()
        client = self._conn._client
        out["api_requests"] = int(client.stats.snapshot()["requests"]) if client is not None else 0
        return out

    def reset_stats(self) -> dict[str, int]:
        """Zero the counters; returns their previous values."""
        before = self.stats
        self._conn.stats.reset()
        if self._conn._client is not None:
            self._conn._client.stats.reset()
        return before


def _rebuild_fs(cls: type[FusionFileSystem], options: dict[str, Any]) -> FusionFileSystem:
    return cls(**options)
