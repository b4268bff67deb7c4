"""FusionClient, composed of one mixin per concern, and the module-level :func:`login`."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import requests

from fusion_stac.client._common import (
    DEFAULT_API_URL,
    DEFAULT_MAX_WORKERS,
    DEFAULT_PAGE_SIZE,
    DEFAULT_TIMEOUT,
    ENV_API_URL,
    ENV_EMAIL,
    ENV_PASSWORD,
    ENV_USER_ID,
    is_uuid,
)
from fusion_stac.client._session import _netrc_credentials
from fusion_stac.client._tree import _Tree
from fusion_stac.errors import ValidationError
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
        from fusion_stac import __version__

        self._http = APITransport(
            timeout=timeout, max_workers=max_workers, retry=self._retry,
            user_agent=f"fusion-stac/{__version__} python-requests/{requests.__version__}",
            session=session, sleep=sleep,
        )

    # -- construction helpers -----------------------------------------------------------------------
    @classmethod
    def from_env(cls, api_url: str | None = None, **kwargs: Any) -> FusionClient:
        """A client configured from the environment.

        ``FUSION_PLATFORM_API_URL``, ``FUSION_PLATFORM_EMAIL``, ``FUSION_PLATFORM_USER_ID`` and
        ``FUSION_PLATFORM_PASSWORD``; a ``~/.netrc`` (or ``$NETRC``) entry for the API host supplies
        a missing login and password. Keyword arguments override the environment.
        """
        api_url = api_url or os.environ.get(ENV_API_URL) or DEFAULT_API_URL
        env_email = os.environ.get(ENV_EMAIL) or None
        env_user_id = os.environ.get(ENV_USER_ID) or None
        email = kwargs.pop("email", None) or env_email
        user_id = kwargs.pop("user_id", None) or env_user_id
        password = kwargs.pop("password", None)
        env_password = os.environ.get(ENV_PASSWORD) or None
        # The environment's password belongs to the environment's identity: never pair it with another.
        if password is None and env_password and (
            (env_email is None and env_user_id is None)
            or (email is not None and email == env_email)
            or (user_id is not None and user_id == env_user_id)
        ):
            password = env_password
        if password is None:
            found = _netrc_credentials(api_url)
            if found is not None:
                netrc_login, netrc_password = found
                if email is None and user_id is None:
                    if is_uuid(netrc_login):
                        user_id = netrc_login
                    else:
                        email = netrc_login
                if netrc_login in {email, user_id}:
                    password = netrc_password
        return cls(api_url, email=email, user_id=user_id, password=password, **kwargs)

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
        """Log in now (``POST /users/login``); raises :class:`AuthenticationError` if refused."""
        with self._auth_lock:
            self._login_locked()
        return self


def login(
    email: str | None = None,
    password: str | None = None,
    *,
    api_url: str | None = None,
    user_id: str | None = None,
    **kwargs: Any,
) -> FusionClient:
    """A logged-in :class:`FusionClient`; missing settings come from the environment or netrc."""
    overrides = {k: v for k, v in {"email": email, "password": password, "user_id": user_id}.items() if v}
    client = FusionClient.from_env(api_url, **overrides, **kwargs)
    return client.login()
