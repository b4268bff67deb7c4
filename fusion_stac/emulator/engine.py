"""Running executions: slicing a region, rendering outputs, progress, schedules, stop and recovery.

A *run* is what one ``execute`` (or one repetition of a schedule) produces: one execution for a small region,
or, for a region larger than ``max_region_m``, one execution per slice sharing a ``group_id`` (``group_index``
1..N, ``group_count`` N) plus the service's group aggregator (``group_index`` N+1). All executions of a run are
created at once with the same ``started_at``, so the SDK's ``wait_for_next_execution`` sees the whole group.

Progress takes ``execution_duration`` seconds; with 0 the run completes synchronously inside ``execute`` (the
response still says ``process_status: execute``, as the SDK requires). Longer runs use a thread pool; a
scheduler thread starts due repetitions of scheduled processes and collects orphaned blobs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fusion_stac.emulator import geodata, services
from fusion_stac.emulator.bodies import gap_to_timedelta, parse_gap
from fusion_stac.emulator.core import Platform, content_type_for
from fusion_stac.emulator.errors import invalid
from fusion_stac.emulator.store import iso, utcnow

logger = logging.getLogger("fusion_stac.emulator")

_SCHEDULER_TICK = 0.1
_GC_INTERVAL = 60.0
_PROGRESS_INTERVAL = 0.5


class Engine:
    """Creates and runs executions for the process service, which owns it and hands it the two look-ups it
    needs (a data item's region, a service's specification): the engine does not import the process service."""

    def __init__(
        self,
        platform: Platform,
        *,
        region_wkb: Callable[[str], bytes | None],
        service_spec: Callable[[str], tuple[dict[str, Any], dict[str, Any]]],
    ) -> None:
        self.platform = platform
        self.store = platform.store
        self._region_wkb = region_wkb
        self._service_spec = service_spec
        self._events: dict[str, threading.Event] = {}
        self._events_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._scheduler: threading.Thread | None = None
        self._stopping = threading.Event()
        self._last_gc = 0.0

    @property
    def settings(self) -> Any:
        return self.platform.settings

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._scheduler is not None:
            return
        self._pool = ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="fusion-exec")
        self._scheduler = threading.Thread(target=self._schedule_loop, name="fusion-scheduler", daemon=True)
        self._scheduler.start()

    def shutdown(self) -> None:
        self._stopping.set()
        with self._events_lock:
            for event in self._events.values():
                event.set()
        if self._scheduler is not None:
            self._scheduler.join(timeout=10)
            self._scheduler = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._mark_interrupted("the emulator stopped while this execution was running")

    def recover(self) -> None:
        """After a restart: executions that were running have failed; finished run-once processes are stopped."""
        self._mark_interrupted("the emulator was restarted while this execution was running")
        with self.store.tx():
            for row in self.store.rows("processes"):
                doc = json.loads(row["doc"])
                state = json.loads(row["state"])
                if state.pop("launching", None):
                    self.store.put("processes", doc, state=state)
                if doc["process_status"] == "execute" and not state.get("next_run_at"):
                    self._set_process_status(doc, "stop")

    def _mark_interrupted(self, reason: str) -> None:
        with self.store.tx():
            for row in self.store.execute("SELECT id FROM executions"):
                doc = self.store.doc("executions", row["id"])
                if doc is not None and doc["progress"] < 100:
                    self._finish_execution(doc, success=False, abort_reason=f"Interrupted: {reason}",
                                           exit_type="error")

    # -- starting runs --------------------------------------------------------------------------

    def launch_due(self, process_id: str, *, claimed: bool = False) -> list[str]:
        """Create the runs of a process that are due now; returns their run ids (not yet running).

        ``claimed``: the caller is ``execute``, which marked the process as being launched by itself.
        """
        launched: list[str] = []
        while True:
            run_id = self._launch_one(process_id, claimed=claimed)
            if run_id is None:
                return launched
            launched.append(run_id)

    def _launch_one(self, process_id: str, *, claimed: bool) -> str | None:
        row = self.store.row("processes", process_id)
        if row is None:
            return None
        doc = json.loads(row["doc"])
        state = json.loads(row["state"])
        next_run = state.get("next_run_at")
        now = utcnow()
        if doc["process_status"] != "execute" or not next_run or datetime.fromisoformat(next_run) > now:
            return None
        if state.get("launching") and not claimed:
            return None
        region = self._region_wkb(doc["inputs"][0]["id"]) if doc.get("inputs") else None
        if region is None:
            raise invalid("The process input has no geographic footprint to process")
        try:
            slices = geodata.slice_region(region, slice_size_m=self.settings.slice_size_m,
                                           max_region_m=self.settings.max_region_m)
        except ValueError as exc:
            raise invalid(f"The region cannot be processed: {exc}") from None
        _, spec = self._service_spec(doc["service_id"])
        with self.store.tx():
            row = self.store.row("processes", process_id)
            if row is None:
                return None
            doc = json.loads(row["doc"])
            state = json.loads(row["state"])
            if doc["process_status"] != "execute" or state.get("next_run_at") != next_run:
                return None
            if state.get("launching") and not claimed:
                return None
            self._charge(doc)
            run_id = str(uuid.uuid4())
            self._create_run(run_id, doc, spec, slices, now)
            # Advance the schedule.
            following = None
            if doc["run_type"] == "run_schedule":
                doc["repeat_count"] = max(int(doc["repeat_count"]) - 1, 0)
                gap = parse_gap(doc.get("repeat_gap"), "repeat_gap")
                if doc["repeat_count"] > 0 and gap:
                    candidate = datetime.fromisoformat(next_run) + gap_to_timedelta(gap)
                    end = doc.get("repeat_end")
                    if end is None or candidate <= datetime.fromisoformat(end):
                        following = iso(candidate)
            state["next_run_at"] = following
            state.pop("launching", None)
            state["runs_started"] = int(state.get("runs_started", 0)) + 1
            state["last_run_id"] = run_id
            grouped = len(slices) > 1
            doc["non_aggregator_count"] = len(slices)
            doc["aggregator_count"] = 1 if grouped and spec.get("aggregated") else 0
            doc["updated_at"] = iso(now)
            self.store.put("processes", doc, state=state)
        with self._events_lock:
            self._events[run_id] = threading.Event()
        return run_id

    def _charge(self, process: dict[str, Any]) -> None:
        """Deduct the price of one run from the organisation's credits and record the month's spend."""
        credit = self.store.doc("credits", process["organisation_id"])
        if credit is None:
            return
        price = float(process["price"])
        if float(credit["any_credits"]) < price:
            raise invalid(f"Insufficient credits for process {process['id']}: {price} needed")
        credit["any_credits"] = round(float(credit["any_credits"]) - price, 2)
        month = iso(utcnow().replace(day=1, hour=0, minute=0, second=0, microsecond=0))
        spend = credit.get("spend") or []
        for entry in spend:
            if entry["month"] == month:
                entry["credits"] = round(float(entry["credits"]) + price, 2)
                break
        else:
            spend.append({"month": month, "credits": price})
        credit["spend"] = spend
        credit["updated_at"] = iso(utcnow())
        self.store.put("credits", credit)

    def _create_run(self, run_id: str, process: dict[str, Any], spec: dict[str, Any],
                    slices: list[Any], now: datetime) -> None:
        grouped = len(slices) > 1
        group_id = str(uuid.uuid4()) if grouped else None
        count = len(slices) if grouped else None
        expiry = iso(now + timedelta(days=int(process.get("output_storage_period") or 30)))
        input_ids = [item["id"] for item in process.get("inputs") or []]
        members: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for position, slc in enumerate(slices):
            members.append((spec, {"role": "slice", "slice": _slice_state(slc), "index": position + 1}))
        if grouped and spec.get("aggregated"):
            aggregator = services.spec_by_ssd_id(services.AGGREGATOR_SSD_ID)
            assert aggregator is not None
            members.append((aggregator, {"role": "aggregator", "index": len(slices) + 1}))
        for offset, (member_spec, state) in enumerate(members):
            execution_id = str(uuid.uuid4())
            created = iso(now + timedelta(microseconds=offset))
            options = process["options"] if state["role"] == "slice" else [
                dict(o, ssd_id=member_spec["ssd_id"]) for o in member_spec["options"]]
            service_id = process["service_id"] if state["role"] == "slice" else member_spec["id"]
            chain_inputs = [input_ids] if state["role"] == "slice" else []
            execution = {
                "id": execution_id, "created_at": created, "updated_at": created,
                "organisation_id": process["organisation_id"], "process_id": process["id"],
                "group_id": group_id, "group_index": state["index"] if grouped else None, "group_count": count,
                "options": options,
                "chains": [{"ssd_id": member_spec["ssd_id"], "service_id": service_id, "inputs": chain_inputs,
                            "outputs": [], "options": [{"name": o["name"], "value": o["value"],
                                                        "data_type": o["data_type"],
                                                        "validation": o.get("validation")} for o in options],
                            "intermediate": False}],
                "started_at": iso(now), "ended_at": None, "stopped": False, "abort": False, "abort_reason": None,
                "exit_type": None, "success": False, "progress": 0, "delete_expiry": expiry,
                "delete_warning_status": "delete_warning_not_sent", "deletable": None, "delete_protection": False,
            }
            state.update({"run_id": run_id, "service_id": service_id, "spec_id": member_spec["id"]})
            self.store.insert("executions", execution, organisation_id=process["organisation_id"],
                              process_id=process["id"], group_id=group_id, run_id=run_id, state=state)
            service_doc = self.store.doc("services", service_id) or {}
            component = {
                "id": str(uuid.uuid4()), "created_at": created, "updated_at": created,
                "organisation_id": process["organisation_id"], "process_execution_id": execution_id,
                "process_id": process["id"], "service_id": service_id,
                "image_id": service_doc.get("image_id") or services.fixed_id(f"image:{member_spec['ssd_id']}"),
                "chain_index": 0, "name": member_spec["component"], "started_at": iso(now), "ended_at": None,
                "runtime": None, "architecture": "x86_64", "cpu": member_spec.get("cpu", 1), "gpu": None,
                "memory": member_spec.get("memory", 2048), "storage": 20, "instance_type": "emulator.standard",
                "actions": None,
                "options": [{"name": o["name"], "value": o["value"], "data_type": o["data_type"],
                             "validation": o.get("validation")} for o in options],
                "inputs": input_ids if state["role"] == "slice" else [], "outputs": [], "intermediate": False,
                "success": None, "metrics": [],
            }
            self.store.insert("components", component, organisation_id=process["organisation_id"],
                              execution_id=execution_id, process_id=process["id"])
            where = f" (slice {state['index']} of {len(slices)})" if grouped and state["role"] == "slice" else ""
            self._log(component, f"Queued {member_spec['component']}{where}")

    def run_or_submit(self, run_id: str) -> None:
        """Run now (``execution_duration`` 0) or in the background pool."""
        if self.settings.execution_duration <= 0 or self._pool is None:
            self.run(run_id)
        else:
            self._pool.submit(self.run, run_id)

    # -- stopping -------------------------------------------------------------------------------

    def _runs_of(self, process_id: str) -> set[str]:
        return {row["run_id"] for row in self.store.execute(
            "SELECT DISTINCT run_id FROM executions WHERE process_id = ?", (process_id,))}

    def cancel_process(self, process_id: str) -> None:
        """Tell the runs of a process to stop touching it (it is being deleted)."""
        with self._events_lock:
            for run_id in self._runs_of(process_id):
                event = self._events.get(run_id)
                if event is not None:
                    event.set()

    def stop_process(self, process_id: str, reason: str) -> None:
        """Abort the unfinished executions of a process."""
        self.cancel_process(process_id)
        with self.store.tx():
            for doc in self.store.docs("executions", process_id=process_id):
                if doc["progress"] < 100:
                    self._finish_execution(doc, success=False, abort_reason=reason, exit_type="stopped",
                                           stopped=True)

    # -- running --------------------------------------------------------------------------------

    def run(self, run_id: str) -> None:
        """Execute every member of a run, then the aggregator, then settle the process status."""
        with self._events_lock:
            cancelled = self._events.setdefault(run_id, threading.Event())
        started = time.monotonic()
        work: Path | None = None
        try:
            work = self.platform.temp_dir()
            rows = self.store.execute("SELECT id, state FROM executions WHERE run_id = ? ORDER BY created_at, id",
                                      (run_id,))
            members = [(row["id"], json.loads(row["state"])) for row in rows]
            slices = [(eid, state) for eid, state in members if state["role"] == "slice"]
            aggregators = [(eid, state) for eid, state in members if state["role"] == "aggregator"]
            self._progress([eid for eid, _ in slices], 1, "Started")
            produced: dict[str, tuple[str, Path]] = {}
            for position, (execution_id, state) in enumerate(slices, start=1):
                if cancelled.is_set():
                    return
                result = self._run_slice(execution_id, state, work)
                if result is not None:
                    produced[execution_id] = result
                share = position / max(len(slices), 1)
                self._progress([eid for eid, _ in slices], self._percent(started, share), None)
            self._wait(started, cancelled, [eid for eid, _ in slices])
            if cancelled.is_set():
                return
            for execution_id, _state in slices:
                self._complete(execution_id, produced.get(execution_id))
            for execution_id, state in aggregators:
                if cancelled.is_set():
                    return
                rasters = [produced[eid][1] for eid, _ in slices if eid in produced]
                self._progress([execution_id], 10, "Aggregating statistics of the group")
                result = self._run_aggregator(execution_id, state, rasters, work)
                self._complete(execution_id, result)
        except Exception as exc:
            logger.exception("run %s failed", run_id)
            self._fail_run(run_id, f"{type(exc).__name__}: {exc}")
        finally:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            with self._events_lock:
                self._events.pop(run_id, None)
            self._settle_processes(run_id)

    def _percent(self, started: float, share: float) -> int:
        duration = self.settings.execution_duration
        if duration <= 0:
            return int(90 * share)
        elapsed = (time.monotonic() - started) / duration
        return max(1, min(99, int(100 * min(elapsed, share))))

    def _wait(self, started: float, cancelled: threading.Event, execution_ids: list[str]) -> None:
        """Let the configured duration pass, reporting progress."""
        duration = self.settings.execution_duration
        while duration > 0 and not cancelled.is_set() and not self._stopping.is_set():
            remaining = duration - (time.monotonic() - started)
            if remaining <= 0:
                break
            cancelled.wait(min(_PROGRESS_INTERVAL, remaining))
            self._progress(execution_ids, self._percent(started, 1.0), None)

    def _run_slice(self, execution_id: str, state: dict[str, Any], work: Path) -> tuple[str, Path] | None:
        """Render the output of one slice; returns (data id, blob path) or None if the execution is gone."""
        execution = self.store.doc("executions", execution_id)
        if execution is None or execution["progress"] >= 100:
            return None
        spec = services.spec_by_service_id(state["spec_id"])
        assert spec is not None
        slc = _slice_from_state(state["slice"])
        output = spec["output"]
        options = {o["name"]: o["value"] for o in execution.get("options") or []}
        target = work / f"{execution_id}-{output['file_name']}"
        when = datetime.fromisoformat(execution["started_at"])
        if output["renderer"] == "elevation":
            resolution = float(options.get("resolution") or self.settings.resolution_m)
            geodata.render_elevation(target, slc, resolution_m=resolution)
        else:
            when = _classification_date(execution.get("options") or [], when)
            geodata.render_classification(target, slc, resolution_m=self.settings.resolution_m, date=when)
        return self._store_output(execution, spec, target, state, when)

    def _run_aggregator(self, execution_id: str, state: dict[str, Any], rasters: list[Path],
                        work: Path) -> tuple[str, Path] | None:
        execution = self.store.doc("executions", execution_id)
        if execution is None or execution["progress"] >= 100:
            return None
        spec = services.spec_by_service_id(state["spec_id"])
        assert spec is not None
        links = work / f"{execution_id}-inputs"
        links.mkdir()
        named = []
        for position, raster in enumerate(rasters, start=1):
            info = self.platform.blobs.info(raster.name)
            link = links / f"slice_{position:03d}_{info.file_name if info else raster.name}"
            try:
                os.symlink(raster, link)
            except OSError:
                shutil.copyfile(raster, link)
            named.append(link)
        target = work / f"{execution_id}-{spec['output']['file_name']}"
        geodata.render_statistics_csv(target, named)
        return self._store_output(execution, spec, target, state, datetime.fromisoformat(execution["started_at"]))

    def _store_output(self, execution: dict[str, Any], spec: dict[str, Any], source: Path, state: dict[str, Any],
                      when: datetime) -> tuple[str, Path] | None:
        """Keep a rendered file as the output Data item of an execution (analysed, with preview)."""
        output = spec["output"]
        file_id = str(uuid.uuid4())
        self.platform.blobs.add_file(file_id, source, content_type_for(output["file_type"]), output["file_name"])
        now = iso(utcnow())
        index = execution.get("group_index")
        suffix = f" {index} of {execution['group_count']}" if index and state["role"] == "slice" else ""
        data_id = str(uuid.uuid4())
        data = {
            "id": data_id, "created_at": now, "updated_at": now, "organisation_id": execution["organisation_id"],
            "name": f"{output['title']}{suffix}", "unlinked": None, "unfulfilled": None, "bounds": None,
            "file_with_preview": None, "uploaded_organisation_id": None, "deletable": None,
        }
        record = {
            "id": str(uuid.uuid4()), "created_at": now, "updated_at": now,
            "organisation_id": execution["organisation_id"], "data_id": data_id, "file_id": file_id,
            "preview_file_id": None, "file_type": output["file_type"], "file_name": output["file_name"],
            "downloads": 0, "title": output["title"],
        }
        with self.store.tx():
            if self.store.row("executions", execution["id"]) is None:
                self.platform.blobs.orphan([file_id], grace=0)
                return None
            self.store.insert("data", data, organisation_id=execution["organisation_id"], kind="output",
                              execution_id=execution["id"])
            self.store.insert("files", record, organisation_id=execution["organisation_id"], data_id=data_id,
                              file_id=file_id, geometry=None)
        stem = Path(output["file_name"]).stem
        item_id = f"{stem}-{index}" if index else stem
        stored = self.platform.record_analysis(record, self.platform.blobs.path(file_id), item_id=item_id,
                                               when=when)
        stored_path = self.platform.blobs.path(file_id)
        if stored.get("error"):
            raise RuntimeError(f"the generated {output['file_name']} failed analysis: {stored.get('description')}")
        return data_id, stored_path

    def _complete(self, execution_id: str, produced: tuple[str, Path] | None) -> None:
        with self.store.tx():
            doc = self.store.doc("executions", execution_id)
            if doc is None or doc["progress"] >= 100:
                return
            outputs = [produced[0]] if produced else []
            doc["chains"][0]["outputs"] = outputs
            for component in self.store.docs("components", execution_id=execution_id):
                component["outputs"] = outputs
                self.store.put("components", component)
                self._describe_dispatch(component, doc)
            self._finish_execution(doc, success=True, abort_reason=None, exit_type="success")

    def _describe_dispatch(self, component: dict[str, Any], execution: dict[str, Any]) -> None:
        process = self.store.doc("processes", execution["process_id"])
        for dispatcher in (process or {}).get("dispatchers") or []:
            values = {o["name"]: o.get("value") for o in dispatcher.get("options") or []}
            if dispatcher["name"] == "AWS S3":
                target = f"s3://{values.get('bucket')}/"
            else:
                target = values.get("emails") or "recipients"
            self._log(component, f"Dispatched outputs with {dispatcher['name']} to {target} (emulated)")

    def _finish_execution(self, doc: dict[str, Any], *, success: bool, abort_reason: str | None,
                          exit_type: str, stopped: bool = False) -> None:
        now = utcnow()
        doc.update({
            "progress": 100, "success": success, "ended_at": iso(now), "abort_reason": abort_reason,
            "exit_type": exit_type, "stopped": stopped, "abort": not success, "updated_at": iso(now),
        })
        self.store.put("executions", doc)
        started = datetime.fromisoformat(doc["started_at"])
        for component in self.store.docs("components", execution_id=doc["id"]):
            if component.get("ended_at") is None:
                component.update({"ended_at": iso(now), "success": success, "updated_at": iso(now),
                                  "runtime": max(int((now - started).total_seconds()), 0)})
                self.store.put("components", component)
                if success:
                    self._log(component, f"{component['name']} completed successfully")
                else:
                    self._log(component, f"{component['name']} ended: {abort_reason}")

    def _fail_run(self, run_id: str, reason: str) -> None:
        with self.store.tx():
            for row in self.store.execute("SELECT id FROM executions WHERE run_id = ?", (run_id,)):
                doc = self.store.doc("executions", row["id"])
                if doc is not None and doc["progress"] < 100:
                    self._finish_execution(doc, success=False, abort_reason=reason, exit_type="error")

    def _progress(self, execution_ids: list[str], percent: int, message: str | None) -> None:
        with self.store.tx():
            now = iso(utcnow())
            for execution_id in execution_ids:
                doc = self.store.doc("executions", execution_id)
                if doc is None or doc["progress"] >= 100 or (doc["progress"] >= percent and message is None):
                    continue
                doc["progress"] = max(doc["progress"], min(percent, 99))
                doc["updated_at"] = now
                self.store.put("executions", doc)
                if message:
                    for component in self.store.docs("components", execution_id=execution_id):
                        self._log(component, message)

    def _log(self, component: dict[str, Any], message: str) -> None:
        now = utcnow()
        existing = self.store.execute("SELECT COUNT(*) AS n FROM logs WHERE component_id = ?", (component["id"],))
        moment = iso(now + timedelta(microseconds=existing[0]["n"]))
        doc = {"id": str(uuid.uuid4()), "created_at": moment, "updated_at": moment,
               "process_service_execution_id": component["id"], "logged_at": moment, "message": message}
        self.store.insert("logs", doc, organisation_id=component["organisation_id"], component_id=component["id"])

    def _settle_processes(self, run_id: str) -> None:
        """A process whose runs are all finished and that has nothing scheduled returns to ``stop``."""
        rows = self.store.execute("SELECT DISTINCT process_id FROM executions WHERE run_id = ?", (run_id,))
        for row in rows:
            self.settle(row["process_id"])

    def settle(self, process_id: str) -> None:
        with self.store.tx():
            prow = self.store.row("processes", process_id)
            if prow is None:
                return
            doc = json.loads(prow["doc"])
            state = json.loads(prow["state"])
            if doc["process_status"] != "execute" or state.get("next_run_at"):
                return
            running = [e for e in self.store.docs("executions", process_id=process_id) if e["progress"] < 100]
            if not running:
                self._set_process_status(doc, "stop")

    def _set_process_status(self, doc: dict[str, Any], status: str) -> None:
        now = iso(utcnow())
        doc["process_status"] = status
        doc["process_status_at"] = now
        doc["updated_at"] = now
        self.store.put("processes", doc)

    # -- scheduler ------------------------------------------------------------------------------

    def _schedule_loop(self) -> None:
        while not self._stopping.wait(_SCHEDULER_TICK):
            try:
                self._tick()
            except Exception:  # the scheduler must survive anything a single process does
                logger.exception("scheduler tick failed")

    def _tick(self) -> None:
        now = utcnow()
        for row in self.store.execute("SELECT id, state FROM processes"):
            state = json.loads(row["state"])
            due = state.get("next_run_at")
            if not due or state.get("launching") or datetime.fromisoformat(due) > now:
                continue
            try:
                run_ids = self.launch_due(row["id"])
            except Exception as exc:
                logger.warning("scheduled run of process %s could not start: %s", row["id"], exc)
                self._abandon_schedule(row["id"])
                continue
            for run_id in run_ids:
                if self._pool is not None:
                    self._pool.submit(self.run, run_id)
        if time.monotonic() - self._last_gc > _GC_INTERVAL:
            self._last_gc = time.monotonic()
            self.platform.blobs.collect_garbage()

    def _abandon_schedule(self, process_id: str) -> None:
        with self.store.tx():
            row = self.store.row("processes", process_id)
            if row is None:
                return
            state = json.loads(row["state"])
            state["next_run_at"] = None
            self.store.put("processes", json.loads(row["doc"]), state=state)
        self.settle(process_id)


def _slice_state(slc: Any) -> dict[str, Any]:
    data = dataclasses.asdict(slc)
    data["geometry_wkb"] = slc.geometry_wkb.hex()
    return data


def _slice_from_state(state: dict[str, Any]) -> Any:
    values = dict(state)
    values["geometry_wkb"] = bytes.fromhex(values["geometry_wkb"])
    values["bounds_lonlat"] = tuple(values["bounds_lonlat"])
    if values.get("bounds_native") is not None:
        values["bounds_native"] = tuple(values["bounds_native"])
    return geodata.Slice(**values)


def _classification_date(options: list[dict[str, Any]], default: datetime) -> datetime:
    values = {o["name"]: o for o in options}
    latest = (values.get("latest_date") or {}).get("value")
    start = values.get("start_date") or {}
    if latest == "false" and start.get("value"):
        fmt = None
        for part in (start.get("validation") or "").split(";"):
            if part.startswith("format="):
                fmt = part[len("format="):]
        try:
            moment = datetime.strptime(start["value"], fmt) if fmt else datetime.fromisoformat(start["value"])
        except ValueError:
            return default
        return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
    return default
