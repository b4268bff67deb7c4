"""``create_app``: the STAC API and asset gateway as one ASGI application (stac-fastapi's factory)."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI
from pydantic import BaseModel, field_validator, model_validator
from stac_fastapi.api.app import StacApi
from stac_fastapi.api.middleware import ProxyHeaderMiddleware
from stac_fastapi.api.models import (
    CollectionUri,
    EmptyRequest,
    ItemCollectionUri,
    create_get_request_model,
    create_post_request_model,
    create_request_model,
)
from stac_fastapi.api.routes import create_async_endpoint
from stac_fastapi.extensions import FieldsExtension, FilterExtension, SortExtension, TokenPaginationExtension
from stac_fastapi.extensions.filter import FilterConformanceClasses
from stac_fastapi.extensions.sort.sort import SortablesSchema, SortConformanceClasses
from stac_fastapi.types.config import ApiSettings
from stac_fastapi.types.search import APIRequest
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from fusion_stac._paths import stac_index_path
from fusion_stac.client import FusionClient
from fusion_stac.server._core import FusionCoreClient, FusionFiltersClient, FusionSortablesClient
from fusion_stac.server._gateway import ASSET_MODES, AssetFastPath, Gateway, gateway_router
from fusion_stac.server._index import Index
from fusion_stac.server._indexer import Indexer

__all__ = ["API_KEY_ENV", "API_KEY_HEADER", "ServerState", "create_app", "default_index_path", "is_loopback"]

log = logging.getLogger("fusion_stac.server")

API_KEY_ENV = "FUSION_STAC_API_KEY"
API_KEY_HEADER = "X-API-Key"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (what needs no API key)."""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_index_path(client: FusionClient) -> Path:
    """``~/.cache/fusion-stac/stac-index/<API URL and user>.sqlite`` (``$FUSION_STAC_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/fusion-stac``, honoured): the index every server of this user shares, the
    background one ``asset_hrefs="gateway"`` starts included."""
    return stac_index_path(client.api_url, client.user.id)


@dataclass
class ServerState:
    """What ``app.state.fusion`` holds: the index and its refresher."""

    client: FusionClient
    index: Index
    indexer: Indexer
    asset_mode: str


class _Guard:
    """API key and Host checks in front of everything (pure ASGI: streams pass untouched).

    With an API key, every request must carry it (``X-API-Key: <key>`` or ``Authorization: Bearer
    <key>``) or gets 401. Without one (loopback only), the Host header must name a loopback host, so
    that a web page cannot reach the user's data through DNS rebinding.
    """

    def __init__(self, app: ASGIApp, api_key: str | None, allowed_hosts: Sequence[str] | None) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.allowed_hosts = set(allowed_hosts) if allowed_hosts else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.api_key is not None:
            given = headers.get(API_KEY_HEADER.lower(), "")
            auth = headers.get("authorization", "")
            if not given and auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if scope.get("method") != "OPTIONS" and not hmac.compare_digest(given.encode(), self.api_key):
                return await _reject(send, 401, "Unauthorized",
                                     f"this server needs its API key in an {API_KEY_HEADER} header "
                                     "(or Authorization: Bearer)", {"www-authenticate": "Bearer"})
        elif self.allowed_hosts is not None:
            host = headers.get("host", "").rsplit(":", 1)[0] if not headers.get("host", "").endswith("]") \
                else headers.get("host", "")
            if host not in self.allowed_hosts and not is_loopback(host):
                return await _reject(send, 400, "BadHost", "requests must name a loopback host", {})
        await self.app(scope, receive, send)


async def _reject(send: Send, status: int, code: str, description: str, extra: dict[str, str]) -> None:
    import json

    body = json.dumps({"code": code, "description": description}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *((k.encode(), v.encode()) for k, v in extra.items())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _ItemSortExtension(SortExtension):
    """The sort extension with the sortables of item search and of each collection's items only."""

    def register(self, app: FastAPI) -> None:
        assert self.client is not None
        self.router.prefix = app.state.router_prefix
        for name, path, method, request_model in (
                ("Sortables", "/sortables", self.client.get_sortables, EmptyRequest),
                ("Collection Sortables", "/collections/{collection_id}/sortables",
                 self.client.get_collection_sortables, CollectionUri)):
            self.router.add_api_route(name=name, path=path, methods=["GET"], response_model=SortablesSchema,
                                      response_model_exclude_none=True,
                                      endpoint=create_async_endpoint(method, request_model))
        app.include_router(self.router, tags=["Sort Extension"])


def _search_post_model(extensions: list[Any]) -> type[BaseModel]:
    """stac-fastapi's POST /search model, lenient where clients are sloppy (``"collections": "a,b"`` as
    well as a list) and strict where the fields extension asks (``"fields": null`` is a 400)."""
    base: Any = create_post_request_model(extensions)

    class FusionSearchPost(base):
        @field_validator("collections", "ids", mode="before")
        @classmethod
        def _listed(cls, value: Any) -> Any:
            return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

        @model_validator(mode="before")
        @classmethod
        def _fields_not_null(cls, data: Any) -> Any:
            if isinstance(data, dict) and "fields" in data and data["fields"] is None:
                raise ValueError("fields must be an object with include and/or exclude, not null")
            return data

    return FusionSearchPost


def create_app(
    client: FusionClient,
    *,
    index_path: str | Path | None = None,
    refresh_interval: float = 60.0,
    asset_mode: str = "redirect",
    min_url_validity: float = 300.0,
    api_key: str | None = None,
    allowed_hosts: Sequence[str] | None = ("localhost", "127.0.0.1", "::1"),
    cors_origins: Sequence[str] = (),
    read_headers: bool = True,
    include_intermediate: bool = False,
    background_refresh: bool = True,
    title: str = "Fusion Platform",
) -> FastAPI:
    """A STAC API (core, collections, features, item search, filter, sort, fields) over what ``client``'s
    user can see, with the asset gateway under ``/assets``.

    ``index_path``: the SQLite index (default :func:`default_index_path`; ``":memory:"`` for none on
    disk). ``refresh_interval``: seconds between incremental refreshes (run in a background thread
    while the app runs, unless ``background_refresh=False``; the first request on an empty index
    waits for the first refresh). ``asset_mode``: ``"redirect"`` (307 to a freshly signed URL) or
    ``"stream"`` (the bytes through this server); each request may override it with ``?mode=``.
    ``api_key``: required of every request when set (serve beyond loopback only with one: this
    server holds the user's session, and whoever reaches it reads the user's data).
    ``allowed_hosts``: Host headers accepted without an API key (loopback names; ``None``: any).
    ``cors_origins``: web origins allowed to read answers from a browser (e.g. a STAC Browser's);
    none by default, so that no web page the user visits can read the user's data.
    """
    if asset_mode not in ASSET_MODES:
        raise ValueError(f"asset_mode must be one of {', '.join(ASSET_MODES)}, not {asset_mode!r}")
    index = Index(index_path if index_path is not None else default_index_path(client))
    indexer = Indexer(client, index, interval=refresh_interval, read_headers=read_headers,
                      include_intermediate=include_intermediate)
    filter_conformance = [
        FilterConformanceClasses.FILTER, FilterConformanceClasses.SEARCH, FilterConformanceClasses.ITEMS,
        FilterConformanceClasses.BASIC_CQL2, FilterConformanceClasses.CQL2_JSON, FilterConformanceClasses.CQL2_TEXT,
        FilterConformanceClasses.ADVANCED_COMPARISON_OPERATORS, FilterConformanceClasses.BASIC_SPATIAL_FUNCTIONS,
    ]
    extensions: list[Any] = [
        FieldsExtension(),
        # sort v1.0.0 and v1.1.0 (pystac-client recognises only the former), with /sortables and
        # /collections/{id}/sortables (not /collections-sortables: collection search is not served)
        _ItemSortExtension(client=FusionSortablesClient(index=index, before=indexer.ensure),
                           conformance_classes=["https://api.stacspec.org/v1.0.0/item-search#sort",
                                                "https://api.stacspec.org/v1.0.0/ogcapi-features#sort",
                                                SortConformanceClasses.ITEM_SEARCH_SORT,
                                                SortConformanceClasses.ITEM_SEARCH_SORTABLES,
                                                SortConformanceClasses.FEATURES_SORT,
                                                SortConformanceClasses.FEATURES_SORTABLES]),
        FilterExtension(client=FusionFiltersClient(index=index, before=indexer.ensure),
                        conformance_classes=filter_conformance),
        TokenPaginationExtension(),
    ]
    core = FusionCoreClient(index=index, before=indexer.ensure, extensions=extensions, title=title,
                            landing_page_id="fusion-platform",
                            description="The Fusion Platform as a STAC API: one collection per uploaded data "
                                        "item and one per process run (a grouped run is one collection of its "
                                        "slices and aggregator). Asset hrefs never expire.")
    settings = ApiSettings(stac_fastapi_title=title, stac_fastapi_landing_id="fusion-platform",
                           enable_response_models=False)
    gateway = Gateway(client, index, mode=asset_mode, min_validity=min_url_validity, on_miss=indexer.catch_up)
    # innermost first: the asset fast path inside the proxy-header and CORS middlewares
    middlewares = [Middleware(AssetFastPath, gateway=gateway), Middleware(ProxyHeaderMiddleware)]
    if cors_origins:
        middlewares.append(Middleware(CORSMiddleware, allow_origins=list(cors_origins),
                                      allow_methods=["OPTIONS", "POST", "GET", "HEAD"],
                                      allow_headers=["Content-Type", "Range", "Authorization", API_KEY_HEADER],
                                      expose_headers=["Content-Range", "Content-Length", "Accept-Ranges"],
                                      max_age=600))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        if background_refresh:
            indexer.start()
        try:
            yield
        finally:
            indexer.stop()

    app = FastAPI(title=title, lifespan=lifespan, openapi_url="/api", docs_url="/api.html", redoc_url=None)
    api = StacApi(
        settings=settings, client=core, extensions=extensions, app=app, middlewares=middlewares,
        search_get_request_model=create_get_request_model(extensions),
        search_post_request_model=_search_post_model(extensions),
        items_get_request_model=cast(type[APIRequest], create_request_model(
            "ItemCollectionUri", base_model=ItemCollectionUri, extensions=extensions, request_type="GET")),
    )
    api.app.include_router(gateway_router(gateway))
    api.app.state.fusion = ServerState(client, index, indexer, asset_mode)
    hosts = None if api_key else (list(allowed_hosts) if allowed_hosts is not None else None)
    api.app.add_middleware(_Guard, api_key=api_key, allowed_hosts=hosts)
    return api.app
