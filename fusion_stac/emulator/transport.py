"""Connection-level plumbing under uvicorn: a registry of live connections and zero-copy file bodies.

ASGI gives an application no access to its connection, but two emulator features need it:

* fault injection (``faults.py``) resets connections and cuts bodies short, which needs the transport;
* blob downloads send file bodies with ``sendfile(2)`` (zero copy, like nginx) instead of reading the file
  into Python and writing it back out.

The emulator runs uvicorn's pure-Python h11 protocol, subclassed only to register each connection under
(server address, client address), which is also in the ASGI scope. Zero-copy bodies follow h11's documented
sendfile pattern: the response head goes through ASGI as usual, then h11 is told about a body part of the
right length with ``send_with_data_passthrough`` (so its Content-Length accounting stays exact), the bytes go
out with ``loop.sendfile`` on the transport, and the empty final ASGI body message lets uvicorn finish the
response normally. Whenever any precondition does not hold (TLS, another protocol class, a body that must be
observed by the fault middleware), callers fall back to ordinary chunked ASGI bodies.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

Scope = MutableMapping[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Bodies smaller than this go through ASGI (sendfile's setup costs more than it saves).
ZERO_COPY_MINIMUM = 64 * 1024


def _key(server: Any, client: Any) -> tuple[Any, Any]:
    return (tuple(server) if server else None, tuple(client) if client else None)


class TransportRegistry:
    """Live connections of one server, keyed by (server address, client address)."""

    def __init__(self) -> None:
        self._protocols: dict[tuple[Any, Any], H11Protocol] = {}
        self._lock = threading.Lock()

    def add(self, key: tuple[Any, Any], protocol: H11Protocol) -> None:
        with self._lock:
            self._protocols[key] = protocol

    def remove(self, key: tuple[Any, Any]) -> None:
        with self._lock:
            self._protocols.pop(key, None)

    def protocol(self, scope: Scope) -> H11Protocol | None:
        with self._lock:
            return self._protocols.get(_key(scope.get("server"), scope.get("client")))

    def get(self, scope: Scope) -> asyncio.Transport | None:
        """The transport of the request's connection (None if unknown or closed)."""
        protocol = self.protocol(scope)
        return getattr(protocol, "transport", None) if protocol is not None else None

    async def wait_closed(self, scope: Scope, timeout: float = 2.0) -> None:
        """Wait until the connection of ``scope`` is gone, so uvicorn knows the client disconnected."""
        key = _key(scope.get("server"), scope.get("client"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            with self._lock:
                if key not in self._protocols:
                    return
            await asyncio.sleep(0.005)


def make_tracking_protocol(registry: TransportRegistry) -> type[H11Protocol]:
    """An H11Protocol subclass that records each connection in ``registry``."""

    class TrackingH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._registry_key = _key(self.server, self.client)
            registry.add(self._registry_key, self)

        def connection_lost(self, exc: Exception | None) -> None:
            registry.remove(getattr(self, "_registry_key", (None, None)))
            super().connection_lost(exc)

    return TrackingH11Protocol


class _Span:
    """Stands for ``length`` body bytes that are written with sendfile instead of passing through h11."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


def zero_copy_protocol(scope: Scope, registry: TransportRegistry | None, length: int) -> H11Protocol | None:
    """The connection's protocol if a body of ``length`` bytes can be sent with sendfile, else None."""
    if registry is None or length < ZERO_COPY_MINIMUM or scope.get("fusion.no_zero_copy"):
        return None
    if scope.get("method") != "GET" or scope.get("scheme") != "http":
        return None
    protocol = registry.protocol(scope)
    if protocol is None or not isinstance(getattr(protocol, "conn", None), h11.Connection):
        return None
    transport = getattr(protocol, "transport", None)
    if transport is None or transport.is_closing() or transport.get_extra_info("sslcontext") is not None:
        return None
    return protocol


async def send_with_sendfile(protocol: H11Protocol, send: Send, fd: int, offset: int, length: int,
                             count: Callable[[int], None] | None = None) -> int:
    """Send ``length`` bytes of ``fd`` (from ``offset``) as the body after the head was sent through ASGI.

    Returns the body bytes the kernel accepted (what nginx logs as ``$body_bytes_sent``): all of them, or, when
    the client went away mid-body (GDAL sizes a file with a GET it aborts after the headers), only those sent
    before the send failed; ``count`` (optional) is told that figure before the response ends. Finishes the response with an empty final ASGI body message. Closes nothing (the
    caller owns ``fd``). If the client disconnects, the connection is closed at once (no further byte is
    written, as a cloud store stops sending to a client that reset) and the function returns quietly.
    """
    connection: h11.Connection = protocol.conn
    if connection.our_state is not h11.SEND_BODY:
        raise RuntimeError("the response head was not sent")
    connection.send_with_data_passthrough(h11.Data(data=_Span(length)))  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    with os.fdopen(os.dup(fd), "rb", buffering=0) as handle:
        handle.seek(offset)  # asyncio leaves the position at offset + bytes sent when sendfile fails
        try:
            sent = await loop.sendfile(protocol.transport, handle, offset, length)
        except (ConnectionError, OSError):
            # The client went away mid-body: drop the connection and let uvicorn notice the disconnect (it
            # then expects no final message).
            sent = min(max(handle.tell() - offset, 0), length)
            if count is not None:
                count(sent)
            protocol.transport.abort()
            for _ in range(3):
                await asyncio.sleep(0)
            return sent
    if count is not None:
        count(int(sent))  # before the final message, which records the request
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    return int(sent)
