"""The exception tree of fusion-stac, rooted at :class:`FusionError`.

::

    FusionError                       every error raised on purpose by fusion-stac
    ├── APIError                      the API answered with a status >= 400
    │   ├── AuthenticationError       401, or a refused login ("Incorrect username or password")
    │   ├── PermissionDeniedError     403
    │   ├── NotFoundError             404 (also: no item of that id or name)
    │   ├── ConflictError             409
    │   ├── RateLimitedError          429, with ``retry_after`` seconds when the server sent it
    │   ├── ServerError               5xx
    │   └── ValidationError           400/422, and bad input caught client-side (option values,
    │                                 file types, unanalysed inputs) before any request is made
    ├── AmbiguousNameError            a name lookup matched several items (``candidates``)
    ├── AnalysisError                 the platform could not analyse an uploaded file
    ├── ExecutionFailedError          an execution finished without success
    ├── TransportError                no usable HTTP answer after all retries (DNS, refused, reset,
    │                                 timeout, truncated download)
    └── WaitTimeout                   a wait for analysis or execution ran out of time
                                      (also a built-in :class:`TimeoutError`)

Every error carries ``status``, ``path`` and ``message`` (``None`` where they do not apply), keeps the
underlying exception as ``__cause__``, survives a pickle round trip with its fields (so it crosses
process and dask worker boundaries), and never contains secrets: URLs in messages lose their query
string and fragment, and signature/token/password-like parameters are masked wherever they appear.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "APIError",
    "AmbiguousNameError",
    "AnalysisError",
    "AuthenticationError",
    "ConflictError",
    "ExecutionFailedError",
    "FusionError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "TransportError",
    "ValidationError",
    "WaitTimeout",
    "error_for_status",
    "redact",
    "redact_url",
    "scrubbed",
]

_URL_RE = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# key=value pairs whose value is secret, wherever they appear (query strings, log lines, echoes).
_SECRET_PARAM_RE = re.compile(
    r"(?i)\b([\w.-]*(?:signature|token|password|secret|credential|sig|key-pair-id|policy|auth)[\w.-]*)"
    r"(=|\"\s*:\s*\"|'\s*:\s*')([^&\s\"',;]+)"
)
_BEARER_RE = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
# Relative URLs in library messages ("... with url: /path?sig=...").
_REL_URL_QUERY_RE = re.compile(r"(?<![\w/:.])(/[^\s?'\"<>]*)\?[^\s'\"<>)]+")


def redact_url(url: str) -> str:
    """Return ``url`` without query string, fragment or user info: safe to log or show.

    Signed URLs carry their signature in the query string; the path alone still identifies the
    object for a human reader.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<url>"
    netloc = parts.netloc.rpartition("@")[2]  # without user info; case kept (fusion://My Org/...)
    suffix = "?…" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")) + suffix


def _redact_match(match: re.Match[str]) -> str:
    """A URL found in text, redacted; sentence punctuation after it ("...:8000: refused") is kept."""
    url = match.group(0)
    stripped = url.rstrip(".,:;!?)]")
    return redact_url(stripped) + url[len(stripped):]


def redact(text: str) -> str:
    """Mask anything secret-looking in free text (URLs, ``token=...``, ``Bearer ...``)."""
    if not text:
        return text
    text = _URL_RE.sub(_redact_match, text)
    text = _REL_URL_QUERY_RE.sub(r"\1?…", text)
    text = _BEARER_RE.sub(r"\1 *****", text)
    return _SECRET_PARAM_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}*****", text)


def scrubbed(exc: BaseException) -> BaseException:
    """A detached copy of a third-party exception, to chain with ``raise ... from``.

    Same type, redacted message, and nothing else: ``requests`` keeps the request on its exceptions
    (the ``Authorization: Bearer`` header, a login body with the password, a signed URL), and chained
    exceptions travel wherever ours do (tracebacks, and pickles where tblib is installed, as dask
    does). Types that cannot be rebuilt from a message become a plain :class:`Exception` naming them.
    """
    text = redact(str(exc))
    try:
        copy = type(exc)(text)
    except Exception:
        copy = Exception(f"{type(exc).__name__}: {text}")
    if copy.__dict__:  # a constructor that stored more than the message: keep none of it
        copy = Exception(f"{type(exc).__name__}: {text}")
    return copy


def _rebuild(cls: type[FusionError], args: tuple[Any, ...], state: dict[str, Any]) -> FusionError:
    """Unpickle an error without calling ``__init__`` (whose signature differs per class)."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class FusionError(Exception):
    """Root of every error fusion-stac raises on purpose; catch this to catch them all."""

    status: int | None = None

    def __init__(self, message: str, *, status: int | None = None, path: str | None = None) -> None:
        self.message = redact(str(message))
        if status is not None:
            self.status = status
        self.path = redact_url(path) if path and "://" in path else _strip_query(path)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r}, path={self.path!r})"


def _strip_query(path: str | None) -> str | None:
    if path is None:
        return None
    return path.split("?", 1)[0].split("#", 1)[0]


class APIError(FusionError):
    """The API answered with an error status; ``message`` is the server's ``error_message``."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        path: str | None = None,
        method: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, path=path)
        self.method = method
        self.request_id = request_id
        # The full text names the request so a log line alone says what failed.
        where = " ".join(p for p in (method, self.path) if p)
        detail = ", ".join(
            p for p in (str(status) if status is not None else None, where or None,
                        f"request id {request_id}" if request_id else None) if p
        )
        self.args = (f"{self.message} ({detail})" if detail else self.message,)

    def __str__(self) -> str:
        return str(self.args[0])


class AuthenticationError(APIError):
    """Login refused, or the session token was rejected and could not be renewed (401)."""

    status = 401


class PermissionDeniedError(APIError):
    """The user may not do this in this organisation (403)."""

    status = 403


class NotFoundError(APIError):
    """No such item (404), or no item with that name."""

    status = 404


class ConflictError(APIError):
    """The request conflicts with the item's state, e.g. deleting data a process uses (409)."""

    status = 409


class RateLimitedError(APIError):
    """Too many requests (429); ``retry_after`` is the server's advice in seconds, if any."""

    status = 429

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """The server failed (5xx)."""

    status = 500


class ValidationError(APIError):
    """The request or a value was rejected: 400/422 from the server, or caught client-side.

    Client-side checks (``status`` None) name the option, input or file that was wrong and why:
    a value of the wrong type or outside ``min``/``max``, a value not among the constrained
    values, a file type the input does not accept, an input whose analysis is not finished.
    """

    status: int | None = 400

    def __init__(self, message: str, *, field: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        if kwargs.get("status") is None:
            self.status = None  # caught client-side: no HTTP status
        self.field = field


class AmbiguousNameError(FusionError):
    """A name matched several items; ``candidates`` lists ``(id, name)`` pairs to choose from."""

    def __init__(self, kind: str, name: str, candidates: Sequence[tuple[str, str]], *, path: str | None = None) -> None:
        self.kind = kind
        self.name = name
        self.candidates = [(str(i), str(n)) for i, n in candidates]
        listed = "; ".join(f"{n!r} (id {i})" for i, n in self.candidates[:10])
        more = f" and {len(self.candidates) - 10} more" if len(self.candidates) > 10 else ""
        super().__init__(
            f"{kind} name {name!r} is ambiguous: it matches {listed}{more}; use an id or the exact name",
            path=path,
        )


class AnalysisError(FusionError):
    """The platform could not analyse uploaded file(s); ``files`` names them."""

    def __init__(self, message: str, *, data_id: str | None = None, files: Sequence[str] = (),
                 path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.data_id = data_id
        self.files = list(files)


class ExecutionFailedError(FusionError):
    """An execution completed without success; names the execution, its group slot and reason."""

    def __init__(self, message: str, *, execution_id: str | None = None, group_id: str | None = None,
                 group_index: int | None = None, abort_reason: str | None = None,
                 path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.execution_id = execution_id
        self.group_id = group_id
        self.group_index = group_index
        self.abort_reason = abort_reason


class TransportError(FusionError):
    """No usable HTTP answer after all retries: connection refused/reset, DNS, timeout, or a
    download that kept arriving truncated."""

    def __init__(self, message: str, *, path: str | None = None, method: str | None = None,
                 attempts: int | None = None) -> None:
        super().__init__(message, path=path)
        self.method = method
        self.attempts = attempts


class WaitTimeout(FusionError, TimeoutError):
    """A wait (analysis, next execution, completion) did not finish within its ``timeout``."""

    def __init__(self, message: str, *, waited: float | None = None, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.waited = waited


_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitedError,
}


def error_for_status(
    status: int,
    message: str,
    *,
    path: str | None = None,
    method: str | None = None,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> APIError:
    """Build the typed :class:`APIError` for an HTTP error status."""
    kwargs: dict[str, Any] = {"status": status, "path": path, "method": method, "request_id": request_id}
    if status == 429:
        return RateLimitedError(message, retry_after=retry_after, **kwargs)
    if status >= 500:
        return ServerError(message, **kwargs)
    cls = _BY_STATUS.get(status, APIError)
    return cls(message, **kwargs)
