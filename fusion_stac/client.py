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
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from fusion_stac.errors import (
    AmbiguousNameError,
    AnalysisError,
    APIError,
    AuthenticationError,
    ConflictError,
    ExecutionFailedError,
    FusionError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
    ValidationError,
    WaitTimeout,
    error_for_status,
    redact,
)
from fusion_stac.models import (
    Credit,
    Data,
    DataFile,
    Dispatcher,
    ExecutionStatus,
    FrozenDict,
    Input,
    Model,
    Option,
    Organisation,
    Process,
    ProcessExecution,
    ProcessServiceExecution,
    ProcessServiceExecutionLog,
    Service,
    SignedURL,
    User,
    file_type_for_path,
)
from fusion_stac.storage import API_RETRY, APITransport, BearerAuth, RequestStats, RetryPolicy, shown_url

__all__ = [
    "DEFAULT_API_URL",
    "ComponentNode",
    "ExecutionNode",
    "FusionClient",
    "GroupTree",
    "OutputNode",
    "ProcessDraft",
    "RequestStats",
    "RetryPolicy",
    "login",
    "partial_path",
    "safe_file_name",
]

logger = logging.getLogger("fusion_stac")

DEFAULT_API_URL = "https://api.thefusionplatform.com"
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)
DEFAULT_MAX_WORKERS = 16
DEFAULT_PAGE_SIZE = 100
#: Page size of name lookups: one request sees enough candidates to prefer an exact match.
LOOKUP_LIMIT = 24

ENV_API_URL = "FUSION_PLATFORM_API_URL"
ENV_EMAIL = "FUSION_PLATFORM_EMAIL"
ENV_USER_ID = "FUSION_PLATFORM_USER_ID"
ENV_PASSWORD = "FUSION_PLATFORM_PASSWORD"

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_REQUEST_ID_HEADERS = ("X-Request-Id", "X-Amzn-RequestId", "X-Amz-Request-Id", "X-Correlation-Id")
#: Sessions renewed for one call before its 401 is reported (a renewed one can expire during retries).
MAX_RELOGINS = 3
#: How far the platform's clock may lag ours when recognising a process we created (see ``create_process``).
CLOCK_SKEW = timedelta(minutes=10)
#: 5xx statuses after which a POST may or may not have been handled (others are definite refusals).
_UNCERTAIN_STATUSES = frozenset({500, 502, 503, 504})
_WRITABLE_PROCESS_FIELDS = frozenset({
    "name", "run_type", "repeat_count", "repeat_start", "repeat_end", "repeat_gap", "repeat_offset",
    "output_storage_period",
})

M = TypeVar("M", bound=Model)
T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[float], None]


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def safe_file_name(name: str | None, fallback: str | None = None) -> str:
    """A file name from the server made safe to create inside a local directory.

    The last component after any ``/`` or ``\\`` is kept; a name that is then empty, ``.``, ``..``,
    has control characters (NUL, newline...) or a drive (``C:``) is replaced by ``fallback``
    (checked the same way), else by ``"download"``. A hostile or broken server can therefore never
    make a download land outside its destination.
    """
    for candidate in (name, fallback):
        base = re.split(r"[/\\]", candidate or "")[-1]
        if base.strip() and base not in (".", "..") and not _CONTROL_RE.search(base) \
                and not PurePath(base).drive and not PureWindowsPath(base).drive:
            return base
    return "download"


def partial_path(target: Path, file_id: str, *, preview: bool = False) -> Path:
    """Where a download of ``file_id`` to ``target`` keeps its bytes until complete.

    The name carries a tag of the file id: an interrupted download resumes only into the file it
    was of (a pipeline that downloads each day's new file to the same path must not resume
    yesterday's bytes into today's file: the size would match, the content would not).
    """
    tag = hashlib.sha256(f"{file_id}{'#preview' if preview else ''}".encode()).hexdigest()[:10]
    return target.with_name(f"{target.name}.{tag}.part")


def is_uuid(value: Any) -> bool:
    """True if ``value`` is a string in UUID syntax (every platform id is one)."""
    return isinstance(value, str) and bool(_UUID_RE.match(value.strip()))


def _id_of(value: Any) -> str:
    """An id from a model or a string."""
    if isinstance(value, str):
        return value
    ident = getattr(value, "id", None)
    if ident is None:
        raise ValidationError(f"expected an id or a model with an id, got {type(value).__name__}")
    return str(ident)


def _jsonable(value: Any) -> Any:
    """Turn Python values into what the API expects in a JSON body."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, timedelta):
        return json.dumps({"days": value.days, "seconds": value.seconds, "microseconds": value.microseconds})
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Model):
        return _jsonable(dict(value.raw))
    return value


def _flat(model: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name": x}`` -> ``{"Model[name]": x}`` (the create/update body style, API doc 5.1)."""
    return {f"{model}[{k}]": _jsonable(v) for k, v in fields.items() if v is not None}


def _bool_param(value: bool) -> str:
    return "True" if value else "False"


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


def _netrc_credentials(api_url: str) -> tuple[str, str] | None:
    """``(login, password)`` for the API host from ``~/.netrc`` (or ``$NETRC``), if present."""
    from requests.utils import get_netrc_auth

    try:
        auth = get_netrc_auth(api_url, raise_errors=False)
    except Exception:  # pragma: no cover - a broken netrc must not break the client
        return None
    return (auth[0], auth[1]) if auth else None


# ==================================================================================================
# Result trees for concurrent traversal


@dataclass(frozen=True)
class OutputNode:
    """An output (or input) Data item of a component, its files and, if asked, their signed URLs."""

    data: Data
    files: tuple[DataFile, ...]
    urls: Mapping[str, SignedURL] = field(default_factory=dict, repr=False)  # file_id -> URL


@dataclass(frozen=True)
class ComponentNode:
    """A component (process service execution) and its output data."""

    component: ProcessServiceExecution
    outputs: tuple[OutputNode, ...]


@dataclass(frozen=True)
class ExecutionNode:
    """An execution, its components, and whether it is a group aggregator."""

    execution: ProcessExecution
    components: tuple[ComponentNode, ...]
    is_aggregator: bool

    def iter_files(self) -> Iterator[tuple[ProcessServiceExecution, Data, DataFile]]:
        for comp in self.components:
            for out in comp.outputs:
                for f in out.files:
                    yield comp.component, out.data, f


@dataclass(frozen=True)
class GroupTree:
    """All executions of one group (slices and aggregators), fetched concurrently."""

    organisation_id: str
    process_id: str
    group_id: str | None
    slices: tuple[ExecutionNode, ...]
    aggregators: tuple[ExecutionNode, ...]

    @property
    def executions(self) -> tuple[ExecutionNode, ...]:
        return self.slices + self.aggregators

    def iter_files(self) -> Iterator[tuple[ExecutionNode, ProcessServiceExecution, Data, DataFile]]:
        for node in self.executions:
            for comp, data, f in node.iter_files():
                yield node, comp, data, f


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


# ==================================================================================================
# Process drafts


@dataclass(frozen=True)
class ProcessDraft:
    """An immutable, not yet created process: a template from a service plus your choices.

    Every ``with_*`` method returns a new draft; nothing is sent until :meth:`create`. Options are
    validated and encoded as you set them; inputs are checked (analysis finished, file type
    accepted) against the platform when set, which costs one request per input.
    """

    organisation_id: str
    name: str
    template: FrozenDict = field(repr=False)
    client: FusionClient = field(repr=False, compare=False)

    @property
    def process(self) -> Process:
        """The draft seen as a :class:`Process` model (options, inputs, dispatchers...)."""
        return Process.from_api(self.template)

    @property
    def options(self) -> tuple[Option, ...]:
        return self.process.options

    @property
    def inputs(self) -> tuple[Input, ...]:
        return self.process.inputs

    @property
    def available_dispatchers(self) -> tuple[Dispatcher, ...]:
        return self.process.available_dispatchers

    def option(self, name: str) -> Option:
        return self.process.option(name)

    def _with(self, **changes: Any) -> ProcessDraft:
        raw = dict(self.template)
        raw.update(changes)
        return replace(self, template=FrozenDict(raw))

    def with_option(self, name: str, value: Any) -> ProcessDraft:
        """Set option ``name`` (type-converted and validated against its ``validation``)."""
        option = self.process.option(name)
        encoded = option.encode(value)
        options = [dict(o) for o in self.template.get("options") or ()]
        for entry in options:
            if entry.get("name") == name:
                entry["value"] = encoded
        return self._with(options=options)

    def with_options(self, **values: Any) -> ProcessDraft:
        """Set several options: ``draft.with_options(latest_date=False, maximum_cloud=20)``."""
        draft = self
        for name, value in values.items():
            draft = draft.with_option(name, value)
        return draft

    def with_input(self, number: int, data: Data | str, *, check: bool = True) -> ProcessDraft:
        """Use ``data`` (a Data or its id) as input ``number`` (1-based).

        With ``check`` (default) the data's files are listed once to make sure the platform has
        analysed them and their type is accepted for this input (API doc 10.2).
        """
        slot = self.process.input(number)
        data_id = _id_of(data)
        if check:
            self.client.check_input(self.organisation_id, slot, data, number=number)
        inputs = [dict(i) for i in self.template.get("inputs") or ()]
        inputs[number - 1]["id"] = data_id
        if isinstance(data, Data) and data.name:
            inputs[number - 1]["name"] = data.name
        return self._with(inputs=inputs)

    def with_fields(self, **fields: Any) -> ProcessDraft:
        """Set schedule and storage fields: ``name``, ``run_type``, ``repeat_count``, ``repeat_start``,
        ``repeat_end``, ``repeat_gap`` (dict or JSON string), ``repeat_offset`` (timedelta),
        ``output_storage_period``."""
        unknown = sorted(set(fields) - _WRITABLE_PROCESS_FIELDS)
        if unknown:
            raise ValidationError(
                f"cannot set process field(s) {', '.join(unknown)}; settable: {', '.join(sorted(_WRITABLE_PROCESS_FIELDS))}",
                field=unknown[0],
            )
        if "run_type" in fields and fields["run_type"] not in {"run_once", "run_schedule"}:
            raise ValidationError(f"run_type must be 'run_once' or 'run_schedule', got {fields['run_type']!r}",
                                  field="run_type")
        changes: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "repeat_gap" and isinstance(value, Mapping):
                value = json.dumps(dict(value))
            changes[key] = _jsonable(value)
        draft = self._with(**changes)
        if "name" in fields:
            draft = replace(draft, name=str(fields["name"]))
        return draft

    def with_dispatcher(self, name: str, **options: Any) -> ProcessDraft:
        """Add the available dispatcher called ``name`` with option values (validated)."""
        available = [dict(d) for d in self.template.get("available_dispatchers") or ()]
        match = [d for d in available if d.get("name") == name]
        if not match:
            known = ", ".join(repr(d.get("name")) for d in available) or "none"
            raise ValidationError(f"no dispatcher {name!r} is available (available: {known})", field=name)
        chosen = dict(match[0])
        opts = [dict(o) for o in chosen.get("options") or ()]
        for opt_name, value in options.items():
            hits = [o for o in opts if o.get("name") == opt_name]
            if not hits:
                known = ", ".join(repr(o.get("name")) for o in opts) or "none"
                raise ValidationError(f"dispatcher {name!r} has no option {opt_name!r} (options: {known})",
                                      field=opt_name)
            hits[0]["value"] = Option.from_api(hits[0]).encode(value)
        chosen["options"] = opts
        dispatchers = [dict(d) for d in self.template.get("dispatchers") or ()]
        dispatchers.append(chosen)
        return self._with(dispatchers=dispatchers)

    def body(self) -> dict[str, Any]:
        """The flat ``Process[...]`` create body."""
        fields = {k: v for k, v in self.template.items() if v is not None}
        fields["organisation_id"] = self.organisation_id
        fields["name"] = self.name
        return _flat("Process", fields)

    def create(self) -> Process:
        """Create the process on the platform (it prices it); returns the created Process."""
        return self.client.create_process(self)


# ==================================================================================================
# The client


class FusionClient:
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

    def close(self) -> None:
        """Release pooled connections."""
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

    def login(self) -> FusionClient:
        """Log in now (``POST /users/login``); raises :class:`AuthenticationError` if refused."""
        with self._auth_lock:
            self._login_locked()
        return self

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
            headers={"Content-Type": "application/json"},
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
            payload = response.json()
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
                headers={"Content-Type": "application/json"}, auth=BearerAuth(token),
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
            params.update({f"last[{k}]": v for k, v in last.items()})

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

    # -- user and organisations -------------------------------------------------------------------------
    @property
    def user(self) -> User:
        """The logged-in user (fetched once, logging in if needed)."""
        if self._user is None:
            self._ensure_token()
            self._user = self._model(User, "GET", f"/users/{self.user_id}")
        return self._user

    def refresh_user(self) -> User:
        self._user = None
        return self.user

    def organisations(self) -> Iterator[Organisation]:
        """The user's organisations, one request each, lazily (there is no list endpoint)."""
        for org_id in self.user.organisation_ids:
            yield self.get_organisation(org_id)

    def get_organisation(self, org_id: str) -> Organisation:
        return self._model(Organisation, "GET", f"/organisations/{org_id}")

    def organisation(self, id_or_name: str | None = None) -> Organisation:
        """An organisation by id (one request) or by name; ``None`` means the one used last.

        A name is matched case-insensitively, exactly first, then as a prefix; the user's
        organisations are fetched concurrently to compare names.
        """
        if id_or_name is None:
            org_id = self.user.last_organisation_id
            if org_id is None:
                raise NotFoundError("the user belongs to no organisation", status=404, path="/users")
            return self.get_organisation(org_id)
        if is_uuid(id_or_name):
            return self.get_organisation(id_or_name)
        orgs = self.map(self.get_organisation, self.user.organisation_ids)
        folded = id_or_name.casefold()
        for matches in ([o for o in orgs if (o.name or "").casefold() == folded],
                        [o for o in orgs if (o.name or "").casefold().startswith(folded)]):
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise AmbiguousNameError("organisation", id_or_name, [(o.id, o.name or "") for o in matches])
        known = ", ".join(repr(o.name) for o in orgs) or "none"
        raise NotFoundError(f"no organisation named {id_or_name!r} (yours: {known})", status=404, path="/organisations")

    def credit(self, org_id: str) -> Credit:
        return self._model(Credit, "GET", f"/organisations/{org_id}/credits/{org_id}")

    # -- data -----------------------------------------------------------------------------------------
    def iter_data(self, org_id: str, *, name: str | None = None, search: str | None = None,
                  reverse: bool = False) -> Iterator[Data]:
        """Uploaded data items; ``name`` is a (case-sensitive) prefix, ``search`` free text."""
        params = self._list_params(reverse=reverse, search=search, filters={"name__begins_with": name})
        return self._iter(Data, f"/organisations/{org_id}/data/uploaded", params)

    def get_data(self, org_id: str, data_id: str) -> Data:
        """Any data item (uploaded or produced) by id."""
        return self._model(Data, "GET", f"/organisations/{org_id}/data/{data_id}")

    def find_data(self, org_id: str, id_or_name: str) -> Data:
        """Data by id, or uploaded data by name (exact name preferred over a unique prefix)."""
        if is_uuid(id_or_name):
            return self.get_data(org_id, id_or_name)
        return self._lookup(Data, "data", f"/organisations/{org_id}/data/uploaded", id_or_name, "name__begins_with")

    def iter_files(self, org_id: str, data_id: str) -> Iterator[DataFile]:
        data_id = _id_of(data_id)
        params = self._list_params()
        return self._iter(DataFile, f"/organisations/{org_id}/data/{data_id}/files", params,
                          organisation_id=org_id, data_id=data_id)

    def list_files(self, org_id: str, data_id: str) -> list[DataFile]:
        """All files of a data item (all pages)."""
        return list(self.iter_files(org_id, data_id))

    def create_data(
        self,
        org_id: str,
        name: str,
        files: Sequence[str | os.PathLike[str]],
        *,
        file_type: str | None = None,
        wait: bool = True,
        poll_interval: float | None = None,
        timeout: float | None = 1800.0,
        progress: Progress | None = None,
        data_id: str | None = None,
        extended_analysis: bool = False,
    ) -> Data:
        """Upload local files as a new data item, in parallel, and wait for their analysis.

        ``file_type`` defaults to the type implied by each file's extension. ``progress`` gets the
        fraction of bytes uploaded. If an upload fails the half-made data item is deleted. With
        ``wait`` (default) returns once the platform has analysed every file, raising
        :class:`AnalysisError` naming the files it could not analyse.
        """
        paths = [Path(p) for p in files]
        if not paths:
            raise ValidationError("create_data needs at least one file", field="files")
        for p in paths:
            if not p.is_file():
                raise ValidationError(f"no such file to upload: {p}", field="files")
        types = [file_type or file_type_for_path(p.name) for p in paths]
        template = self.request("GET", f"/organisations/{org_id}/data/new").get("model") or {}
        fields = {k: v for k, v in dict(template).items() if v is not None}
        fields.update({"organisation_id": org_id, "name": name})
        # A client-chosen id (API doc 5.1) makes the create POST safe to re-check and repeat.
        item_id = data_id or str(uuid.uuid4())
        rounds = 3
        for round_no in range(1, rounds + 1):
            data = self._create_item(org_id, name, dict(fields, id=item_id))
            try:
                registered: dict[str, int] = {}
                urls = [self._add_file(org_id, data.id, path, ftype, registered)  # in order, each once
                        for path, ftype in zip(paths, types, strict=True)]
                total = sum(p.stat().st_size for p in paths) or 1
                report = _ProgressReporter(progress, total)
                self.map(lambda pair, report=report: self._upload(pair[0], pair[1], report),
                         list(zip(paths, urls, strict=True)))
            except _Unsettled as exc:
                logger.info("data %s: %s; starting the upload over", data.id, exc)
                self._discard_data(org_id, data.id)
                if round_no == rounds:
                    raise TransportError(f"upload of data {name!r} kept losing answers from the platform ({exc})",
                                         path=f"/organisations/{org_id}/data", method="POST") from None
                item_id = data_id or str(uuid.uuid4())
                continue
            except BaseException:
                logger.warning("upload to data %s failed; deleting the incomplete item", data.id)
                try:
                    self.delete_data(org_id, data.id)
                except FusionError:
                    logger.warning("could not delete incomplete data %s", data.id)
                raise
            break
        if wait:
            self.wait_for_analysis(org_id, data.id, poll_interval=poll_interval, timeout=timeout,
                                   extended=extended_analysis, name=name)
        return data

    def _create_item(self, org_id: str, name: str, fields: Mapping[str, Any]) -> Data:
        """``POST /data`` with a client-chosen id, exactly once (re-checked by id after a failure)."""
        item_id = str(fields["id"])
        path = f"/organisations/{org_id}/data"

        def recheck() -> Data | None:
            try:
                return self.get_data(org_id, item_id)
            except NotFoundError:
                return None

        return self._post_once(f"create data {name!r}",
                               lambda: self._model(Data, "POST", path, body=_flat("Data", fields)), recheck)

    def _add_file(self, org_id: str, data_id: str, path: Path, file_type: str, registered: dict[str, int]) -> str:
        """``add_file`` exactly once; returns the upload URL.

        A lost answer after the platform registered the file leaves a record whose upload URL we
        never got (it would never be uploaded nor analysed): that raises :class:`_Unsettled`, and
        the caller starts the data item over.
        """
        where = f"/organisations/{org_id}/data/{data_id}/add_file"

        def post() -> str:
            payload = self.request("POST", where, body={"Data": {"name": path.name, "file_type": file_type}})
            extras = payload.get("extras") or {}
            if not extras.get("url"):
                raise APIError(f"add_file for {path.name} gave no upload URL", path=where, method="POST")
            return str(extras["url"])

        def recheck() -> str | None:
            present = sum(1 for f in self.list_files(org_id, data_id) if f.file_name == path.name)
            if present > registered.get(path.name, 0):
                raise _Unsettled(f"the platform registered {path.name!r} but its upload URL was lost")
            return None

        url = self._post_once(f"add file {path.name!r} to data {data_id}", post, recheck)
        registered[path.name] = registered.get(path.name, 0) + 1
        return url

    def _discard_data(self, org_id: str, data_id: str) -> None:
        """Delete a half-made data item of ours (already gone is fine)."""
        with contextlib.suppress(NotFoundError):
            self.delete_data(org_id, data_id)

    def _upload(self, path: Path, url: str, report: _ProgressReporter) -> None:
        shown = shown_url(url)
        size = path.stat().st_size
        handle = path.open("rb")
        reader = _CountingReader(handle, size, report)

        def rewind() -> _CountingReader:
            reader.rewind()
            return reader

        try:
            response = self._http.send("PUT", url, shown=shown, signed=True, data=reader, rewind=rewind,
                                       headers={"Content-Length": str(size)})
        finally:
            handle.close()
        if response.status_code >= 400:
            error = self._error_from(response, "PUT", shown)
            raise type(error)(f"upload of {path.name} failed: {error.message}", status=error.status, path=shown,
                              method="PUT", request_id=error.request_id)

    def wait_for_analysis(
        self, org_id: str, data_id: str, *, poll_interval: float | None = None, timeout: float | None = 1800.0,
        extended: bool = False, name: str | None = None,
    ) -> list[DataFile]:
        """Poll the files of a data item until the platform has analysed all of them."""
        interval = self.poll_interval if poll_interval is None else poll_interval
        started = time.monotonic()
        label = f"{name!r} ({data_id})" if name else data_id
        while True:
            files = self.list_files(org_id, data_id)
            failed = [f for f in files if f.analysis_failed]
            if failed:
                names = [f.file_name or f.file_id or "?" for f in failed]
                raise AnalysisError(
                    f"the platform could not analyse {', '.join(repr(n) for n in names)} in data {label}",
                    data_id=data_id, files=names, path=f"/organisations/{org_id}/data/{data_id}/files",
                )
            pending = [f for f in files if not f.analysed or (extended and not f.extended_analysis_done)]
            if files and not pending:
                return files
            waited = time.monotonic() - started
            if timeout is not None and waited + interval > timeout:
                names = ", ".join(repr(f.file_name) for f in pending) or "no files registered"
                raise WaitTimeout(f"analysis of data {label} not finished after {waited:.0f} s ({names})",
                                  waited=waited)
            self._sleep(interval)

    def copy_data(self, org_id: str, data_id: str, name: str) -> Data:
        """Copy a data item under a new name."""
        payload = self.request("POST", f"/organisations/{org_id}/data/{data_id}/copy", body={"Data": {"name": name}})
        model = payload.get("model") or {}
        if not model.get("id"):
            raise APIError("copy answered without the new id", path=f"/organisations/{org_id}/data/{data_id}/copy",
                           method="POST")
        return self.get_data(org_id, str(model["id"]))

    def rename_data(self, org_id: str, data_id: str, name: str) -> Data:
        return self._model(Data, "PATCH", f"/organisations/{org_id}/data/{data_id}", body=_flat("Data", {"name": name}))

    def delete_data(self, org_id: str, data_id: str) -> None:
        """Delete a data item (the platform refuses while a process uses it: ConflictError/4xx)."""
        self.request("DELETE", f"/organisations/{org_id}/data/{_id_of(data_id)}")

    def check_input(self, org_id: str, slot: Input, data: Data | str, *, number: int | None = None) -> list[DataFile]:
        """Check ``data`` can fill input ``slot``: analysed, not failed, file type accepted (10.2)."""
        data_id = _id_of(data)
        label = f"{data.name!r} ({data_id})" if isinstance(data, Data) and data.name else data_id
        where = f"input {number}" if number else "input"
        if slot.title:
            where += f" ({slot.title})"
        files = self.list_files(org_id, data_id)
        if not files:
            raise ValidationError(f"data {label} has no files, so it cannot be {where}", field=where)
        pending = [f for f in files if not f.analysed and "publishable" not in f.raw]
        if pending:
            raise ValidationError(
                f"data {label} is not analysed yet ({', '.join(repr(f.file_name) for f in pending)}); "
                f"wait for analysis before using it as {where}", field=where,
            )
        broken = [f for f in files if f.analysis_failed or "publishable" not in f.raw]
        if broken:
            raise ValidationError(
                f"data {label} cannot be {where}: the platform could not analyse "
                f"{', '.join(repr(f.file_name) for f in broken)}", field=where,
            )
        accepted = slot.accepted_file_types
        if accepted and files[0].file_type not in accepted:
            raise ValidationError(
                f"{where} takes {slot.file_type} (accepted: {', '.join(sorted(accepted))}), but data {label} "
                f"holds {files[0].file_type} ({files[0].file_name!r})", field=where,
            )
        return files

    # -- files and downloads -----------------------------------------------------------------------------
    def download_url(self, org_id: str, data_id: str, file_id: str, *, preview: bool = False) -> SignedURL:
        """A fresh pre-signed URL for a file (``file_id`` of the DataFile) or its PNG preview."""
        file_id = file_id.file_id if isinstance(file_id, DataFile) else file_id  # type: ignore[union-attr]
        path = f"/organisations/{org_id}/data/{data_id}/download_file/{file_id}"
        issued = datetime.now(timezone.utc)
        payload = self.request("GET", path, params={"preview": _bool_param(preview)})
        extras = payload.get("extras") or {}
        url = extras.get("url")
        if not url:
            raise APIError("the answer has no download URL", path=path, method="GET")
        expires = None
        for key in ("expires_at", "expiry", "expires"):
            if extras.get(key):
                try:
                    from fusion_stac.models import parse_datetime

                    expires = parse_datetime(extras[key])
                except (TypeError, ValueError):
                    expires = None
                break
        return SignedURL.issued(str(url), issued_at=issued, expires_at=expires, lifetime=self.url_lifetime)

    def download_file(
        self,
        org_id: str,
        data_id: str,
        file: DataFile | str,
        dest: str | os.PathLike[str],
        *,
        preview: bool = False,
        progress: Progress | None = None,
        chunk_size: int = 1 << 20,
        attempts: int | None = None,
    ) -> Path:
        """Download a file to ``dest`` (a file path, or an existing directory) atomically.

        Streams into ``<dest>.<file tag>.part`` (named after the file id, so that a partial left by
        an interrupted download of *another* file to the same ``dest`` is never resumed into this
        one), resumes an existing partial with ``Range``, re-signs the URL if it expires (403),
        verifies the size (against ``DataFile.size`` when known, else the server's length) and
        renames into place. Returns the final path.
        """
        file_id = file.file_id if isinstance(file, DataFile) else str(file)
        if not file_id:
            raise ValidationError("the file has no file_id", field="file_id")
        target = Path(dest)
        if target.is_dir():
            # The name comes from the server: reduced to one harmless component, it cannot leave ``dest``.
            base = safe_file_name(file.file_name if isinstance(file, DataFile) else None, file_id)
            target = target / (Path(base).with_suffix(".png").name if preview else base)
        target.parent.mkdir(parents=True, exist_ok=True)
        part = partial_path(target, file_id, preview=preview)
        expected = file.size if isinstance(file, DataFile) and not preview else None
        label = f"{file.file_name!r} ({file_id})" if isinstance(file, DataFile) else file_id
        signed: SignedURL | None = None
        tries = attempts or self._retry.attempts
        last_problem = "no attempt made"
        for attempt in range(1, tries + 1):
            if signed is None or signed.is_expired():
                signed = self.download_url(org_id, data_id, file_id, preview=preview)
            offset = part.stat().st_size if part.exists() else 0
            if expected is not None and offset > expected:
                part.unlink()
                offset = 0
            if expected is not None and offset == expected and offset > 0:
                break
            shown = shown_url(signed.url)
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            response = self._http.send("GET", signed.url, shown=shown, signed=True, headers=headers, stream=True)
            try:
                status = response.status_code
                if status == 416 and offset:
                    total = _content_range_total(response.headers.get("Content-Range"))
                    if total is not None and total == offset and (expected is None or expected == total):
                        break
                    part.unlink()  # our partial does not fit the object any more: start over
                    last_problem = "range not satisfiable"
                    continue
                if status == 403 and attempt < tries:
                    signed = None  # probably expired: sign again
                    last_problem = "403 from storage"
                    continue
                if status >= 400:
                    error = self._error_from(response, "GET", shown)
                    raise type(error)(f"download of {label} failed: {error.message}", status=status, path=shown,
                                      method="GET", request_id=error.request_id)
                if status == 206:
                    start = _content_range_start(response.headers.get("Content-Range"))
                    if start != offset:
                        part.unlink(missing_ok=True)
                        last_problem = "server resumed at the wrong offset"
                        continue
                    total = _content_range_total(response.headers.get("Content-Range"))
                    mode = "ab"
                else:
                    offset = 0
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    mode = "wb"
                if expected is None:
                    expected = total
                report = _ProgressReporter(progress, expected or 0)
                report.add(offset)
                try:
                    with part.open(mode) as out:
                        for chunk in response.iter_content(chunk_size=chunk_size):
                            if chunk:
                                out.write(chunk)
                                self.stats._bytes(len(chunk))
                                report.add(len(chunk))
                except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                    last_problem = f"connection lost mid-download ({type(exc).__name__})"
                    logger.info("download of %s interrupted at %d bytes; resuming", label, part.stat().st_size)
                    self.stats._retry()
                    continue
            finally:
                response.close()
            size = part.stat().st_size
            if expected is not None and size < expected:
                last_problem = f"got {size} of {expected} bytes"
                self.stats._retry()
                continue
            if expected is not None and size > expected:
                part.unlink()
                last_problem = f"got {size} bytes, more than the expected {expected}"
                continue
            break
        else:
            raise TransportError(f"download of {label} did not complete after {tries} attempts: {last_problem}",
                                 path=f"/organisations/{org_id}/data/{data_id}/download_file/{file_id}",
                                 method="GET", attempts=tries)
        if not part.exists():
            part.touch()  # an empty file
        os.replace(part, target)
        return target

    def signed_get(self, url: SignedURL | str, *, headers: Mapping[str, str] | None = None,
                   stream: bool = False) -> requests.Response:
        """GET a pre-signed URL through the client's pool, timeout, retry policy and counters.

        Returns the response whatever its status (the caller decides; 403 usually means the URL
        expired: sign again). No ``Authorization`` header and no netrc credentials are sent.
        """
        raw = url.url if isinstance(url, SignedURL) else url
        return self._http.send("GET", raw, shown=shown_url(raw), signed=True, headers=dict(headers or {}),
                               stream=stream)

    # -- services ----------------------------------------------------------------------------------
    def iter_services(self, org_id: str, *, name: str | None = None, keyword: str | None = None,
                      search: str | None = None, ssd_id: str | None = None, latest: bool = True) -> Iterator[Service]:
        """Services the organisation may run (latest versions); ``name`` is a prefix."""
        params = self._list_params(search=search, filters={
            "name__begins_with": name, "keywords__contains": keyword, "ssd_id__eq": ssd_id,
        })
        which = "services/latest" if latest else "services"
        return self._iter(Service, f"/organisations/{org_id}/{which}", params)

    def iter_dispatchers(self, org_id: str, *, name: str | None = None) -> Iterator[Service]:
        params = self._list_params(filters={"name__begins_with": name})
        return self._iter(Service, f"/organisations/{org_id}/services/dispatchers", params)

    def get_service(self, org_id: str, service_id: str) -> Service:
        """A service by id among the organisation's latest services (one request)."""
        path = f"/organisations/{org_id}/services/latest"
        for items, _ in self._pages(path, self._list_params(limit=1, filters={"id__eq": service_id})):
            for item in items:
                return Service.from_api(item)
            break
        raise NotFoundError(f"no service {service_id} available to organisation {org_id}", status=404, path=path)

    def find_service(self, org_id: str, id_or_name_or_keyword: str | None = None, *, name: str | None = None,
                     keyword: str | None = None, ssd_id: str | None = None) -> Service:
        """A service by id, name (exact, else unique prefix) or keyword.

        A bare string is tried as an id (if UUID-shaped), then as a name; only if no name matches
        is it tried as a keyword (a second request).
        """
        path = f"/organisations/{org_id}/services/latest"
        if ssd_id:
            return self._lookup(Service, "service", path, name or "", "name__begins_with", {"ssd_id__eq": ssd_id}) \
                if name else self._first(Service, path, {"ssd_id__eq": ssd_id}, f"no service with SSD {ssd_id}")
        if keyword:
            return self._by_keyword(org_id, keyword)
        term = name or id_or_name_or_keyword
        if not term:
            raise ValidationError("find_service needs an id, a name or a keyword", field="service")
        if name is None and is_uuid(term):
            return self.get_service(org_id, term)
        try:
            return self._lookup(Service, "service", path, term, "name__begins_with")
        except NotFoundError:
            if name is not None:
                raise
        try:
            return self._by_keyword(org_id, term)
        except NotFoundError:
            raise NotFoundError(f"no service with id, name or keyword {term!r}", status=404, path=path,
                                method="GET") from None

    def _by_keyword(self, org_id: str, keyword: str) -> Service:
        path = f"/organisations/{org_id}/services/latest"
        params = self._list_params(limit=2, filters={"keywords__contains": keyword})
        items = next(self._pages(path, params))[0]
        if not items:
            raise NotFoundError(f"no service with keyword {keyword!r}", status=404, path=path, method="GET")
        if len(items) > 1:
            raise AmbiguousNameError("service keyword", keyword,
                                     [(str(i.get("id")), str(i.get("name"))) for i in items], path=path)
        return Service.from_api(items[0])

    def _first(self, cls: type[M], path: str, filters: Mapping[str, Any], missing: str, **extra: Any) -> M:
        items = next(self._pages(path, self._list_params(limit=1, filters=filters)))[0]
        if not items:
            raise NotFoundError(missing, status=404, path=path, method="GET")
        return cls.from_api(items[0], **extra)

    # -- processes ---------------------------------------------------------------------------------
    def iter_processes(self, org_id: str, *, name: str | None = None, search: str | None = None,
                       reverse: bool = False) -> Iterator[Process]:
        """Processes of the organisation; ``name`` matches a substring."""
        params = self._list_params(reverse=reverse, search=search, filters={"name__contains": name})
        return self._iter_processes(f"/organisations/{org_id}/processes", params)

    def _iter_processes(self, path: str, params: Mapping[str, Any]) -> Iterator[Process]:
        params = dict(params)
        while True:
            payload = self.request("GET", path, params=params)
            dispatchers = (payload.get("extras") or {}).get("dispatchers")
            for item in payload.get("list") or []:
                yield Process.from_api(item, available_dispatchers=dispatchers)
            last = payload.get("last")
            if not isinstance(last, Mapping) or not last:
                return
            params = {k: v for k, v in params.items() if not k.startswith("last[")}
            params.update({f"last[{k}]": v for k, v in last.items()})

    def _process_model(self, method: str, path: str, **kwargs: Any) -> Process:
        payload = self.request(method, path, **kwargs)
        model = payload.get("model")
        if not isinstance(model, Mapping):
            raise APIError("the answer has no model", path=path, method=method)
        return Process.from_api(model, available_dispatchers=(payload.get("extras") or {}).get("dispatchers"))

    def get_process(self, org_id: str, process_id: str) -> Process:
        return self._process_model("GET", f"/organisations/{org_id}/processes/{_id_of(process_id)}")

    def find_process(self, org_id: str, id_or_name: str) -> Process:
        """A process by id, or by name (exact preferred over a unique substring match)."""
        if is_uuid(id_or_name):
            return self.get_process(org_id, id_or_name)
        return self._lookup(Process, "process", f"/organisations/{org_id}/processes", id_or_name, "name__contains")

    def new_process(self, org_id: str, service: Service | str, name: str) -> ProcessDraft:
        """A draft process from a service (a Service, its id, name or keyword). One or two requests."""
        if not isinstance(service, Service):
            service = self.find_service(org_id, service)
        payload = self.request("GET", f"/organisations/{org_id}/processes/new", params={"service_id": service.id})
        template = {k: v for k, v in dict(payload.get("model") or {}).items() if v is not None}
        template["available_dispatchers"] = list((payload.get("extras") or {}).get("dispatchers") or [])
        template.setdefault("service_id", service.id)
        template.setdefault("ssd_id", service.ssd_id)
        return ProcessDraft(organisation_id=org_id, name=name, template=FrozenDict(template), client=self)

    def create_process(self, draft: ProcessDraft) -> Process:
        """Create a drafted process; the platform validates it and sets its ``price``."""
        missing = [i for n, i in enumerate(draft.inputs, 1) if not i.id]
        if missing:
            listed = ", ".join(f"input {draft.inputs.index(i) + 1} ({i.title or i.file_type})" for i in missing)
            raise ValidationError(f"process {draft.name!r} has unset inputs: {listed}", field="inputs")
        required = [o.name for o in draft.options if o.required and o.value is None]
        if required:
            raise ValidationError(f"process {draft.name!r} needs values for options: {', '.join(map(str, required))}",
                                  field=str(required[0]))
        body = draft.body()
        since = datetime.now(timezone.utc) - CLOCK_SKEW
        return self._post_once(
            f"create process {draft.name!r}",
            lambda: self._process_model("POST", f"/organisations/{draft.organisation_id}/processes", body=body),
            lambda: self._created_process(draft, since),
        )

    def _created_process(self, draft: ProcessDraft, since: datetime) -> Process | None:
        """The process a lost ``create`` answer may have made: the newest one with the draft's exact
        name, service and inputs, created since ``since`` (the API has no client-chosen process id,
        so this is the best evidence; an identical twin made meanwhile would be taken for it)."""
        service_id = draft.template.get("service_id")
        inputs = [i.id for i in draft.inputs]
        matches = [
            p for p in self.iter_processes(draft.organisation_id, name=draft.name)
            if p.name == draft.name and (service_id is None or p.service_id == service_id)
            and [i.id for i in p.inputs] == inputs and (p.created_at is None or p.created_at >= since)
        ]
        if not matches:
            return None
        newest = max(matches, key=lambda p: p.created_at or since)
        return self.get_process(draft.organisation_id, newest.id)

    def update_process(self, org_id: str, process_id: str, **fields: Any) -> Process:
        """Change name or schedule of a created (not executing) process."""
        unknown = sorted(set(fields) - _WRITABLE_PROCESS_FIELDS)
        if unknown:
            raise ValidationError(f"cannot update process field(s) {', '.join(unknown)}", field=unknown[0])
        return self._process_model("PATCH", f"/organisations/{org_id}/processes/{_id_of(process_id)}",
                                   body=_flat("Process", fields))

    def price(self, org_id: str, process_id: str) -> Decimal | None:
        """Credits one execution of the process costs (set when it was created)."""
        return self.get_process(org_id, process_id).price

    def copy_process(self, org_id: str, process_id: str, name: str) -> ProcessDraft:
        """A draft copying a process's inputs and options (nothing is created until ``create``)."""
        original = self.get_process(org_id, process_id)
        payload = self.request("GET", f"/organisations/{org_id}/processes/{original.id}/copy")
        template = {k: v for k, v in dict(payload.get("model") or {}).items() if v is not None}
        template["available_dispatchers"] = list((payload.get("extras") or {}).get("dispatchers") or [])
        # Options and inputs are re-applied client-side from the original, as the platform expects.
        template["options"] = [dict(o.raw) for o in original.options] or template.get("options") or []
        inputs = [dict(i) for i in template.get("inputs") or [dict(i.raw) for i in original.inputs]]
        for slot, source in zip(inputs, original.inputs, strict=False):
            if source.id:
                slot["id"] = source.id
        template["inputs"] = inputs
        template.pop("id", None)
        return ProcessDraft(organisation_id=org_id, name=name, template=FrozenDict(template), client=self)

    def execute(
        self, org_id: str, process_id: str, *, wait: bool = False, poll_interval: float | None = None,
        timeout: float | None = None, progress: Progress | None = None,
    ) -> Process:
        """Execute a created process. With ``wait``, also wait for its run to start and finish
        (raising :class:`ExecutionFailedError` if any execution of the run failed)."""
        pid = _id_of(process_id)
        # The state before: a lost answer is told from a lost request by the status having changed.
        before = self.get_process(org_id, pid)
        reconciled = False

        def recheck() -> Process | None:
            nonlocal reconciled
            now = self.get_process(org_id, pid)
            if now.process_status == "execute" or now.process_status_at != before.process_status_at:
                reconciled = True
                return now
            return None

        process = self._post_once(
            f"execute process {before.name!r} ({pid})",
            lambda: self._process_model("POST", f"/organisations/{org_id}/processes/{pid}/execute"), recheck)
        if wait:
            if process.process_status == "stop" and not reconciled:
                raise ExecutionFailedError(f"process {process.name!r} ({pid}) was stopped instead of executed",
                                           path=f"/organisations/{org_id}/processes/{pid}")
            started = time.monotonic()
            run = self.wait_for_next_execution(org_id, pid, poll_interval=poll_interval, timeout=timeout)
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            first = run[0]
            self.wait_for_completion(org_id, pid, group_id=first.group_id,
                                     execution_id=None if first.group_id else first.process_execution_id,
                                     poll_interval=poll_interval, timeout=left, progress=progress)
        return process

    def stop_process(self, org_id: str, process_id: str) -> Process:
        """Stop running executions and cancel the schedule."""
        return self._process_model("POST", f"/organisations/{org_id}/processes/{_id_of(process_id)}/stop")

    def delete_process(self, org_id: str, process_id: str) -> None:
        """Delete a process with its executions and their outputs."""
        self.request("DELETE", f"/organisations/{org_id}/processes/{_id_of(process_id)}")

    def wait_for_next_execution(
        self, org_id: str, process_id: str, *, poll_interval: float | None = None, timeout: float | None = None,
    ) -> tuple[ExecutionStatus, ...]:
        """Wait until the process's next run has started (all members of its group listed).

        Returns that run's execution summary lines. By default gives up (:class:`WaitTimeout`)
        15 minutes after the process's ``repeat_start``, as the platform guarantees a start by then.
        """
        interval = self.poll_interval if poll_interval is None else poll_interval
        began = time.monotonic()
        while True:
            process = self.get_process(org_id, process_id)
            run = process.latest_executions() if process.has_executions else ()
            if run:
                head = run[0]
                complete_group = head.group_id is None or len(run) >= (head.group_count or 0)
                fresh = (process.repeat_start is None or head.started_at is None
                         or head.started_at >= process.repeat_start)
                if complete_group and fresh:
                    return tuple(sorted(run, key=lambda e: (e.group_index or 0)))
            waited = time.monotonic() - began
            if timeout is not None:
                if waited + interval > timeout:
                    raise WaitTimeout(f"process {process.name!r} ({process.id}) did not start within {timeout:.0f} s",
                                      waited=waited)
            elif process.repeat_start is not None and \
                    datetime.now(timezone.utc) > process.repeat_start + timedelta(seconds=900):
                raise WaitTimeout(f"process {process.name!r} ({process.id}) should have started by "
                                  f"{(process.repeat_start + timedelta(seconds=900)).isoformat()}", waited=waited)
            self._sleep(interval)

    def wait_for_completion(
        self,
        org_id: str,
        process_id: str,
        *,
        group_id: str | None = None,
        execution_id: str | None = None,
        poll_interval: float | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
        raise_on_failure: bool = True,
    ) -> list[ProcessExecution]:
        """Wait until every execution of a run (a group, or one execution) is complete.

        Without ``group_id``/``execution_id`` the most recent run is used. A group is polled with
        one list request per round, and is complete only once all its slices *and* aggregators
        (``Process.aggregator_count``) are listed and at 100 %. ``progress`` gets the mean progress
        as a fraction. Failures raise :class:`ExecutionFailedError` naming every failed execution.
        """
        pid = _id_of(process_id)
        interval = self.poll_interval if poll_interval is None else poll_interval
        if group_id is None and execution_id is None:
            latest = self.latest_execution(org_id, pid)
            group_id, execution_id = latest.group_id, (None if latest.group_id else latest.id)
        expected = 1
        if group_id is not None:
            process = self.get_process(org_id, pid)
            latest_run = process.latest_executions()
            if latest_run and latest_run[0].group_id == group_id:
                # The process's counts describe its latest run only: slices plus aggregators still to come.
                expected = (process.non_aggregator_count or 0) + (process.aggregator_count or 0)
        began = time.monotonic()
        while True:
            if group_id is not None:
                executions = list(self.iter_executions(org_id, pid, group_id=group_id, reverse=False))
                if executions:
                    expected = max(expected, executions[0].group_count or 0)
            else:
                assert execution_id is not None
                executions = [self.get_execution(org_id, execution_id)]
            total = max(expected, len(executions), 1)
            fraction = sum(min(e.progress or 0, 100) for e in executions) / (100.0 * total)
            if progress is not None:
                progress(min(1.0, fraction))
            if executions and len(executions) >= expected and all(e.is_complete for e in executions):
                break
            waited = time.monotonic() - began
            if timeout is not None and waited + interval > timeout:
                done = sum(e.is_complete for e in executions)
                raise WaitTimeout(f"run of process {pid} not complete after {waited:.0f} s "
                                  f"({done} of {total} executions done)", waited=waited)
            self._sleep(interval)
        executions.sort(key=lambda e: (e.group_index or 0, e.started_at or datetime.min.replace(tzinfo=timezone.utc)))
        failed = [e for e in executions if e.failed]
        if failed and raise_on_failure:
            first = failed[0]
            listed = "; ".join(
                f"{e.name} {e.id}" + (f": {e.abort_reason}" if e.abort_reason else "") for e in failed[:5]
            )
            raise ExecutionFailedError(
                f"{len(failed)} execution(s) of process {pid} failed: {listed}",
                execution_id=first.id, group_id=first.group_id, group_index=first.group_index,
                abort_reason=first.abort_reason, path=f"/organisations/{org_id}/process_executions/{first.id}",
            )
        for e in executions:
            if e.success and e.abort_reason:
                logger.warning("execution %s succeeded with warning: %s", e.id, redact(e.abort_reason))
        return executions

    # -- executions --------------------------------------------------------------------------------
    def iter_executions(self, org_id: str, process_id: str, *, group_id: str | None = None,
                        reverse: bool = True) -> Iterator[ProcessExecution]:
        """Executions of a process, most recent first by default; optionally one group only."""
        params = self._list_params(reverse=reverse, filters={"group_id__eq": group_id})
        return self._iter(ProcessExecution, f"/organisations/{org_id}/processes/{_id_of(process_id)}/executions", params)

    def get_execution(self, org_id: str, execution_id: str) -> ProcessExecution:
        return self._model(ProcessExecution, "GET", f"/organisations/{org_id}/process_executions/{_id_of(execution_id)}")

    def latest_execution(self, org_id: str, process_id: str) -> ProcessExecution:
        """The most recently started execution of a process (one request)."""
        path = f"/organisations/{org_id}/processes/{_id_of(process_id)}/executions"
        items = next(self._pages(path, self._list_params(limit=1, reverse=True)))[0]
        if not items:
            raise NotFoundError(f"process {_id_of(process_id)} has no executions", status=404, path=path, method="GET")
        return ProcessExecution.from_api(items[0])

    def group_executions(self, org_id: str, process_id: str, group_id: str) -> tuple[list[ProcessExecution], list[ProcessExecution]]:
        """``(slices, aggregators)`` of a group, each sorted by ``group_index`` (one paged listing)."""
        members = list(self.iter_executions(org_id, process_id, group_id=group_id, reverse=False))
        if not members:
            raise NotFoundError(f"process {_id_of(process_id)} has no executions in group {group_id}", status=404,
                                path=f"/organisations/{org_id}/processes/{_id_of(process_id)}/executions")
        return _split_group(members)

    def change_delete_expiry(self, org_id: str, execution_id: str, when: datetime) -> None:
        """Move the deletion date of an execution (for a group: of the whole group)."""
        if not isinstance(when, datetime):
            raise ValidationError(f"delete expiry must be a datetime, got {type(when).__name__}", field="delete_expiry")
        self.request("POST", f"/organisations/{org_id}/process_executions/{_id_of(execution_id)}/change_delete_expiry",
                     body={"ProcessExecution": {"delete_expiry": _jsonable(when)}})

    def delete_execution(self, org_id: str, execution_id: str) -> None:
        self.request("DELETE", f"/organisations/{org_id}/process_executions/{_id_of(execution_id)}")

    # -- components and logs -----------------------------------------------------------------------
    def iter_components(self, org_id: str, execution_id: str) -> Iterator[ProcessServiceExecution]:
        """Components (service executions) of an execution, in chain order."""
        path = f"/organisations/{org_id}/process_executions/{_id_of(execution_id)}/process_service_executions"
        return self._iter(ProcessServiceExecution, path, self._list_params())

    def get_component(self, org_id: str, component_id: str) -> ProcessServiceExecution:
        return self._model(ProcessServiceExecution, "GET",
                           f"/organisations/{org_id}/process_service_executions/{_id_of(component_id)}")

    def component_outputs(self, org_id: str, component: ProcessServiceExecution) -> list[Data]:
        """Output Data of a component (fetched concurrently, in order)."""
        return self.map(lambda d: self.get_data(org_id, d), component.outputs)

    def component_inputs(self, org_id: str, component: ProcessServiceExecution) -> list[Data]:
        """Input Data of a component (fetched concurrently, in order)."""
        return self.map(lambda d: self.get_data(org_id, d), component.inputs)

    def iter_logs(self, org_id: str, component_id: str, *, reverse: bool = False) -> Iterator[ProcessServiceExecutionLog]:
        """Log lines of a component, oldest first by default."""
        path = f"/organisations/{org_id}/process_service_executions/{_id_of(component_id)}/logs"
        return self._iter(ProcessServiceExecutionLog, path, self._list_params(reverse=reverse))

    # -- concurrent traversal ------------------------------------------------------------------------
    def walk_execution(self, org_id: str, execution: ProcessExecution | str, *, urls: bool = False,
                       inputs: bool = False, process: Process | None = None) -> ExecutionNode:
        """One execution with its components, their output Data and files (and signed URLs)."""
        if isinstance(execution, str):
            execution = self.get_execution(org_id, execution)
        tree = self._walk(org_id, [execution], urls=urls, inputs=inputs, process=process)
        return tree[0]

    def group_tree(self, org_id: str, process: Process | str, group_id: str | None = None, *,
                   urls: bool = False, inputs: bool = False) -> GroupTree:
        """Every execution of a group, their components, output Data and files, fetched concurrently.

        ``group_id`` defaults to the group of the most recent execution (one more request). With
        ``urls`` each file also gets a signed download URL; with ``inputs`` components' inputs are
        walked too. Pass the :class:`Process` model (not just its id) to let components tell
        aggregators from slices when group indices do not.
        """
        pid = _id_of(process)
        model = process if isinstance(process, Process) else None
        if group_id is None:
            latest = self.latest_execution(org_id, pid)
            group_id = latest.group_id
            members = [latest] if group_id is None else None
        else:
            members = None
        if members is None:
            members = list(self.iter_executions(org_id, pid, group_id=group_id, reverse=False))
        nodes = self._walk(org_id, members, urls=urls, inputs=inputs, process=model)
        slices = tuple(sorted((n for n in nodes if not n.is_aggregator), key=_node_order))
        aggregators = tuple(sorted((n for n in nodes if n.is_aggregator), key=_node_order))
        return GroupTree(organisation_id=org_id, process_id=pid, group_id=group_id, slices=slices,
                         aggregators=aggregators)

    def _walk(self, org_id: str, executions: Sequence[ProcessExecution], *, urls: bool, inputs: bool,
              process: Process | None) -> list[ExecutionNode]:
        components: dict[str, list[ProcessServiceExecution]] = {}
        datas: dict[str, Data] = {}
        files: dict[str, list[DataFile]] = {}
        signed: dict[tuple[str, str], SignedURL] = {}
        claimed: set[str] = set()  # data ids already being fetched (outputs can be shared)
        lock = threading.Lock()
        workers = self.max_workers
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fusion-stac-walk") as pool:
            fan = Fanout(pool)

            def get_file_url(data_id: str, file_id: str) -> None:
                url = self.download_url(org_id, data_id, file_id)
                with lock:
                    signed[(data_id, file_id)] = url

            def get_files(data_id: str) -> None:
                found = self.list_files(org_id, data_id)
                with lock:
                    files[data_id] = found
                if urls:
                    for f in found:
                        if f.file_id:
                            fan.submit(get_file_url, data_id, f.file_id)

            def get_data(data_id: str) -> None:
                found = self.get_data(org_id, data_id)
                with lock:
                    datas[data_id] = found

            def get_components(execution: ProcessExecution) -> None:
                found = list(self.iter_components(org_id, execution.id))
                with lock:
                    components[execution.id] = found
                for comp in found:
                    for data_id in (*comp.outputs, *(comp.inputs if inputs else ())):
                        with lock:
                            if data_id in claimed:
                                continue
                            claimed.add(data_id)
                        fan.submit(get_data, data_id)
                        fan.submit(get_files, data_id)

            for execution in executions:
                fan.submit(get_components, execution)
            fan.wait()

        def node_for(data_id: str) -> OutputNode:
            fs = tuple(files.get(data_id, ()))
            return OutputNode(
                data=datas[data_id], files=fs,
                urls={f.file_id: signed[(data_id, f.file_id)] for f in fs if (data_id, f.file_id) in signed},
            )

        chain_services = process.chain_service_ids if process is not None else frozenset()
        nodes = []
        for execution in executions:
            comps = components.get(execution.id, [])
            comp_nodes = tuple(
                ComponentNode(component=c, outputs=tuple(node_for(d) for d in c.outputs)) for c in comps
            )
            aggregator = execution.is_aggregator or (
                bool(chain_services) and bool(comps) and all(c.service_id not in chain_services for c in comps)
            )
            nodes.append(ExecutionNode(execution=execution, components=comp_nodes, is_aggregator=aggregator))
        return nodes


def _node_order(node: ExecutionNode) -> tuple[int, str]:
    return (node.execution.group_index or 0, node.execution.id or "")


def _split_group(members: Sequence[ProcessExecution]) -> tuple[list[ProcessExecution], list[ProcessExecution]]:
    """Tell aggregators from slices: aggregators are numbered after the ``group_count`` slices."""
    order = sorted(members, key=lambda e: (e.group_index or 0, e.id or ""))
    aggregators = [e for e in order if e.is_aggregator]
    slices = [e for e in order if not e.is_aggregator]
    return slices, aggregators


def _content_range_total(value: str | None) -> int | None:
    """Total size from ``Content-Range: bytes a-b/N`` or ``bytes */N``."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(match.group(1)) if match else None


class _Unsettled(Exception):
    """Internal: a lost answer left a half-done step on the platform; the step starts over."""


class _ProgressReporter:
    """Thread-safe fraction reporting for uploads and downloads."""

    def __init__(self, callback: Progress | None, total: int) -> None:
        self._callback = callback
        self._total = total
        self._done = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        if self._callback is None or n == 0:
            return
        with self._lock:
            self._done += n
            if self._total:
                self._callback(min(1.0, self._done / self._total))


class _CountingReader:
    """A file wrapper that reports bytes as ``requests`` streams them (keeps ``Content-Length``)."""

    def __init__(self, handle: Any, size: int, report: _ProgressReporter) -> None:
        self._handle = handle
        self._size = size
        self._report = report
        self._sent = 0

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        chunk = self._handle.read(n)
        self._sent += len(chunk)
        self._report.add(len(chunk))
        return chunk

    def rewind(self) -> None:
        self._handle.seek(0)
        self._report.add(-self._sent)
        self._sent = 0


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

