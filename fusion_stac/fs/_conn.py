"""What all ``fusion://`` file-system instances with the same settings share in one process: the
client (built lazily, with the session-token cache), URL broker, transport and counters."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

from fusion_stac import _credentials
from fusion_stac.fs._errors import translated
from fusion_stac.storage import FileKey, RetryPolicy, TransferStats, Transport, URLBroker

if TYPE_CHECKING:  # pragma: no cover
    from fusion_stac.client import FusionClient

log = logging.getLogger("fusion_stac.fs")


class _Connection:
    """What all file-system instances with the same settings share in one process.

    fsspec caches instances per thread, so dask's threads would otherwise each log in, sign their own
    URLs. Holds the (lazily built) client, broker, transport and counters; listings are not shared
    (each file system instance has its own, see :mod:`._cache`). Secrets live here in memory only.
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
        self._retry = retry
        self._max_workers = max_workers
        self._transport: Transport | None = None

    @classmethod
    def get(cls, key: tuple[Any, ...], **kwargs: Any) -> _Connection:
        with cls._registry_lock:
            conn = cls._registry.get(key)
            if conn is None:
                conn = cls._registry[key] = cls(**kwargs)
            return conn

    @property
    def transport(self) -> Transport:
        """The storage transport of these file systems (built on first use): this connection's broker
        (signing through :meth:`_sign`, which maps API errors to built-ins), policy and counters, over
        the client's HTTP session -- one connection pool for API calls and storage reads."""
        transport = self._transport
        if transport is None:
            session = self.client.session
            with self._lock:
                if self._transport is None:
                    self._transport = Transport(self.broker, policy=self._retry, session=session,
                                                max_workers=self._max_workers)
                transport = self._transport
        return transport

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

        # The one lookup the CLI and the Python API use: options, environment, netrc, kept session.
        creds = _credentials.resolve_credentials(self.api_url, email=self.email, user_id=self.user_id,
                                                 password=self._password, token=self._token,
                                                 kept_sessions=self.token_cache)
        if creds.source == "kept session":
            self._cached_token_used = creds.token
        client = FusionClient.from_credentials(creds, on_login=lambda c: self.remember_token())
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
