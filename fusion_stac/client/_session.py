"""FusionClient's base: login and session renewal, requests and error mapping, exactly-once POSTs,
paging and lookups, and bounded fan-out.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import requests

from fusion_stac.client._common import (
    _REQUEST_ID_HEADERS,
    _UNCERTAIN_STATUSES,
    ENV_EMAIL,
    ENV_PASSWORD,
    LOOKUP_LIMIT,
    MAX_RELOGINS,
    M,
    R,
    T,
    _bool_param,
    logger,
)
from fusion_stac.errors import (
    AmbiguousNameError,
    APIError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
    error_for_status,
)
from fusion_stac.models import User
from fusion_stac.storage import APITransport, BearerAuth, JSONResponse, RequestStats, RetryPolicy, Transport


def _decode_jwt_claims(token: str) -> dict[str, Any]:
    """Claims of a JWT, unverified: the platform's ``id_token`` only tells us our user id.

    Hand-written (six lines) rather than a JWT dependency because nothing is verified here:
    the server verifies the access token on every request.
    """
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (IndexError, ValueError, UnicodeError) as exc:
        raise AuthenticationError("login answered with a malformed id_token", path="/users/login") from exc
    if not isinstance(claims, dict):
        raise AuthenticationError("login answered with a malformed id_token", path="/users/login")
    return claims


class Fanout:
    """Run tasks that may submit follow-up tasks on one bounded pool; wait for all of them.

    Used instead of nested ``map`` calls so a tree walk is pipelined (each branch moves on as soon
    as its parent answers) without any worker ever blocking on another (no pool deadlock). The
    first error stops new submissions and is raised by ``wait``. Get one from
    :meth:`FusionClient.fanout`.
    """

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._cond = threading.Condition()
        self._pending = 0
        self._error: BaseException | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._cond:
            if self._error is not None:
                return
            self._pending += 1
        self._pool.submit(self._run, fn, args)

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except BaseException as exc:
            with self._cond:
                if self._error is None:
                    self._error = exc
        finally:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    def wait(self) -> None:
        with self._cond:
            while self._pending:
                self._cond.wait()
            if self._error is not None:
                raise self._error


class _Session:
    """Login and session renewal, authenticated requests and their error mapping, exactly-once
    POSTs, paging and lookups, and the bounded thread pools (``map``, ``fanout``).

    The base of :class:`~fusion_stac.client.FusionClient`; its ``__init__`` sets these attributes.
    """

    api_url: str
    email: str | None
    user_id: str | None
    timeout: float | tuple[float, float]
    max_workers: int
    page_size: int
    poll_interval: float
    url_lifetime: timedelta
    _password: str | None
    _token: str | None
    _retry: RetryPolicy
    _sleep: Callable[[float], None]
    _auth_lock: threading.Lock
    _user: User | None
    _on_login: Callable[[Any], None] | None  # called with the client after each login
    _http: APITransport
    _storage_retry: RetryPolicy
    _url_margin: float
    _storage: Transport | None
    _storage_lock: threading.Lock

    @property
    def stats(self) -> RequestStats:
        """Thread-safe request counters (``requests``, ``retries``, ``relogins``, ``by_method``...)."""
        return self._http.stats

    # -- authentication -----------------------------------------------------------------------------
    @property
    def logged_in(self) -> bool:
        return self._token is not None

    @property
    def session_token(self) -> str | None:
        """The current bearer token (a secret: for token caches only; never log it)."""
        return self._token

    def _can_login(self) -> bool:
        return bool(self._password) and bool(self.email or self.user_id)

    def _login_locked(self) -> None:
        if not self._can_login():
            raise AuthenticationError(
                "no credentials to log in with: give email (or user_id) and password, set "
                f"{ENV_EMAIL}/{ENV_PASSWORD}, or add a netrc entry for {urlsplit(self.api_url).hostname}",
                status=None, path="/users/login",
            )
        body = {"User": {"email": self.email, "user_id": self.user_id, "password": self._password}}
        response = self._http.send(
            "POST", self.api_url + "/users/login", shown="/users/login", idempotent=True, json=body,
            headers={"Content-Type": "application/json"}, expect_json=True,
        )
        if response.status_code >= 400:
            error = self._error_from(response, "POST", "/users/login")
            if isinstance(error, (RateLimitedError, ServerError)):
                raise error
            raise AuthenticationError(
                error.message, status=response.status_code, path="/users/login", method="POST",
                request_id=error.request_id,
            )
        payload = self._json(response, "POST", "/users/login")
        access, id_token = payload.get("access_token"), payload.get("id_token")
        if not access or not id_token:
            raise AuthenticationError("login answered without access_token/id_token", path="/users/login")
        sub = _decode_jwt_claims(str(id_token)).get("sub")
        if not sub:
            raise AuthenticationError("login answered with an id_token without a user id", path="/users/login")
        if self.user_id is not None and self.email is None and str(sub) != self.user_id:
            raise AuthenticationError("login answered for a different user id", path="/users/login")
        self.user_id = str(sub)
        self._token = str(access)
        logger.info("logged in to %s as %s", self.api_url, self.email or self.user_id)
        if self._on_login is not None:
            try:
                self._on_login(self)
            except Exception:  # a hook (e.g. a token cache) must not break the login
                logger.warning("on_login hook failed", exc_info=True)

    def _ensure_token(self) -> str:
        token = self._token
        if token is None:
            with self._auth_lock:
                if self._token is None:
                    self._login_locked()
                token = self._token
        assert token is not None
        return token

    def _relogin(self, stale: str | None) -> None:
        """Renew the session once for all threads that saw ``stale`` rejected."""
        with self._auth_lock:
            if self._token == stale:
                logger.info("session token rejected (401); logging in again")
                self._token = None
                self._login_locked()
                self.stats._relogin()

    def logout(self) -> None:
        """Forget the session token (the next request logs in again)."""
        with self._auth_lock:
            self._token = None

    # -- raw requests -------------------------------------------------------------------------------
    def _error_from(self, response: requests.Response, method: str, path: str) -> APIError:
        message: str | None = None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, Mapping):
            for key in ("error_message", "message", "detail", "error"):
                if payload.get(key):
                    value = payload[key]
                    message = value if isinstance(value, str) else json.dumps(value)[:500]
                    break
        if not message:
            text = (response.text or "").strip()
            message = text[:200] if text and not text.startswith("<") else (response.reason or f"HTTP {response.status_code}")
        request_id = next((response.headers[h] for h in _REQUEST_ID_HEADERS if h in response.headers), None)
        from fusion_stac.storage import parse_retry_after

        return error_for_status(
            response.status_code, message, path=path, method=method, request_id=request_id,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def _json(self, response: requests.Response, method: str, path: str) -> dict[str, Any]:
        try:
            # a JSONResponse (expect_json) carries the body parsed once, inside the retry loop
            payload = response.payload if isinstance(response, JSONResponse) else response.json()
        except ValueError as exc:
            raise APIError(f"expected a JSON answer, got {response.headers.get('Content-Type', 'no content type')}",
                           status=response.status_code, path=path, method=method) from exc
        if not isinstance(payload, dict):
            raise APIError("expected a JSON object", status=response.status_code, path=path, method=method)
        return payload

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool | None = None,
    ) -> dict[str, Any]:
        """One authenticated API call; returns the JSON object or raises a typed :class:`APIError`.

        On 401 with known credentials the session is renewed and the call repeated, up to
        ``MAX_RELOGINS`` times: a session can end again while the repeated call waits out retries.
        """
        method = method.upper()
        url = self.api_url + path
        relogins = 0
        while True:
            token = self._ensure_token()
            response = self._http.send(
                method, url, shown=path, idempotent=idempotent, params=params, json=body,
                headers={"Content-Type": "application/json"}, auth=BearerAuth(token), expect_json=True,
            )
            if response.status_code == 401 and relogins < MAX_RELOGINS and self._can_login():
                relogins += 1
                self._relogin(token)
                continue
            break
        if response.status_code >= 400:
            raise self._error_from(response, method, path)
        return self._json(response, method, path)

    def _model(self, cls: type[M], method: str, path: str, **kwargs: Any) -> M:
        payload = self.request(method, path, **kwargs)
        model = payload.get("model")
        if not isinstance(model, Mapping):
            raise APIError("the answer has no model", path=path, method=method)
        return cls.from_api(model)

    # -- non-idempotent calls -------------------------------------------------------------------------
    def _post_once(self, what: str, post: Callable[[], T], recheck: Callable[[], T | None]) -> T:
        """Make a non-idempotent call take effect exactly once over an unreliable network.

        A POST that failed with a 5xx or a broken connection may or may not have been handled: the
        answer can be lost after the server acted. Repeating it blindly could create a second data
        item or start a second (paid) run; giving up would abort a workflow for one lost answer. So
        after such a failure the platform is asked (idempotent GETs, ``recheck``) whether the call
        took effect: if it did, that result is used; if not, the call is made again, up to the retry
        policy's attempts. A 409 on a repeat (the first attempt, or a twin, got there) is re-checked
        the same way. Definite refusals (4xx) are raised at once; 429 is retried by the transport.
        """
        attempts = max(1, self._retry.attempts)
        for attempt in range(1, attempts + 1):
            try:
                return post()
            except (ServerError, TransportError, ConflictError) as exc:
                uncertain = (isinstance(exc, TransportError)
                             or (isinstance(exc, ServerError) and exc.status in _UNCERTAIN_STATUSES)
                             or (isinstance(exc, ConflictError) and attempt > 1))
                if not uncertain:
                    raise
                found = recheck()
                if found is not None:
                    logger.info("%s: the answer was lost (%s) but the platform shows it done", what,
                                type(exc).__name__)
                    return found
                if attempt == attempts:
                    raise
                self.stats._retry()
                wait = self._retry.wait(attempt)
                logger.info("%s failed (%s) and did not take effect; trying again in %.2f s (attempt %d of %d)",
                            what, type(exc).__name__, wait, attempt + 1, attempts)
                self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- paging ---------------------------------------------------------------------------------------
    def _list_params(
        self, *, limit: int | None = None, reverse: bool = False, search: str | None = None,
        filters: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit or self.page_size, "reverse": _bool_param(reverse)}
        if search:
            params["search"] = search.lower()
        for key, value in (filters or {}).items():
            if value is not None:
                params[f"filter[{key}]"] = str(value)
        params.update(extra or {})
        return params

    def _pages(self, path: str, params: Mapping[str, Any]) -> Iterator[tuple[list[Mapping[str, Any]], bool]]:
        """Yield ``(items, more)`` page by page, following the ``last`` cursor lazily."""
        params = dict(params)
        seen: set[str] = set()
        while True:
            payload = self.request("GET", path, params=params)
            items = payload.get("list") or []
            last = payload.get("last")
            more = isinstance(last, Mapping) and bool(last)
            yield items, more
            if not more:
                return
            cursor = json.dumps(last, sort_keys=True, default=str)
            if cursor in seen:
                raise APIError("the server repeated a paging cursor", path=path, method="GET")
            seen.add(cursor)
            params = {k: v for k, v in params.items() if not k.startswith("last[")}
            params.update({f"last[{k}]": v for k, v in (last or {}).items()})

    def _iter(self, cls: type[M], path: str, params: Mapping[str, Any], **extra: Any) -> Iterator[M]:
        for items, _ in self._pages(path, params):
            for item in items:
                yield cls.from_api(item, **extra)

    def _lookup(
        self, cls: type[M], kind: str, path: str, name: str, name_filter: str,
        filters: Mapping[str, Any] | None = None, **extra: Any,
    ) -> M:
        """Find one item by name with (usually) one request.

        Lists up to ``LOOKUP_LIMIT`` items matching the server-side name filter. An exact name
        match wins (several exact matches are ambiguous); otherwise a single partial match is
        accepted, several raise :class:`AmbiguousNameError` naming the candidates. Further pages
        are read only when the first was full and held no exact match.
        """
        params = self._list_params(limit=LOOKUP_LIMIT, filters={**(filters or {}), name_filter: name})
        candidates: list[M] = []
        for items, more in self._pages(path, params):
            candidates.extend(cls.from_api(i, **extra) for i in items)
            exact = [c for c in candidates if getattr(c, "name", None) == name]
            if len(exact) == 1 and not more:
                return exact[0]
            if len(exact) > 1:
                raise AmbiguousNameError(kind, name, [(c.id, c.name) for c in exact], path=path)  # type: ignore[attr-defined]
            if exact and more:
                continue  # an exact duplicate may follow
            if not more:
                break
        exact = [c for c in candidates if getattr(c, "name", None) == name]
        if len(exact) == 1:
            return exact[0]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise NotFoundError(f"no {kind} named {name!r}", status=404, path=path, method="GET")
        raise AmbiguousNameError(kind, name, [(c.id, c.name) for c in candidates], path=path)  # type: ignore[attr-defined]

    def map(self, fn: Callable[[T], R], iterable: Iterable[T], *, max_workers: int | None = None) -> list[R]:
        """``[fn(x) for x in iterable]`` on up to ``max_workers`` threads, in input order.

        The first exception (in input order) is raised after all calls have finished.
        """
        items = list(iterable)
        workers = min(max_workers or self.max_workers, len(items))
        if workers <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fusion-stac") as pool:
            futures = [pool.submit(fn, x) for x in items]
        return [f.result() for f in futures]

    @contextlib.contextmanager
    def fanout(self, max_workers: int | None = None) -> Iterator[Fanout]:
        """A pipelined tree walk on one bounded pool (``fan.submit(fn, *args)``; tasks may submit more).

        Leaving the block waits for every task and raises the first error.
        """
        workers = max(1, max_workers or self.max_workers)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fusion-stac-walk") as pool:
            fan = Fanout(pool)
            yield fan
            fan.wait()
