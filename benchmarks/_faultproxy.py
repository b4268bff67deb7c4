"""A fault-injecting HTTP reverse proxy for the chaos benchmark (loopback only, stdlib only).

``with FaultProxy(upstream_url, rate=0.3, seed=1, storage_upstream=storage_url) as proxy:`` listens on
``127.0.0.1:<free port>`` and forwards every request to ``upstream_url`` (the emulator's API), storage
paths (``/_storage/``) to ``storage_upstream`` (the emulator's storage port; default: ``upstream_url``).
The ``Host`` header is forwarded unchanged. Storage comes through the proxy when the emulator signs the
URLs it hands the proxy's callers for the proxy's host: ``emu.route_storage(proxy.url, proxy.url)``
(the signatures cover the host, which the proxy leaves as it is).

Each request gets a fault with probability ``rate``; its kind is drawn (seeded RNG) from the kinds
enabled in ``kinds`` (name -> weight) that apply to the request. Kinds (see :data:`KINDS`):

``error_500`` / ``error_502``
    the request is forwarded and handled upstream, then its answer is replaced by a 500 / 502.
``error_503`` / ``throttle``
    answered 503 / 429 with ``Retry-After`` without forwarding (the upstream never sees it).
``reset``
    the connection is reset (RST) before any byte of the answer; the request is forwarded first
    or not at all (a coin flip: the outcome of a POST is then unknown to the client).
``close_mid_body``
    the headers and part of the body are sent, then the connection is closed.
``truncate``
    a clean truncation: the body is cut short and ``Content-Length`` says the short length; all
    other headers (``Content-Range`` included) are unchanged and the connection stays open.
``stall``
    the answer is held 2-5 s (after the upstream answered, so signed URLs in it age meanwhile).
``length_short`` / ``length_long``
    the body is unchanged but ``Content-Length`` is too small / too large; the connection closes
    after the body.
``full_200``
    a range request is forwarded without its ``Range`` header: a 200 with the whole object instead
    of a 206 (only for requests with ``Range``).

Traffic classes: ``storage`` (paths under ``/_storage/``) and ``api`` (everything else, login included).
:meth:`FaultProxy.counts` gives the faults injected by kind and class.

Bounds: every socket has a timeout, a connection serves at most ``MAX_REQUESTS_PER_CONNECTION``
requests, bodies are capped at ``MAX_BODY`` bytes, and the proxy stops itself after ``max_lifetime``
seconds if nobody stopped it before.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

#: Every fault kind, with its default weight.
KINDS: dict[str, float] = {
    "error_500": 1.0,
    "error_502": 1.0,
    "error_503": 1.0,
    "throttle": 1.0,
    "reset": 1.0,
    "close_mid_body": 1.0,
    "truncate": 1.0,
    "stall": 0.5,  # costly in wall time: rarer
    "length_short": 1.0,
    "length_long": 1.0,
    # only drawn for range requests, which are few (a server that ignores Range ignores it often):
    # weighed so that about a third of the faults on range requests are this one
    "full_200": 5.0,
}
#: Kinds that need a non-empty body in the upstream's answer (else the answer passes unchanged, uncounted).
NEEDS_BODY = frozenset({"close_mid_body", "truncate", "length_short", "length_long"})
CLASSES = ("api", "storage")
MAX_BODY = 512 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_REQUESTS_PER_CONNECTION = 10_000
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
                        "upgrade"})


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def traffic(self) -> str:
        return "storage" if urlsplit(self.target).path.startswith("/_storage/") else "api"


@dataclass
class Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Injected:
    """One fault, as logged."""

    kind: str
    traffic: str
    method: str
    path: str


@dataclass
class _Counters:
    faults: Counter[tuple[str, str]] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    ranged: Counter[str] = field(default_factory=Counter)
    log: list[Injected] = field(default_factory=list)


class ProxyClosed(Exception):
    """The client went away (or the connection must end)."""


class FaultProxy:
    """A threaded reverse proxy that injects faults (see the module docstring)."""

    def __init__(
        self,
        upstream: str,
        *,
        rate: float = 0.3,
        seed: int = 0,
        kinds: dict[str, float] | Iterable[str] | None = None,
        classes: Iterable[str] = CLASSES,
        retry_after: float = 1.0,
        stall: tuple[float, float] = (2.0, 5.0),
        timeout: float = 60.0,
        max_lifetime: float = 3600.0,
        storage_upstream: str | None = None,
    ) -> None:
        ports = []
        for url in (upstream, storage_upstream or upstream):
            parts = urlsplit(url)
            if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
                raise ValueError(f"the proxy only forwards to http on loopback, not {url!r}")
            ports.append(parts.port or 80)
        self.upstream_host = "127.0.0.1"
        self.upstream_port, self.storage_port = ports
        self.rate = rate
        self.kinds: dict[str, float] = {}
        self.set_kinds(kinds)
        self.classes = frozenset(classes)
        self.retry_after = retry_after
        self.stall = stall
        self.timeout = timeout
        self.max_lifetime = max_lifetime
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counters = _Counters()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self.port = 0

    # -- configuration ---------------------------------------------------------------------------

    def set_kinds(self, kinds: dict[str, float] | Iterable[str] | None) -> None:
        if kinds is None:
            chosen = dict(KINDS)
        elif isinstance(kinds, dict):
            chosen = dict(kinds)
        else:
            chosen = {k: KINDS[k] for k in kinds}
        unknown = set(chosen) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        self.kinds = chosen

    def configure(self, *, rate: float | None = None, seed: int | None = None,
                  kinds: dict[str, float] | Iterable[str] | None = None) -> None:
        with self._lock:
            if rate is not None:
                self.rate = rate
            if seed is not None:
                self._rng = random.Random(seed)
            if kinds is not None:
                self.set_kinds(kinds)

    # -- results ---------------------------------------------------------------------------------

    def counts(self) -> dict[str, dict[str, int]]:
        """``{kind: {"api": n, "storage": n}}`` of the faults injected so far (every kind listed)."""
        with self._lock:
            return {kind: {c: self._counters.faults[(kind, c)] for c in CLASSES} for kind in KINDS}

    def requests(self) -> dict[str, int]:
        with self._lock:
            return {c: self._counters.requests[c] for c in CLASSES}

    def ranged(self) -> dict[str, int]:
        """Requests that carried a ``Range`` header, by class."""
        with self._lock:
            return {c: self._counters.ranged[c] for c in CLASSES}

    def total_faults(self) -> int:
        with self._lock:
            return sum(self._counters.faults.values())

    def log(self) -> list[Injected]:
        with self._lock:
            return list(self._counters.log)

    def reset_counts(self) -> None:
        with self._lock:
            self._counters = _Counters()

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.settimeout(0.2)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _close(conn)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set() and time.monotonic() - self._started < self.max_lifetime:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            conn.settimeout(self.timeout)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="fault-proxy-conn", daemon=True).start()
        self._stop.set()

    # -- one connection ----------------------------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                if self._stop.is_set():
                    break
                request = _read_request(reader)
                if request is None:
                    break
                if not self._handle(conn, request):
                    break
        except (OSError, ProxyClosed, ValueError, http.client.HTTPException):
            pass
        finally:
            reader.close()
            _close(conn)
            with self._lock:
                self._conns.discard(conn)

    def _choose(self, request: Request) -> str | None:
        traffic = request.traffic
        with self._lock:
            self._counters.requests[traffic] += 1
            if request.header("range") is not None:
                self._counters.ranged[traffic] += 1
            if traffic not in self.classes or self._rng.random() >= self.rate:
                return None
            kinds = {k: w for k, w in self.kinds.items() if w > 0}
            if request.header("range") is None:
                kinds.pop("full_200", None)
            if request.method == "HEAD":
                for kind in NEEDS_BODY:
                    kinds.pop(kind, None)
            if not kinds:
                return None
            names = sorted(kinds)
            return self._rng.choices(names, weights=[kinds[n] for n in names])[0]

    def _record(self, kind: str, request: Request) -> None:
        with self._lock:
            self._counters.faults[(kind, request.traffic)] += 1
            self._counters.log.append(Injected(kind, request.traffic, request.method,
                                               urlsplit(request.target).path))

    def _rand(self) -> float:
        with self._lock:
            return self._rng.random()

    def _handle(self, conn: socket.socket, request: Request) -> bool:
        """Answer one request; False when the connection must end."""
        kind = self._choose(request)
        if kind in ("error_503", "throttle"):
            self._record(kind, request)
            status = 503 if kind == "error_503" else 429
            headers = [("Content-Type", "application/json")]
            if kind == "throttle":
                headers.append(("Retry-After", f"{self.retry_after:g}"))
            body = b'{"error_message": "injected by the fault proxy"}'
            _send(conn, Answer(status, "Injected", headers, body), len(body), body)
            return True
        if kind == "reset" and self._rand() < 0.5:
            self._record(kind, request)
            _reset(conn)
            return False
        if kind == "full_200":
            request = Request(request.method, request.target, request.version,
                              [(k, v) for k, v in request.headers if k.lower() != "range"], request.body)
        answer = self._forward(request)
        if kind == "full_200" and answer.status != 200:
            kind = None  # the upstream refused anyway (expired URL, ...): nothing injected
        if kind in NEEDS_BODY and len(answer.body) < 2:
            kind = None
        if kind is not None:
            self._record(kind, request)
        body = answer.body
        if kind in ("error_500", "error_502"):
            status = 500 if kind == "error_500" else 502
            body = b'{"error_message": "injected by the fault proxy"}'
            answer = Answer(status, "Injected", [("Content-Type", "application/json")], body)
        elif kind == "reset":
            _reset(conn)
            return False
        elif kind == "stall":
            low, high = self.stall
            self._stop.wait(low + (high - low) * self._rand())
        elif kind == "close_mid_body":
            cut = max(1, int(len(body) * (0.1 + 0.8 * self._rand())))
            _send(conn, answer, len(body), body[:cut])
            return False
        elif kind == "truncate":
            cut = max(1, int(len(body) * (0.1 + 0.8 * self._rand())))
            _send(conn, answer, cut, body[:cut])
            return True
        elif kind == "length_short":
            short = max(1, int(len(body) * (0.1 + 0.8 * self._rand())))
            _send(conn, answer, short, body)
            return False
        elif kind == "length_long":
            _send(conn, answer, len(body) + 1 + int(1000 * self._rand()), body)
            return False
        _send(conn, answer, len(body), body if request.method != "HEAD" else b"",
              head=request.method == "HEAD")
        return request.header("connection") != "close"

    def _forward(self, request: Request) -> Answer:
        port = self.storage_port if request.traffic == "storage" else self.upstream_port
        upstream = http.client.HTTPConnection(self.upstream_host, port, timeout=self.timeout)
        try:
            headers = {}
            upstream.putrequest(request.method, request.target, skip_host=True, skip_accept_encoding=True)
            for key, value in request.headers:
                if key.lower() in HOP_BY_HOP or key.lower() == "content-length":
                    continue
                upstream.putheader(key, value)
                headers[key.lower()] = value
            if request.body or request.method in ("POST", "PUT", "PATCH"):
                upstream.putheader("Content-Length", str(len(request.body)))
            upstream.putheader("Connection", "close")
            upstream.endheaders(request.body or None)
            response = upstream.getresponse()
            body = response.read(MAX_BODY + 1) if request.method != "HEAD" else b""
            if len(body) > MAX_BODY:
                raise ProxyClosed("answer too large")
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            if request.method == "HEAD":
                length = response.getheader("Content-Length")
                kept = [(k, v) for k, v in kept if k.lower() != "content-length"]
                if length is not None:
                    kept.append(("X-Head-Length", length))
            else:
                kept = [(k, v) for k, v in kept if k.lower() != "content-length"]
            return Answer(response.status, response.reason, kept, body)
        finally:
            upstream.close()


def _read_request(reader: Any) -> Request | None:
    line = reader.readline(MAX_HEADER_BYTES)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise ProxyClosed("request line too long")
    parts = line.decode("latin-1").strip().split()
    if len(parts) != 3:
        raise ProxyClosed(f"bad request line {line!r}")
    method, target, version = parts
    headers: list[tuple[str, str]] = []
    size = 0
    for _ in range(1000):
        raw = reader.readline(MAX_HEADER_BYTES)
        size += len(raw)
        if size > MAX_HEADER_BYTES or not raw:
            raise ProxyClosed("headers too long or cut")
        if raw in (b"\r\n", b"\n"):
            break
        key, _, value = raw.decode("latin-1").partition(":")
        headers.append((key.strip(), value.strip()))
    else:
        raise ProxyClosed("too many headers")
    lowered = {k.lower(): v for k, v in headers}
    body = b""
    if lowered.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        total = 0
        for _ in range(1_000_000):
            size_line = reader.readline(1024)
            if not size_line:
                raise ProxyClosed("chunked body cut")
            n = int(size_line.split(b";")[0].strip() or b"0", 16)
            if n == 0:
                for _ in range(100):  # trailers up to the empty line
                    if reader.readline(MAX_HEADER_BYTES) in (b"\r\n", b"\n", b""):
                        break
                break
            total += n
            if total > MAX_BODY:
                raise ProxyClosed("request body too large")
            chunks.append(_read_exact(reader, n))
            reader.readline(16)
        body = b"".join(chunks)
    elif "content-length" in lowered:
        n = int(lowered["content-length"])
        if n > MAX_BODY:
            raise ProxyClosed("request body too large")
        body = _read_exact(reader, n)
    return Request(method, target, version, headers, body)


def _read_exact(reader: Any, n: int) -> bytes:
    data = reader.read(n)
    if len(data) != n:
        raise ProxyClosed("request body cut")
    return data


def _send(conn: socket.socket, answer: Answer, length: int, body: bytes, *, head: bool = False) -> None:
    lines = [f"HTTP/1.1 {answer.status} {answer.reason or 'Status'}"]
    for key, value in answer.headers:
        if key.lower() == "x-head-length":
            if head:
                lines.append(f"Content-Length: {value}")
            continue
        lines.append(f"{key}: {value}")
    if not head:
        lines.append(f"Content-Length: {length}")
    payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    conn.sendall(payload)


def _reset(conn: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), not FIN."""
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _close(conn)


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.close()
