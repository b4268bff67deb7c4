"""List endpoints: ``limit``, ``reverse``, ``search``, ``filter[...]`` and ``last[...]`` paging.

Natural order is oldest first (``created_at``, then ``id``); ``reverse=True`` gives newest first.
The paging cursor is ``{"id": ..., "created_at": ...}`` of the last item returned, sent only when more items
follow; the next page starts strictly after that key, so deleting items between pages skips nothing.

Filters: ``filter[<field>]=v`` (exact) or ``filter[<field>__<modifier>]=v`` with modifiers
``eq ne le lt ge gt begins_with contains not_contains null not_null in between``. Values are typed by the field:
numbers compare numerically, datetimes chronologically (ISO 8601), booleans take ``true``/``false``, UUIDs are
compared case-insensitively, all other strings case-sensitively. Encodings chosen for the cases the platform
leaves open:

* ``in``: a JSON array (``["a","b"]``), a comma-separated list (``a,b``) or the parameter repeated;
* ``between``: two values in any of those forms, inclusive at both ends;
* ``null`` / ``not_null``: value ``true``/``1``/empty applies the test, ``false``/``0`` applies its negation;
* ``contains`` / ``not_contains``: substring for strings, membership for lists (``keywords``).

The starred modifiers of the platform (``ne contains not_contains null not_null in between``) are refused on
key fields (``id``, ``organisation_id`` and, for data and services, ``name``) as the platform does: use ``eq``
or ``begins_with`` there. Unknown fields, modifiers or malformed values are a 400 naming the parameter.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fusion_stac.emulator.errors import bad_request

MODIFIERS: tuple[str, ...] = (
    "eq", "ne", "le", "lt", "ge", "gt", "begins_with", "contains", "not_contains", "null", "not_null", "in", "between",
)
#: Modifiers the platform allows on key fields.
KEY_FIELD_MODIFIERS = frozenset({"eq", "le", "lt", "ge", "gt", "begins_with"})
DEFAULT_LIMIT = 24
MAX_LIMIT = 1000


@dataclass(frozen=True)
class ListSpec:
    """What may be filtered and searched in one kind of list."""

    fields: frozenset[str]
    key_fields: frozenset[str] = frozenset({"id", "organisation_id"})
    search_fields: tuple[str, ...] = ("name",)
    datetime_fields: frozenset[str] = field(default_factory=frozenset)
    uuid_fields: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Condition:
    field: str
    modifier: str
    values: tuple[str, ...]
    parameter: str


@dataclass(frozen=True)
class ListQuery:
    limit: int
    reverse: bool
    search: str | None
    conditions: tuple[Condition, ...]
    last: dict[str, str]


def parse_query(params: Iterable[tuple[str, str]], spec: ListSpec) -> ListQuery:
    """Validate list query parameters (a multi-dict's items) against ``spec``."""
    limit = DEFAULT_LIMIT
    reverse = False
    search: str | None = None
    grouped: dict[str, list[str]] = {}
    last: dict[str, str] = {}
    for key, value in params:
        if key == "limit":
            try:
                limit = int(value)
            except ValueError:
                raise bad_request(f"limit must be an integer, got {value!r}") from None
            if not 1 <= limit <= MAX_LIMIT:
                raise bad_request(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        elif key == "reverse":
            reverse = _parse_bool(value, "reverse")
        elif key == "search":
            search = value.lower() if value.strip() else None
        elif key.startswith("filter[") and key.endswith("]"):
            grouped.setdefault(key[7:-1], []).append(value)
        elif key.startswith("last[") and key.endswith("]"):
            name = key[5:-1]
            if name not in ("id", "created_at"):
                raise bad_request(f"Unknown paging cursor parameter {key!r} (expected last[id] and last[created_at])")
            last[name] = value
    conditions = tuple(_condition(name, values, spec) for name, values in grouped.items())
    if last:
        if "id" not in last:
            raise bad_request("Paging cursor last[...] must include last[id]")
        try:
            last["id"] = str(uuid.UUID(last["id"]))
        except ValueError:
            raise bad_request(f"last[id] is not a valid UUID: {last['id']!r}") from None
        if "created_at" in last:
            _parse_datetime(last["created_at"], "last[created_at]")
    return ListQuery(limit, reverse, search, conditions, last)


def _condition(name: str, values: list[str], spec: ListSpec) -> Condition:
    parameter = f"filter[{name}]"
    field_name, modifier = name, "eq"
    for candidate in sorted(MODIFIERS, key=len, reverse=True):
        suffix = f"__{candidate}"
        if name.endswith(suffix):
            field_name, modifier = name[: -len(suffix)], candidate
            break
    else:
        if "__" in name:
            raise bad_request(f"{parameter}: unknown filter modifier {name.rsplit('__', 1)[1]!r} "
                              f"(use one of {', '.join(MODIFIERS)})")
    if field_name not in spec.fields:
        raise bad_request(f"{parameter}: cannot filter on unknown field {field_name!r}")
    if field_name in spec.key_fields and modifier not in KEY_FIELD_MODIFIERS:
        raise bad_request(f"{parameter}: modifier {modifier!r} is not allowed on key field {field_name!r} "
                          f"(use one of {', '.join(sorted(KEY_FIELD_MODIFIERS))})")
    if modifier in ("in", "between"):
        expanded: list[str] = []
        for value in values:
            expanded.extend(_split_list(value, parameter))
        if modifier == "between" and len(expanded) != 2:
            raise bad_request(f"{parameter}: between needs exactly two values, got {len(expanded)}")
        if modifier == "in" and not expanded:
            raise bad_request(f"{parameter}: in needs at least one value")
        values = expanded
    elif len(values) != 1:
        raise bad_request(f"{parameter} given {len(values)} times")
    return Condition(field_name, modifier, tuple(values), parameter)


def _split_list(value: str, parameter: str) -> list[str]:
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            raise bad_request(f"{parameter}: malformed JSON list {value!r}") from None
        if not isinstance(items, list) or any(isinstance(i, (list, dict)) for i in items):
            raise bad_request(f"{parameter}: expected a JSON list of scalars")
        return [i if isinstance(i, str) else json.dumps(i) for i in items]
    return [part.strip() for part in value.split(",")] if value != "" else []


def apply(items: Sequence[Mapping[str, Any]], query: ListQuery, spec: ListSpec) -> tuple[list[Any], dict | None]:
    """Filter, search, order and page ``items`` (wire documents); returns (page, next cursor or None)."""
    selected = [item for item in items if _matches(item, query, spec)]
    selected.sort(key=_order_key, reverse=query.reverse)
    if query.last:
        cursor = _cursor_key(query.last, items)
        if query.reverse:
            selected = [item for item in selected if _order_key(item) < cursor]
        else:
            selected = [item for item in selected if _order_key(item) > cursor]
    page = selected[: query.limit]
    following = None
    if len(selected) > query.limit and page:
        tail = page[-1]
        following = {"id": tail["id"], "created_at": tail["created_at"]}
    return list(page), following


def _order_key(item: Mapping[str, Any]) -> tuple[str, str]:
    return (_normalise_timestamp(item["created_at"]), item["id"])


def _normalise_timestamp(value: str) -> str:
    return _parse_datetime(value, "created_at").isoformat(timespec="microseconds")


def _cursor_key(last: dict[str, str], items: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    if "created_at" in last:
        return (_parse_datetime(last["created_at"], "last[created_at]").isoformat(timespec="microseconds"), last["id"])
    for item in items:
        if item["id"] == last["id"]:
            return _order_key(item)
    raise bad_request(f"Paging cursor last[id]={last['id']} does not refer to an item of this list")


def _matches(item: Mapping[str, Any], query: ListQuery, spec: ListSpec) -> bool:
    if query.search is not None and not _search_hit(item, query.search, spec):
        return False
    return all(_test(item.get(condition.field), condition, spec) for condition in query.conditions)


def _search_hit(item: Mapping[str, Any], term: str, spec: ListSpec) -> bool:
    for name in spec.search_fields:
        value = item.get(name)
        if isinstance(value, str) and term in value.lower():
            return True
        if isinstance(value, list) and any(isinstance(v, str) and term in v.lower() for v in value):
            return True
    return False


def _test(actual: Any, condition: Condition, spec: ListSpec) -> bool:
    modifier = condition.modifier
    if modifier in ("null", "not_null"):
        wanted = _parse_bool(condition.values[0], condition.parameter) if condition.values[0] != "" else True
        is_null = actual is None or actual == []
        return is_null == wanted if modifier == "null" else (not is_null) == wanted
    if modifier in ("contains", "not_contains"):
        value = condition.values[0]
        if isinstance(actual, list):
            hit = any(_equal(element, value, condition, spec) for element in actual)
        elif isinstance(actual, str):
            hit = value in actual
        elif actual is None:
            hit = False
        else:
            hit = value in json.dumps(actual)
        return hit if modifier == "contains" else not hit
    if modifier == "begins_with":
        return isinstance(actual, str) and actual.startswith(condition.values[0])
    if isinstance(actual, (list, dict)):
        raise bad_request(f"{condition.parameter}: modifier {modifier!r} does not apply to a list field; use contains")
    if modifier == "in":
        return any(_equal(actual, value, condition, spec) for value in condition.values)
    if modifier == "between":
        low, high = (_typed(actual, v, condition, spec) for v in condition.values)
        if actual is None:
            return False
        current = _typed(actual, actual, condition, spec)
        return bool(low <= current <= high)
    if modifier == "eq":
        return _equal(actual, condition.values[0], condition, spec)
    if modifier == "ne":
        return not _equal(actual, condition.values[0], condition, spec)
    if actual is None:
        return False
    target = _typed(actual, condition.values[0], condition, spec)
    current = _typed(actual, actual, condition, spec)
    return bool({"lt": current < target, "le": current <= target, "gt": current > target,
                 "ge": current >= target}[modifier])


def _equal(actual: Any, value: str, condition: Condition, spec: ListSpec) -> bool:
    if actual is None:
        return value in ("null", "None")
    return bool(_typed(actual, actual, condition, spec) == _typed(actual, value, condition, spec))


def _typed(reference: Any, value: Any, condition: Condition, spec: ListSpec) -> Any:
    """``value`` converted to the type of the field (judged by ``reference``, the stored value)."""
    name = condition.field
    if name in spec.datetime_fields:
        if isinstance(value, datetime):
            return value
        return _parse_datetime(str(value), condition.parameter)
    if isinstance(reference, bool):
        return value if isinstance(value, bool) else _parse_bool(str(value), condition.parameter)
    if isinstance(reference, (int, float)):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value)
        except ValueError:
            raise bad_request(f"{condition.parameter}: {value!r} is not a number") from None
    if name in spec.uuid_fields or name == "id" or name.endswith("_id"):
        return str(value).lower()
    return str(value)


def _parse_bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise bad_request(f"{name} must be True or False, got {value!r}")


def _parse_datetime(value: str, name: str) -> datetime:
    text = value.strip()
    if len(text) > 6 and text[-6] == " " and text[-3] == ":":  # an unencoded '+' in a query string became ' '
        text = text[:-6] + "+" + text[-5:]
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request(f"{name}: {value!r} is not an ISO 8601 datetime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
