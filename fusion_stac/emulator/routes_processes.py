"""FastAPI routes for processes, executions, components and logs (the second half of the API)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from fusion_stac.emulator import listing, models
from fusion_stac.emulator.bodies import model_fields, nested_fields
from fusion_stac.emulator.processes import Processes
from fusion_stac.emulator.routing import Auth, JSONBody, Limit, Reverse, Search, list_response, model_response

ServiceId = Annotated[str | None, Query(description="id of the service to build the template from")]


def _processes(request: Request) -> Processes:
    return request.app.state.runtime.processes


def _with_dispatchers(request: Request, model: Any) -> Response:
    return model_response(model, extras={"dispatchers": _processes(request).dispatchers()})


def install_process_routes(app: FastAPI) -> None:
    """Register every process, execution, component and log route on ``app``."""

    @app.get("/organisations/{organisation_id}/processes/new", tags=["processes"])
    def new_process(request: Request, organisation_id: uuid.UUID, ctx: Auth, service_id: ServiceId = None) -> Response:
        return _with_dispatchers(request, _processes(request).new(ctx, str(organisation_id), service_id))

    @app.get("/organisations/{organisation_id}/processes", tags=["processes"])
    def list_processes(request: Request, organisation_id: uuid.UUID, ctx: Auth,
                       limit: Limit = listing.DEFAULT_LIMIT, reverse: Reverse = "False",
                       search: Search = None) -> Response:
        service = _processes(request)
        items = service.list(ctx, str(organisation_id))
        return list_response(request, items, models.PROCESS_LIST, extras={"dispatchers": service.dispatchers()})

    @app.post("/organisations/{organisation_id}/processes", tags=["processes"])
    def create_process(request: Request, organisation_id: uuid.UUID, ctx: Auth, body: JSONBody = None) -> Response:
        fields = model_fields(body, "Process")
        return _with_dispatchers(request, _processes(request).create(ctx, str(organisation_id), fields))

    @app.get("/organisations/{organisation_id}/processes/{process_id}", tags=["processes"])
    def get_process(request: Request, organisation_id: uuid.UUID, process_id: uuid.UUID, ctx: Auth) -> Response:
        return _with_dispatchers(request, _processes(request).get(ctx, str(organisation_id), str(process_id)))

    @app.patch("/organisations/{organisation_id}/processes/{process_id}", tags=["processes"])
    def update_process(request: Request, organisation_id: uuid.UUID, process_id: uuid.UUID, ctx: Auth,
                       body: JSONBody = None) -> Response:
        fields = model_fields(body, "Process")
        model = _processes(request).update(ctx, str(organisation_id), str(process_id), fields)
        return _with_dispatchers(request, model)

    @app.delete("/organisations/{organisation_id}/processes/{process_id}", tags=["processes"])
    def delete_process(request: Request, organisation_id: uuid.UUID, process_id: uuid.UUID, ctx: Auth) -> Response:
        return model_response(_processes(request).delete(ctx, str(organisation_id), str(process_id)))

    @app.get("/organisations/{organisation_id}/processes/{process_id}/copy", tags=["processes"])
    def copy_process(request: Request, organisation_id: uuid.UUID, process_id: uuid.UUID, ctx: Auth) -> Response:
        return _with_dispatchers(request, _processes(request).copy(ctx, str(organisation_id), str(process_id)))

    @app.post("/organisations/{organisation_id}/processes/{process_id}/execute", tags=["processes"])
    def execute_process(request: Request, organisation_id: uuid.UUID, process_id: uuid.UUID, ctx: Auth) -> Response:
        return _with_dispatchers(request, _processes(request).execute(ctx, str(organisation_id), str(process_id)))

    @app.post("/organisations/{organisation_id}/processes/{process_id}/stop", tags=["processes"])
    def stop_process(request: Request, organisation_id: uuid.UUID, process_id: uuid.UUID, ctx: Auth) -> Response:
        return _with_dispatchers(request, _processes(request).stop(ctx, str(organisation_id), str(process_id)))

    @app.get("/organisations/{organisation_id}/processes/{process_id}/executions", tags=["executions"])
    def list_executions(request: Request, organisation_id: uuid.UUID, process_id: uuid.UUID, ctx: Auth,
                        limit: Limit = listing.DEFAULT_LIMIT, reverse: Reverse = "False",
                        search: Search = None) -> Response:
        items = _processes(request).list_executions(ctx, str(organisation_id), str(process_id))
        return list_response(request, items, models.EXECUTION_LIST)

    @app.get("/organisations/{organisation_id}/process_executions/{execution_id}", tags=["executions"])
    def get_execution(request: Request, organisation_id: uuid.UUID, execution_id: uuid.UUID, ctx: Auth) -> Response:
        return model_response(_processes(request).get_execution(ctx, str(organisation_id), str(execution_id)))

    @app.patch("/organisations/{organisation_id}/process_executions/{execution_id}", tags=["executions"])
    def update_execution(request: Request, organisation_id: uuid.UUID, execution_id: uuid.UUID, ctx: Auth,
                         body: JSONBody = None) -> Response:
        fields = model_fields(body, "ProcessExecution")
        return model_response(_processes(request).update_execution(ctx, str(organisation_id), str(execution_id), fields))

    @app.delete("/organisations/{organisation_id}/process_executions/{execution_id}", tags=["executions"])
    def delete_execution(request: Request, organisation_id: uuid.UUID, execution_id: uuid.UUID,
                         ctx: Auth) -> Response:
        return model_response(_processes(request).delete_execution(ctx, str(organisation_id), str(execution_id)))

    @app.post("/organisations/{organisation_id}/process_executions/{execution_id}/change_delete_expiry",
              tags=["executions"])
    def change_delete_expiry(request: Request, organisation_id: uuid.UUID, execution_id: uuid.UUID, ctx: Auth,
                             body: JSONBody = None) -> Response:
        fields = nested_fields(body, "ProcessExecution")
        return model_response(_processes(request).change_delete_expiry(ctx, str(organisation_id), str(execution_id), fields))

    @app.get("/organisations/{organisation_id}/process_executions/{execution_id}/process_service_executions",
             tags=["executions"])
    def list_components(request: Request, organisation_id: uuid.UUID, execution_id: uuid.UUID, ctx: Auth,
                        limit: Limit = listing.DEFAULT_LIMIT, reverse: Reverse = "False",
                        search: Search = None) -> Response:
        items = _processes(request).list_components(ctx, str(organisation_id), str(execution_id))
        return list_response(request, items, models.COMPONENT_LIST)

    @app.get("/organisations/{organisation_id}/process_service_executions/{component_id}", tags=["executions"])
    def get_component(request: Request, organisation_id: uuid.UUID, component_id: uuid.UUID, ctx: Auth) -> Response:
        return model_response(_processes(request).get_component(ctx, str(organisation_id), str(component_id)))

    @app.get("/organisations/{organisation_id}/process_service_executions/{component_id}/logs", tags=["executions"])
    def list_logs(request: Request, organisation_id: uuid.UUID, component_id: uuid.UUID, ctx: Auth,
                  limit: Limit = listing.DEFAULT_LIMIT, reverse: Reverse = "False",
                  search: Search = None) -> Response:
        items = _processes(request).list_logs(ctx, str(organisation_id), str(component_id))
        return list_response(request, items, models.LOG_LIST)


