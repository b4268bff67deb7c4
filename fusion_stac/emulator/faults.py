"""Fault injection for the emulator: error statuses, throttling, dropped connections and latency.

Faults are drawn from a seeded RNG so that a test run is reproducible (given the same request order).
They are applied by :class:`FaultMiddleware`, an ASGI middleware that wraps the whole application,
separately for API calls and for storage (pre-signed URL) calls. Connection resets and truncated
bodies need the raw transport, which uvicorn does not expose to ASGI applications: the emulator runs
uvicorn with :class:`TrackingH11Protocol`, which registers every connection's transport so that the
middleware can find it from the ASGI scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field
from typing import Any

from fusion_stac.emulator.transport import TransportRegistry

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Fault kinds, in the order in which their probabilities are stacked on one uniform draw.
FAULT_KINDS: tuple[str, ...] = ("error_500", "error_503", "throttle", "reset", "truncate")

STORAGE_PREFIX = "/_storage/"
LOGIN_PATH = "/users/login"
#: Paths that are never subject to faults or counted as API calls (documentation, emulator control).
UNCOUNTED_PREFIXES: tuple[str, ...] = ("/openapi.json", "/docs", "/redoc", "/_emulator/")


@dataclass(frozen=True)
class FaultConfig:
    """Probabilities (0..1) of each injected fault for one class of requests (API or storage).

    ``error_500``/``error_503``: answer with that status instead of handling the request.
    ``throttle``: answer 429 with a ``Retry-After`` header of ``retry_after`` seconds.
    ``reset``: abort the TCP connection (RST) before answering; the request is not handled.
    ``truncate``: handle the request, declare the full ``Content-Length``, send only part of the body,
    then close the connection.
    ``latency``: probability of sleeping ``latency_seconds`` before handling the request.
    ``include_login``: whether ``POST /users/login`` is subject to these faults (off by default so
    that tests can always log in deterministically).
    The five fault probabilities are mutually exclusive and must sum to at most 1.
    """

    error_500: float = 0.0
    error_503: float = 0.0
    throttle: float = 0.0
    retry_after: float = 1.0
    reset: float = 0.0
    truncate: float = 0.0
    latency: float = 0.0
    latency_seconds: float = 0.5
    include_login: bool = False

    def __post_init__(self) -> None:
        for name in (*FAULT_KINDS, "latency"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ValueError(f"FaultConfig.{name} must be a probability between 0 and 1, got {value!r}")
        total = sum(getattr(self, name) for name in FAULT_KINDS)
        if total > 1.0 + 1e-9:
            raise ValueError(f"FaultConfig fault probabilities sum to {total:.3f}, which is more than 1")
        for name in ("retry_after", "latency_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"FaultConfig.{name} must be a non-negative number of seconds, got {value!r}")

    @property
    def active(self) -> bool:
        """True when any fault or latency can be drawn."""
        return any(getattr(self, name) > 0 for name in (*FAULT_KINDS, "latency"))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for the CLI and for reports)."""
        return asdict(self)


@dataclass
class FaultState:
    """Mutable runtime fault settings shared by the middleware and the :class:`Emulator` control API."""

    api: FaultConfig = field(default_factory=FaultConfig)
    storage: FaultConfig = field(default_factory=FaultConfig)
    api_latency: float = 0.0
    storage_latency: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def reseed(self, seed: int) -> None:
        """Restart the random sequence (so a test can reproduce a fault pattern)."""
        with self._lock:
            self.seed = seed
            self._rng = random.Random(seed)

    def draw(self, config: FaultConfig) -> tuple[str | None, bool]:
        """Draw (fault kind or None, whether to add random latency) for one request."""
        with self._lock:
            fault_draw = self._rng.random()
            latency_draw = self._rng.random()
        fault: str | None = None
        threshold = 0.0
        for kind in FAULT_KINDS:
            threshold += getattr(config, kind)
            if fault_draw < threshold:
                fault = kind
                break
        return fault, latency_draw < config.latency


class Stats:
    """Thread-safe request counters (for benchmarks and tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self._api_requests = 0
            self._storage_requests = 0
            self._api_bytes = 0
            self._storage_bytes = 0
            self._routes: Counter[str] = Counter()
            self._statuses: Counter[int] = Counter()
            self._faults: Counter[str] = Counter()

    def record(self, *, storage: bool, route: str, status: int | None, body_bytes: int) -> None:
        """Count one finished request."""
        with self._lock:
            if storage:
                self._storage_requests += 1
                self._storage_bytes += body_bytes
            else:
                self._api_requests += 1
                self._api_bytes += body_bytes
            self._routes[route] += 1
            if status is not None:
                self._statuses[status] += 1

    def record_fault(self, kind: str, *, storage: bool) -> None:
        """Count one injected fault."""
        with self._lock:
            self._faults[f"{'storage' if storage else 'api'}.{kind}"] += 1

    def snapshot(self) -> dict[str, Any]:
        """A copy of every counter as plain data."""
        with self._lock:
            return {
                "api_requests": self._api_requests,
                "storage_requests": self._storage_requests,
                "api_bytes_served": self._api_bytes,
                "storage_bytes_served": self._storage_bytes,
                "bytes_served": self._api_bytes + self._storage_bytes,
                "routes": dict(self._routes),
                "statuses": {str(k): v for k, v in sorted(self._statuses.items())},
                "faults": dict(self._faults),
            }


def _abort_with_reset(transport: asyncio.Transport | None) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), so the client sees 'connection reset'."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _error_response(storage: bool, code: str, message: str) -> tuple[bytes, bytes]:
    """(content type, body) of an injected error in the style of the API (JSON) or storage (XML)."""
    if storage:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
        ).encode()
        return b"application/xml", body
    return b"application/json", json.dumps({"error_message": message}).encode()


class FaultMiddleware:
    """ASGI middleware: counts requests per route, injects configured faults, adds latency."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: FaultState,
        stats: Stats,
        registry: TransportRegistry,
        route_of: Callable[[Scope], str],
    ) -> None:
        self.app = app
        self.state = state
        self.stats = stats
        self.registry = registry
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith(UNCOUNTED_PREFIXES):
            await self.app(scope, receive, send)
            return
        storage = path.startswith(STORAGE_PREFIX)
        config = self.state.storage if storage else self.state.api
        constant_latency = self.state.storage_latency if storage else self.state.api_latency
        subject = config.active and (config.include_login or path != LOGIN_PATH)

        status_holder: dict[str, Any] = {"status": None, "bytes": 0, "recorded": False}

        def record() -> None:
            if not status_holder["recorded"]:
                status_holder["recorded"] = True
                self.stats.record(storage=storage, route=self.route_of(scope), status=status_holder["status"],
                                  body_bytes=status_holder["bytes"])

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            elif message["type"] == "http.response.body":
                status_holder["bytes"] += len(message.get("body", b""))
                if not message.get("more_body", False):
                    record()  # before the client can see the end of the response
            await send(message)

        def count_bytes(count: int) -> None:
            status_holder["bytes"] += count

        scope["fusion.count_bytes"] = count_bytes  # bodies sent with sendfile bypass counting_send
        fault: str | None = None
        latency = False
        if subject:
            fault, latency = self.state.draw(config)
        if latency:
            self.stats.record_fault("latency", storage=storage)
        delay = constant_latency + (config.latency_seconds if latency else 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            if fault is None:
                await self.app(scope, receive, counting_send)
                return
            self.stats.record_fault(fault, storage=storage)
            if fault == "reset":
                record()
                _abort_with_reset(self.registry.get(scope))
                await self.registry.wait_closed(scope)
                return
            if fault == "truncate":
                scope["fusion.no_zero_copy"] = True  # the body must pass through the truncating send
                truncating = _TruncatingSend(counting_send, self.registry.get(scope))
                await self.app(scope, receive, truncating)
                if truncating.closed:
                    await self.registry.wait_closed(scope)
                return
            status, code, message = {
                "error_500": (500, "InternalError", "Internal server error (emulated fault)"),
                "error_503": (503, "ServiceUnavailable", "Service temporarily unavailable (emulated fault)"),
                "throttle": (429, "SlowDown", "Too many requests, please slow down (emulated fault)"),
            }[fault]
            content_type, body = _error_response(storage, code, message)
            headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
            if fault == "throttle":
                headers.append((b"retry-after", _retry_after_text(config.retry_after)))
            await counting_send({"type": "http.response.start", "status": status, "headers": headers})
            await counting_send({"type": "http.response.body", "body": body, "more_body": False})
        finally:
            record()


def _retry_after_text(seconds: float) -> bytes:
    """Retry-After is an integer number of seconds in HTTP; round up so a client never waits too little."""
    whole = int(seconds) if float(seconds).is_integer() else int(seconds) + 1
    return str(max(whole, 0)).encode()


class _TruncatingSend:
    """Wraps ``send``: forwards the response head, then about half of the body, then closes the socket.

    The ``Content-Length`` header of the real response is kept, so the client sees a short body.
    Bodies are buffered until the first ``more_body=False`` chunk or until enough bytes exist.
    """

    def __init__(self, send: Send, transport: asyncio.Transport | None) -> None:
        self._send = send
        self._transport = transport
        self._declared: int | None = None
        self._sent = 0
        self._done = False
        self.closed = False

    async def __call__(self, message: Message) -> None:
        if self._done:
            return
        if message["type"] == "http.response.start":
            for name, value in message.get("headers", []):
                if name.lower() == b"content-length":
                    self._declared = int(value)
            await self._send(message)
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        body: bytes = message.get("body", b"")
        limit = max((self._declared or 0) // 2, 0)
        if self._declared is None:
            # Unknown length: send nothing of the body, just drop the connection.
            limit = 0
        remaining = max(limit - self._sent, 0)
        chunk = body[:remaining]
        if chunk:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
            self._sent += len(chunk)
        if self._sent >= limit or not message.get("more_body", False):
            self._done = True
            if self._transport is not None:
                self._transport.close()
                self.closed = True
