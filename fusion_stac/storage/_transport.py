"""Byte ranges of stored files over pre-signed URLs: GET only, verified, resumed, retried.

One retry policy for the whole data plane (peers retry in the wrong place or not at all, and GDAL
has returned blank pixels on a dropped connection):

* every request is a ``GET`` with a ``Range`` header; sizes come from the API's metadata, so nothing
  ever sends ``HEAD`` (pre-signed URLs refuse it);
* every answer is checked before use (status, ``Content-Range`` start, end and total, ETag; see
  :mod:`._answer`); a body is read up to the range asked at most, whatever its ``Content-Length``,
  and a body that ends early is **resumed** from the first missing byte, never returned short;
* a refused URL (401/403, or 400 saying the request expired) is re-signed through the
  :class:`~fusion_stac.storage._broker.URLBroker` and the same byte range requested again;
* connection resets, timeouts, truncated bodies, 5xx, 429 and answers that do not fit the request
  are retried with ``RetryPolicy.wait`` (``Retry-After`` honoured), up to ``RetryPolicy.attempts``
  tries without progress; each repeat counts in ``stats["retries"]``, and one that continues an
  answer which broke off midway also in ``stats["resumes"]``;
* the first ``ETag`` accepted for a file is remembered; a different one later is a
  :class:`~fusion_stac.storage._broker.FileChangedError` naming the file, and so is a file size
  that contradicts the metadata twice in a row (once may be a faulty proxy: see :class:`RangeReader`).

:class:`RangeReader` consumes one range incrementally (the file objects stream sequential reads
through it); :meth:`Transport.read_range` and :meth:`Transport.read_ranges` are the one-shot forms.
Errors name the ``fusion://`` path; signed URLs never appear in messages.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import requote_uri
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from fusion_stac.errors import TransportError, redact, scrubbed
from fusion_stac.storage._answer import inspect_answer, unsatisfied_total
from fusion_stac.storage._broker import FileChangedError, FileKey, URLBroker, VersionPin
from fusion_stac.storage._http import install_log_redaction
from fusion_stac.storage._policy import STORAGE_RETRY, RetryPolicy, parse_retry_after
from fusion_stac.storage._route import Answer, Route, Urllib3Body, no_auth, plain_route, reuse_connection
from fusion_stac.storage._stats import TransferStats

__all__ = ["Block", "RangeReader", "TransferError", "Transport", "merge_ranges", "slice_ranges"]

install_log_redaction()  # urllib3 logs request lines, query strings (signatures) included

log = logging.getLogger("fusion_stac.fs")

# Connection-level failures worth another try (resets, timeouts, truncated bodies, bad chunking).
_RETRYABLE: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    Urllib3HTTPError,
    HTTPException,
    ConnectionError,
    TimeoutError,
)
_EXPIRED_RE = re.compile(rb"expired|ExpiredToken|AccessDenied|SignatureDoesNotMatch|AuthenticationFailed", re.I)
_DRAIN_LIMIT = 64 * 1024  # unread bytes worth draining so the connection can be reused


class TransferError(TransportError, OSError):
    """Storage kept failing for one byte range after every retry (also an :class:`OSError`).

    ``path`` names the file, ``attempts`` how many requests were made for the failing range.
    """


def _error_body(response: requests.Response) -> bytes:
    """The first few KiB of an error answer (to classify it); the connection is then released."""
    try:
        return response.raw.read(4096, decode_content=True) or b""
    except Exception:  # the body is only a hint
        return b""
    finally:
        response.close()


@dataclass(frozen=True)
class Block:
    """One byte range of one file to fetch (a unit of parallel work)."""

    key: FileKey
    start: int
    end: int
    path: str
    size: int | None = None
    pin: VersionPin | None = None


def merge_ranges(ranges: Sequence[tuple[int, int]], *, max_gap: int = 0) -> list[tuple[int, int]]:
    """The fewest ``[start, end)`` blocks covering ``ranges`` (overlapping, adjacent or within ``max_gap``
    merged), sorted; empty ranges need no block.

    Written here (ten lines) rather than taken from fsspec's ``merge_offset_ranges``: up to fsspec
    2026.1 that one shrinks a block when a range nested inside the previous one ends earlier, which
    would make :func:`slice_ranges` hand back short bytes.
    """
    merged: list[tuple[int, int]] = []
    for start, end in sorted((s, e) for s, e in ranges if e > s):
        if merged and start <= merged[-1][1] + max_gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def slice_ranges(ranges: Sequence[tuple[int, int]], blocks: Sequence[tuple[int, int]],
                 payloads: Sequence[Any]) -> list[Any]:
    """Cut each range's bytes out of the merged block holding it (an exception stays an exception)."""
    import bisect

    starts = [b[0] for b in blocks]
    out: list[Any] = []
    for start, end in ranges:
        if end <= start:
            out.append(b"")
            continue
        i = bisect.bisect_right(starts, start) - 1
        b_start, b_end = blocks[i]
        payload = payloads[i]
        assert b_start <= start and end <= b_end, (start, end, blocks[i])
        out.append(payload if isinstance(payload, BaseException) else payload[start - b_start:end - b_start])
    return out


class _Fault(Exception):
    """Internal: an answer that cannot be used (a 5xx/429, or headers that do not fit the request);
    retried like a reset connection. Its message names no URL."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_TRANSIENT: tuple[type[BaseException], ...] = (*_RETRYABLE, _Fault)


def _etag(value: str) -> str:
    value = value.strip()
    return value[2:] if value.startswith("W/") else value


def _exhausted(response: requests.Response | None) -> bool:
    """Whether the answer's body was read to the end its ``Content-Length`` announced."""
    isclosed = getattr(getattr(getattr(response, "raw", None), "_fp", None), "isclosed", None)
    return bool(callable(isclosed) and isclosed())


def _describe(problem: BaseException) -> str:
    if isinstance(problem, _Fault):
        return str(problem)
    return f"{type(problem).__name__}: {redact(str(problem))[:200]}"


class RangeReader:
    """Bytes ``[start, end)`` of one stored file, read front to back over as few requests as possible.

    The HTTP request is made lazily on the first read; if the connection fails or the body ends
    early, the next request resumes at the first missing byte. ``read(n)`` returns exactly
    ``min(n, remaining)`` bytes or raises. Not thread-safe (one reader per consumer).

    **Every answer is verified before a byte of it is used** (:func:`~._answer.inspect_answer`): its
    ``Content-Range`` must start at the first missing byte; a body is read up to the range asked at
    most, whatever ``Content-Length`` says, and a body that ends early (a short ``Content-Length``, a
    connection closed early) is resumed from the first missing byte. Nothing an answer states is
    kept before it is verified: its file size becomes :attr:`total` only once its body has arrived
    in full with consistent headers, and its ETag is pinned only once the answer is accepted.

    **File changed, or faulty answer?** An answer whose size (``Content-Range`` total, or a
    whole-file ``200``'s length, or a ``416``) contradicts the known size (the metadata's, or one
    verified earlier) is

    * a :class:`FileChangedError` at once when its ETag differs from the one pinned for this read;
    * a :class:`FileChangedError` when the previous answer stated the same contradicting size (two
      answers in a row agree: the file, or its metadata, really changed);
    * otherwise a faulty answer (a proxy or a server in trouble): retried like a reset, and not
      used. A proxy that corrupts sizes at random seldom repeats itself; one that always lies the
      same way is reported as a change, which is the safe side.

    ``failures`` without progress are bounded by ``RetryPolicy.attempts``; bytes that arrive reset
    the count (a body that keeps breaking off but advances is resumed to the end).
    """

    def __init__(self, transport: Transport, key: FileKey, start: int, end: int, *, path: str,
                 size: int | None = None, pin: VersionPin | None = None) -> None:
        if start < 0 or end < start:
            raise ValueError(f"{path}: invalid byte range {start}-{end}")
        self.transport = transport
        self.key = key
        self.path = path
        self.size = size
        self.pin = pin if pin is not None else VersionPin()
        self.start = start
        self.pos = start
        self.end = end
        self.total: int | None = size  # the file size: the metadata's, or one storage stated and proved
        self._response: requests.Response | None = None
        self._stop = start  # the current answer serves bytes up to here (at most ``end``)
        self._answer_from = start  # where the current answer started delivering
        self._pending: int | None = None  # the size the current answer states, learned once it completes
        self._whole = False  # the current answer is a whole-file 200
        self._odd: tuple[str, int | None] | None = None  # the last contradicting size stated
        self._failures = 0  # consecutive failures without a byte of progress
        self._interrupted = False  # drain() lost the answer midway

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    # -- reading -------------------------------------------------------------------------------
    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all remaining if negative), exactly ``min(n, remaining)`` of them."""
        want = self.remaining if n is None or n < 0 else min(n, self.remaining)
        if want <= 0:
            return b""
        parts: list[bytes] = []
        got = 0
        while got < want and self.pos < self.end:
            chunk = self._pull(lambda body, left: body.read(left), want - got)
            got += len(chunk)
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with the next ``min(len(buffer), remaining)`` bytes, without extra copies
        (for bulk downloads into a reused buffer); returns how many."""
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.remaining)
        got = 0
        while got < want and self.pos < self.end:
            target = view[got:want]

            def fill(body: Any, left: int, target: memoryview = target) -> int:
                return int(body.readinto(target[:left]))

            n = self._pull(fill, want - got)
            got += n if isinstance(n, int) else len(n)
        return got

    def _pull(self, step: Callable[[Any, int], Any], left: int) -> Any:
        """One successful ``step(body, left)`` on the current answer (connecting and retrying as needed);
        ``step`` returns bytes or a count. Position and counters advance by what it got."""
        while True:
            problem: BaseException | None = None
            try:
                if self._response is None:
                    if self._interrupted:
                        self._interrupted = False
                        self.transport.stats.add("retries")
                        self.transport.stats.add("resumes")
                    self._connect()
                    if self.pos >= self.end:
                        return b""
                got = step(self._body(), min(left, self._stop - self.pos))
                count = got if isinstance(got, int) else len(got)
                if not count:
                    raise _Fault(f"the answer ended {self._stop - self.pos} bytes early")
            except _TRANSIENT as exc:
                problem = exc
            if problem is None:
                self._advance(count)
                return got
            # outside the handler: a TransferError is chained to a scrubbed copy, never the original
            self._recover(problem)

    def _advance(self, count: int) -> None:
        self.pos += count
        self.transport.stats.add("bytes", count)
        self._failures = 0
        if self.pos >= self._stop:
            self._complete()

    def _recover(self, problem: BaseException) -> None:
        """After a failed request or read: drop the answer, then wait for another try or give up."""
        resumed = self._response is not None and self.pos > self._answer_from
        self._drop()
        self._failures += 1
        policy = self.transport.policy
        if self._failures >= policy.attempts:
            raise TransferError(
                f"{self.path}: reading bytes {self.pos}-{self.end - 1} failed {self._failures} times in a row; "
                f"last problem: {_describe(problem)}",
                path=self.path, attempts=self._failures,
            ) from scrubbed(problem)
        stats = self.transport.stats
        stats.add("retries")
        if resumed:
            stats.add("resumes")
        log.debug("%s: retrying bytes %d-%d after %s", self.path, self.pos, self.end - 1, _describe(problem))
        retry_after = problem.retry_after if isinstance(problem, _Fault) else None
        time.sleep(policy.wait(self._failures, retry_after))

    def _body(self) -> Any:
        """The body as a file: http.client's response under urllib3 when reachable (its ``readinto``
        fills a caller's buffer directly, where urllib3's copies twice), else urllib3's own."""
        assert self._response is not None
        raw = self._response.raw
        fp = getattr(raw, "_fp", None)
        if fp is not None and hasattr(fp, "readinto") and hasattr(fp, "read"):
            return fp
        return Urllib3Body(raw)

    def skip(self, n: int) -> None:
        """Discard the next ``n`` bytes (cheaper than a new request for small gaps)."""
        while n > 0:
            n -= len(self.read(min(n, 1 << 20)))

    def drain(self) -> bytes:
        """The rest of the current answer if it arrives without trouble, else what did (no new request)."""
        if self._response is None or not self.remaining:
            return b""
        try:
            data = self._body().read(self._stop - self.pos) or b""
        except _RETRYABLE:
            self._drop()
            self._interrupted = True  # the next request resumes: counted then
            return b""
        if data:
            self._advance(len(data))  # a body that ended early stays: the next read finds its end
        return data

    def close(self) -> None:
        """Stop reading; a small unread rest is drained so the connection can be reused."""
        if self._response is not None and 0 < self._stop - self.pos <= _DRAIN_LIMIT:
            with contextlib.suppress(Exception):  # draining is best effort
                self.drain()
        self._drop()

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        response = getattr(self, "_response", None)
        if response is not None:
            response.close()

    def __repr__(self) -> str:
        return f"RangeReader({self.path!r}, {self.start}-{self.end}, pos={self.pos})"

    # -- answers -------------------------------------------------------------------------------
    def _complete(self) -> None:
        """The current answer delivered all it was used for: learn the size it stated, reuse its connection."""
        response, self._response = self._response, None
        if self._pending is not None and self.total is None and (not self._whole or _exhausted(response)):
            self.total = self._pending  # a whole-file length only once its body really ended there
        self._pending = None
        if response is not None:
            reuse_connection(response)
            response.close()

    def _drop(self) -> None:
        response, self._response = self._response, None
        self._pending = None
        if response is not None:
            with contextlib.suppress(Exception):  # the connection may already be broken
                response.close()

    def _connect(self) -> None:
        """Open an answer positioned at ``self.pos``; raise :class:`_Fault` (or a connection error)
        for what another try may fix, typed errors for what it cannot."""
        transport = self.transport
        refreshes = 0
        while True:
            lease = transport.broker.lease(self.key)
            transport.stats.add("requests")
            response = transport.get(
                lease.url, {"Range": f"bytes={self.pos}-{self.end - 1}", "Accept-Encoding": "identity"}
            )
            status = response.status_code
            if status in (200, 206):
                try:
                    self._accept(response)
                except BaseException:
                    self._response = None
                    response.close()
                    raise
                return
            body = _error_body(response)
            if status in (401, 403) or (status == 400 and _EXPIRED_RE.search(body)):
                transport.broker.invalidate(lease)
                refreshes += 1
                if refreshes > transport.policy.refreshes:
                    raise PermissionError(
                        errno.EACCES,
                        f"storage refused the download URL {refreshes} times in a row (HTTP {status}), "
                        "even freshly signed ones",
                        self.path,
                    )
                continue
            if status in (404, 410):
                raise FileNotFoundError(errno.ENOENT, f"storage has no such file (HTTP {status})", self.path)
            if status == 416:
                self._unsatisfiable(unsatisfied_total(response.headers.get("Content-Range")))
                return
            if status == 429 or status >= 500:
                raise _Fault(f"storage answered HTTP {status}", parse_retry_after(response.headers.get("Retry-After")))
            raise OSError(errno.EIO, f"storage answered HTTP {status} to a download", self.path)

    def _unsatisfiable(self, stated: int | None) -> None:
        """A ``416``: an empty file when nothing says otherwise, else a contradiction of the known size."""
        if self.total is None and self.pos == 0 and stated in (None, 0):
            self.total = 0  # an empty object: nothing to read
            self.end = 0
            return
        known = "its metadata says" if self.size is not None else "storage said before"
        self._contradiction(("416", stated), f"storage refused bytes {self.pos}-{self.end - 1} (HTTP 416): the "
                                             f"file is shorter than the {self.total} bytes {known}")

    def _contradiction(self, stated: tuple[str, int | None], message: str) -> None:
        """An answer contradicting the known size: a change if the previous answer said the same, else a fault."""
        if self._odd == stated:
            raise FileChangedError(f"{self.path}: {message}, twice in a row; the file changed or its metadata "
                                   "is stale", path=self.path)
        self._odd = stated
        raise _Fault(message)

    def _accept(self, response: requests.Response) -> None:
        """Check that a 200/206 answer carries the bytes asked for, of the same file version, and
        make it the current answer (see the class docstring for the rules)."""
        headers = response.headers
        etag = headers.get("ETag")
        if etag and self.pin.etag is not None and _etag(etag) != self.pin.etag:
            self.pin.check(self.key, etag, self.path)  # raises FileChangedError
        verdict = inspect_answer(response.status_code, headers, self.pos, self.end)
        if verdict.fault is not None:
            raise _Fault(verdict.fault)
        known, stated = self.total, verdict.claim
        if known is not None and stated is not None and stated != known:
            whose = "its metadata says" if self.size is not None else "storage said before"
            self._contradiction(("size", stated), f"storage says it holds {stated} bytes but {whose} {known}")
        if verdict.whole and self.pos > 0 and (stated is None or stated != known):
            raise _Fault("a whole-file answer whose length cannot be checked against the file's size")
        self._odd = None
        self.pin.check(self.key, etag, self.path)
        self._pending = stated if verdict.consistent else None
        self._whole = verdict.whole
        self._stop = verdict.stop
        self._answer_from = self.pos
        self._response = response
        if verdict.skip:
            log.debug("%s: storage ignored the Range header; skipping %d bytes", self.path, verdict.skip)
            self._discard(verdict.skip)

    def _discard(self, n: int) -> None:
        assert self._response is not None
        while n > 0:
            chunk = self._body().read(min(n, 1 << 20))
            if not chunk:
                raise HTTPException("body ended while skipping to the requested range")
            n -= len(chunk)
            self.transport.stats.add("bytes", len(chunk))

class Transport:
    """The HTTP side of one connection: a pooled session, the broker, the policy and the counters."""

    def __init__(
        self,
        broker: URLBroker,
        *,
        policy: RetryPolicy | None = None,
        session: requests.Session | None = None,
        max_workers: int = 8,
    ) -> None:
        self.broker = broker
        self.stats: TransferStats = broker.stats
        self.policy = policy or STORAGE_RETRY
        self.max_workers = max(1, int(max_workers))
        if session is None:
            session = requests.Session()
            # Pre-signed URLs carry their own authorisation: an explicit no-op auth keeps requests
            # from adding netrc credentials for the storage host (S3 refuses two auth mechanisms).
            session.auth = no_auth
            adapter = HTTPAdapter(pool_connections=8, pool_maxsize=max(16, 2 * self.max_workers), max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self.session = session
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._routes: dict[tuple[str, str], Route | None] = {}
        self._timeout = urllib3.Timeout(connect=self.policy.connect_timeout, read=self.policy.read_timeout)
        self._round_trips: deque[float] = deque(maxlen=16)
        self._round_trips_lock = threading.Lock()
        self._answered = threading.Event()

    def round_trip(self, wait: float = 0.0) -> float | None:
        """How long storage takes to answer: the fastest of the last 16 requests, in seconds from
        sending one to its status line (``None`` before any answer). ``wait``: seconds to wait for a
        first answer when there is none yet. Readers use it to decide whether fetching ahead pays:
        on a fast server it only competes with decoding for the CPU."""
        if wait > 0 and not self._answered.is_set():
            self._answered.wait(wait)
        with self._round_trips_lock:
            return min(self._round_trips, default=None)

    def _answered_in(self, seconds: float) -> None:
        with self._round_trips_lock:
            self._round_trips.append(seconds)
        if not self._answered.is_set():
            self._answered.set()

    def get(self, url: str, headers: dict[str, str]) -> Any:
        """A streamed GET: straight to urllib3's pool when requests would add nothing (see
        :func:`~._route.plain_route`), through the session otherwise. The answer has ``status_code``,
        ``headers``, ``raw`` and ``close()`` either way."""
        split = urlsplit(url)
        host = (split.scheme, split.netloc)
        try:
            route = self._routes[host]
        except KeyError:
            route = self._routes[host] = plain_route(self.session, url)
        started = time.perf_counter()
        if route is None or requote_uri(url) != url:
            answer = self.session.get(url, headers=headers, stream=True,
                                      timeout=(self.policy.connect_timeout, self.policy.read_timeout))
            self._answered_in(time.perf_counter() - started)
            return answer
        adapter = route.adapter
        pool = adapter.poolmanager.connection_from_host(**route.host_params, pool_kwargs=route.pool_kwargs)
        adapter.cert_verify(pool, url, route.verify, route.cert)
        path = (split.path or "/") + ("?" + split.query if split.query else "")
        raw = pool.urlopen("GET", path, body=None, headers={**route.headers, **headers}, redirect=False,
                           assert_same_host=False, preload_content=False, decode_content=False,
                           retries=adapter.max_retries, timeout=self._timeout, chunked=False)
        self._answered_in(time.perf_counter() - started)
        return Answer(raw)

    @property
    def pool(self) -> ThreadPoolExecutor:
        """Threads for parallel range and file transfers (created on first use)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="fusion-fs")
            return self._pool

    def open_range(self, key: FileKey, start: int, end: int, *, path: str, size: int | None = None,
                   pin: VersionPin | None = None) -> RangeReader:
        """A :class:`RangeReader` over ``[start, end)``; no request is made until it is read."""
        return RangeReader(self, key, start, end, path=path, size=size, pin=pin)

    def read_range(self, key: FileKey, start: int, end: int, *, path: str, size: int | None = None,
                   pin: VersionPin | None = None) -> bytes:
        """Bytes ``[start, end)`` in one go (resumed and retried as needed)."""
        if end <= start:
            return b""
        with self.open_range(key, start, end, path=path, size=size, pin=pin) as reader:
            return reader.read()

    def read_blocks(self, blocks: Sequence[Block], *, raise_first: bool = True) -> list[Any]:
        """Read many ``Block`` s (of any files) in parallel; results in order.

        With ``raise_first`` the first failure is raised once all have finished; otherwise each
        failed block's exception takes its place in the result.
        """
        def one(block: Block) -> bytes:
            return self.read_range(block.key, block.start, block.end, path=block.path, size=block.size,
                                   pin=block.pin)

        if len(blocks) == 1:
            try:
                results: list[Any] = [one(blocks[0])]
            except Exception as exc:
                if raise_first:
                    raise
                results = [exc]
            return results
        futures = [self.pool.submit(one, b) for b in blocks]
        results = []
        for future in futures:
            failure = future.exception()
            results.append(failure if failure is not None else future.result())
        if raise_first:
            for item in results:
                if isinstance(item, BaseException):
                    raise item
        return results

    def read_ranges(
        self,
        key: FileKey,
        ranges: Sequence[tuple[int, int]],
        *,
        path: str,
        size: int | None = None,
        pin: VersionPin | None = None,
        max_gap: int = 0,
    ) -> list[bytes]:
        """Several ranges of one file: overlapping/adjacent (within ``max_gap``) ones are merged into
        one request, the requests run in parallel, and each range gets exactly its bytes."""
        pin = pin if pin is not None else VersionPin()
        merged = merge_ranges(ranges, max_gap=max_gap)
        blocks = [Block(key, s, e, path, size, pin) for s, e in merged]
        payloads = self.read_blocks(blocks)
        return slice_ranges(ranges, merged, payloads)

    def close(self) -> None:
        """Release pooled connections and threads."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
        self.session.close()
