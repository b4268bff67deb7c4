"""``fusion://``: every Fusion Platform file, listed, streamed and copied like an object in a bucket.

::

    import fsspec
    fs = fsspec.filesystem("fusion")                       # credentials from the environment
    fs.ls("My Org/uploads")
    with fsspec.open("fusion://My Org/processes/NDVI/latest/ndvi/ndvi/ndvi.tif") as f: ...
    xr.open_dataset("fusion://{org}/data/{data_id}/{file_id}", engine="rasterio")

**Paths** follow :mod:`fusion_stac._urls`: ``{organisation}/uploads/{data}/{file}``,
``{organisation}/processes/{process}/{execution|latest}/{component}/{output}/{file}`` and the short
stable form ``{organisation}/data/{data_id}/{file_id}``. Every level accepts an id (always works) or
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
``FUSION_PLATFORM_PASSWORD`` and ``~/.netrc``. **Pickles carry no secret** (no password, token or URL):
a worker rebuilds its login from the token cache of :mod:`fusion_stac._credentials` or its own
environment. All instances with the same settings in a process share one login, one URL broker,
one listing cache and one set of counters.

**Errors** are built-ins naming the ``fusion://`` path, with the API error as ``__cause__``
(table in :mod:`._errors`).

**With GDAL**: ``rasterio.open(url, opener=rasterio_opener(fs))`` (or ``opener=fs``, or
``rasterio.open(fsspec.open(url))``) reads through our file objects; ``rasterio_opener`` also serves
GDAL's multi-range reads in one parallel batch. ``rasterio.open(file_object)`` works too, but rasterio
then copies the whole file into memory first.

**Limits**: ``latest`` is an alias, not a listed entry, so a glob matches it only where it is spelled
out before the first wildcard (``.../NDVI/latest/*/*/*.tif``, not ``processes/*/latest/...``). Listings
are cached (``refresh=True`` or ``invalidate_cache()`` to see new data; ``listings_expiry_time=`` to
age them out).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from fsspec.callbacks import DEFAULT_CALLBACK, Callback, NoOpCallback
from fsspec.dircache import DirCache
from fsspec.spec import AbstractFileSystem
from fsspec.utils import isfilelike, stringify_path

from fusion_stac import _credentials
from fusion_stac._urls import (
    LATEST,
    PREFIX,
    FusionPath,
    FusionURLError,
    data_url,
    file_url,
    is_uuid,
    normalise_uuid,
    parse,
    process_url,
    quote_segment,
)
from fusion_stac.errors import AuthenticationError
from fusion_stac.fs._errors import AmbiguousPathError, translate, translated
from fusion_stac.fs._file import DEFAULT_BLOCK, FusionFile, FusionUploadFile
from fusion_stac.storage import (
    STORAGE_RETRY,
    Block,
    FileKey,
    RetryPolicy,
    TransferStats,
    Transport,
    URLBroker,
    VersionPin,
    merge_ranges,
    slice_ranges,
)

if TYPE_CHECKING:  # pragma: no cover
    from fusion_stac.client import FusionClient

__all__ = ["FusionFileSystem"]

log = logging.getLogger("fusion_stac.fs")

#: Storage options that are secrets (or live objects): never pickled, serialised or tokenised.
SECRET_OPTIONS: frozenset[str] = frozenset({"password", "token", "client"})
#: Info keys every entry has (``None`` where they do not apply).
INFO_KEYS: tuple[str, ...] = (
    "name", "type", "size", "kind", "id", "item_name", "organisation_id", "data_id", "file_id",
    "file_type", "crs", "bounds", "fusion_url",
)
SECTIONS_LISTED: tuple[str, ...] = ("uploads", "processes")
DEFAULT_TOKEN_LIFETIME = 12 * 3600.0


# ==================================================================================================
# Shared state per connection


class _Connection:
    """What all file-system instances with the same settings share in one process.

    fsspec caches instances per thread, so dask's threads would otherwise each log in, sign their own
    URLs and list the same directories. Holds the (lazily built) client, broker, transport, counters
    and the listing/resolution caches. Secrets live here in memory only.
    """

    _registry: ClassVar[dict[tuple[Any, ...], _Connection]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        api_url: str | None,
        email: str | None,
        user_id: str | None,
        password: str | None,
        token: str | None,
        client: FusionClient | None,
        token_cache: bool,
        token_lifetime: float,
        max_workers: int,
        url_margin: float,
        retry: RetryPolicy,
        listings: dict[str, Any],
    ) -> None:
        self.api_url = api_url
        self.email = email
        self.user_id = user_id
        self._password = password
        self._token = token
        self._client = client
        self.token_cache = token_cache
        self.token_lifetime = token_lifetime
        self._lock = threading.Lock()
        self._saved_token: str | None = None
        self._cached_token_used: str | None = None
        self.stats = TransferStats()
        self.broker = URLBroker(self._sign, stats=self.stats, margin=url_margin)
        self.transport = Transport(self.broker, policy=retry, max_workers=max_workers)
        self.dircache = DirCache(**listings)
        self.nodes = DirCache(**listings)

    @classmethod
    def get(cls, key: tuple[Any, ...], **kwargs: Any) -> _Connection:
        with cls._registry_lock:
            conn = cls._registry.get(key)
            if conn is None:
                conn = cls._registry[key] = cls(**kwargs)
            return conn

    # -- the client ----------------------------------------------------------------------------
    @property
    def client(self) -> FusionClient:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._build_client()
                client = self._client
        return client

    def _build_client(self) -> FusionClient:
        from fusion_stac.client import FusionClient

        # Settings as the client reads them (options, then environment, then netrc).
        with FusionClient.from_env(self.api_url, email=self.email, user_id=self.user_id) as probe:
            api_url, email, user_id = probe.api_url, probe.email, probe.user_id
        token = self._token
        if token is None and self.token_cache:
            cached = _credentials.load_token(api_url, email=email, user_id=user_id)
            if cached is not None:
                token = cached.access_token
                user_id = user_id or cached.user_id
                self._cached_token_used = token
                log.debug("using a cached session for %s", email or user_id)
        client = FusionClient.from_env(api_url, email=email, user_id=user_id, password=self._password,
                                       token=token, on_login=lambda c: self.remember_token())
        self.api_url, self.email, self.user_id = client.api_url, client.email, client.user_id
        return client

    def remember_token(self) -> None:
        """After a successful call: file a new session token in the cache for other processes."""
        if not self.token_cache or self._client is None:
            return
        client = self._client
        token = _session_token(client)
        if not token or token == self._saved_token:
            return
        self._saved_token = token
        if token == self._cached_token_used:
            return  # it came from the cache
        user_id = client.user_id
        if not user_id:
            return
        try:
            _credentials.save_token(client.api_url, token, user_id=user_id, email=client.email,
                                    expires_at=time.time() + self.token_lifetime)
        except OSError as exc:  # a read-only home must not break reading data
            log.warning("could not write the token cache: %s", exc)

    def forget_cached_token(self) -> None:
        """A cached session was refused: drop it so nobody else tries it."""
        if self._cached_token_used and self.token_cache and self._client is not None:
            with contextlib.suppress(OSError):
                _credentials.clear_tokens(self._client.api_url, email=self._client.email,
                                          user_id=self._client.user_id)
            self._cached_token_used = None

    # -- signing -------------------------------------------------------------------------------
    def _sign(self, key: FileKey) -> Any:
        with translated(key.url):
            signed = self.client.download_url(key.organisation_id, key.data_id, key.file_id)
        self.remember_token()
        return signed


def _forget_connections_after_fork() -> None:
    """A forked child must not share its parent's pooled sockets, locks or threads: start afresh
    (fsspec does the same for its instance cache)."""
    _Connection._registry = {}
    _Connection._registry_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_connections_after_fork)


def _session_token(client: Any) -> str | None:
    """The client's current session token (public accessor if it has one)."""
    for attr in ("session_token", "access_token", "_token"):
        value = getattr(client, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _label_children(items: Sequence[tuple[str, str | None]]) -> list[str]:
    """Path segment per child: its name where unique among siblings (and usable), else its id."""
    counts: dict[str, int] = {}
    for _, name in items:
        if name:
            counts[name] = counts.get(name, 0) + 1
    ids = {i for i, _ in items}
    labels = []
    for item_id, name in items:
        usable = (
            bool(name) and counts.get(name or "", 0) == 1 and name not in (".", "..", LATEST)
            and not any(ord(c) < 32 for c in name or "") and (name not in ids or name == item_id)
        )
        labels.append(quote_segment(name) if usable else item_id)  # type: ignore[arg-type]
    return labels


# ==================================================================================================
# The file system


class _FusionMeta(type(AbstractFileSystem)):  # type: ignore[misc]
    """fsspec's instance cache keys on ``str()`` of the arguments; a live client object must not be
    confused with another one of the same repr, so instances built around one are never cached."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("client") is not None:
            kwargs["skip_instance_cache"] = True
        return super().__call__(*args, **kwargs)


class FusionFileSystem(AbstractFileSystem, metaclass=_FusionMeta):
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
    use_listings_cache, listings_expiry_time, max_paths:
        fsspec's listing cache (shared by instances with the same settings).
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
        **storage_options: Any,
    ) -> None:
        super().__init__(**storage_options)
        if client is not None:
            api_url = api_url or client.api_url
            email = email or client.email
            user_id = user_id or client.user_id
        policy = RetryPolicy.coerce(retries, STORAGE_RETRY)
        listings = {k: storage_options[k] for k in ("use_listings_cache", "listings_expiry_time", "max_paths")
                    if k in storage_options}
        secret = hashlib.sha256(f"{password}\0{token}".encode()).hexdigest() if (password or token) else None
        key = (api_url, (email or "").lower() or None, user_id, secret, id(client) if client else None,
               token_cache, token_lifetime, max_workers, url_margin, policy, tuple(sorted(listings.items())))
        self._conn = _Connection.get(
            key, api_url=api_url, email=email, user_id=user_id, password=password, token=token, client=client,
            token_cache=token_cache, token_lifetime=float(token_lifetime), max_workers=max_workers,
            url_margin=url_margin, retry=policy, listings=listings,
        )
        self.dircache = self._conn.dircache
        self.upload_timeout = upload_timeout
        self._collect = threading.local()

    # -- secrets never leave the process -----------------------------------------------------------
    @property  # type: ignore[override]
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

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = stringify_path(path)
        if path.startswith("fusion:"):
            # "fusion://x", and "fusion:/x" as path libraries (and GDAL) collapse the double slash
            path = path[len("fusion:"):].lstrip("/") if not path.startswith("fusion::") else path[8:]
        return path.strip("/")

    def unstrip_protocol(self, name: str) -> str:
        return PREFIX + self._strip_protocol(name)

    def _url(self, path: str) -> str:
        return PREFIX + path

    def _call(self, path: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """An API call on behalf of ``path``: errors translated, new session token cached."""
        try:
            with translated(self._url(path)):
                result = fn(*args, **kwargs)
        except PermissionError as exc:
            if isinstance(exc.__cause__, AuthenticationError):
                self._conn.forget_cached_token()
            raise
        self._conn.remember_token()
        return result

    # -- info builders -----------------------------------------------------------------------------
    @staticmethod
    def _entry(path: str, kind: str, *, type: str = "directory", **fields: Any) -> dict[str, Any]:
        info: dict[str, Any] = dict.fromkeys(INFO_KEYS)
        info.update(name=path, type=type, size=0 if type == "directory" else None, kind=kind)
        info.update(fields)
        return info

    def _org_entry(self, path: str, org: Any) -> dict[str, Any]:
        return self._entry(path, "organisation", id=org.id, item_name=org.name, organisation_id=org.id,
                           fusion_url=PREFIX + org.id)

    def _section_entry(self, path: str, org_id: str, section: str) -> dict[str, Any]:
        return self._entry(path, "section", id=section, item_name=section, organisation_id=org_id,
                           fusion_url=f"{PREFIX}{org_id}/{section}")

    def _data_entry(self, path: str, kind: str, org_id: str, data: Any, **extra: Any) -> dict[str, Any]:
        return self._entry(
            path, kind, id=data.id, item_name=data.name, organisation_id=org_id, data_id=data.id,
            bounds=list(data.bounds) if data.bounds else None, fusion_url=data_url(org_id, data.id),
            created=_iso(data.created_at), updated=_iso(data.updated_at), **extra,
        )

    def _file_entry(self, path: str, org_id: str, f: Any) -> dict[str, Any]:
        return self._entry(
            path, "file", type="file", size=f.size, id=f.file_id, item_name=f.file_name,
            organisation_id=org_id, data_id=f.data_id, file_id=f.file_id, record_id=f.id,
            file_type=f.file_type, crs=f.crs, bounds=list(f.bounds) if f.bounds else None,
            resolution=f.resolution, analysed=f.analysed, fusion_url=file_url(org_id, f.data_id, f.file_id),
            created=_iso(f.created_at), updated=_iso(f.updated_at),
        )

    def _process_entry(self, path: str, org_id: str, p: Any) -> dict[str, Any]:
        return self._entry(path, "process", id=p.id, item_name=p.name, organisation_id=org_id, process_id=p.id,
                           process_status=p.process_status, fusion_url=process_url(org_id, p.id),
                           created=_iso(p.created_at), updated=_iso(p.updated_at))

    def _execution_entry(self, path: str, org_id: str, process_id: str, e: Any) -> dict[str, Any]:
        return self._entry(
            path, "execution", id=e.id, item_name=e.name, organisation_id=org_id, process_id=process_id,
            execution_id=e.id, group_id=e.group_id, group_index=e.group_index, group_count=e.group_count,
            progress=e.progress, success=e.success, started_at=_iso(e.started_at), ended_at=_iso(e.ended_at),
            fusion_url=process_url(org_id, process_id, e.id),
            created=_iso(e.created_at), updated=_iso(e.updated_at),
        )

    def _component_entry(self, path: str, org_id: str, process_id: str, execution_id: str,
                         c: Any) -> dict[str, Any]:
        return self._entry(
            path, "component", id=c.id, item_name=c.name, organisation_id=org_id, process_id=process_id,
            execution_id=execution_id, component_id=c.id, outputs=list(c.outputs), inputs=list(c.inputs),
            success=c.success, fusion_url=process_url(org_id, process_id, execution_id, c.id),
            created=_iso(c.created_at), updated=_iso(c.updated_at),
        )

    # -- listing ----------------------------------------------------------------------------------
    def ls(self, path: str, detail: bool = True, refresh: bool = False, **kwargs: Any) -> list[Any]:
        """Children of ``path`` (names where unique among siblings, ids otherwise); a file lists itself."""
        path = self._strip_protocol(path)
        listing = None if refresh else self._cached_listing(path)
        if listing is None:
            node = self._cheap_node(path) if not refresh else self._node(path, refresh=True)
            listing = [node] if node["type"] == "file" else self._fill_listing(path, node)
        if detail:
            return [dict(entry) for entry in listing]
        return sorted(entry["name"] for entry in listing)

    def _cached_listing(self, path: str) -> list[dict[str, Any]] | None:
        try:
            return self.dircache[path]
        except KeyError:
            return None

    def _fill_listing(self, path: str, node: dict[str, Any]) -> list[dict[str, Any]]:
        listing = self._list_children(path, node)
        self.dircache[path] = listing
        for child in listing:
            self._conn.nodes[child["name"]] = child
        return listing

    def _list_children(self, path: str, node: dict[str, Any]) -> list[dict[str, Any]]:
        kind = node["kind"]
        client = self._lazy_client(path)
        prefix = f"{path}/" if path else ""

        def named(items: list[Any], build: Callable[[str, Any], dict[str, Any]],
                  name_of: Callable[[Any], str | None] = lambda m: m.name,
                  id_of: Callable[[Any], str] = lambda m: m.id) -> list[dict[str, Any]]:
            labels = _label_children([(id_of(m), name_of(m)) for m in items])
            return [build(prefix + label, m) for label, m in zip(labels, items, strict=True)]

        if kind == "root":
            orgs = self._call(path, lambda: client.map(client.get_organisation, client.user.organisation_ids))
            return named(orgs, self._org_entry)
        org_id = node["organisation_id"]
        if kind == "organisation":
            return [self._section_entry(prefix + s, org_id, s) for s in SECTIONS_LISTED]
        if kind == "section":
            section = node["id"]
            if section in ("uploads", "data"):
                items = self._call(path, lambda: list(client.iter_data(org_id)))
                if section == "data":  # the addressing form: ids only
                    return [self._data_entry(prefix + d.id, "data", org_id, d) for d in items]
                return named(items, lambda p, d: self._data_entry(p, "data", org_id, d))
            items = self._call(path, lambda: list(client.iter_processes(org_id)))
            return named(items, lambda p, m: self._process_entry(p, org_id, m))
        if kind in ("data", "output"):
            files = self._call(path, client.list_files, org_id, node["data_id"])
            return named(files, lambda p, f: self._file_entry(p, org_id, f),
                         name_of=lambda f: f.file_name, id_of=lambda f: f.file_id)
        if kind == "process":
            pid = node["process_id"]
            runs = self._call(path, lambda: list(client.iter_executions(org_id, pid)))
            return [self._execution_entry(prefix + e.id, org_id, pid, e) for e in runs]
        if kind == "execution":
            pid, eid = node["process_id"], node["execution_id"]
            comps = self._call(path, lambda: list(client.iter_components(org_id, eid)))
            return named(comps, lambda p, c: self._component_entry(p, org_id, pid, eid, c))
        if kind == "component":
            outputs = self._call(path, lambda: client.map(lambda d: client.get_data(org_id, d), node["outputs"]))
            return named(outputs, lambda p, d: self._data_entry(
                p, "output", org_id, d, process_id=node["process_id"], execution_id=node["execution_id"],
                component_id=node["component_id"]))
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", self._url(path))  # pragma: no cover

    def _lazy_client(self, path: str) -> FusionClient:
        with translated(self._url(path)):
            return self._conn.client

    # -- resolution -------------------------------------------------------------------------------
    def info(self, path: str, refresh: bool = False, **kwargs: Any) -> dict[str, Any]:
        """What is at ``path`` (see the module docs for the keys); ``FileNotFoundError`` if nothing."""
        path = self._strip_protocol(path)
        return dict(self._node(path, refresh=refresh))

    def _node(self, path: str, refresh: bool = False) -> dict[str, Any]:
        if not refresh:
            try:
                return self._conn.nodes[path]
            except KeyError:
                pass
        url = self._url(path)
        with translated(url):
            fp = parse(path)
        try:
            node = self._resolve(path, fp)
        except FileNotFoundError as exc:
            if exc.filename in (None, url):
                raise
            raise _renamed(exc, url) from exc
        node = dict(node, name=path)
        self._conn.nodes[path] = node
        return node

    def _cheap_node(self, path: str) -> dict[str, Any]:
        """The node at ``path``, or a stand-in with just its kind and ids when ids alone determine it
        (an organisation id, the short ``data/{data_id}`` form): lets ``{org_id}/data/{data_id}/{file_id}``
        resolve with a single API request (listing the files)."""
        try:
            return self._conn.nodes[path]
        except KeyError:
            pass
        with translated(self._url(path)):
            fp = parse(path)
        org = fp.organisation
        if org is not None and is_uuid(org):
            org_id = normalise_uuid(org)
            if fp.kind == "organisation":
                return self._entry(path, "organisation", id=org_id, organisation_id=org_id,
                                   fusion_url=PREFIX + org_id)
            if fp.kind == "data" and fp.section == "data":
                data_id = normalise_uuid(fp.data or "")
                return self._entry(path, "data", id=data_id, organisation_id=org_id, data_id=data_id,
                                   fusion_url=data_url(org_id, data_id))
        return self._node(path)

    def _resolve(self, path: str, fp: FusionPath) -> dict[str, Any]:
        kind = fp.kind
        if kind == "root":
            return self._entry("", "root", item_name="")
        client = self._lazy_client(path)
        parent_path = self._parent(path)
        segment = fp.segments[-1]
        if kind == "organisation":
            if is_uuid(segment):
                try:
                    return self._org_entry(path, self._call(path, client.get_organisation, segment))
                except FileNotFoundError:
                    pass  # maybe a name that looks like an id
            return self._match(path, self.ls("", detail=True), segment, "organisation")
        if kind == "section":  # check the organisation exists (one request, cached)
            return self._section_entry(path, self._node(parent_path)["organisation_id"], segment)
        parent = self._cheap_node(parent_path)
        org_id = parent["organisation_id"]
        if kind == "data":
            if fp.section == "data" or is_uuid(segment):
                try:
                    data = self._call(path, client.get_data, org_id, segment)
                    return self._data_entry(path, "data", org_id, data)
                except FileNotFoundError:
                    if fp.section == "data":
                        raise
            candidates = self._call(path, lambda: [d for d in client.iter_data(org_id, name=segment)
                                                   if d.name == segment])
            data = self._one(path, candidates, segment, "data")
            return self._data_entry(path, "data", org_id, data)
        if kind == "process":
            if is_uuid(segment):
                try:
                    return self._process_entry(path, org_id, self._call(path, client.get_process, org_id, segment))
                except FileNotFoundError:
                    pass
            candidates = self._call(path, lambda: [p for p in client.iter_processes(org_id, name=segment)
                                                   if p.name == segment])
            return self._process_entry(path, org_id, self._one(path, candidates, segment, "process"))
        if kind == "execution":
            pid = parent["process_id"]
            if segment == LATEST:
                run = self._call(path, client.latest_execution, org_id, pid)
            elif not is_uuid(segment):
                raise FileNotFoundError(errno.ENOENT, f"executions are named by id or {LATEST!r}, not {segment!r}",
                                        self._url(path))
            else:
                run = self._call(path, client.get_execution, org_id, segment)
                if run.process_id and run.process_id != pid:
                    raise FileNotFoundError(errno.ENOENT, f"execution {segment} belongs to another process",
                                            self._url(path))
            return self._execution_entry(path, org_id, pid, run)
        # component, output and file: match against the parent's listing (cached)
        siblings = self._cached_listing(parent_path)
        if siblings is None:
            siblings = self._fill_listing(parent_path, parent)
        return self._match(path, siblings, segment, kind)

    def _match(self, path: str, siblings: list[dict[str, Any]], segment: str, kind: str) -> dict[str, Any]:
        """The sibling called ``segment``: by id first (any case), then by exact name."""
        folded = segment.lower()
        for entry in siblings:
            if folded in (str(entry.get("id") or "").lower(), str(entry.get("record_id") or "").lower()):
                return entry
        named = [e for e in siblings if e.get("item_name") == segment]
        if len(named) == 1:
            return named[0]
        if named:
            raise AmbiguousPathError(self._url(path), kind, segment, [(e["id"], e["item_name"]) for e in named])
        listed = [e for e in siblings if e["name"].rsplit("/", 1)[-1] == quote_segment(segment)]
        if listed:
            return listed[0]
        raise FileNotFoundError(errno.ENOENT, f"no {kind} with id or name {segment!r}", self._url(path))

    def _one(self, path: str, items: list[Any], segment: str, kind: str) -> Any:
        if len(items) == 1:
            return items[0]
        if not items:
            raise FileNotFoundError(errno.ENOENT, f"no {kind} with id or name {segment!r}", self._url(path))
        raise AmbiguousPathError(self._url(path), kind, segment, [(m.id, m.name) for m in items])

    def _file(self, path: str) -> tuple[str, dict[str, Any], FileKey]:
        """(stripped path, info, key) of a file; ``IsADirectoryError`` for anything else."""
        path = self._strip_protocol(path)
        info = self._node(path)
        if info["type"] != "file":
            raise IsADirectoryError(errno.EISDIR, f"this is a {info['kind']}, not a file", self._url(path))
        key = FileKey(info["organisation_id"], info["data_id"], info["file_id"])
        if info["size"] is None:
            info = dict(info, size=self._probe_size(path, key))
            self._conn.nodes[path] = info
        return path, info, key

    def _probe_size(self, path: str, key: FileKey) -> int:
        """Size of a file whose analysis has not recorded one: from a 1-byte ranged GET (never HEAD)."""
        reader = self._conn.transport.open_range(key, 0, 1, path=self._url(path))
        try:
            reader.read()
        except OSError as exc:
            if getattr(exc, "errno", None) == errno.EIO or "416" in str(exc):
                return 0
            raise
        finally:
            reader.close()
        if reader.total is None:
            raise OSError(errno.EIO, "storage did not report the file size", self._url(path))
        return reader.total

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget listings and resolved names: all, or those of ``path``, below it and of its parents."""
        if path is None:
            self.dircache.clear()
            self._conn.nodes.clear()
        else:
            path = self._strip_protocol(path)
            below = path + "/"
            for key in list(self.dircache._cache):
                if key == path or key.startswith(below) or below.startswith(key + "/") or key == "":
                    self.dircache._cache.pop(key, None)
            for key in list(self._conn.nodes._cache):
                if key == path or key.startswith(below):
                    self._conn.nodes._cache.pop(key, None)
        super().invalidate_cache(path)

    def ukey(self, path: str) -> str:
        """A key that changes only when the file does: its stable file id and size."""
        _, info, key = self._file(path)
        return f"{key.file_id}:{info['size']}"

    def checksum(self, path: str) -> int:
        return int(hashlib.sha256(self.ukey(path).encode()).hexdigest()[:16], 16)

    def created(self, path: str) -> datetime:
        return self._when(path, "created")

    def modified(self, path: str) -> datetime:
        return self._when(path, "updated")

    def _when(self, path: str, field: str) -> datetime:
        value = self.info(path).get(field) or self.info(path).get("created")
        if not value:
            raise NotImplementedError(f"{self._url(self._strip_protocol(path))} has no {field} time")
        return datetime.fromisoformat(value)

    def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> str:
        """A pre-signed HTTPS URL of the file (valid as long as the platform says; a secret)."""
        _, _, key = self._file(path)
        return self._conn.broker.lease(key).url

    # -- reading ----------------------------------------------------------------------------------
    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        cache_type: str = "fusion",
        **kwargs: Any,
    ) -> Any:
        path = self._strip_protocol(path)
        if "r" not in mode:
            self._check_writable(path)
            return FusionUploadFile(self, path, mode=mode, autocommit=autocommit)
        path, info, key = self._file(path)
        return FusionFile(
            self, path, key=key, details=info, transport=self._conn.transport, mode=mode,
            block_size=block_size, cache_type=cache_type, cache_options=cache_options, **kwargs,
        )

    @staticmethod
    def _bounds(size: int, start: int | None, end: int | None) -> tuple[int, int]:
        start = 0 if start is None else (max(size + start, 0) if start < 0 else min(start, size))
        end = size if end is None else (max(size + end, 0) if end < 0 else min(end, size))
        return start, max(start, end)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """Bytes ``[start, end)`` of a file (negative values count from the end), verified."""
        path, info, key = self._file(path)
        s, e = self._bounds(info["size"], start, end)
        return self._conn.transport.read_range(key, s, e, path=self._url(path), size=info["size"])

    def cat_ranges(
        self,
        paths: list[str],
        starts: int | list[int | None] | None,
        ends: int | list[int | None] | None,
        max_gap: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list[Any]:
        """Many byte ranges of many files: overlapping/adjacent ranges of a file (or within
        ``max_gap`` bytes) are merged, and all requests run in parallel."""
        if not isinstance(paths, list):
            raise TypeError("cat_ranges takes a list of paths")
        starts = starts if isinstance(starts, list) else [starts] * len(paths)
        ends = ends if isinstance(ends, list) else [ends] * len(paths)
        if not len(starts) == len(ends) == len(paths):
            raise ValueError("cat_ranges: paths, starts and ends must have the same length")
        results: list[Any] = [None] * len(paths)
        per_file: dict[FileKey, tuple[str, int, list[tuple[int, tuple[int, int]]]]] = {}
        for i, (p, s, e) in enumerate(zip(paths, starts, ends, strict=True)):
            try:
                stripped, info, key = self._file(p)
            except Exception as exc:
                if on_error != "return":
                    raise
                results[i] = exc
                continue
            entry = per_file.setdefault(key, (stripped, info["size"], []))
            entry[2].append((i, self._bounds(info["size"], s, e)))
        blocks: list[Block] = []
        plans = []
        for key, (stripped, size, wanted) in per_file.items():
            merged = merge_ranges([r for _, r in wanted], max_gap=max_gap or 0)
            pin = VersionPin()
            first = len(blocks)
            blocks.extend(Block(key, s, e, self._url(stripped), size, pin) for s, e in merged)
            plans.append((wanted, merged, first))
        payloads = self._conn.transport.read_blocks(blocks, raise_first=on_error != "return")
        for wanted, merged, first in plans:
            sliced = slice_ranges([r for _, r in wanted], merged, payloads[first:first + len(merged)])
            for (i, _), value in zip(wanted, sliced, strict=True):
                results[i] = value
        return results

    def get_file(self, rpath: str, lpath: Any, callback: Callback = DEFAULT_CALLBACK, outfile: Any = None,
                 **kwargs: Any) -> None:
        """Download one file; a local path is written atomically: into a partial file named after the
        file id, renamed when complete; a download interrupted earlier (killed, failed) resumes."""
        collecting = getattr(self._collect, "gets", None)
        if collecting is not None:
            collecting.append((rpath, lpath))
            return
        if outfile is None and isfilelike(lpath):
            outfile = lpath
        if outfile is None and self.isdir(rpath):
            os.makedirs(lpath, exist_ok=True)
            return
        path, info, key = self._file(rpath)
        size = info["size"]
        callback.set_size(size)
        transport = self._conn.transport
        if outfile is not None:
            transport.copy_to(key, size, outfile, path=self._url(path), progress=callback.relative_update)
            return
        lpath = os.fspath(lpath)
        directory = os.path.dirname(os.path.abspath(lpath))
        os.makedirs(directory, exist_ok=True)
        part, fd = _claim_partial(lpath, key.file_id)
        private = fd is None
        if fd is None:  # another process is downloading the same file here: use a private file
            fd, part = tempfile.mkstemp(prefix=f".{os.path.basename(lpath)}.", suffix=".part", dir=directory)
        try:
            with os.fdopen(fd, "r+b") as handle:
                # an interrupted download of this very file (partial names carry its id) resumes
                have = handle.seek(0, os.SEEK_END)
                if have > size:
                    handle.truncate(0)
                    have = handle.seek(0)
                callback.relative_update(have)
                transport.copy_to(key, size, handle, path=self._url(path), progress=callback.relative_update,
                                  start=have)
                handle.flush()
                os.replace(part, lpath)  # while still locked: nobody appends to it any more
        except BaseException:
            # a private file cannot be resumed; the shared partial can (unless nothing arrived)
            with contextlib.suppress(OSError):
                if private or os.path.getsize(part) == 0:
                    os.unlink(part)
            raise

    def get(self, rpath: Any, lpath: Any, recursive: bool = False, callback: Callback = DEFAULT_CALLBACK,
            maxdepth: int | None = None, **kwargs: Any) -> None:
        """Download files (globs, lists, ``recursive=True`` as in fsspec), ``max_workers`` at a time.

        ``callback`` follows fsspec's API: its size is the number of files, and each file gets a
        branched child callback counting its bytes.
        """
        pairs: list[tuple[str, Any]] = []
        self._collect.gets = pairs
        try:
            super().get(rpath, lpath, recursive=recursive, callback=NoOpCallback(), maxdepth=maxdepth, **kwargs)
        finally:
            self._collect.gets = None
        callback.set_size(len(pairs))
        lock = threading.Lock()

        def one(pair: tuple[str, Any]) -> None:
            r, local = pair
            with lock:
                child = callback.branched(r, local)
            with child:
                self.get_file(r, local, callback=_Locked(child, lock))

        self._run_parallel(one, pairs, on_done=lambda: callback.relative_update(1), lock=lock)

    def _run_parallel(self, fn: Callable[[Any], Any], items: Sequence[Any], *, on_done: Callable[[], Any],
                      lock: threading.Lock) -> None:
        pool = self._conn.transport.pool
        futures: list[Future[Any]] = [pool.submit(fn, item) for item in items]
        error: BaseException | None = None
        for future in futures:
            exc = future.exception()
            if exc is not None:
                if error is None:
                    error = exc
                    for pending in futures:
                        pending.cancel()
                continue
            if not future.cancelled():
                with lock:
                    on_done()
        if error is not None:
            raise error

    # -- writing: uploads only --------------------------------------------------------------------
    def _check_writable(self, path: str) -> FusionPath:
        url = self._url(path)
        try:
            fp = parse(path)
        except FusionURLError as exc:
            if path.split("/")[1:2] == ["uploads"]:
                raise translate(exc, url) from exc
            fp = FusionPath()
        if fp.section != "uploads" or fp.kind not in ("data", "file"):
            raise PermissionError(
                errno.EACCES,
                "fusion:// is read-only except for uploads: write to "
                "fusion://{organisation}/uploads/{data}/{file} to create a new data item",
                url,
            )
        return fp

    def put_file(self, lpath: Any, rpath: str, callback: Callback = DEFAULT_CALLBACK, mode: str = "overwrite",
                 **kwargs: Any) -> None:
        """Upload one local file as a new data item (see :meth:`put`)."""
        collecting = getattr(self._collect, "puts", None)
        if collecting is not None:
            if not os.path.isdir(lpath):
                collecting.append((os.fspath(lpath), rpath))
            return
        if os.path.isdir(lpath):
            return
        self._upload([(os.fspath(lpath), rpath)], bytes_callback=callback)

    def put(self, lpath: Any, rpath: Any, recursive: bool = False, callback: Callback = DEFAULT_CALLBACK,
            maxdepth: int | None = None, **kwargs: Any) -> None:
        """Upload local files into ``{organisation}/uploads/``.

        ``uploads/{data}/{file}`` puts the file into a new data item ``{data}`` (several files aimed at
        the same ``{data}`` in one call become one item); ``uploads/{data}`` names the item and keeps
        the local file name. The file type follows the extension (API doc 10.1); the call returns once
        the platform has analysed every file. An existing item of that name is never replaced or
        extended: ``FileExistsError``. Anywhere else: ``PermissionError``.
        """
        pairs: list[tuple[str, str]] = []
        self._collect.puts = pairs
        try:
            super().put(lpath, rpath, recursive=recursive, callback=NoOpCallback(), maxdepth=maxdepth, **kwargs)
        finally:
            self._collect.puts = None
        self._upload(pairs, files_callback=callback)

    def _upload(self, pairs: Sequence[tuple[str, str]], *, files_callback: Callback | None = None,
                bytes_callback: Callback | None = None) -> None:
        groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
        labels: dict[tuple[str, str], str] = {}
        for local, remote in pairs:
            remote = self._strip_protocol(remote)
            fp = self._check_writable(remote)
            org = self._node(fp.organisation or "")
            assert fp.data is not None
            name = fp.file or os.path.basename(local)
            group = (org["organisation_id"], fp.data)
            groups.setdefault(group, []).append((local, name))
            labels[group] = self._strip_protocol(self._parent(remote) if fp.file else remote)
        for (org_id, data_name), files in groups.items():
            names = [n for _, n in files]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{self._url(labels[(org_id, data_name)])}: two files would be called "
                                 f"{', '.join(map(repr, dupes))}")
            self._refuse_existing(labels[(org_id, data_name)], org_id, data_name)
        if files_callback is not None:
            files_callback.set_size(len(pairs))
        for group, files in groups.items():
            self._upload_group(labels[group], group[0], group[1], files, files_callback, bytes_callback)

    def _refuse_existing(self, path: str, org_id: str, data_name: str) -> None:
        client = self._lazy_client(path)
        existing = self._call(path, lambda: [d for d in client.iter_data(org_id, name=data_name)
                                             if d.name == data_name or d.id == data_name])
        if is_uuid(data_name) and not existing:
            try:
                existing = [self._call(path, client.get_data, org_id, data_name)]
            except FileNotFoundError:
                existing = []
        if existing:
            ids = ", ".join(d.id for d in existing)
            raise FileExistsError(
                errno.EEXIST,
                f"data {data_name!r} already exists (id {ids}); an upload creates a new data item and never "
                "replaces or extends one: choose another name",
                self._url(path),
            )

    def _upload_group(self, path: str, org_id: str, data_name: str, files: list[tuple[str, str]],
                      files_callback: Callback | None, bytes_callback: Callback | None) -> None:
        client = self._lazy_client(path)
        total = sum(os.path.getsize(local) for local, _ in files)
        child = (files_callback.branched(files[0][0], self._url(path)) if files_callback is not None
                 else bytes_callback or DEFAULT_CALLBACK)
        child.set_size(total)
        staging = tempfile.mkdtemp(prefix="fusion-put-")
        try:
            staged = []
            for local, name in files:
                if os.path.basename(local) == name:
                    staged.append(local)
                    continue
                target = os.path.join(staging, name)
                try:
                    os.link(local, target)
                except OSError:
                    shutil.copyfile(local, target)
                staged.append(target)
            data = self._call(
                path, client.create_data, org_id, data_name, staged, wait=True, timeout=self.upload_timeout,
                progress=lambda fraction: child.absolute_update(int(fraction * total)),
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if files_callback is not None:
                child.close()
        log.info("uploaded %d file(s) to %s as data %s", len(files), self._url(path), data.id)
        self.invalidate_cache(path)
        org_path = path.split("/", 1)[0]
        for section in ("uploads", "data"):
            self.invalidate_cache(f"{org_path}/{section}")
        if files_callback is not None:
            files_callback.relative_update(len(files))

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy a file into ``uploads/`` (via a local temporary file); nothing else is writable."""
        path2 = self._strip_protocol(path2)
        self._check_writable(path2)
        with tempfile.TemporaryDirectory(prefix="fusion-cp-") as tmp:
            local = os.path.join(tmp, os.path.basename(self._strip_protocol(path1)) or "file")
            self.get_file(path1, local)
            self.put_file(local, path2)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Folders under ``uploads/`` appear with their first file: nothing to do. Elsewhere: refused."""
        path = self._strip_protocol(path)
        fp = self._check_writable_dir(path)
        if fp is None:
            raise PermissionError(errno.EACCES, "fusion:// is read-only outside uploads/", self._url(path))

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.mkdir(path)

    def _check_writable_dir(self, path: str) -> FusionPath | None:
        try:
            fp = parse(path)
        except FusionURLError:
            return None
        return fp if fp.section == "uploads" and fp.kind in ("section", "data") else None

    def _refuse(self, path: Any, what: str) -> None:
        shown = path if isinstance(path, str) else ", ".join(map(str, path))
        raise PermissionError(errno.EACCES, f"fusion:// does not {what}; the platform's data is read-only "
                              "here (uploads are added with put)", self._url(self._strip_protocol(shown)))

    def rm_file(self, path: str) -> None:
        self._refuse(path, "delete files")

    def _rm(self, path: str) -> None:
        self._refuse(path, "delete files")

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        self._refuse(path, "delete files")

    def rmdir(self, path: str) -> None:
        self._refuse(path, "delete directories")

    def mv(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None, **kwargs: Any) -> None:
        self._refuse(path1, "move or rename files")

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        self._refuse(path, "create empty files")


def _claim_partial(lpath: str, file_id: str) -> tuple[str, int | None]:
    """Open (creating it) the partial file of a download of ``file_id`` to ``lpath``, locked.

    The same name as :func:`fusion_stac.client.partial_path` gives (it carries a tag of the file id),
    so a download killed mid-way is resumed by the next one, whichever API made it, and never into
    another file. ``(path, None)`` when another process holds it (the caller then uses a private
    temporary file).
    """
    from fusion_stac.client import partial_path

    part = str(partial_path(Path(lpath), file_id))
    fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no advisory locks here
        return part, fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return part, None
    return part, fd


def _renamed(exc: FileNotFoundError, url: str) -> FileNotFoundError:
    """The same error, naming the path the caller asked for (and, once, the part that failed)."""
    where = exc.filename
    if isinstance(exc, AmbiguousPathError):
        new: FileNotFoundError = AmbiguousPathError(url, exc.kind, exc.name, exc.candidates)
        if " (at " not in str(new.strerror):
            new.strerror = f"{new.strerror} (at {where})"
        return new
    text = str(exc.strerror or exc)
    if " (at " not in text:
        text = f"{text} (at {where})"
    return FileNotFoundError(exc.errno or errno.ENOENT, text, url)


def _rebuild_fs(cls: type[FusionFileSystem], options: dict[str, Any]) -> FusionFileSystem:
    return cls(**options)


class _Locked(Callback):
    """Serialises a child callback's updates (files download in parallel; progress bars are not
    thread-safe)."""

    def __init__(self, inner: Callback, lock: threading.Lock) -> None:
        super().__init__()
        self._inner = inner
        self._lock = lock

    def set_size(self, size: Any) -> None:
        with self._lock:
            self._inner.set_size(size)

    def relative_update(self, inc: int = 1) -> None:
        with self._lock:
            self._inner.relative_update(inc)

    def absolute_update(self, value: int) -> None:
        with self._lock:
            self._inner.absolute_update(value)

