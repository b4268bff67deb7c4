"""Byte ranges of stored files over pre-signed URLs: GET only, verified, resumed, retried.

One retry policy for the whole data plane (peers retry in the wrong place or not at all, and GDAL
has returned blank pixels on a dropped connection):

* every request is a ``GET`` with a ``Range`` header; sizes come from the API's metadata, so nothing
  ever sends ``HEAD`` (pre-signed URLs refuse it);
* every answer is checked: status, ``Content-Range`` (start, end and total size), and the body
  length. A body that ends early is **resumed** from the first missing byte, never returned short;
* a refused URL (401/403, or 400 saying the request expired) is re-signed through the
  :class:`~fusion_stac.storage._broker.URLBroker` and the same byte range requested again;
* connection resets, timeouts, truncated bodies, 5xx and 429 are retried with jittered exponential
  backoff (``Retry-After`` honoured), up to ``RetryPolicy.attempts`` tries without progress;
* the first ``ETag`` seen for a file is remembered; a different one later is a
  :class:`~fusion_stac.storage._broker.FileChangedError` naming the file.

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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException
from typing import IO, Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import requote_uri, select_proxy
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from fusion_stac.errors import TransportError, scrubbed
from fusion_stac.storage._broker import FileChangedError, FileKey, URLBroker, VersionPin
from fusion_stac.storage._http import install_log_redaction
from fusion_stac.storage._policy import STORAGE_RETRY, RetryPolicy, parse_retry_after
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
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
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
    merged), sorted; empty ranges need no block. Uses fsspec's own merging rule."""
    from fsspec.utils import merge_offset_ranges

    wanted = sorted((s, e) for s, e in ranges if e > s)
    if not wanted:
        return []
    _, starts, ends = merge_offset_ranges(
        ["."] * len(wanted), [s for s, _ in wanted], [e for _, e in wanted], max_gap=max_gap, sort=False
    )
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]  # type: ignore[arg-type]


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


def _no_auth(request: Any) -> Any:
    return request


class _Urllib3Body:
    """urllib3's response seen as a plain binary file (raw bytes, no content decoding)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def read(self, n: int) -> bytes:
        return self._raw.read(n, decode_content=False)

    def readinto(self, view: memoryview) -> int:
        data = self._raw.read(len(view), decode_content=False)
        view[: len(data)] = data
        return len(data)


class _Answer:
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
class _Route:
    """How requests would send a plain GET to one host, worked out once: its adapter's pool,
    TLS settings and session headers."""

    adapter: HTTPAdapter
    host_params: dict[str, Any]
    pool_kwargs: dict[str, Any]
    verify: Any
    cert: Any
    headers: dict[str, str]


def _plain_route(session: requests.Session, url: str) -> _Route | None:
    """The route of ``url``'s host if a GET there can skip requests' per-call machinery (merging
    settings, environment and cookies, hooks, building a Response: about 0.3 ms of CPU a request,
    most of a small read's cost); ``None`` when requests must do it (a proxy, a custom adapter,
    session auth, cookies or hooks). A URL requests would rewrite goes through it too."""
    adapter = session.get_adapter(url)
    if type(adapter) is not HTTPAdapter or session.cookies or any(session.hooks.values()):
        return None
    if session.auth is not None and session.auth is not _no_auth:
        return None
    if session.auth is None and session.trust_env:
        return None  # requests may add .netrc credentials per host
    settings = session.merge_environment_settings(url, {}, None, None, None)
    if select_proxy(url, settings.get("proxies") or {}):
        return None
    prepared = requests.Request("GET", url).prepare()
    host_params, pool_kwargs = adapter.build_connection_pool_key_attributes(prepared, settings["verify"],
                                                                             settings["cert"])
    return _Route(adapter, host_params, pool_kwargs, settings["verify"], settings["cert"], dict(session.headers))


def _reuse_connection(response: requests.Response) -> None:
    """Return the connection of a fully read answer to the pool (bodies read through http.client
    directly bypass urllib3's own bookkeeping, which would otherwise close it)."""
    raw = response.raw
    fp = getattr(raw, "_fp", None)
    isclosed = getattr(fp, "isclosed", None)
    if fp is None or (callable(isclosed) and isclosed()):
        with contextlib.suppress(Exception):
            raw.release_conn()


class RangeReader:
    """Bytes ``[start, end)`` of one stored file, read front to back over as few requests as possible.

    The HTTP request is made lazily on the first read; if the connection fails or the body ends
    early, the next request resumes at the first missing byte. ``read(n)`` returns exactly
    ``min(n, remaining)`` bytes or raises. Not thread-safe (one reader per consumer).
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
        self.total: int | None = size  # the file size storage reports (Content-Range), once known
        self._response: requests.Response | None = None
        self._skip = 0  # bytes to discard first (a server that ignored Range)

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
        if self.pos >= self.end:
            self._release()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with the next ``min(len(buffer), remaining)`` bytes, without extra copies
        (for bulk downloads into a reused buffer); returns how many."""
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.remaining)
        got = 0
        while got < want and self.pos < self.end:
            got += self._pull(lambda body, left, target=view[got:want]: body.readinto(target[:left]), want - got)
        if self.pos >= self.end:
            self._release()
        return got

    def _pull(self, step: Callable[[Any, int], Any], left: int) -> Any:
        """One successful ``step(body, left)`` on the current answer (connecting and retrying as needed);
        ``step`` returns bytes or a count. Position and counters advance by what it got."""
        failures = 0
        stats = self.transport.stats
        while True:
            try:
                if self._response is None:
                    self._connect()
                    if self.pos >= self.end:
                        return b""
                got = step(self._body(), min(left, self.remaining))
                count = got if isinstance(got, int) else len(got)
                if not count:
                    raise HTTPException(f"body ended {self.end - self.pos} bytes early")
            except _RETRYABLE as exc:
                self._drop()
                failures += 1
                stats.add("retries")
                if failures < self.transport.policy.attempts:
                    log.debug("%s: retrying bytes %d-%d after %s", self.path, self.pos, self.end - 1,
                              type(exc).__name__)
                    time.sleep(self.transport.policy.wait(failures))
                    continue
                failure = TransferError(
                    f"{self.path}: reading bytes {self.pos}-{self.end - 1} failed {failures} times "
                    f"in a row; last error: {type(exc).__name__}: {exc}",
                    path=self.path,
                )
                cause = scrubbed(exc)
            else:
                self.pos += count
                stats.add("bytes", count)
                return got
            # outside the handler, chained to a scrubbed copy (the original holds the signed URL)
            raise failure from cause

    def _body(self) -> Any:
        """The body as a file: http.client's response under urllib3 when reachable (its ``readinto``
        fills a caller's buffer directly, where urllib3's copies twice), else urllib3's own."""
        assert self._response is not None
        raw = self._response.raw
        fp = getattr(raw, "_fp", None)
        if fp is not None and hasattr(fp, "readinto") and hasattr(fp, "read"):
            return fp
        return _Urllib3Body(raw)

    def skip(self, n: int) -> None:
        """Discard the next ``n`` bytes (cheaper than a new request for small gaps)."""
        while n > 0:
            n -= len(self.read(min(n, 1 << 20)))

    def drain(self) -> bytes:
        """The rest of the current answer if it arrives without trouble, else what did (no new request)."""
        response = self._response
        if response is None or not self.remaining:
            return b""
        try:
            data = self._body().read(self.remaining) or b""
        except _RETRYABLE:
            self._drop()
            return b""
        self.pos += len(data)
        self.transport.stats.add("bytes", len(data))
        if not self.remaining:
            self._release()
        return data

    def close(self) -> None:
        """Stop reading; a small unread rest is drained so the connection can be reused."""
        response, self._response = self._response, None
        if response is None:
            return
        if 0 < self.remaining <= _DRAIN_LIMIT:
            try:
                rest = self._body_of(response).read(self.remaining) or b""
                self.pos += len(rest)
                self.transport.stats.add("bytes", len(rest))
            except Exception:  # draining is best effort
                pass
        if not self.remaining:
            _reuse_connection(response)
        response.close()

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

    # -- requests ------------------------------------------------------------------------------
    def _body_of(self, response: requests.Response) -> Any:
        saved, self._response = self._response, response
        try:
            return self._body()
        finally:
            self._response = saved

    def _release(self) -> None:
        """The whole range was read: hand the connection back to the pool and forget the answer."""
        response, self._response = self._response, None
        if response is not None:
            _reuse_connection(response)
            response.close()

    def _drop(self) -> None:
        response, self._response = self._response, None
        if response is not None:
            with contextlib.suppress(Exception):  # the connection is already broken
                response.close()

    def _connect(self) -> None:
        """Open a response positioned at ``self.pos``; raise for what retrying cannot fix."""
        transport = self.transport
        policy = transport.policy
        failures = 0
        refreshes = 0
        while True:
            lease = transport.broker.lease(self.key)
            transport.stats.add("requests")
            try:
                response = transport.get(
                    lease.url, {"Range": f"bytes={self.pos}-{self.end - 1}", "Accept-Encoding": "identity"}
                )
            except _RETRYABLE as exc:
                failures += 1
                transport.stats.add("retries")
                if failures < policy.attempts:
                    time.sleep(policy.wait(failures))
                    continue
                failure = TransferError(
                    f"{self.path}: could not reach storage for bytes {self.pos}-{self.end - 1} after "
                    f"{failures} attempts; last error: {type(exc).__name__}",
                    path=self.path,
                )
                cause = scrubbed(exc)
            else:
                failure = None
            if failure is not None:
                # outside the handler, chained to a scrubbed copy (the original holds the signed URL)
                raise failure from cause
            status = response.status_code
            if status in (200, 206):
                try:
                    self._accept(response)
                except BaseException:
                    response.close()
                    raise
                self._response = response
                if self._skip:
                    skip, self._skip = self._skip, 0
                    self._discard(skip)
                return
            body = _error_body(response)
            if status in (401, 403) or (status == 400 and _EXPIRED_RE.search(body)):
                transport.broker.invalidate(lease)
                refreshes += 1
                if refreshes > policy.refreshes:
                    raise PermissionError(
                        errno.EACCES,
                        f"storage refused the download URL {refreshes} times in a row (HTTP {status}), "
                        "even freshly signed ones",
                        self.path,
                    )
                continue
            if status in (404, 410):
                raise FileNotFoundError(errno.ENOENT, f"storage has no such file (HTTP {status})", self.path)
            if status == 416 and self.size is None and self.pos == 0:
                self.total = 0  # an empty object: nothing to read
                self.end = 0
                return
            if status == 416:
                raise FileChangedError(
                    f"{self.path}: storage refused bytes {self.pos}-{self.end - 1} (HTTP 416): the file is "
                    f"shorter than the {self.size} bytes its metadata says",
                    path=self.path,
                )
            if status == 429 or status >= 500:
                failures += 1
                transport.stats.add("retries")
                if failures >= policy.attempts:
                    raise TransferError(
                        f"{self.path}: storage kept answering HTTP {status} for bytes "
                        f"{self.pos}-{self.end - 1} ({failures} attempts)",
                        path=self.path,
                    )
                time.sleep(policy.wait(failures, parse_retry_after(response.headers.get("Retry-After"))))
                continue
            raise OSError(errno.EIO, f"storage answered HTTP {status} to a download", self.path)

    def _accept(self, response: requests.Response) -> None:
        """Check that a 200/206 answer carries exactly the bytes asked for, of the same file version."""
        headers = response.headers
        self.pin.check(self.key, headers.get("ETag"), self.path)
        length_header = headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if response.status_code == 206:
            match = _CONTENT_RANGE_RE.match(headers.get("Content-Range", ""))
            if match is None:
                raise TransferError(f"{self.path}: partial answer without a valid Content-Range header",
                                    path=self.path)
            first, last, total = int(match[1]), int(match[2]), match[3]
            if total != "*":
                self.total = int(total)
            if total != "*" and self.size is not None and int(total) != self.size:
                raise FileChangedError(
                    f"{self.path}: storage holds {total} bytes but the file's metadata says {self.size}; "
                    "the file changed or its metadata is stale",
                    path=self.path,
                )
            if first != self.pos or last != self.end - 1:
                raise TransferError(
                    f"{self.path}: asked for bytes {self.pos}-{self.end - 1}, storage sent {first}-{last}",
                    path=self.path,
                )
            if length is not None and length != last - first + 1:
                raise TransferError(
                    f"{self.path}: Content-Length {length} does not match Content-Range {first}-{last}",
                    path=self.path,
                )
            return
        # 200: the server ignored the Range header and sends the whole file.
        if length is not None:
            self.total = length
        if length is not None and self.size is not None and length != self.size:
            raise FileChangedError(
                f"{self.path}: storage holds {length} bytes but the file's metadata says {self.size}",
                path=self.path,
            )
        log.debug("%s: storage ignored the Range header; skipping %d bytes", self.path, self.pos)
        self._skip = self.pos

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
            session.auth = _no_auth
            adapter = HTTPAdapter(pool_connections=8, pool_maxsize=max(16, 2 * self.max_workers), max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self.session = session
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._routes: dict[tuple[str, str], _Route | None] = {}
        self._timeout = urllib3.Timeout(connect=self.policy.connect_timeout, read=self.policy.read_timeout)

    def get(self, url: str, headers: dict[str, str]) -> Any:
        """A streamed GET: straight to urllib3's pool when requests would add nothing (see
        :func:`_plain_route`), through the session otherwise. The answer has ``status_code``,
        ``headers``, ``raw`` and ``close()`` either way."""
        split = urlsplit(url)
        host = (split.scheme, split.netloc)
        try:
            route = self._routes[host]
        except KeyError:
            route = self._routes[host] = _plain_route(self.session, url)
        if route is None or requote_uri(url) != url:
            return self.session.get(url, headers=headers, stream=True,
                                    timeout=(self.policy.connect_timeout, self.policy.read_timeout))
        adapter = route.adapter
        pool = adapter.poolmanager.connection_from_host(**route.host_params, pool_kwargs=route.pool_kwargs)
        adapter.cert_verify(pool, url, route.verify, route.cert)
        path = (split.path or "/") + ("?" + split.query if split.query else "")
        raw = pool.urlopen("GET", path, body=None, headers={**route.headers, **headers}, redirect=False,
                           assert_same_host=False, preload_content=False, decode_content=False,
                           retries=adapter.max_retries, timeout=self._timeout, chunked=False)
        return _Answer(raw)

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
            exc = future.exception()
            results.append(exc if exc is not None else future.result())
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

    def copy_to(
        self,
        key: FileKey,
        size: int,
        out: IO[bytes],
        *,
        path: str,
        chunk_size: int = 4 << 20,
        progress: Callable[[int], Any] | None = None,
        start: int = 0,
    ) -> int:
        """Stream the file from byte ``start`` into ``out`` over one request (resumed if it breaks);
        returns the bytes written."""
        written = 0
        buffer = memoryview(bytearray(min(chunk_size, max(size - start, 1))))
        with self.open_range(key, start, size, path=path, size=size) as reader:
            while reader.remaining:
                n = reader.readinto(buffer)
                out.write(buffer[:n])
                written += n
                if progress is not None:
                    progress(n)
        return written

    def close(self) -> None:
        """Release pooled connections and threads."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
        self.session.close()
