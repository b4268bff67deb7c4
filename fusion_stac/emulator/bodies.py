"""Request bodies: the two styles the platform uses, and strict value coercion.

* flat form keys ``{"Process[name]": "x", "Process[inputs]": [...]}`` for create and update;
* nested ``{"User": {"old_password": ..., "new_password": ...}}`` for actions.

A create/update body may contain read-only and hidden fields (the SDK echoes its whole model), so
handlers pick the fields they accept and ignore the rest. Values are checked strictly: a wrong type is a
400 naming the field, never a 500.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from fusion_stac.emulator.errors import bad_request

_FLAT_KEY = re.compile(r"^(?P<model>[A-Za-z]+)\[(?P<field>[A-Za-z0-9_]+)\]$")


def model_fields(body: Any, model: str, *, required: bool = True) -> dict[str, Any]:
    """Fields of ``model`` from a flat (``Model[field]``) or nested (``{"Model": {...}}``) body."""
    if body is None:
        if required:
            raise bad_request(f"A JSON object with {model}[...] fields is required")
        return {}
    if not isinstance(body, dict):
        raise bad_request(f"The body must be a JSON object, not {type(body).__name__}")
    fields: dict[str, Any] = {}
    nested = body.get(model)
    if nested is not None:
        if not isinstance(nested, dict):
            raise bad_request(f"'{model}' must be a JSON object")
        fields.update(nested)
    for key, value in body.items():
        match = _FLAT_KEY.match(key)
        if match and match.group("model") == model:
            fields[match.group("field")] = value
    if required and not fields:
        raise bad_request(f"The body contains no {model} fields (expected {model}[field] keys or a '{model}' object)")
    return fields


def nested_fields(body: Any, model: str) -> dict[str, Any]:
    """Fields of a nested action body ``{"Model": {...}}`` (flat keys are accepted too)."""
    return model_fields(body, model, required=True)


# -- strict value coercion -------------------------------------------------------------------------


def as_str(value: Any, name: str, *, allow_none: bool = False, allow_empty: bool = True,
           max_length: int = 10000) -> str | None:
    if value is None:
        if allow_none:
            return None
        raise bad_request(f"{name} is required")
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string, not {_json_type(value)}")
    if not allow_empty and not value.strip():
        raise bad_request(f"{name} must not be empty")
    if len(value) > max_length:
        raise bad_request(f"{name} is longer than {max_length} characters")
    if "\x00" in value:
        raise bad_request(f"{name} must not contain NUL characters")
    return value


def as_int(value: Any, name: str, *, allow_none: bool = False, minimum: int | None = None,
           maximum: int | None = None) -> int | None:
    if value is None:
        if allow_none:
            return None
        raise bad_request(f"{name} is required")
    if isinstance(value, bool):
        raise bad_request(f"{name} must be an integer, not a boolean")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        value = int(value)
    if not isinstance(value, int):
        raise bad_request(f"{name} must be an integer, not {_json_type(value)}")
    if minimum is not None and value < minimum:
        raise bad_request(f"{name} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise bad_request(f"{name} must be at most {maximum}")
    return value


def as_decimal(value: Any, name: str, *, allow_none: bool = False) -> Decimal | None:
    if value is None:
        if allow_none:
            return None
        raise bad_request(f"{name} is required")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise bad_request(f"{name} must be a number, not {_json_type(value)}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise bad_request(f"{name} must be a number, got {value!r}") from None
    if not number.is_finite():
        raise bad_request(f"{name} must be a finite number")
    return number


def as_bool(value: Any, name: str, *, allow_none: bool = False) -> bool | None:
    if value is None:
        if allow_none:
            return None
        raise bad_request(f"{name} is required")
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be a boolean, not {_json_type(value)}")
    return value


def as_uuid(value: Any, name: str, *, allow_none: bool = False) -> str | None:
    if value is None:
        if allow_none:
            return None
        raise bad_request(f"{name} is required")
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a UUID string, not {_json_type(value)}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise bad_request(f"{name} is not a valid UUID: {value!r}") from None


def as_datetime(value: Any, name: str, *, allow_none: bool = False) -> datetime | None:
    """An ISO 8601 datetime; a value without offset is taken as UTC."""
    if value is None:
        if allow_none:
            return None
        raise bad_request(f"{name} is required")
    if not isinstance(value, str):
        raise bad_request(f"{name} must be an ISO 8601 datetime string, not {_json_type(value)}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"{name} is not an ISO 8601 datetime: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def as_list(value: Any, name: str, *, allow_none: bool = False) -> list[Any] | None:
    if value is None:
        if allow_none:
            return None
        raise bad_request(f"{name} is required")
    if not isinstance(value, list):
        raise bad_request(f"{name} must be a list, not {_json_type(value)}")
    return value


# -- repeat_gap / repeat_offset ----------------------------------------------------------------------

_RELATIVE_KEYS = ("years", "months", "weeks", "days", "hours", "minutes", "seconds", "microseconds")
_REPR_ITEM = re.compile(r"(\w+)\s*=\s*([+-]?\d+(?:\.\d+)?)")
_TIMEDELTA_STR = re.compile(
    r"^\s*(?:(?P<days>-?\d+) days?,\s*)?(?P<h>\d+):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d+)?)\s*$"
)


def parse_gap(value: Any, name: str) -> dict[str, float] | None:
    """A relative gap as a dict of units, from the JSON-in-string wire format or the SDK's ``str()`` quirk.

    Accepted: ``'{"days": 1}'``, a JSON object, ``'relativedelta(days=+1, hours=+2)'``, ``'1 day, 0:00:00'``,
    ``'0:00:05'``. Absolute fields (``year``, ``month``...) are not supported by the emulator's scheduler.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        parts: Any = value
    elif isinstance(value, str):
        text = value.strip()
        if not text or text in ("null", "None"):
            return None
        if text.startswith("{"):
            try:
                parts = json.loads(text)
            except json.JSONDecodeError:
                raise bad_request(f"{name} is not valid JSON: {value!r}") from None
        elif text.startswith(("relativedelta(", "timedelta(", "datetime.timedelta(")):
            parts = {key: float(number) for key, number in _REPR_ITEM.findall(text)}
        else:
            match = _TIMEDELTA_STR.match(text)
            if match is None:
                raise bad_request(f"{name} must be a JSON object string such as '{{\"days\": 1}}', got {value!r}")
            parts = {
                "days": float(match.group("days") or 0),
                "hours": float(match.group("h")),
                "minutes": float(match.group("m")),
                "seconds": float(match.group("s")),
            }
    else:
        raise bad_request(f"{name} must be a string containing JSON, not {_json_type(value)}")
    if not isinstance(parts, dict):
        raise bad_request(f"{name} must describe an object of time units")
    result: dict[str, float] = {}
    for key, number in parts.items():
        if key not in _RELATIVE_KEYS:
            raise bad_request(f"{name}: unsupported unit {key!r} (use {', '.join(_RELATIVE_KEYS)})")
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise bad_request(f"{name}: {key} must be a number")
        if number:
            result[key] = number
    return result


def gap_to_timedelta(gap: dict[str, float]) -> timedelta:
    """Approximate length of a gap (months as 30 days, years as 365 days) for scheduling."""
    days = gap.get("days", 0) + 7 * gap.get("weeks", 0) + 30 * gap.get("months", 0) + 365 * gap.get("years", 0)
    return timedelta(days=days, hours=gap.get("hours", 0), minutes=gap.get("minutes", 0),
                     seconds=gap.get("seconds", 0), microseconds=gap.get("microseconds", 0))


def gap_wire(gap: dict[str, float] | None) -> str | None:
    """Wire format of a gap: a string containing a JSON object (what the SDK loads)."""
    if not gap:
        return None
    return json.dumps({key: (int(v) if float(v).is_integer() else v) for key, v in gap.items()})


def offset_wire(gap: dict[str, float] | None) -> str | None:
    """Wire format of a TimeDelta: JSON with days, seconds, microseconds."""
    if not gap:
        return None
    delta = gap_to_timedelta(gap)
    return json.dumps({"days": delta.days, "seconds": delta.seconds, "microseconds": delta.microseconds})


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
