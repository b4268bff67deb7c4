"""The asset gateway: stable asset hrefs that never expire.

``/assets/{organisation_id}/{data_id}/{file_id}`` (``.../preview`` for the file's PNG preview) is the
href of every asset the server publishes. It answers

* ``GET`` with a **307 redirect** to a pre-signed storage URL (the default), signed through the
  client's :class:`~fusion_stac.storage.URLBroker` and handed out only while it has at least
  ``min_validity`` seconds left (otherwise it is signed afresh), with ``Cache-Control: no-store`` so
  that no cache keeps the target. GDAL's ``/vsicurl/`` remembers redirect targets, and goes back to
  the original URL when storage refuses one (403) or when an S3-style target
  (``X-Amz-Date``/``X-Amz-Expires``) has expired: a read that starts after a target expired still
  works. Or
* ``GET`` with the **bytes themselves** (``?mode=stream``, or ``asset_mode="stream"`` for the whole
  server, for clients that cannot follow redirects), read through ``client.storage`` (verified,
  resumed, retried), ``Range`` honoured (``206`` and ``Content-Range``; ``416`` when unsatisfiable);
* ``HEAD`` from metadata in both modes (``200``, ``Content-Length``, ``Accept-Ranges: bytes``):
  pre-signed URLs refuse ``HEAD``, and GDAL starts every open with one;
* ``GET /assets/{organisation_id}/{data_id}/`` with an Apache-style listing of the data item's files:
  GDAL reads the directory of every file it opens to learn which side-car files (``.aux.xml``,
  ``.msk``, ``.ovr``...) exist; with the listing it asks for none of them (7 round trips fewer a file).

A file the index does not know — another organisation's, or an id the user cannot see — is a 404
before anything but the platform's listings is asked of it (a miss first waits for an incremental
refresh, ``on_miss``, at most one every few seconds, so that a run newer than the index is found).
Signed URLs appear only in ``Location`` headers, never in a body, an error or a log line.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from fusion_stac.client import FusionClient
from fusion_stac.errors import FusionError, NotFoundError, PermissionDeniedError, redact
from fusion_stac.server._index import ASSETS_PREFIX, Index
from fusion_stac.storage import FileKey

__all__ = ["ASSET_MODES", "AssetFastPath", "Gateway", "gateway_router", "listing_html", "parse_range"]

log = logging.getLogger("fusion_stac.server")

ASSET_MODES = ("redirect", "stream")
CHUNK = 1 << 20
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``(start, end_exclusive)`` of a single ``Range`` header, ``None`` for the whole file (no header,
    or several ranges), or ``"unsatisfiable"``."""
    if not header:
        return None
    m = _RANGE_RE.match(header.strip().replace(" ", ""))
    if m is None:
        return None  # multi-range or malformed: RFC 9110 lets us send the whole representation
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return max(0, size - n), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or end <= start:
        return "unsatisfiable"
    return start, end


def listing_html(directory: str, files: list[tuple[str, int | None]]) -> str:
    """An Apache-style directory listing (the form GDAL's ``/vsicurl/`` parses), one entry a line."""
    lines = ["<html>", f"<head><title>Index of {directory}</title></head>", "<body>",
             f"<h1>Index of {directory}</h1>", "<pre>"]
    lines += [f'<a href="{html.escape(name)}">{html.escape(name)}</a> {size if size is not None else "-"}'
              for name, size in files]
    lines += ["</pre>", "</body>", "</html>", ""]
    return "\n".join(lines)


def _error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"code": code, "description": description}, status_code=status,
                        headers={"Cache-Control": "no-store"})


class Gateway:
    def __init__(self, client: FusionClient, index: Index, *, mode: str = "redirect", min_validity: float = 300.0,
                 on_miss: Callable[[], None] | None = None) -> None:
        if mode not in ASSET_MODES:
            raise ValueError(f"asset mode must be one of {', '.join(ASSET_MODES)}, not {mode!r}")
        self.client = client
        self.index = index
        self.mode = mode
        self.min_validity = float(min_validity)
        self.on_miss = on_miss
        self._sizes: dict[FileKey, int] = {}

    async def _caught_up(self) -> bool:
        """After a miss: bring the index up to date (``on_miss``); False if there is no way to."""
        if self.on_miss is None:
            return False
        try:
            await run_in_threadpool(self.on_miss)
        except Exception as exc:  # answer from the index we have
            log.warning("index refresh after a miss failed: %s", redact(str(exc)))
        return True

    def sign(self, key: FileKey) -> str:
        broker = self.client.storage.broker
        lease = broker.lease(key)
        if lease.deadline - time.monotonic() < self.min_validity:
            broker.invalidate(lease)  # too close to expiry to hand to a reader: sign afresh
            lease = broker.lease(key)
        return lease.url

    def fresh_url(self, key: FileKey) -> str | None:
        """The broker's URL for ``key`` if it has one with ``min_validity`` left (no I/O), else ``None``."""
        broker = self.client.storage.broker
        if key not in broker:
            return None
        lease = broker.lease(key)
        return lease.url if lease.deadline - time.monotonic() >= self.min_validity else None

    async def listing(self, org_id: str, data_id: str) -> Response:
        files = self.index.files_of(org_id, data_id)
        if not files and await self._caught_up():
            files = self.index.files_of(org_id, data_id)
        if not files:
            return _error(404, "NotFound", f"no assets under {ASSETS_PREFIX}/{org_id}/{data_id}/")
        return Response(listing_html(f"{ASSETS_PREFIX}/{org_id}/{data_id}", files), media_type="text/html",
                        headers={"Cache-Control": "no-store"})

    def size(self, key: FileKey, known: int | None) -> int:
        if known is not None:
            return int(known)
        cached = self._sizes.get(key)
        if cached is None:  # previews: storage states the size with the first byte
            with self.client.storage.open_range(key, 0, 1, path=key.url) as reader:
                reader.read()
                cached = reader.total
            if cached is None:
                raise FusionError(f"{key.url}: storage did not state the size")
            if len(self._sizes) > 4096:
                self._sizes.clear()
            self._sizes[key] = cached
        return cached

    def stream(self, key: FileKey, start: int, end: int, size: int) -> Iterator[bytes]:
        try:
            with self.client.storage.open_range(key, start, end, path=key.url, size=size) as reader:
                while reader.remaining:
                    yield reader.read(min(CHUNK, reader.remaining))
        except FusionError as exc:  # headers are gone: the client sees a short body, the log says why
            log.warning("asset %s: stream broke off: %s", key.url, redact(str(exc)))
            raise

    async def answer(self, request: Request, org_id: str, data_id: str, file_id: str, preview: bool,
                     mode: str | None) -> Response:
        what = f"{ASSETS_PREFIX}/{org_id}/{data_id}/{file_id}" + ("/preview" if preview else "")
        mode = mode or self.mode
        if mode not in ASSET_MODES:
            return _error(400, "InvalidParameterValue", f"mode must be one of {', '.join(ASSET_MODES)}, not {mode!r}")
        row = self.index.file(org_id, data_id, file_id, preview)  # one indexed SQLite lookup: no thread hop
        if row is None and await self._caught_up():
            row = self.index.file(org_id, data_id, file_id, preview)
        if row is None:
            return _error(404, "NotFound", f"no asset {what} (unknown, or not visible to this server's user)")
        key = FileKey(org_id, data_id, file_id, preview=preview)
        media = row["media_type"] or "application/octet-stream"
        common = {"Cache-Control": "no-store", "Accept-Ranges": "bytes"}
        try:
            if request.method == "HEAD":
                size = row["size"] if row["size"] is not None else await run_in_threadpool(self.size, key, None)
                return Response(status_code=200, media_type=media,
                                headers={**common, "Content-Length": str(size)})
            if mode == "redirect":
                url = self.fresh_url(key)
                if url is None:
                    url = await run_in_threadpool(self.sign, key)
                log.debug("asset %s: redirected to storage", what)
                return Response(status_code=307, headers={**common, "Location": url, "Referrer-Policy": "no-referrer"})
            size = await run_in_threadpool(self.size, key, row["size"])
        except (NotFoundError, PermissionDeniedError):
            return _error(404, "NotFound", f"no asset {what} (no longer on the platform, or not visible)")
        except FusionError as exc:
            log.warning("asset %s: %s", what, redact(str(exc)))
            return _error(502, "BadGateway", f"asset {what}: the platform did not answer: {redact(str(exc))}")
        wanted = parse_range(request.headers.get("range"), size)
        if wanted == "unsatisfiable":
            return Response(status_code=416, headers={**common, "Content-Range": f"bytes */{size}"})
        if wanted is None:
            return StreamingResponse(self.stream(key, 0, size, size), status_code=200, media_type=media,
                                     headers={**common, "Content-Length": str(size)})
        assert isinstance(wanted, tuple)
        start, end = wanted
        return StreamingResponse(self.stream(key, start, end, size), status_code=206, media_type=media,
                                 headers={**common, "Content-Length": str(end - start),
                                          "Content-Range": f"bytes {start}-{end - 1}/{size}"})


class AssetFastPath:
    """ASGI middleware answering ``/assets/...`` before FastAPI's routing and dependency injection (GDAL
    opens each file with three requests here: each is one SQLite lookup and, at most, one signature)."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(ASSETS_PREFIX + "/") or scope.get("method") not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        parts = path[len(ASSETS_PREFIX) + 1:].split("/")
        request = Request(scope, receive)
        response: Response | None = None
        if len(parts) == 3 and parts[2] == "" and scope["method"] == "GET":
            response = await self.gateway.listing(parts[0], parts[1])
        elif len(parts) in (3, 4) and all(parts[:3]) and (len(parts) == 3 or parts[3] == "preview"):
            response = await self.gateway.answer(request, parts[0], parts[1], parts[2], len(parts) == 4,
                                                 request.query_params.get("mode"))
        if response is None:
            return await self.app(scope, receive, send)
        await response(scope, receive, send)


def gateway_router(gateway: Gateway) -> APIRouter:
    """The ``/assets`` routes (GET and HEAD, file and preview; the OpenAPI description of
    :class:`AssetFastPath`, which answers them first)."""
    router = APIRouter(tags=["Assets"])
    mode_query: Any = Query(None, description="redirect (307 to a freshly signed URL) or stream (the bytes)")

    async def asset(request: Request, organisation_id: str, data_id: str, file_id: str,
                    mode: str | None = mode_query) -> Response:
        return await gateway.answer(request, organisation_id, data_id, file_id, False, mode)

    async def preview(request: Request, organisation_id: str, data_id: str, file_id: str,
                      mode: str | None = mode_query) -> Response:
        return await gateway.answer(request, organisation_id, data_id, file_id, True, mode)

    async def listing(request: Request, organisation_id: str, data_id: str) -> Response:
        return await gateway.listing(organisation_id, data_id)

    router.add_api_route(ASSETS_PREFIX + "/{organisation_id}/{data_id}/", listing, methods=["GET"],
                         name="Asset listing", operation_id="asset_listing", include_in_schema=False)
    file_path = ASSETS_PREFIX + "/{organisation_id}/{data_id}/{file_id}"
    for method in ("GET", "HEAD"):
        router.add_api_route(file_path, asset, methods=[method], name=f"Asset ({method})",
                             operation_id=f"asset_{method.lower()}")
        router.add_api_route(file_path + "/preview", preview, methods=[method], name=f"Asset preview ({method})",
                             operation_id=f"asset_preview_{method.lower()}")
    return router
