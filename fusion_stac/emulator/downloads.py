"""Pre-signed download URLs as a plain ASGI handler: the storage hot path.

``GET /_storage/download/{file_id}?X-Amz-...`` (an S3-style presigned URL on the storage port) is answered here without FastAPI's routing,
dependency and validation machinery (which costs more than the rest of a small range request). The FastAPI
route of the same path (kept for the OpenAPI document) delegates to the same function.

Behaviour follows cloud object stores: the signature binds method, object and host (so HEAD is refused with 403;
a wrong signature is ``SignatureDoesNotMatch``, an expired URL ``AccessDenied``/``Request has expired``),
single byte ranges get 206 with ``Content-Range``, unsatisfiable ranges 416, multiple ranges the whole object,
``If-None-Match`` 304 and ``If-Range`` are honoured, errors are small XML documents.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from email.utils import formatdate
from typing import Any

from fusion_stac.emulator.storage import (
    STORAGE_PATH,
    content_disposition,
    parse_range,
    send_file_body,
    storage_error_xml,
)
from fusion_stac.emulator.transport import send_with_sendfile, zero_copy_protocol

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PREFIX = "/_storage/download/"


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _xml(send: Send, status: int, code: str, message: str, resource: str,
               extra: list[tuple[bytes, bytes]] | None = None, head: bool = False) -> None:
    body = b"" if head else storage_error_xml(code, message, resource)
    await _respond(send, status, [(b"content-type", b"application/xml"), *(extra or [])], body)


async def serve_download(runtime: Any, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one request to a download URL."""
    platform = runtime.platform
    path: str = scope["path"]
    method: str = scope["method"]
    head = method == "HEAD"
    raw_id = path[len(PREFIX):]
    try:
        file_id = str(uuid.UUID(raw_id))
    except ValueError:
        await _xml(send, 400, "InvalidArgument", f"file_id is not a valid UUID: {raw_id!r}", path, head=head)
        return
    request_headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    refusal = platform.signer.check(method, path, scope.get("query_string", b"").decode("latin-1"), request_headers)
    if refusal is not None:
        await _xml(send, refusal.status, refusal.code, refusal.message, path, head=head)
        return
    info = platform.blobs.info(file_id)
    if info is None:
        await _xml(send, 404, "NoSuchKey", "The specified key does not exist.", path)
        return
    etag = f'"{info.etag}"'
    headers = [
        (b"etag", etag.encode()),
        (b"accept-ranges", b"bytes"),
        (b"last-modified", formatdate(info.modified, usegmt=True).encode()),
        (b"content-disposition", content_disposition(info.file_name).encode("latin-1", "replace")),
        (b"cache-control", b"private, max-age=0"),
    ]
    if_none_match = request_headers.get("if-none-match")
    if if_none_match and etag in [tag.strip() for tag in if_none_match.split(",")]:
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    wanted = parse_range(request_headers.get("range"), info.size)
    if_range = request_headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        wanted = None
    if wanted == "unsatisfiable":
        await _xml(send, 416, "InvalidRange", "The requested range is not satisfiable", path,
                   [(b"content-range", f"bytes */{info.size}".encode()), (b"accept-ranges", b"bytes")])
        return
    try:
        fd = os.open(platform.blobs.path(file_id), os.O_RDONLY)
    except FileNotFoundError:
        await _xml(send, 404, "NoSuchKey", "The specified key does not exist.", path)
        return
    try:
        if wanted is None or isinstance(wanted, str):  # (unsatisfiable ranges were answered above)
            status, start, length = 200, 0, info.size
        else:
            first, last = wanted
            status, start, length = 206, first, last - first + 1
            headers.append((b"content-range", f"bytes {first}-{last}/{info.size}".encode()))
        headers += [(b"content-type", info.content_type.encode()), (b"content-length", str(length).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        registry = getattr(runtime, "registry", None)
        protocol = zero_copy_protocol(scope, registry, length)
        if protocol is not None:
            # Count what was written, not what Content-Length announced: a client that aborts after the
            # headers (GDAL's size probe) gets only what the socket buffers took before its reset.
            await send_with_sendfile(protocol, send, fd, start, length, count=scope.get("fusion.count_bytes"))
        else:
            await send_file_body(send, os.dup(fd), start, length, file_id, gone=_gone(registry, scope))
    finally:
        os.close(fd)


def _gone(registry: Any, scope: Scope) -> Callable[[], bool]:
    """True once the client's connection is closing or closed (uvicorn then drops body messages silently)."""
    if registry is None:
        return lambda: False
    seen = registry.get(scope) is not None

    def gone() -> bool:
        transport = registry.get(scope)
        return seen and (transport is None or transport.is_closing())

    return gone


class StorageFastPath:
    """ASGI wrapper: download URLs go straight to :func:`serve_download`, everything else to the app.

    Storage and API have a listening port each (``runtime.storage_endpoint``): a storage path on the
    API's port, or an API path on the storage port, is answered 404 as by two different hosts.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], runtime: Any) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = getattr(self.runtime, "storage_endpoint", None)
        if scope["type"] == "http" and endpoint is not None:
            local = scope.get("server") or (None, None)
            if not endpoint.serves(local[1], scope["path"]):
                await _wrong_host(scope, send)
                return
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith(PREFIX):
            await serve_download(self.runtime, scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _wrong_host(scope: Scope, send: Send) -> None:
    """404 for a path the listener does not serve, in the style of the host it reached."""
    path = scope["path"]
    head = scope["method"] == "HEAD"
    if path.startswith(STORAGE_PATH):  # storage asked on the API's port
        body = b"" if head else json.dumps({"error_message": f"No such endpoint: {scope['method']} {path}"}).encode()
        await _respond(send, 404, [(b"content-type", b"application/json")], body)
    else:  # the API asked on the storage port
        await _xml(send, 404, "NoSuchKey", "The specified key does not exist.", path, head=head)
