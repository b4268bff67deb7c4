"""Processes: templates, validation of inputs and options, prices, schedules; executions and components.

A process is created from a service's template (``processes/new``), validated (inputs must be analysed data of
an allowed file type, options must parse for their data type and satisfy their validation), priced from the
region's area, then executed. Execution itself (slicing, rendering, progress) is done by
:class:`~fusion_stac.emulator.engine.Engine`; this module owns the models and the rules.
"""

from __future__ import annotations

import builtins
import json
import logging
import math
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from fusion_stac.emulator import services
from fusion_stac.emulator.bodies import (
    as_bool,
    as_datetime,
    as_int,
    as_list,
    as_str,
    as_uuid,
    gap_wire,
    offset_wire,
    parse_gap,
)
from fusion_stac.emulator.core import MAX_OUTPUT_STORAGE_DAYS, AuthContext, Platform
from fusion_stac.emulator.engine import Engine
from fusion_stac.emulator.errors import ApiError, bad_request, conflict, invalid, not_found
from fusion_stac.emulator.models import FILE_TYPE_SUBSTITUTIONS, wire
from fusion_stac.emulator.store import iso, utcnow

logger = logging.getLogger("fusion_stac.emulator")

RUN_TYPES = ("run_once", "run_schedule")
#: Fields a PATCH may change (everything else in the body is echoed read-only/hidden data and ignored).
WRITABLE_PROCESS_FIELDS = ("name", "run_type", "repeat_count", "repeat_start", "repeat_end", "repeat_gap",
                           "repeat_offset", "output_storage_period", "dispatchers", "inputs", "options")


def _job_status(execution: dict[str, Any]) -> str:
    if execution["progress"] < 100:
        return "running" if execution["progress"] > 0 else "pending"
    if execution.get("stopped"):
        return "stopped"
    return "success" if execution["success"] else "failed"


def execution_summary(execution: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``Process.executions``."""
    return {
        "process_execution_id": execution["id"],
        "group_id": execution.get("group_id"),
        "group_index": execution.get("group_index"),
        "group_count": execution.get("group_count"),
        "job_status": _job_status(execution),
        "abort_reason": execution.get("abort_reason"),
        "exit_type": execution.get("exit_type"),
        "started_at": execution["started_at"],
        "ended_at": execution.get("ended_at"),
        "delete_warning_status": execution["delete_warning_status"],
        "delete_expiry": execution["delete_expiry"],
        "notified": execution["progress"] >= 100,
    }


# -- option values ----------------------------------------------------------------------------------


def _validation_parts(validation: str | None) -> dict[str, str]:
    parts: dict[str, str] = {}
    for element in (validation or "").split(";"):
        if "=" in element:
            key, _, value = element.partition("=")
            parts[key.strip().lower()] = value
    return parts


def _parse_option_datetime(value: str, fmt: str | None, name: str) -> datetime:
    if fmt:
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"Option {name}: {value!r} is not a datetime in the format {fmt or 'ISO 8601'}") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def check_option_value(option: dict[str, Any], value: Any, label: str) -> str | None:
    """Validate an option value (a string or null on the wire) and return its canonical string."""
    name = option["name"]
    if value is None or value in ("null", "None"):
        if option.get("required"):
            raise invalid(f"{label} {name!r} is required")
        return None
    if not isinstance(value, str):
        raise bad_request(f"{label} {name!r}: the value must be a string (or null), not {type(value).__name__}")
    data_type = option["data_type"]
    parts = _validation_parts(option.get("validation"))
    if data_type == "boolean":
        if value.lower() not in ("true", "false"):
            raise invalid(f"{label} {name!r} must be 'true' or 'false', got {value!r}")
        return value.lower()
    if data_type in ("numeric", "currency"):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise invalid(f"{label} {name!r} must be a number, got {value!r}") from None
        if not number.is_finite():
            raise invalid(f"{label} {name!r} must be a finite number")
        for bound, test in (("min", lambda n, b: n >= b), ("max", lambda n, b: n <= b)):
            if bound in parts and not test(number, Decimal(parts[bound])):
                raise invalid(f"{label} {name!r} must be {'at least' if bound == 'min' else 'at most'} "
                              f"{parts[bound]}, got {value}")
        return value.strip()
    if data_type == "datetime":
        fmt = parts.get("format")
        moment = _parse_option_datetime(value, fmt, name)
        for bound in ("min", "max"):
            if bound in parts:
                limit = _parse_option_datetime(parts[bound], fmt, name)
                if (bound == "min" and moment < limit) or (bound == "max" and moment > limit):
                    raise invalid(f"{label} {name!r} must be {'on or after' if bound == 'min' else 'on or before'} "
                                  f"{parts[bound]}, got {value}")
        return moment.strftime(fmt) if fmt else moment.isoformat()
    if data_type == "constrained":
        allowed = [item for item in parts.get("values", "").split(",") if item != ""]
        if value not in allowed:
            raise invalid(f"{label} {name!r} must be one of {', '.join(allowed)}, got {value!r}")
        return value
    if data_type == "string":
        if len(value) > 10000:
            raise invalid(f"{label} {name!r} is too long")
        return value
    raise invalid(f"{label} {name!r} has an unknown data type {data_type!r}")


def merge_options(template: list[dict[str, Any]], submitted: Any, label: str, ssd_id: str) -> list[dict[str, Any]]:
    """The service's options with submitted values applied (by name) and validated."""
    merged = [dict(option, ssd_id=ssd_id) for option in template]
    by_name = {option["name"]: option for option in merged}
    if submitted is not None:
        for index, item in enumerate(as_list(submitted, f"{label}s") or []):
            if not isinstance(item, dict):
                raise bad_request(f"{label} {index + 1} must be an object")
            name = as_str(item.get("name"), f"{label} {index + 1}.name")
            if name not in by_name:
                raise invalid(f"Unknown {label.lower()} {name!r} (known: {', '.join(by_name)})")
            by_name[name]["value"] = item.get("value")
    for option in merged:
        option["value"] = check_option_value(option, option["value"], label)
    return merged


def _option_values(options: list[dict[str, Any]]) -> dict[str, Any]:
    """Typed values for the service's option validations."""
    values: dict[str, Any] = {}
    for option in options:
        value = option["value"]
        if value is None:
            values[option["name"]] = None
        elif option["data_type"] == "boolean":
            values[option["name"]] = value == "true"
        elif option["data_type"] == "datetime":
            fmt = _validation_parts(option.get("validation")).get("format")
            values[option["name"]] = _parse_option_datetime(value, fmt, option["name"])
        else:
            values[option["name"]] = value
    return values


def check_option_rules(spec: dict[str, Any], options: list[dict[str, Any]]) -> None:
    """The service-level option validations (the seeded services use two well-known rules)."""
    values = _option_values(options)
    if spec["ssd_id"] == services.CLASSIFICATION_SSD_ID:
        rules = {rule["expression"]: rule["message"] for rule in spec.get("option_validations") or []}
        latest = values.get("latest_date")
        start, end = values.get("start_date"), values.get("end_date")
        for expression, message in rules.items():
            if expression.startswith("latest_date or") and not latest and start is None:
                raise invalid(message)
            if "start_date <= end_date" in expression and start is not None and end is not None and start > end:
                raise invalid(message)


# -- the process service ------------------------------------------------------------------------------


class Processes:
    """Process, execution, component and log operations for one platform."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.store = platform.store
        self.engine = Engine(platform, region_wkb=self.region_wkb, service_spec=self._service_spec)
        self.engine.recover()

    def start_background(self) -> None:
        self.engine.start()

    def shutdown(self) -> None:
        self.engine.shutdown()

    # -- helpers --------------------------------------------------------------------------------

    @property
    def settings(self) -> Any:
        return self.platform.settings

    def _service_spec(self, service_id: str, *, runnable: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        row = self.store.row("services", service_id)
        if row is None:
            raise not_found("Service", service_id)
        spec = json.loads(row["spec"])
        if runnable and spec["kind"] != "service":
            raise invalid(f"Service {service_id} ({spec['name']}) cannot be run as a process")
        return json.loads(row["doc"]), spec

    def dispatchers(self) -> list[dict[str, Any]]:
        """``extras.dispatchers``: every dispatcher available to processes."""
        return [services.dispatcher_entry(spec) for spec in services.dispatcher_specs()]

    def _process(self, organisation_id: str, process_id: str) -> dict[str, Any]:
        doc = self.store.doc("processes", process_id)
        if doc is None or doc["organisation_id"] != organisation_id:
            raise not_found("Process", process_id)
        return doc

    def state(self, process_id: str) -> dict[str, Any]:
        row = self.store.row("processes", process_id)
        return json.loads(row["state"]) if row is not None else {}

    def process_wire(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = dict(doc)
        executions = self.store.docs("executions", process_id=doc["id"])
        doc["executions"] = [execution_summary(e) for e in executions]
        doc["has_executions"] = "executions" if executions else ""
        doc["has_executions_organisation_id"] = doc["organisation_id"]
        return wire(doc)

    def _template(self, service: dict[str, Any], spec: dict[str, Any], ctx: AuthContext) -> dict[str, Any]:
        user = self.store.doc("users", ctx.user_id) or {}
        now = iso(utcnow())
        options = [dict(option, ssd_id=spec["ssd_id"]) for option in spec["options"]]
        for option in options:
            if option["name"] == "resolution" and option["value"] is None:
                option["value"] = f"{self.settings.resolution_m:g}"
        return {
            "ssd_id": spec["ssd_id"],
            "service_id": service["id"],
            "name": service["name"],
            "inputs": [dict(item, ssd_id=spec["ssd_id"]) for item in spec["inputs"]],
            "options": options,
            "chains": [self._chain(spec, service["id"], [], options)],
            "run_type": "run_once",
            "repeat_count": 1,
            "repeat_start": now,
            "output_storage_period": user.get("default_output_storage_period", 30),
            "dispatchers": [],
        }

    @staticmethod
    def _chain(spec: dict[str, Any], service_id: str, input_ids: list[str],
               options: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "ssd_id": spec["ssd_id"],
            "service_id": service_id,
            "inputs": list(input_ids) or None,
            "outputs": None,
            "options": [{"name": o["name"], "value": o["value"], "data_type": o["data_type"],
                         "validation": o.get("validation")} for o in options],
            "intermediate": False,
        }

    # -- validation -----------------------------------------------------------------------------

    def _inputs(self, organisation_id: str, spec: dict[str, Any], submitted: Any) -> list[dict[str, Any]]:
        items = as_list(submitted, "Process[inputs]", allow_none=True) or []
        result = []
        for template in spec["inputs"]:
            number = template["input"]
            chosen = None
            for item in items:
                if not isinstance(item, dict):
                    raise bad_request("Process[inputs] items must be objects")
                if as_int(item.get("input"), "Process[inputs].input", allow_none=True) == number:
                    chosen = item
                    break
            if chosen is None and len(items) >= number and isinstance(items[number - 1], dict):
                chosen = items[number - 1]
            data_id = as_uuid(chosen.get("id") if chosen else None, f"Input {number} id", allow_none=True)
            if data_id is None:
                raise invalid(f"Input {number} ({template['title']}) has no data item; set it before creating")
            self._check_input_data(organisation_id, data_id, template)
            entry = dict(template, ssd_id=spec["ssd_id"], id=data_id)
            if chosen is not None and "change_trigger" in chosen:
                entry["change_trigger"] = bool(as_bool(chosen["change_trigger"], f"Input {number} change_trigger"))
            result.append(entry)
        return result

    def _check_input_data(self, organisation_id: str, data_id: str, template: dict[str, Any]) -> None:
        number = template["input"]
        doc = self.store.doc("data", data_id)
        if doc is None or doc["organisation_id"] != organisation_id:
            raise invalid(f"Input {number}: data {data_id} not found in this organisation")
        files = self.store.docs("files", data_id=data_id)
        if not files:
            raise invalid(f"Input {number}: data {data_id} ({doc['name']}) has no files")
        for f in files:
            if "size" not in f or ("publishable" not in f and "error" not in f):
                raise invalid(f"Input {number}: file {f.get('file_name')} of {doc['name']} has not been "
                              "uploaded and analysed yet")
            if f.get("error"):
                raise invalid(f"Input {number}: file {f.get('file_name')} of {doc['name']} failed analysis: "
                              f"{f.get('description') or 'unknown reason'}")
        allowed = FILE_TYPE_SUBSTITUTIONS.get(template["file_type"], (template["file_type"],))
        if files[0]["file_type"] not in allowed:
            raise invalid(f"Input {number} expects {template['file_type']} but {doc['name']} is "
                          f"{files[0]['file_type']}")

    def region_wkb(self, data_id: str) -> bytes | None:
        """Footprint (lon/lat WKB) of a data item: the union of its files' footprints."""
        import shapely

        rows = self.store.execute("SELECT geometry FROM files WHERE data_id = ? AND geometry IS NOT NULL",
                                  (data_id,))
        geometries = [shapely.from_wkb(bytes(row["geometry"])) for row in rows]
        if not geometries:
            return None
        return shapely.to_wkb(shapely.union_all(geometries))

    def _area_km2(self, inputs: list[dict[str, Any]]) -> float:
        total = 0.0
        for item in inputs:
            for f in self.store.docs("files", data_id=item["id"]):
                area = f.get("area")
                if isinstance(area, (int, float)) and math.isfinite(area):
                    total += float(area)
        return total / 1e6

    def price(self, spec: dict[str, Any], inputs: list[dict[str, Any]], options: list[dict[str, Any]],
              dispatchers: list[dict[str, Any]]) -> float:
        """Credits per execution: base + per-km² rate (scaled by resolution for elevation) + dispatchers."""
        area = self._area_km2(inputs)
        rate = spec["price"]["per_km2"]
        for option in options:
            if option["name"] == "resolution" and option["value"]:
                factor = (self.settings.resolution_m / float(option["value"])) ** 2
                rate *= min(max(factor, 0.04), 25.0)
        total = spec["price"]["base"] + rate * area
        for dispatcher in dispatchers:
            dispatcher_spec = services.spec_by_ssd_id(dispatcher["ssd_id"])
            if dispatcher_spec is not None:
                total += dispatcher_spec["price"]["base"]
        return round(total, 2)

    def _dispatchers(self, submitted: Any) -> list[dict[str, Any]]:
        items = as_list(submitted, "Process[dispatchers]", allow_none=True) or []
        result = []
        for index, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise bad_request(f"Dispatcher {index} must be an object")
            ssd_id = as_uuid(item.get("ssd_id"), f"Dispatcher {index} ssd_id")
            spec = services.spec_by_ssd_id(ssd_id or "")
            if spec is None or spec["kind"] != "dispatcher":
                raise invalid(f"Dispatcher {index}: {ssd_id} is not an available dispatcher")
            entry = services.dispatcher_entry(spec)
            label = f"Dispatcher '{spec['name']}' option"
            # Required dispatcher options are checked at execute time: the SDK adds a dispatcher (PATCH) before
            # it sets its options.
            template = [dict(o, required=False) for o in spec["options"]]
            options = merge_options(template, item.get("options"), label, spec["ssd_id"])
            for option, original in zip(options, spec["options"], strict=True):
                option["required"] = original["required"]
            entry["options"] = options
            if "dispatch_intermediate" in item:
                entry["dispatch_intermediate"] = bool(
                    as_bool(item["dispatch_intermediate"], f"Dispatcher {index} dispatch_intermediate",
                            allow_none=True))
            result.append(entry)
        return result

    def _schedule(self, fields: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
        """Validated schedule fields (current values where not given)."""
        run_type = fields.get("run_type", current.get("run_type", "run_once"))
        if run_type not in RUN_TYPES:
            raise bad_request(f"Process[run_type] must be one of {', '.join(RUN_TYPES)}, got {run_type!r}")
        repeat_count = as_int(fields.get("repeat_count", current.get("repeat_count", 1)), "Process[repeat_count]",
                              minimum=0, maximum=100000)
        start_value = fields.get("repeat_start", current.get("repeat_start"))
        repeat_start = as_datetime(start_value, "Process[repeat_start]", allow_none=True) or utcnow()
        repeat_end = as_datetime(fields.get("repeat_end", current.get("repeat_end")), "Process[repeat_end]",
                                 allow_none=True)
        gap = parse_gap(fields.get("repeat_gap", current.get("repeat_gap")), "Process[repeat_gap]")
        offset = parse_gap(fields.get("repeat_offset", current.get("repeat_offset")), "Process[repeat_offset]")
        if repeat_end is not None and repeat_end < repeat_start:
            raise invalid("Process[repeat_end] must not be before repeat_start")
        if run_type == "run_schedule":
            if not repeat_count:
                raise invalid("A scheduled process needs repeat_count of at least 1")
            if repeat_count > 1 and not gap:
                raise invalid("A scheduled process with repeat_count > 1 needs a repeat_gap")
        storage = as_int(fields.get("output_storage_period", current.get("output_storage_period", 30)),
                         "Process[output_storage_period]", minimum=1, maximum=MAX_OUTPUT_STORAGE_DAYS)
        return {
            "run_type": run_type,
            "repeat_count": 1 if run_type == "run_once" else repeat_count,
            "repeat_start": iso(repeat_start),
            "repeat_end": iso(repeat_end) if repeat_end else None,
            "repeat_gap": gap_wire(gap),
            "repeat_offset": offset_wire(offset),
            "output_storage_period": storage,
        }

    # -- processes ------------------------------------------------------------------------------

    def new(self, ctx: AuthContext, organisation_id: str, service_id: str | None) -> dict[str, Any]:
        ctx.require_org(organisation_id)
        if not service_id:
            raise bad_request("The service_id query parameter is required")
        service_key = as_uuid(service_id, "service_id") or ""
        service, spec = self._service_spec(service_key)
        return self._template(service, spec, ctx)

    def create(self, ctx: AuthContext, organisation_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        ctx.require_role(organisation_id, "create_and_execute_processing_chains")
        given_org = as_uuid(fields.get("organisation_id"), "Process[organisation_id]", allow_none=True)
        if given_org is not None and given_org != organisation_id:
            raise bad_request("Process[organisation_id] does not match the organisation of the path")
        service_id = as_uuid(fields.get("service_id"), "Process[service_id]", allow_none=True)
        ssd_id = as_uuid(fields.get("ssd_id"), "Process[ssd_id]", allow_none=True)
        if service_id is None:
            if ssd_id is None:
                raise bad_request("Process[service_id] (or Process[ssd_id]) is required")
            rows = self.store.execute("SELECT id FROM services WHERE ssd_id = ? ORDER BY created_at DESC", (ssd_id,))
            if not rows:
                raise not_found("Service with ssd_id", ssd_id)
            service_id = rows[0]["id"]
        _, spec = self._service_spec(service_id)
        if ssd_id is not None and ssd_id != spec["ssd_id"]:
            raise invalid(f"Process[ssd_id] {ssd_id} does not belong to service {service_id}")
        name = as_str(fields.get("name"), "Process[name]", allow_empty=False, max_length=1024)
        inputs = self._inputs(organisation_id, spec, fields.get("inputs"))
        options = merge_options(spec["options"], fields.get("options"), "Option", spec["ssd_id"])
        check_option_rules(spec, options)
        dispatchers = self._dispatchers(fields.get("dispatchers"))
        schedule = self._schedule(fields, {})
        now = iso(utcnow())
        process_id = as_uuid(fields.get("id"), "Process[id]", allow_none=True) or str(uuid.uuid4())
        doc = {
            "id": process_id, "created_at": now, "updated_at": now, "organisation_id": organisation_id,
            "ssd_id": spec["ssd_id"], "service_id": service_id, "name": name, "inputs": inputs, "options": options,
            "chains": [self._chain(spec, service_id, [i["id"] for i in inputs], options)],
            **schedule,
            "process_status": "draft", "process_status_at": now, "process_status_changed_by": ctx.user_id,
            "test_run": False, "dispatchers": dispatchers,
            "price": self.price(spec, inputs, options, dispatchers),
            "deletable": None, "non_aggregator_count": None, "aggregator_count": None,
        }
        with self.store.tx():
            if self.store.row("processes", process_id) is not None:
                raise conflict(f"Process {process_id} already exists")
            self.store.insert("processes", doc, organisation_id=organisation_id, state={})
        return self.process_wire(doc)

    def get(self, ctx: AuthContext, organisation_id: str, process_id: str) -> dict[str, Any]:
        ctx.require_org(organisation_id)
        return self.process_wire(self._process(organisation_id, process_id))

    def list(self, ctx: AuthContext, organisation_id: str) -> list[dict[str, Any]]:
        ctx.require_org(organisation_id)
        return [self.process_wire(doc) for doc in self.store.docs("processes", organisation_id=organisation_id)]

    def update(self, ctx: AuthContext, organisation_id: str, process_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        ctx.require_role(organisation_id, "create_and_execute_processing_chains")
        with self.store.tx():
            doc = self._process(organisation_id, process_id)
            if doc["process_status"] == "execute":
                raise conflict(f"Process {process_id} is executing; stop it before changing it")
            _, spec = self._service_spec(doc["service_id"])
            if "name" in fields:
                doc["name"] = as_str(fields["name"], "Process[name]", allow_empty=False, max_length=1024)
            if any(key in fields for key in ("run_type", "repeat_count", "repeat_start", "repeat_end", "repeat_gap",
                                             "repeat_offset", "output_storage_period")):
                doc.update(self._schedule(fields, doc))
            changed_inputs = "inputs" in fields and _input_ids(fields["inputs"]) != _input_ids(doc["inputs"])
            if changed_inputs:
                doc["inputs"] = self._inputs(organisation_id, spec, fields["inputs"])
            if "options" in fields and _option_map(fields["options"]) != _option_map(doc["options"]):
                doc["options"] = merge_options(spec["options"], fields["options"], "Option", spec["ssd_id"])
                check_option_rules(spec, doc["options"])
            if "dispatchers" in fields:
                doc["dispatchers"] = self._dispatchers(fields["dispatchers"])
            doc["chains"] = [self._chain(spec, doc["service_id"], [i["id"] for i in doc["inputs"]], doc["options"])]
            doc["price"] = self.price(spec, doc["inputs"], doc["options"], doc["dispatchers"] or [])
            doc["updated_at"] = iso(utcnow())
            self.store.put("processes", doc)
        return self.process_wire(doc)

    def copy(self, ctx: AuthContext, organisation_id: str, process_id: str) -> dict[str, Any]:
        ctx.require_org(organisation_id)
        doc = self._process(organisation_id, process_id)
        keep = ("ssd_id", "service_id", "name", "inputs", "options", "chains", "run_type", "repeat_count",
                "repeat_start", "repeat_end", "repeat_gap", "repeat_offset", "output_storage_period", "dispatchers")
        template = {key: doc.get(key) for key in keep}
        template["repeat_start"] = iso(utcnow())
        if template["run_type"] == "run_once":
            template["repeat_count"] = 1
        return wire(template)

    def delete(self, ctx: AuthContext, organisation_id: str, process_id: str) -> dict[str, Any]:
        ctx.require_role(organisation_id, "create_and_execute_processing_chains")
        doc = self._process(organisation_id, process_id)
        result = self.process_wire(doc)
        self.engine.cancel_process(process_id)
        with self.store.tx():
            for execution in self.store.docs("executions", process_id=process_id):
                self._delete_execution_rows(execution["id"])
            self.store.delete("processes", id=process_id)
        return result

    def execute(self, ctx: AuthContext, organisation_id: str, process_id: str) -> dict[str, Any]:
        ctx.require_role(organisation_id, "create_and_execute_processing_chains")
        with self.store.tx():
            doc = self._process(organisation_id, process_id)
            if doc["process_status"] == "execute":
                raise conflict(f"Process {process_id} is already executing; stop it or wait for it to finish")
            self._service_spec(doc["service_id"])
            for index, item in enumerate(doc["inputs"], start=1):
                self._check_input_data(organisation_id, item["id"], dict(item, input=index))
                if index == 1 and self.region_wkb(item["id"]) is None:
                    raise invalid(f"Input {index}: data {item['id']} has no geographic footprint to process")
            for dispatcher in doc.get("dispatchers") or []:
                for option in dispatcher.get("options") or []:
                    if option.get("required") and option.get("value") is None:
                        raise invalid(f"Dispatcher '{dispatcher['name']}' option {option['name']!r} is required")
            if doc["run_type"] == "run_schedule" and not doc["repeat_count"]:
                raise invalid("The schedule has no repetitions left; set repeat_count first")
            self.platform_credit_check(organisation_id, float(doc["price"]))
            now = utcnow()
            if doc["run_type"] == "run_once":
                doc["repeat_start"] = iso(now)
                next_run = now
            else:
                start = datetime.fromisoformat(doc["repeat_start"])
                if start < now:
                    doc["repeat_start"] = iso(now)
                    start = now
                next_run = start
            doc["process_status"] = "execute"
            doc["process_status_at"] = iso(now)
            doc["process_status_changed_by"] = ctx.user_id
            doc["updated_at"] = iso(now)
            state = self.state(process_id)
            state["next_run_at"] = iso(next_run)
            state["launching"] = True  # the scheduler leaves this run to us, so it can complete synchronously
            self.store.put("processes", doc, state=state)
        try:
            run_ids = self.engine.launch_due(process_id, claimed=True)
        except ApiError:
            self._release_launch(process_id, cancel=True)
            self.engine.settle(process_id)
            raise
        # A schedule whose first run is later: nothing was launched, so hand the process to the scheduler.
        self._release_launch(process_id)
        response = self.get(ctx, organisation_id, process_id)
        response["process_status"] = "execute"
        for run_id in run_ids:
            self.engine.run_or_submit(run_id)
        return response

    def _release_launch(self, process_id: str, *, cancel: bool = False) -> None:
        """Drop the ``launching`` claim of ``execute`` (and, with ``cancel``, the pending run)."""
        with self.store.tx():
            state = self.state(process_id)
            claimed = state.pop("launching", None)
            if cancel:
                state["next_run_at"] = None
            current = self.store.doc("processes", process_id)
            if current is not None and (claimed or cancel):
                self.store.put("processes", current, state=state)

    def platform_credit_check(self, organisation_id: str, price: float) -> None:
        credit = self.store.doc("credits", organisation_id)
        available = float(credit["any_credits"]) if credit else 0.0
        if available < price:
            raise ApiError(402, f"Insufficient credits: the process costs {price} and {available} are available")

    def stop(self, ctx: AuthContext, organisation_id: str, process_id: str) -> dict[str, Any]:
        ctx.require_role(organisation_id, "create_and_execute_processing_chains")
        with self.store.tx():
            doc = self._process(organisation_id, process_id)
            now = iso(utcnow())
            doc["process_status"] = "stop"
            doc["process_status_at"] = now
            doc["process_status_changed_by"] = ctx.user_id
            doc["updated_at"] = now
            state = self.state(process_id)
            state["next_run_at"] = None
            self.store.put("processes", doc, state=state)
        self.engine.stop_process(process_id, reason="Stopped by the user")
        return self.get(ctx, organisation_id, process_id)

    # -- executions -----------------------------------------------------------------------------

    def _execution(self, organisation_id: str, execution_id: str) -> dict[str, Any]:
        doc = self.store.doc("executions", execution_id)
        if doc is None or doc["organisation_id"] != organisation_id:
            raise not_found("Process execution", execution_id)
        return doc

    def list_executions(self, ctx: AuthContext, organisation_id: str, process_id: str) -> builtins.list[dict[str, Any]]:
        ctx.require_org(organisation_id)
        self._process(organisation_id, process_id)
        return [wire(doc) for doc in self.store.docs("executions", process_id=process_id)]

    def get_execution(self, ctx: AuthContext, organisation_id: str, execution_id: str) -> dict[str, Any]:
        ctx.require_org(organisation_id)
        return wire(self._execution(organisation_id, execution_id))

    def _check_expiry(self, value: Any, label: str) -> str:
        moment = as_datetime(value, label)
        assert moment is not None
        now = utcnow()
        if moment <= now:
            raise invalid(f"{label} must be in the future")
        if moment > now + timedelta(days=MAX_OUTPUT_STORAGE_DAYS):
            raise invalid(f"{label} must be within {MAX_OUTPUT_STORAGE_DAYS} days")
        return iso(moment)

    def update_execution(self, ctx: AuthContext, organisation_id: str, execution_id: str,
                         fields: dict[str, Any]) -> dict[str, Any]:
        ctx.require_role(organisation_id, "create_and_execute_processing_chains")
        with self.store.tx():
            doc = self._execution(organisation_id, execution_id)
            if "delete_expiry" in fields and fields["delete_expiry"] != doc["delete_expiry"]:
                doc["delete_expiry"] = self._check_expiry(fields["delete_expiry"], "ProcessExecution[delete_expiry]")
                doc["updated_at"] = iso(utcnow())
                self.store.put("executions", doc)
        return wire(doc)

    def change_delete_expiry(self, ctx: AuthContext, organisation_id: str, execution_id: str,
                             fields: dict[str, Any]) -> dict[str, Any]:
        ctx.require_role(organisation_id, "create_and_execute_processing_chains")
        self._execution(organisation_id, execution_id)
        expiry = self._check_expiry(fields.get("delete_expiry"), "ProcessExecution.delete_expiry")
        with self.store.tx():
            doc = self._execution(organisation_id, execution_id)
            members = [doc]
            if doc.get("group_id"):
                members = self.store.docs("executions", group_id=doc["group_id"])
            now = iso(utcnow())
            for member in members:
                member["delete_expiry"] = expiry
                member["updated_at"] = now
                self.store.put("executions", member)
        return wire(self._execution(organisation_id, execution_id))

    def delete_execution(self, ctx: AuthContext, organisation_id: str, execution_id: str) -> dict[str, Any]:
        ctx.require_role(organisation_id, "create_and_execute_processing_chains")
        with self.store.tx():
            doc = self._execution(organisation_id, execution_id)
            if doc["progress"] < 100:
                raise conflict(f"Process execution {execution_id} is still running; stop its process first")
            self._delete_execution_rows(execution_id)
        return wire(doc)

    def _delete_execution_rows(self, execution_id: str) -> None:
        """Delete an execution with its components, logs and output data (blobs kept until collected)."""
        with self.store.tx():
            for component in self.store.docs("components", execution_id=execution_id):
                self.store.delete("logs", component_id=component["id"])
            self.store.delete("components", execution_id=execution_id)
            outputs = [row["id"] for row in self.store.rows("data", execution_id=execution_id)]
            self.platform.delete_data_rows(outputs)
            self.store.delete("executions", id=execution_id)

    # -- components and logs --------------------------------------------------------------------

    def list_components(self, ctx: AuthContext, organisation_id: str, execution_id: str) -> builtins.list[dict[str, Any]]:
        ctx.require_org(organisation_id)
        self._execution(organisation_id, execution_id)
        return [wire(doc) for doc in self.store.docs("components", execution_id=execution_id)]

    def _component(self, organisation_id: str, component_id: str) -> dict[str, Any]:
        doc = self.store.doc("components", component_id)
        if doc is None or doc["organisation_id"] != organisation_id:
            raise not_found("Process service execution", component_id)
        return doc

    def get_component(self, ctx: AuthContext, organisation_id: str, component_id: str) -> dict[str, Any]:
        ctx.require_org(organisation_id)
        return wire(self._component(organisation_id, component_id))

    def list_logs(self, ctx: AuthContext, organisation_id: str, component_id: str) -> builtins.list[dict[str, Any]]:
        ctx.require_org(organisation_id)
        self._component(organisation_id, component_id)
        return [wire(doc) for doc in self.store.docs("logs", component_id=component_id)]


def _input_ids(items: Any) -> list[tuple[Any, Any]]:
    if not isinstance(items, list):
        return [("invalid", repr(items))]
    return [(item.get("input"), item.get("id")) if isinstance(item, dict) else ("invalid", repr(item))
            for item in items]


def _option_map(items: Any) -> dict[Any, Any]:
    if not isinstance(items, list):
        return {"invalid": repr(items)}
    return {item.get("name"): item.get("value") if isinstance(item, dict) else repr(item)
            for item in items if isinstance(item, dict)}

