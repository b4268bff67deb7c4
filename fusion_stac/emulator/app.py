"""The ASGI application: FastAPI routes for the API and for pre-signed storage URLs.

Handlers are thin: they parse the request (path ids typed as UUIDs so the OpenAPI document is exact),
call :class:`~fusion_stac.emulator.core.Platform` / :class:`~fusion_stac.emulator.processes.Processes`, and wrap
the result in the platform's envelopes (``model``, ``list``, ``extras``, ``last``). Every error leaves as
``{"error_message": ...}`` (API) or a small S3-style XML document (storage).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from fusion_stac.emulator import listing, models
from fusion_stac.emulator.bodies import model_fields, nested_fields
from fusion_stac.emulator.downloads import serve_download
from fusion_stac.emulator.errors import ApiError
from fusion_stac.emulator.faults import Scope
from fusion_stac.emulator.routes_processes import install_process_routes
from fusion_stac.emulator.routing import (
    Auth,
    JSONBody,
    Limit,
    Reverse,
    Search,
    list_response,
    model_response,
    platform_of,
    storage_base_url,
)
from fusion_stac.emulator.storage import UploadError, storage_error_xml

logger = logging.getLogger("fusion_stac.emulator")



def create_app(runtime: Any) -> FastAPI:
    """Build the FastAPI application around a runtime (platform, processes, settings)."""
    app = FastAPI(
        title="Fusion Platform API (fusion-stac emulator)",
        version="2.2.5-emulated",
        description="A local, faithful emulation of the Fusion Platform REST API as used by "
                    "fusion-platform-python-sdk 2.2.5, plus pre-signed storage URLs under /_storage/.",
    )
    app.state.runtime = runtime
    _install_error_handlers(app)
    _user_routes(app)
    _organisation_routes(app)
    _data_routes(app)
    _service_routes(app)
    install_process_routes(app)
    _storage_routes(app)

    @app.get("/_emulator/health", include_in_schema=False)
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    return app


def route_template(app: FastAPI, scope: Scope) -> str:
    """``METHOD /path/{template}`` of the route a request matched (or its raw path when none)."""
    method = scope.get("method", "")
    path = scope.get("path", "")
    if path.startswith("/_storage/download/"):  # the hot path never reaches the router
        return f"{method} /_storage/download/{{file_id}}"
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return f"{method} {route.path}"
    for candidate in app.router.routes:
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return f"{method} {getattr(candidate, 'path', scope.get('path', ''))}"
    return f"{method} <unmatched>"


# -- errors ---------------------------------------------------------------------------------------


def _is_storage(request: Request) -> bool:
    return request.url.path.startswith("/_storage/")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return JSONResponse({"error_message": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        message = _describe_validation(exc)
        if _is_storage(request):
            return Response(storage_error_xml("InvalidArgument", message), status_code=400,
                            media_type="application/xml")
        return JSONResponse({"error_message": message}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        if exc.status_code == 404:
            message = f"No such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}"
        if _is_storage(request):
            return Response(storage_error_xml("MethodNotAllowed" if exc.status_code == 405 else "NoSuchKey",
                                              message), status_code=exc.status_code, media_type="application/xml")
        return JSONResponse({"error_message": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error in %s %s", request.method, request.url.path)
        return JSONResponse({"error_message": f"Internal server error ({type(exc).__name__})"}, status_code=500)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = [str(item) for item in error.get("loc", ()) if item not in ("path", "query", "body", "header")]
        where = ".".join(location) or "body"
        kind = error.get("type", "")
        if kind == "json_invalid":
            parts.append(f"Malformed JSON body: {error.get('ctx', {}).get('error', error.get('msg'))}")
        elif kind.startswith("uuid"):
            parts.append(f"{where} is not a valid UUID: {error.get('input')!r}")
        elif kind == "missing":
            parts.append(f"{where} is required")
        else:
            parts.append(f"{where}: {error.get('msg')}")
    return "; ".join(parts) or "Invalid request"


# -- users ----------------------------------------------------------------------------------------


def _user_routes(app: FastAPI) -> None:
    @app.post("/users/login", tags=["users"], summary="Log in with e-mail (or user id) and password")
    def login(request: Request, body: JSONBody = None) -> Response:
        fields = nested_fields(body, "User")
        return JSONResponse(platform_of(request).login(fields))

    @app.get("/users/{user_id}", tags=["users"])
    def get_user(request: Request, user_id: uuid.UUID, ctx: Auth) -> Response:
        return model_response(platform_of(request).get_user(ctx, str(user_id)))

    @app.patch("/users/{user_id}", tags=["users"])
    def update_user(request: Request, user_id: uuid.UUID, ctx: Auth, body: JSONBody = None) -> Response:
        return model_response(platform_of(request).update_user(ctx, str(user_id), model_fields(body, "User")))

    @app.delete("/users/{user_id}", tags=["users"])
    def delete_user(request: Request, user_id: uuid.UUID, ctx: Auth) -> Response:
        return model_response(platform_of(request).delete_user(ctx, str(user_id)))

    @app.post("/users/{user_id}/change_password", tags=["users"])
    def change_password(request: Request, user_id: uuid.UUID, ctx: Auth, body: JSONBody = None) -> Response:
        platform_of(request).change_password(ctx, str(user_id), nested_fields(body, "User"))
        return JSONResponse({})


# -- organisations --------------------------------------------------------------------------------


def _organisation_routes(app: FastAPI) -> None:
    @app.get("/organisations/{organisation_id}", tags=["organisations"])
    def get_organisation(request: Request, organisation_id: uuid.UUID, ctx: Auth) -> Response:
        return model_response(platform_of(request).get_organisation(ctx, str(organisation_id)))

    @app.patch("/organisations/{organisation_id}", tags=["organisations"])
    def update_organisation(request: Request, organisation_id: uuid.UUID, ctx: Auth,
                            body: JSONBody = None) -> Response:
        fields = model_fields(body, "Organisation")
        return model_response(platform_of(request).update_organisation(ctx, str(organisation_id), fields))

    @app.delete("/organisations/{organisation_id}", tags=["organisations"])
    def delete_organisation(request: Request, organisation_id: uuid.UUID, ctx: Auth) -> Response:
        return model_response(platform_of(request).delete_organisation(ctx, str(organisation_id)))

    @app.get("/organisations/{organisation_id}/credits/{credit_id}", tags=["organisations"])
    def get_credit(request: Request, organisation_id: uuid.UUID, credit_id: uuid.UUID, ctx: Auth) -> Response:
        return model_response(platform_of(request).get_credit(ctx, str(organisation_id), str(credit_id)))


# -- data and files -------------------------------------------------------------------------------


def _data_routes(app: FastAPI) -> None:
    @app.get("/organisations/{organisation_id}/data/new", tags=["data"])
    def new_data(request: Request, organisation_id: uuid.UUID, ctx: Auth) -> Response:
        return model_response(platform_of(request).new_data(ctx, str(organisation_id)))

    @app.get("/organisations/{organisation_id}/data/uploaded", tags=["data"])
    def list_data(request: Request, organisation_id: uuid.UUID, ctx: Auth, limit: Limit = listing.DEFAULT_LIMIT,
                  reverse: Reverse = "False", search: Search = None) -> Response:
        items = platform_of(request).list_uploaded_data(ctx, str(organisation_id))
        return list_response(request, items, models.DATA_LIST)

    @app.post("/organisations/{organisation_id}/data", tags=["data"])
    def create_data(request: Request, organisation_id: uuid.UUID, ctx: Auth, body: JSONBody = None) -> Response:
        return model_response(platform_of(request).create_data(ctx, str(organisation_id), model_fields(body, "Data")))

    @app.get("/organisations/{organisation_id}/data/{data_id}", tags=["data"])
    def get_data(request: Request, organisation_id: uuid.UUID, data_id: uuid.UUID, ctx: Auth) -> Response:
        return model_response(platform_of(request).get_data(ctx, str(organisation_id), str(data_id)))

    @app.patch("/organisations/{organisation_id}/data/{data_id}", tags=["data"])
    def update_data(request: Request, organisation_id: uuid.UUID, data_id: uuid.UUID, ctx: Auth,
                    body: JSONBody = None) -> Response:
        fields = model_fields(body, "Data")
        return model_response(platform_of(request).update_data(ctx, str(organisation_id), str(data_id), fields))

    @app.delete("/organisations/{organisation_id}/data/{data_id}", tags=["data"])
    def delete_data(request: Request, organisation_id: uuid.UUID, data_id: uuid.UUID, ctx: Auth) -> Response:
        return model_response(platform_of(request).delete_data(ctx, str(organisation_id), str(data_id)))

    @app.post("/organisations/{organisation_id}/data/{data_id}/copy", tags=["data"])
    def copy_data(request: Request, organisation_id: uuid.UUID, data_id: uuid.UUID, ctx: Auth,
                  body: JSONBody = None) -> Response:
        fields = nested_fields(body, "Data")
        return model_response(platform_of(request).copy_data(ctx, str(organisation_id), str(data_id), fields))

    @app.post("/organisations/{organisation_id}/data/{data_id}/add_file", tags=["data"])
    def add_file(request: Request, organisation_id: uuid.UUID, data_id: uuid.UUID, ctx: Auth,
                 body: JSONBody = None) -> Response:
        fields = nested_fields(body, "Data")
        model, extras = platform_of(request).add_file(ctx, str(organisation_id), str(data_id), fields,
                                                    storage_base_url(request))
        return model_response(model, extras=extras)

    @app.get("/organisations/{organisation_id}/data/{data_id}/files", tags=["data"])
    def list_files(request: Request, organisation_id: uuid.UUID, data_id: uuid.UUID, ctx: Auth,
                   limit: Limit = listing.DEFAULT_LIMIT, reverse: Reverse = "False",
                   search: Search = None) -> Response:
        items = platform_of(request).list_files(ctx, str(organisation_id), str(data_id))
        return list_response(request, items, models.FILE_LIST)

    @app.get("/organisations/{organisation_id}/data/{data_id}/download_file/{file_id}", tags=["data"])
    def download_file(request: Request, organisation_id: uuid.UUID, data_id: uuid.UUID, file_id: uuid.UUID,
                      ctx: Auth, preview: Reverse = "False") -> Response:
        wants_preview = listing._parse_bool(preview, "preview")
        extras = platform_of(request).download_file(ctx, str(organisation_id), str(data_id), str(file_id),
                                                  wants_preview, storage_base_url(request))
        return model_response(extras=extras)


# -- services -------------------------------------------------------------------------------------


def _service_routes(app: FastAPI) -> None:
    @app.get("/organisations/{organisation_id}/services", tags=["services"])
    def own_services(request: Request, organisation_id: uuid.UUID, ctx: Auth,
                     limit: Limit = listing.DEFAULT_LIMIT, reverse: Reverse = "False",
                     search: Search = None) -> Response:
        items = platform_of(request).list_own_services(ctx, str(organisation_id))
        return list_response(request, items, models.SERVICE_LIST)

    @app.get("/organisations/{organisation_id}/services/latest", tags=["services"])
    def latest_services(request: Request, organisation_id: uuid.UUID, ctx: Auth,
                        limit: Limit = listing.DEFAULT_LIMIT, reverse: Reverse = "False",
                        search: Search = None) -> Response:
        items = platform_of(request).list_latest_services(ctx, str(organisation_id))
        return list_response(request, items, models.SERVICE_LIST)

    @app.get("/organisations/{organisation_id}/services/dispatchers", tags=["services"])
    def dispatchers(request: Request, organisation_id: uuid.UUID, ctx: Auth,
                    limit: Limit = listing.DEFAULT_LIMIT, reverse: Reverse = "False",
                    search: Search = None) -> Response:
        items = platform_of(request).list_dispatchers(ctx, str(organisation_id))
        return list_response(request, items, models.SERVICE_LIST)

    @app.get("/organisations/{organisation_id}/services/{service_id}", tags=["services"])
    def get_service(request: Request, organisation_id: uuid.UUID, service_id: uuid.UUID, ctx: Auth) -> Response:
        return model_response(platform_of(request).get_service(ctx, str(organisation_id), str(service_id)))

    @app.patch("/organisations/{organisation_id}/services/{service_id}", tags=["services"])
    def update_service(request: Request, organisation_id: uuid.UUID, service_id: uuid.UUID, ctx: Auth,
                       body: JSONBody = None) -> Response:
        fields = model_fields(body, "Service")
        return model_response(platform_of(request).update_service(ctx, str(organisation_id), str(service_id), fields))

    @app.delete("/organisations/{organisation_id}/services/{service_id}", tags=["services"])
    def delete_service(request: Request, organisation_id: uuid.UUID, service_id: uuid.UUID, ctx: Auth) -> Response:
        return model_response(platform_of(request).delete_service(ctx, str(organisation_id), str(service_id)))


# -- storage --------------------------------------------------------------------------------------


def _xml_error(status: int, code: str, message: str, resource: str = "",
               headers: dict[str, str] | None = None) -> Response:
    return Response(storage_error_xml(code, message, resource), status_code=status, media_type="application/xml",
                    headers=headers)


class _DownloadResponse(Response):
    """Hands the request to the storage hot path (``downloads.serve_download``)."""

    def __init__(self, runtime: Any) -> None:
        super().__init__()
        self._runtime = runtime

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await serve_download(self._runtime, scope, receive, send)


Algorithm = Annotated[str | None, Query(alias="X-Amz-Algorithm", description="AWS4-HMAC-SHA256")]
Credential = Annotated[str | None, Query(alias="X-Amz-Credential",
                                         description="<access key>/<yyyymmdd>/eu-west-2/s3/aws4_request")]
AmzDate = Annotated[str | None, Query(alias="X-Amz-Date", description="issue time, UTC YYYYMMDDTHHMMSSZ")]
AmzExpires = Annotated[str | None, Query(alias="X-Amz-Expires", description="lifetime in seconds")]
SignedHeaders = Annotated[str | None, Query(alias="X-Amz-SignedHeaders", description="host")]
Signature = Annotated[str | None, Query(alias="X-Amz-Signature", description="hex HMAC-SHA256 (SigV4)")]


def _storage_routes(app: FastAPI) -> None:
    @app.put("/_storage/upload/{file_id}", tags=["storage"], summary="Pre-signed upload (raw body)")
    async def upload(request: Request, file_id: uuid.UUID, algorithm: Algorithm = None, credential: Credential = None,
                     date: AmzDate = None, expires: AmzExpires = None, signed_headers: SignedHeaders = None,
                     signature: Signature = None) -> Response:
        platform = platform_of(request)
        key = str(file_id)
        refusal = platform.signer.check("PUT", request.url.path, request.url.query, dict(request.headers))
        if refusal is not None:
            return _xml_error(refusal.status, refusal.code, refusal.message, request.url.path)
        record = await anyio.to_thread.run_sync(platform.file_for_upload, key)
        if record is None:
            return _xml_error(404, "NoSuchUpload", "The data item of this upload no longer exists", request.url.path)
        declared_text = request.headers.get("content-length")
        declared = int(declared_text) if declared_text and declared_text.isdigit() else None

        async def chunks() -> AsyncIterator[bytes]:
            async for chunk in request.stream():
                yield chunk

        try:
            temp, size, md5 = await platform.blobs.receive_upload(
                key, chunks(), declared, platform.settings.max_upload_bytes)
        except UploadError as exc:
            return _xml_error(exc.status, exc.code, exc.message, request.url.path)
        except ClientDisconnect:  # the client went away mid-body: nothing was stored
            return _xml_error(400, "IncompleteBody", "The client disconnected before sending the whole body",
                              request.url.path)
        from fusion_stac.emulator.core import content_type_for

        info = await anyio.to_thread.run_sync(
            lambda: platform.blobs.commit(key, temp, size, md5, content_type_for(record["file_type"]),
                                          record.get("file_name") or key))
        await anyio.to_thread.run_sync(platform.finish_upload, key, platform.blobs.path(key))
        return Response(status_code=200, headers={"ETag": f'"{info.etag}"'})

    @app.get("/_storage/download/{file_id}", tags=["storage"], summary="Pre-signed download (supports Range)")
    async def download(request: Request, file_id: uuid.UUID, algorithm: Algorithm = None,
                       credential: Credential = None, date: AmzDate = None, expires: AmzExpires = None,
                       signed_headers: SignedHeaders = None, signature: Signature = None) -> Response:
        """Normally answered before routing by ``downloads.StorageFastPath``; this route documents it."""
        return _DownloadResponse(request.app.state.runtime)

    @app.head("/_storage/download/{file_id}", include_in_schema=False)
    async def head_download(file_id: uuid.UUID) -> Response:
        """Pre-signed GET URLs refuse HEAD, like cloud object stores (the signature covers the method)."""
        return Response(status_code=403, headers={"Content-Type": "application/xml"})

