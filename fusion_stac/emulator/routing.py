"""What every route module shares: the request's platform, the response envelopes, the caller
(bearer-token dependency) and the declared query parameters.

``app`` (users, organisations, data, services, storage) and ``routes_processes`` (processes, executions,
components, logs) both import from here, so neither imports the other's module.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Query, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fusion_stac.emulator import listing
from fusion_stac.emulator.core import AuthContext, Platform

JSONBody = Annotated[dict[str, Any] | None, Body(description="JSON object (flat Model[field] keys or nested)")]
_bearer = HTTPBearer(auto_error=False, description="Access token from POST /users/login")


def platform_of(request: Request) -> Platform:
    """The platform behind the application serving ``request``."""
    return request.app.state.runtime.platform


def model_response(model: Any = None, *, extras: dict[str, Any] | None = None, status: int = 200) -> JSONResponse:
    """The API's ``{"model": ..., "extras": ...}`` envelope."""
    payload: dict[str, Any] = {}
    if model is not None:
        payload["model"] = model
    if extras is not None:
        payload["extras"] = extras
    return JSONResponse(payload, status_code=status)


def list_response(
    request: Request, items: list[dict[str, Any]], spec: listing.ListSpec, extras: dict[str, Any] | None = None
) -> JSONResponse:
    """A ``{"list": page[, "extras"][, "last"]}`` response: ``items`` filtered, sorted and paged by the query."""
    query = listing.parse_query(request.query_params.multi_items(), spec)
    page, following = listing.apply(items, query, spec)
    payload: dict[str, Any] = {"list": page}
    if extras is not None:
        payload["extras"] = extras
    if following:
        payload["last"] = following
    return JSONResponse(payload)


def base_url(request: Request) -> str:
    """The URL the caller reached the emulator at."""
    return str(request.base_url).rstrip("/")


def storage_base_url(request: Request) -> str:
    """The storage base URL for the signed URLs this caller is handed (see ``StorageEndpoint``)."""
    endpoint = getattr(request.app.state.runtime, "storage_endpoint", None)
    return endpoint.base_for(base_url(request)) if endpoint is not None else base_url(request)


def auth(request: Request,
         credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None) -> AuthContext:
    """Dependency: the caller, from the bearer token (401 otherwise)."""
    return platform_of(request).authenticate(request.headers.get("authorization"))


Auth = Annotated[AuthContext, Security(auth)]


# -- list parameters (declared for the OpenAPI document; parsed from the raw query) ----------------

Limit = Annotated[int, Query(ge=1, le=listing.MAX_LIMIT, description="page size")]
Reverse = Annotated[str, Query(pattern="^(True|False|true|false|1|0)$", description="reverse natural order")]
Search = Annotated[str | None, Query(max_length=1000, description="case-insensitive free text")]
