"""How a storage GET is sent: straight to urllib3's pool when requests would add nothing, else via requests.

Split from :mod:`fusion_stac.storage._transport` (which verifies and resumes what comes back). The fast
path needs ``HTTPAdapter.build_connection_pool_key_attributes`` (requests 2.32.3); with an older
requests every GET goes through the session instead, which is slower but equivalent.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.utils import select_proxy

from fusion_stac.storage._http import NO_AUTH

__all__ = ["Answer", "Route", "Urllib3Body", "no_auth", "plain_route", "reuse_connection"]


# Pre-signed URLs carry their own authorisation: an explicit no-op auth on the session keeps requests
# from adding netrc credentials for the storage host (S3 refuses two auth mechanisms). The API
# transport passes its bearer token per request, so the same session serves both.
no_auth = NO_AUTH


class Urllib3Body:
    """urllib3's response seen as a plain binary file (raw bytes, no content decoding)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def read(self, n: int) -> bytes:
        return self._raw.read(n, decode_content=False)

    def readinto(self, view: memoryview) -> int:
        data = self._raw.read(len(view), decode_content=False)
        view[: len(data)] = data
        return len(data)


class Answer:
    """A urllib3 response seen as the few parts of ``requests.Response`` the readers use."""

    __slots__ = ("headers", "raw", "status_code")

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.status_code: int = raw.status
        self.headers = raw.headers  # case-insensitive, like requests'

    def close(self) -> None:
        # what requests.Response.close does for a streamed answer
        self.raw.close()
        self.raw.release_conn()


@dataclass(frozen=True)
class Route:
    """How requests would send a plain GET to one host, worked out once: its adapter's pool,
    TLS settings and session headers."""

    adapter: HTTPAdapter
    host_params: dict[str, Any]
    pool_kwargs: dict[str, Any]
    verify: Any
    cert: Any
    headers: dict[str, str]


def plain_route(session: requests.Session, url: str) -> Route | None:
    """The route of ``url``'s host if a GET there can skip requests' per-call machinery (merging
    settings, environment and cookies, hooks, building a Response: about 0.3 ms of CPU a request,
    most of a small read's cost); ``None`` when requests must do it (a proxy, a custom adapter,
    session auth, cookies or hooks, or a requests too old to say which pool it would use). A URL
    requests would rewrite goes through it too."""
    adapter = session.get_adapter(url)
    if type(adapter) is not HTTPAdapter or session.cookies or any(session.hooks.values()):
        return None
    if session.auth is not None and session.auth is not no_auth:
        return None
    if session.auth is None and session.trust_env:
        return None  # requests may add .netrc credentials per host
    settings = session.merge_environment_settings(url, {}, None, None, None)
    if select_proxy(url, settings.get("proxies") or {}):
        return None
    pool_key = getattr(adapter, "build_connection_pool_key_attributes", None)
    if pool_key is None:
        return None  # requests < 2.32.3: no public way to find the pool; let requests send it
    prepared = requests.Request("GET", url).prepare()
    host_params, pool_kwargs = pool_key(prepared, settings["verify"], settings["cert"])
    return Route(adapter, host_params, pool_kwargs, settings["verify"], settings["cert"], dict(session.headers))


def reuse_connection(response: requests.Response) -> None:
    """Return the connection of a fully read answer to the pool (bodies read through http.client
    directly bypass urllib3's own bookkeeping, which would otherwise close it)."""
    raw = response.raw
    fp = getattr(raw, "_fp", None)
    isclosed = getattr(fp, "isclosed", None)
    if fp is None or (callable(isclosed) and isclosed()):
        with contextlib.suppress(Exception):
            raw.release_conn()
