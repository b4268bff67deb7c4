"""FusionClient, composed of one mixin per concern, and the module-level :func:`login`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import requests

from fusion_stac._credentials import LOGIN_HINT, Credentials, resolve_credentials
from fusion_stac.client._common import (
    DEFAULT_API_URL,
    DEFAULT_MAX_WORKERS,
    DEFAULT_PAGE_SIZE,
    DEFAULT_TIMEOUT,
)
from fusion_stac.client._tree import _Tree
from fusion_stac.errors import APIError, AuthenticationError, ValidationError
from fusion_stac.models import User
from fusion_stac.storage import API_RETRY, STORAGE_RETRY, APITransport, RetryPolicy


class FusionClient(_Tree):
    """A thread-safe client of the Fusion Platform API.

    ``FusionClient(api_url, email=..., password=...)`` does no I/O; the first request logs in.
    Use :func:`login` or :meth:`from_env` for a ready client. Share one client between threads;
    size ``max_workers`` to your concurrency (it sizes the connection pool and ``map``).
    """

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        *,
        email: str | None = None,
        user_id: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        max_workers: int = DEFAULT_MAX_WORKERS,
        retry: RetryPolicy | int | dict[str, Any] | None = None,
        storage_retry: RetryPolicy | int | dict[str, Any] | None = None,
        url_margin: float = 60.0,
        page_size: int = DEFAULT_PAGE_SIZE,
        poll_interval: float = 5.0,
        url_lifetime: timedelta = timedelta(hours=1),
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_login: Callable[[FusionClient], None] | None = None,
    ) -> None:
        if not isinstance(api_url, str) or urlsplit(api_url).scheme not in {"http", "https"}:
            raise ValidationError(f"api_url must be an http(s) URL, got {api_url!r}", field="api_url")
        if max_workers < 1:
            raise ValidationError("max_workers must be at least 1", field="max_workers")
        if page_size < 1:
            raise ValidationError("page_size must be at least 1", field="page_size")
        self.api_url = api_url.rstrip("/")
        self.email = email
        self.user_id = user_id
        self._password = password
        self._token = token
        self.timeout = timeout
        self.max_workers = max_workers
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.url_lifetime = url_lifetime
        self._retry = RetryPolicy.coerce(retry, API_RETRY)
        self._storage_retry = RetryPolicy.coerce(storage_retry, STORAGE_RETRY)
        self._url_margin = float(url_margin)
        self._storage = None
        self._storage_lock = threading.Lock()
        self._sleep = sleep
        self._auth_lock = threading.Lock()
        self._user: User | None = None
        self._on_login = on_login
        self._credentials: Credentials | None = None  # how from_env/from_credentials found the account
        from fusion_stac import __version__

        self._http = APITransport(
            timeout=timeout, max_workers=max_workers, retry=self._retry,
            user_agent=f"fusion-stac/{__version__} python-requests/{requests.__version__}",
            session=session, sleep=sleep,
        )

    # -- construction helpers -----------------------------------------------------------------------
    @classmethod
    def from_env(cls, api_url: str | None = None, **kwargs: Any) -> FusionClient:
        """A client whose account is found as the command line finds it (no I/O).

        In order: keyword arguments (``email``, ``user_id``, ``password``, ``token``), the environment
        (``FUSION_PLATFORM_API_URL``, ``..._EMAIL``, ``..._USER_ID``, ``..._PASSWORD``), a ``~/.netrc``
        (or ``$NETRC``) entry for the API host, and the session kept by ``fusion-stac login``; see
        :func:`fusion_stac._credentials.resolve_credentials`. ``kept_sessions=False`` ignores the
        kept session. With nothing usable, the first request raises an
        :class:`~fusion_stac.errors.AuthenticationError` saying what is missing (or that the kept
        session expired).
        """
        kept = bool(kwargs.pop("kept_sessions", True))
        creds = resolve_credentials(
            api_url, email=kwargs.pop("email", None), user_id=kwargs.pop("user_id", None),
            password=kwargs.pop("password", None), token=kwargs.pop("token", None), kept_sessions=kept,
        )
        return cls.from_credentials(creds, **kwargs)

    @classmethod
    def from_credentials(cls, creds: Credentials, **kwargs: Any) -> FusionClient:
        """A client for credentials found by :func:`~fusion_stac._credentials.resolve_credentials`."""
        client = cls(creds.api_url, email=creds.email, user_id=creds.user_id, password=creds.password,
                     token=creds.token, **kwargs)
        client._credentials = creds
        return client

    def __repr__(self) -> str:
        who = self.email or self.user_id or "anonymous"
        state = "logged in" if self._token else "not logged in"
        return f"<FusionClient {self.api_url} {who} ({state})>"

    def __enter__(self) -> FusionClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def session(self) -> requests.Session:
        """The HTTP session of every request this client sends (API and storage): one pool."""
        return self._http.session

    def close(self) -> None:
        """Release pooled connections and the storage transport's threads."""
        if self._storage is not None:
            self._storage.close()
        self._http.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle settings and identity only: never the password nor the session token.

        Pickles travel into task graphs and scheduler logs (dask, fsspec); the copy logs in again
        with credentials found where it is unpickled (environment, netrc) or via ``on_login``-fed
        token caches of the layer above.
        """
        return {
            "api_url": self.api_url, "email": self.email, "user_id": self.user_id,
            "timeout": self.timeout, "max_workers": self.max_workers, "retry": self._retry,
            "storage_retry": self._storage_retry, "url_margin": self._url_margin,
            "page_size": self.page_size, "poll_interval": self.poll_interval, "url_lifetime": self.url_lifetime,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild; a password comes back only from this machine's environment or netrc."""
        state = dict(state)
        api_url = state.pop("api_url")
        if state.get("email") or state.get("user_id"):
            rebuilt = FusionClient.from_env(api_url, **state)
        else:
            rebuilt = FusionClient(api_url, **state)
        self.__dict__.update(rebuilt.__dict__)

    def login(self) -> FusionClient:
        """Log in now (``POST /users/login``); raises :class:`AuthenticationError` if refused.

        A client holding only a session token (a kept ``fusion-stac login`` session) checks it with one
        request instead, since there is no password to log in with.
        """
        if self._token is not None and self.user_id and not self._can_login():
            self.refresh_user()
            return self
        with self._auth_lock:
            self._login_locked()
        return self

    # -- messages that name where the credentials came from ----------------------------------------
    def _login_locked(self) -> None:
        creds = self._credentials
        if not self._can_login() and creds is not None and creds.message:
            raise AuthenticationError(creds.message, status=None, path="/users/login")
        super()._login_locked()

    def _error_from(self, response: requests.Response, method: str, path: str) -> APIError:
        error = super()._error_from(response, method, path)
        creds = self._credentials
        if (response.status_code == 401 and creds is not None and creds.source == "kept session"
                and self._token == creds.token and not self._can_login()):
            return AuthenticationError(
                f"{creds.who} at {self.api_url}: the kept session was refused (expired or revoked): "
                f"session expired, log in again ({LOGIN_HINT})",
                status=401, path=path, method=method, request_id=error.request_id,
            )
        return error


def login(
    email: str | None = None,
    password: str | None = None,
    *,
    api_url: str | None = None,
    user_id: str | None = None,
    **kwargs: Any,
) -> FusionClient:
    """A logged-in :class:`FusionClient`.

    Missing settings are found as the command line finds them: the environment, netrc, then the
    session kept by ``fusion-stac login`` (a kept session is checked with one request; an expired one
    raises "session expired, log in again"). Which one was used is logged at INFO.
    """
    overrides = {k: v for k, v in {"email": email, "password": password, "user_id": user_id}.items() if v}
    client = FusionClient.from_env(api_url, **overrides, **kwargs)
    return client.login()
