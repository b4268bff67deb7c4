"""HTTP transport for the client: one pooled ``requests.Session``, timeouts, retries, request counts.

Retries use **tenacity** rather than urllib3's ``Retry`` because the decision depends on the call,
not the connection pool: login is a POST that is safe to repeat while other POSTs are not; a
retried 429 must honour ``Retry-After`` and, when retries run out, surface as a typed error with the
server's message (urllib3 would raise ``MaxRetryError`` and drop the body); and every retry must be
counted in :class:`RequestStats` for the benchmarks. Waits are full-jitter exponential.

What is retried:

* connection errors, read timeouts and truncated bodies — idempotent requests only (GET, HEAD,
  PUT, DELETE, OPTIONS, and calls explicitly marked safe, like login);
* with ``send(..., expect_json=True)``, a successful answer labelled JSON whose body does not parse
  (cut short by a proxy, or garbled) — idempotent requests only; for any other request it is a
  :class:`TransportError` at once (the call may have taken effect: the caller re-checks);
* connect timeouts — any request (nothing reached the server);
* 429 — any request (the server refused to process it), waiting ``Retry-After`` when sent;
* 500, 502, 503, 504 — idempotent requests only (a 500 is usually transient, and repeating an
  idempotent request is harmless; cloud SDKs retry it too).
"""

from __future__ import annotations

import json as jsonlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import requests
import requests.auth
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from fusion_stac.errors import TransportError, redact, redact_url, scrubbed
from fusion_stac.storage._policy import API_RETRY, RetryPolicy, parse_retry_after

logger = logging.getLogger("fusion_stac")

#: urllib3's loggers that write request lines (with the query string) or URLs.
URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager", "urllib3.util.retry",
                   "urllib3.response")


class RedactingFilter(logging.Filter):
    """Masks secrets in records of third-party HTTP loggers.

    urllib3 logs every request line at DEBUG, query string included, so the signature of every
    pre-signed URL would reach users' logs. The record keeps everything else (host, method, path,
    status, length); only query strings and secret-looking values are masked.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error reporting
            return True
        record.msg, record.args = redact(message), None
        return True


def install_log_redaction() -> None:
    """Attach :class:`RedactingFilter` to urllib3's loggers (once; called on import)."""
    for name in URLLIB3_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(RedactingFilter())


install_log_redaction()

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
Timeout = float | tuple[float, float]


class RequestStats:
    """Thread-safe request counters (for benchmarks and tests).

    ``requests`` counts every HTTP request sent, including retries and requests to pre-signed
    URLs (``signed_requests``); ``retries`` and ``relogins`` count the extra attempts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.retries = 0
            self.relogins = 0
            self.signed_requests = 0
            self.bytes_downloaded = 0
            self.by_method: Counter[str] = Counter()
            self.by_status: Counter[int] = Counter()

    def _request(self, method: str, *, signed: bool) -> None:
        with self._lock:
            self.requests += 1
            self.by_method[method] += 1
            if signed:
                self.signed_requests += 1

    def _status(self, status: int) -> None:
        with self._lock:
            self.by_status[status] += 1

    def _retry(self) -> None:
        with self._lock:
            self.retries += 1

    def _relogin(self) -> None:
        with self._lock:
            self.relogins += 1

    def _bytes(self, n: int) -> None:
        with self._lock:
            self.bytes_downloaded += n

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of all counters."""
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "relogins": self.relogins,
                "signed_requests": self.signed_requests,
                "bytes_downloaded": self.bytes_downloaded,
                "by_method": dict(self.by_method),
                "by_status": dict(self.by_status),
            }

    def __repr__(self) -> str:
        s = self.snapshot()
        return (f"RequestStats(requests={s['requests']}, retries={s['retries']}, relogins={s['relogins']}, "
                f"by_method={s['by_method']})")


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>``; as an explicit auth it also stops requests from applying
    netrc credentials for the host (which would replace our header)."""

    def __init__(self, token: str | None) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._token:
            request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(*****)"


NO_AUTH = BearerAuth(None)  # for login and pre-signed URLs: no header, and no netrc either


class _RetryableStatus(Exception):
    """Internal: a response whose status may be retried; carries it to the caller when retries end."""

    def __init__(self, response: requests.Response, retry_after: float | None) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.retry_after = retry_after


class JSONResponse(requests.Response):
    """A successful answer whose JSON body the transport has read and parsed (once): ``payload``.

    ``json()`` returns ``payload`` without parsing again; everything else is the original
    response's (status, headers, content, url, request).
    """

    payload: Any

    @classmethod
    def of(cls, response: requests.Response, payload: Any) -> JSONResponse:
        copy = cls()
        copy.__setstate__(response.__getstate__())  # requests' own (pickling) copy of a read response
        copy.payload = payload
        return copy

    def json(self, **kwargs: Any) -> Any:
        return self.payload if not kwargs else super().json(**kwargs)


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class _BadBody(Exception):
    """Internal: a successful answer labelled JSON whose body does not parse (truncated or garbled)."""

    def __init__(self, response: requests.Response, problem: str) -> None:
        super().__init__(problem)
        self.response = response


class APITransport:
    """Sends API requests with pooling, a timeout on every request, retries and counting."""

    def __init__(
        self,
        *,
        timeout: Timeout,
        max_workers: int,
        retry: RetryPolicy = API_RETRY,
        user_agent: str,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.timeout = timeout
        self.retry = retry
        self.stats = RequestStats()
        self._sleep = sleep
        if session is None:
            # One session for the API and for storage (the client's storage Transport reuses it):
            # requests are authorised per call (a bearer token for the API, the signature in a
            # pre-signed URL), so the session's own auth is the explicit no-op, which also keeps
            # requests from adding netrc credentials to storage requests.
            session = requests.Session()
            session.auth = NO_AUTH
        self.session = session
        # A pool as large as the fan-out (API calls, and range reads of several threads per file).
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=max(16, 2 * max_workers), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = user_agent

    def close(self) -> None:
        self.session.close()

    # -- retry machinery ---------------------------------------------------------------------------
    def _retryable(self, exc: BaseException, idempotent: bool) -> bool:
        if isinstance(exc, _BadBody):
            return idempotent
        if isinstance(exc, _RetryableStatus):
            return exc.response.status_code == 429 or idempotent
        if isinstance(exc, requests.ConnectTimeout):
            return True
        if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)):
            return idempotent
        return False

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableStatus) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry.max_retry_after)
        return self.retry.wait(state.attempt_number)

    def _before_sleep(self, method: str, shown: str) -> Callable[[RetryCallState], None]:
        def log(state: RetryCallState) -> None:
            self.stats._retry()
            exc = state.outcome.exception() if state.outcome else None
            why = (f"HTTP {exc.response.status_code}" if isinstance(exc, _RetryableStatus)
                   else f"an unreadable JSON body ({exc})" if isinstance(exc, _BadBody) else type(exc).__name__)
            wait = state.next_action.sleep if state.next_action else 0.0
            logger.info("retrying %s %s after %s in %.2f s (attempt %d of %d)", method, shown, why, wait,
                        state.attempt_number + 1, self.retry.attempts)
        return log

    def send(
        self,
        method: str,
        url: str,
        *,
        shown: str,
        idempotent: bool | None = None,
        signed: bool = False,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        timeout: Timeout | None = None,
        rewind: Callable[[], Any] | None = None,
        auth: requests.auth.AuthBase = NO_AUTH,
        expect_json: bool = False,
    ) -> requests.Response:
        """Send one logical request, retrying as the policy allows.

        Returns the final response whatever its status (the caller maps statuses to errors);
        raises :class:`TransportError` when no response could be obtained. ``shown`` is the
        secret-free form of the URL used in logs and errors; ``rewind`` re-creates a streamed
        ``data`` body before a retry.

        With ``expect_json`` a 2xx answer labelled JSON is parsed inside the retry loop and returned
        as a :class:`JSONResponse` (``payload``; ``json()`` does not parse again). A body that does
        not parse is retried like a dropped connection for an idempotent call and counted in
        ``stats.retries``; for another call, or when retries run out, it is a
        :class:`TransportError` (the answer was lost: a POST may have taken effect).
        """
        if expect_json and stream:
            raise ValueError("expect_json reads the whole body: it cannot be combined with stream=True")
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        attempt_no = 0

        def attempt() -> requests.Response:
            nonlocal attempt_no, data
            attempt_no += 1
            if attempt_no > 1 and rewind is not None:
                data = rewind()
            self.stats._request(method, signed=signed)
            started = time.perf_counter()
            response = self.session.request(
                method, url, params=params, json=json, data=data, headers=headers, stream=stream,
                timeout=timeout or self.timeout, allow_redirects=True, auth=auth,
            )
            self.stats._status(response.status_code)
            logger.debug("%s %s -> %d in %.0f ms", method, shown, response.status_code,
                         (time.perf_counter() - started) * 1000)
            if response.status_code in self.retry.retry_statuses:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise _RetryableStatus(response, retry_after)
            if expect_json and 200 <= response.status_code < 300 and _is_json(response.headers.get("Content-Type")):
                try:
                    payload = jsonlib.loads(response.content)
                except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
                    length = response.headers.get("Content-Length")
                    raise _BadBody(response, f"{len(response.content)} bytes"
                                             f"{f' of {length} announced' if length else ''} that are not JSON "
                                             f"({type(exc).__name__} at {getattr(exc, 'pos', '?')})") from None
                return JSONResponse.of(response, payload)
            return response

        retrying = Retrying(
            stop=stop_after_attempt(max(1, self.retry.attempts)),
            wait=self._wait,
            retry=retry_if_exception(lambda e: self._retryable(e, idempotent)),
            before_sleep=self._before_sleep(method, shown),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _RetryableStatus as exc:
            return exc.response
        except _BadBody as exc:
            raise TransportError(
                f"{method} {shown}: the answer (HTTP {exc.response.status_code}) was cut short or garbled after "
                f"{attempt_no} attempt(s): {exc}",
                path=shown, method=method, attempts=attempt_no,
            ) from None
        except requests.RequestException as exc:
            kind = "timed out" if isinstance(exc, requests.Timeout) else "failed"
            error = TransportError(
                f"{method} {shown} {kind} after {attempt_no} attempt(s): {type(exc).__name__}: "
                f"{redact(str(exc))[:300]}",
                path=shown, method=method, attempts=attempt_no,
            )
            cause = scrubbed(exc)
        # Raised outside the handler, chained to a scrubbed copy: the library's exception holds the
        # request (bearer token, login password, signed URL) and must not ride along as __context__.
        raise error from cause


def shown_url(url: str) -> str:
    """The secret-free form of a URL for logs and errors."""
    return redact_url(url)
