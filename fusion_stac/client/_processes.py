"""FusionClient's process calls: processes (drafts, create, execute, waits), executions, components
and their logs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from fusion_stac.client._common import (
    _WRITABLE_PROCESS_FIELDS,
    CLOCK_SKEW,
    Progress,
    _flat,
    _id_of,
    _jsonable,
    is_uuid,
    logger,
)
from fusion_stac.client._draft import ProcessDraft
from fusion_stac.client._resources import _Resources
from fusion_stac.errors import (
    APIError,
    ExecutionFailedError,
    NotFoundError,
    ValidationError,
    WaitTimeout,
    redact,
)
from fusion_stac.models import (
    Data,
    ExecutionStatus,
    FrozenDict,
    Process,
    ProcessExecution,
    ProcessServiceExecution,
    ProcessServiceExecutionLog,
    Service,
)

if TYPE_CHECKING:  # drafts hold the whole client; for annotations only
    from fusion_stac.client._core import FusionClient

class _Processes(_Resources):
    """Processes and their runs: drafts, create, execute, stop, waits, executions,
    components and logs."""

    def iter_processes(self, org_id: str, *, name: str | None = None, search: str | None = None,
                       reverse: bool = False) -> Iterator[Process]:
        """Processes of the organisation; ``name`` matches a substring."""
        params = self._list_params(reverse=reverse, search=search, filters={"name__contains": name})
        return self._iter_processes(f"/organisations/{org_id}/processes", params)

    def _iter_processes(self, path: str, params: Mapping[str, Any]) -> Iterator[Process]:
        params = dict(params)
        while True:
            payload = self.request("GET", path, params=params)
            dispatchers = (payload.get("extras") or {}).get("dispatchers")
            for item in payload.get("list") or []:
                yield Process.from_api(item, available_dispatchers=dispatchers)
            last = payload.get("last")
            if not isinstance(last, Mapping) or not last:
                return
            params = {k: v for k, v in params.items() if not k.startswith("last[")}
            params.update({f"last[{k}]": v for k, v in last.items()})

    def _process_model(self, method: str, path: str, **kwargs: Any) -> Process:
        payload = self.request(method, path, **kwargs)
        model = payload.get("model")
        if not isinstance(model, Mapping):
            raise APIError("the answer has no model", path=path, method=method)
        return Process.from_api(model, available_dispatchers=(payload.get("extras") or {}).get("dispatchers"))

    def get_process(self, org_id: str, process_id: str) -> Process:
        return self._process_model("GET", f"/organisations/{org_id}/processes/{_id_of(process_id)}")

    def find_process(self, org_id: str, id_or_name: str) -> Process:
        """A process by id, or by name (exact preferred over a unique substring match)."""
        if is_uuid(id_or_name):
            return self.get_process(org_id, id_or_name)
        return self._lookup(Process, "process", f"/organisations/{org_id}/processes", id_or_name, "name__contains")

    def new_process(self, org_id: str, service: Service | str, name: str) -> ProcessDraft:
        """A draft process from a service (a Service, its id, name or keyword). One or two requests."""
        if not isinstance(service, Service):
            service = self.find_service(org_id, service)
        payload = self.request("GET", f"/organisations/{org_id}/processes/new", params={"service_id": service.id})
        template = {k: v for k, v in dict(payload.get("model") or {}).items() if v is not None}
        template["available_dispatchers"] = list((payload.get("extras") or {}).get("dispatchers") or [])
        template.setdefault("service_id", service.id)
        template.setdefault("ssd_id", service.ssd_id)
        return ProcessDraft(organisation_id=org_id, name=name, template=FrozenDict(template),
                            client=cast("FusionClient", self))

    def create_process(self, draft: ProcessDraft) -> Process:
        """Create a drafted process; the platform validates it and sets its ``price``."""
        missing = [i for n, i in enumerate(draft.inputs, 1) if not i.id]
        if missing:
            listed = ", ".join(f"input {draft.inputs.index(i) + 1} ({i.title or i.file_type})" for i in missing)
            raise ValidationError(f"process {draft.name!r} has unset inputs: {listed}", field="inputs")
        required = [o.name for o in draft.options if o.required and o.value is None]
        if required:
            raise ValidationError(f"process {draft.name!r} needs values for options: {', '.join(map(str, required))}",
                                  field=str(required[0]))
        body = draft.body()
        since = datetime.now(timezone.utc) - CLOCK_SKEW
        return self._post_once(
            f"create process {draft.name!r}",
            lambda: self._process_model("POST", f"/organisations/{draft.organisation_id}/processes", body=body),
            lambda: self._created_process(draft, since),
        )

    def _created_process(self, draft: ProcessDraft, since: datetime) -> Process | None:
        """The process a lost ``create`` answer may have made: the newest one with the draft's exact
        name, service and inputs, created since ``since`` (the API has no client-chosen process id,
        so this is the best evidence; an identical twin made meanwhile would be taken for it)."""
        service_id = draft.template.get("service_id")
        inputs = [i.id for i in draft.inputs]
        matches = [
            p for p in self.iter_processes(draft.organisation_id, name=draft.name)
            if p.name == draft.name and (service_id is None or p.service_id == service_id)
            and [i.id for i in p.inputs] == inputs and (p.created_at is None or p.created_at >= since)
        ]
        if not matches:
            return None
        newest = max(matches, key=lambda p: p.created_at or since)
        return self.get_process(draft.organisation_id, newest.id)

    def update_process(self, org_id: str, process_id: str, **fields: Any) -> Process:
        """Change name or schedule of a created (not executing) process."""
        unknown = sorted(set(fields) - _WRITABLE_PROCESS_FIELDS)
        if unknown:
            raise ValidationError(f"cannot update process field(s) {', '.join(unknown)}", field=unknown[0])
        return self._process_model("PATCH", f"/organisations/{org_id}/processes/{_id_of(process_id)}",
                                   body=_flat("Process", fields))

    def price(self, org_id: str, process_id: str) -> Decimal | None:
        """Credits one execution of the process costs (set when it was created)."""
        return self.get_process(org_id, process_id).price

    def copy_process(self, org_id: str, process_id: str, name: str) -> ProcessDraft:
        """A draft copying a process's inputs and options (nothing is created until ``create``)."""
        original = self.get_process(org_id, process_id)
        payload = self.request("GET", f"/organisations/{org_id}/processes/{original.id}/copy")
        template = {k: v for k, v in dict(payload.get("model") or {}).items() if v is not None}
        template["available_dispatchers"] = list((payload.get("extras") or {}).get("dispatchers") or [])
        # Options and inputs are re-applied client-side from the original, as the platform expects.
        template["options"] = [dict(o.raw) for o in original.options] or template.get("options") or []
        inputs = [dict(i) for i in template.get("inputs") or [dict(i.raw) for i in original.inputs]]
        for slot, source in zip(inputs, original.inputs, strict=False):
            if source.id:
                slot["id"] = source.id
        template["inputs"] = inputs
        template.pop("id", None)
        return ProcessDraft(organisation_id=org_id, name=name, template=FrozenDict(template),
                            client=cast("FusionClient", self))

    def execute(
        self, org_id: str, process_id: str, *, wait: bool = False, poll_interval: float | None = None,
        timeout: float | None = None, progress: Progress | None = None,
    ) -> Process:
        """Execute a created process. With ``wait``, also wait for its run to start and finish
        (raising :class:`ExecutionFailedError` if any execution of the run failed)."""
        pid = _id_of(process_id)
        # The state before: a lost answer is told from a lost request by the status having changed.
        before = self.get_process(org_id, pid)
        reconciled = False

        def recheck() -> Process | None:
            nonlocal reconciled
            now = self.get_process(org_id, pid)
            if now.process_status == "execute" or now.process_status_at != before.process_status_at:
                reconciled = True
                return now
            return None

        process = self._post_once(
            f"execute process {before.name!r} ({pid})",
            lambda: self._process_model("POST", f"/organisations/{org_id}/processes/{pid}/execute"), recheck)
        if wait:
            if process.process_status == "stop" and not reconciled:
                raise ExecutionFailedError(f"process {process.name!r} ({pid}) was stopped instead of executed",
                                           path=f"/organisations/{org_id}/processes/{pid}")
            started = time.monotonic()
            run = self.wait_for_next_execution(org_id, pid, poll_interval=poll_interval, timeout=timeout)
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            first = run[0]
            self.wait_for_completion(org_id, pid, group_id=first.group_id,
                                     execution_id=None if first.group_id else first.process_execution_id,
                                     poll_interval=poll_interval, timeout=left, progress=progress)
        return process

    def stop_process(self, org_id: str, process_id: str) -> Process:
        """Stop running executions and cancel the schedule."""
        return self._process_model("POST", f"/organisations/{org_id}/processes/{_id_of(process_id)}/stop")

    def delete_process(self, org_id: str, process_id: str) -> None:
        """Delete a process with its executions and their outputs."""
        self.request("DELETE", f"/organisations/{org_id}/processes/{_id_of(process_id)}")

    def wait_for_next_execution(
        self, org_id: str, process_id: str, *, poll_interval: float | None = None, timeout: float | None = None,
    ) -> tuple[ExecutionStatus, ...]:
        """Wait until the process's next run has started (all members of its group listed).

        Returns that run's execution summary lines. By default gives up (:class:`WaitTimeout`)
        15 minutes after the process's ``repeat_start``, as the platform guarantees a start by then.
        """
        interval = self.poll_interval if poll_interval is None else poll_interval
        began = time.monotonic()
        while True:
            process = self.get_process(org_id, process_id)
            run = process.latest_executions() if process.has_executions else ()
            if run:
                head = run[0]
                complete_group = head.group_id is None or len(run) >= (head.group_count or 0)
                fresh = (process.repeat_start is None or head.started_at is None
                         or head.started_at >= process.repeat_start)
                if complete_group and fresh:
                    return tuple(sorted(run, key=lambda e: (e.group_index or 0)))
            waited = time.monotonic() - began
            if timeout is not None:
                if waited + interval > timeout:
                    raise WaitTimeout(f"process {process.name!r} ({process.id}) did not start within {timeout:.0f} s",
                                      waited=waited)
            elif process.repeat_start is not None and \
                    datetime.now(timezone.utc) > process.repeat_start + timedelta(seconds=900):
                raise WaitTimeout(f"process {process.name!r} ({process.id}) should have started by "
                                  f"{(process.repeat_start + timedelta(seconds=900)).isoformat()}", waited=waited)
            self._sleep(interval)

    def wait_for_completion(
        self,
        org_id: str,
        process_id: str,
        *,
        group_id: str | None = None,
        execution_id: str | None = None,
        poll_interval: float | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
        raise_on_failure: bool = True,
    ) -> list[ProcessExecution]:
        """Wait until every execution of a run (a group, or one execution) is complete.

        Without ``group_id``/``execution_id`` the most recent run is used. A group is polled with
        one list request per round, and is complete only once all its slices *and* aggregators
        (``Process.aggregator_count``) are listed and at 100 %. ``progress`` gets the mean progress
        as a fraction. Failures raise :class:`ExecutionFailedError` naming every failed execution.
        """
        pid = _id_of(process_id)
        interval = self.poll_interval if poll_interval is None else poll_interval
        if group_id is None and execution_id is None:
            latest = self.latest_execution(org_id, pid)
            group_id, execution_id = latest.group_id, (None if latest.group_id else latest.id)
        expected = 1
        if group_id is not None:
            process = self.get_process(org_id, pid)
            latest_run = process.latest_executions()
            if latest_run and latest_run[0].group_id == group_id:
                # The process's counts describe its latest run only: slices plus aggregators still to come.
                expected = (process.non_aggregator_count or 0) + (process.aggregator_count or 0)
        began = time.monotonic()
        while True:
            if group_id is not None:
                executions = list(self.iter_executions(org_id, pid, group_id=group_id, reverse=False))
                if executions:
                    expected = max(expected, executions[0].group_count or 0)
            else:
                assert execution_id is not None
                executions = [self.get_execution(org_id, execution_id)]
            total = max(expected, len(executions), 1)
            fraction = sum(min(e.progress or 0, 100) for e in executions) / (100.0 * total)
            if progress is not None:
                progress(min(1.0, fraction))
            if executions and len(executions) >= expected and all(e.is_complete for e in executions):
                break
            waited = time.monotonic() - began
            if timeout is not None and waited + interval > timeout:
                done = sum(e.is_complete for e in executions)
                raise WaitTimeout(f"run of process {pid} not complete after {waited:.0f} s "
                                  f"({done} of {total} executions done)", waited=waited)
            self._sleep(interval)
        executions.sort(key=lambda e: (e.group_index or 0, e.started_at or datetime.min.replace(tzinfo=timezone.utc)))
        failed = [e for e in executions if e.failed]
        if failed and raise_on_failure:
            first = failed[0]
            listed = "; ".join(
                f"{e.name} {e.id}" + (f": {e.abort_reason}" if e.abort_reason else "") for e in failed[:5]
            )
            raise ExecutionFailedError(
                f"{len(failed)} execution(s) of process {pid} failed: {listed}",
                execution_id=first.id, group_id=first.group_id, group_index=first.group_index,
                abort_reason=first.abort_reason, path=f"/organisations/{org_id}/process_executions/{first.id}",
            )
        for e in executions:
            if e.success and e.abort_reason:
                logger.warning("execution %s succeeded with warning: %s", e.id, redact(e.abort_reason))
        return executions

    # -- executions --------------------------------------------------------------------------------
    def iter_executions(self, org_id: str, process_id: str, *, group_id: str | None = None,
                        reverse: bool = True) -> Iterator[ProcessExecution]:
        """Executions of a process, most recent first by default; optionally one group only."""
        params = self._list_params(reverse=reverse, filters={"group_id__eq": group_id})
        return self._iter(ProcessExecution, f"/organisations/{org_id}/processes/{_id_of(process_id)}/executions", params)

    def get_execution(self, org_id: str, execution_id: str) -> ProcessExecution:
        return self._model(ProcessExecution, "GET", f"/organisations/{org_id}/process_executions/{_id_of(execution_id)}")

    def latest_execution(self, org_id: str, process_id: str) -> ProcessExecution:
        """The most recently started execution of a process (one request)."""
        path = f"/organisations/{org_id}/processes/{_id_of(process_id)}/executions"
        items = next(self._pages(path, self._list_params(limit=1, reverse=True)))[0]
        if not items:
            raise NotFoundError(f"process {_id_of(process_id)} has no executions", status=404, path=path, method="GET")
        return ProcessExecution.from_api(items[0])

    def group_executions(self, org_id: str, process_id: str, group_id: str) -> tuple[list[ProcessExecution], list[ProcessExecution]]:
        """``(slices, aggregators)`` of a group, each sorted by ``group_index`` (one paged listing)."""
        members = list(self.iter_executions(org_id, process_id, group_id=group_id, reverse=False))
        if not members:
            raise NotFoundError(f"process {_id_of(process_id)} has no executions in group {group_id}", status=404,
                                path=f"/organisations/{org_id}/processes/{_id_of(process_id)}/executions")
        return _split_group(members)

    def change_delete_expiry(self, org_id: str, execution_id: str, when: datetime) -> None:
        """Move the deletion date of an execution (for a group: of the whole group)."""
        if not isinstance(when, datetime):
            raise ValidationError(f"delete expiry must be a datetime, got {type(when).__name__}", field="delete_expiry")
        self.request("POST", f"/organisations/{org_id}/process_executions/{_id_of(execution_id)}/change_delete_expiry",
                     body={"ProcessExecution": {"delete_expiry": _jsonable(when)}})

    def delete_execution(self, org_id: str, execution_id: str) -> None:
        self.request("DELETE", f"/organisations/{org_id}/process_executions/{_id_of(execution_id)}")

    # -- components and logs -----------------------------------------------------------------------
    def iter_components(self, org_id: str, execution_id: str) -> Iterator[ProcessServiceExecution]:
        """Components (service executions) of an execution, in chain order."""
        path = f"/organisations/{org_id}/process_executions/{_id_of(execution_id)}/process_service_executions"
        return self._iter(ProcessServiceExecution, path, self._list_params())

    def get_component(self, org_id: str, component_id: str) -> ProcessServiceExecution:
        return self._model(ProcessServiceExecution, "GET",
                           f"/organisations/{org_id}/process_service_executions/{_id_of(component_id)}")

    def component_outputs(self, org_id: str, component: ProcessServiceExecution) -> list[Data]:
        """Output Data of a component (fetched concurrently, in order)."""
        return self.map(lambda d: self.get_data(org_id, d), component.outputs)

    def component_inputs(self, org_id: str, component: ProcessServiceExecution) -> list[Data]:
        """Input Data of a component (fetched concurrently, in order)."""
        return self.map(lambda d: self.get_data(org_id, d), component.inputs)

    def iter_logs(self, org_id: str, component_id: str, *, reverse: bool = False) -> Iterator[ProcessServiceExecutionLog]:
        """Log lines of a component, oldest first by default."""
        path = f"/organisations/{org_id}/process_service_executions/{_id_of(component_id)}/logs"
        return self._iter(ProcessServiceExecutionLog, path, self._list_params(reverse=reverse))


def _split_group(members: Sequence[ProcessExecution]) -> tuple[list[ProcessExecution], list[ProcessExecution]]:
    """Tell aggregators from slices: aggregators are numbered after the ``group_count`` slices."""
    order = sorted(members, key=lambda e: (e.group_index or 0, e.id or ""))
    aggregators = [e for e in order if e.is_aggregator]
    slices = [e for e in order if not e.is_aggregator]
    return slices, aggregators
