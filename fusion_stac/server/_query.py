"""Search parameters and CQL2 filters as SQL over the index's ``items`` table.

The ``cql2`` package parses CQL2 text (and validates CQL2 JSON); the parsed JSON is translated here
into a parameterised SQLite ``WHERE`` clause, so that a search is one indexed query whatever its
filter. Supported: basic CQL2 (``and or not = <> < <= > >= isNull``), advanced comparison
(``like between in``), ``s_intersects`` (bbox pre-test in SQL, exact test with shapely) and
``t_intersects``/``anyinteracts`` on the item's time interval. Properties are the item's columns
(``id``, ``collection``, ``datetime``, ``start_datetime``, ``end_datetime``, ``geometry``) or any of
its ``properties`` (an unknown one is null, as CQL2 asks). Anything else is a :class:`QueryError`
naming the problem (an HTTP 400).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fusion_stac.server._index import canonical_time

__all__ = ["COLUMNS", "QueryError", "SqlWhere", "bbox_sql", "datetime_sql", "filter_sql", "sort_sql"]

#: CQL2 / sortby property names that are columns of the ``items`` table.
COLUMNS = {"id": "id", "collection": "collection", "datetime": "datetime",
           "start_datetime": "start_datetime", "end_datetime": "end_datetime"}
_TIME_COLUMNS = {"datetime", "start_datetime", "end_datetime"}
_COMPARE = {"=": "=", "<>": "<>", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class QueryError(ValueError):
    """A search parameter or filter the server cannot answer (the message names it)."""


@dataclass
class SqlWhere:
    """A ``WHERE`` clause under construction: conjuncts and their parameters."""

    parts: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, sql: str, *params: Any) -> None:
        self.parts.append(sql)
        self.params.extend(params)

    @property
    def sql(self) -> str:
        return " AND ".join(f"({p})" for p in self.parts) or "1"


def _property_sql(name: str) -> str:
    if name.startswith("properties."):
        name = name[len("properties."):]
    if name in COLUMNS:
        return COLUMNS[name]
    if '"' in name or "\\" in name:
        raise QueryError(f"invalid property name {name!r}")
    return f"json_extract(doc, '$.properties.\"{name}\"')"


def bbox_sql(bbox: Sequence[float]) -> tuple[str, list[float]]:
    """Items whose bbox intersects ``bbox`` (``west > east`` crosses the antimeridian; so may items)."""
    if len(bbox) == 6:
        bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]
    if len(bbox) != 4:
        raise QueryError(f"bbox must have 4 or 6 numbers, not {len(bbox)}")
    w, s, e, n = (float(v) for v in bbox)
    if s > n:
        raise QueryError(f"bbox south ({s}) is north of its north ({n})")
    lat = "miny <= ? AND maxy >= ?"
    if w <= e:
        lon = "(minx <= maxx AND minx <= ? AND maxx >= ?) OR (minx > maxx AND (minx <= ? OR maxx >= ?))"
        return f"{lat} AND ({lon})", [n, s, e, w, e, w]
    lon = "(minx <= maxx AND (maxx >= ? OR minx <= ?)) OR minx > maxx"
    return f"{lat} AND ({lon})", [n, s, w, e]


def _time(value: Any, what: str) -> str | None:
    if value in (None, "", ".."):
        return None
    try:
        return canonical_time(str(value))
    except ValueError:
        raise QueryError(f"{what}: {value!r} is not an RFC 3339 date-time") from None


def datetime_sql(start: Any, end: Any) -> tuple[str, list[Any]]:
    """Items whose time interval meets ``[start, end]`` (either end open when ``None``)."""
    lo, hi = _time(start, "datetime"), _time(end, "datetime")
    if lo and hi and lo > hi:
        raise QueryError(f"datetime interval starts ({lo}) after it ends ({hi})")
    parts, params = [], []
    if lo:
        parts.append("end_datetime >= ?")
        params.append(lo)
    if hi:
        parts.append("start_datetime <= ?")
        params.append(hi)
    return " AND ".join(parts) or "1", params


def _geometry(value: Any) -> Any:
    import shapely

    try:
        if isinstance(value, Mapping) and "bbox" in value and "type" not in value:
            return shapely.box(*value["bbox"][:2], *value["bbox"][-2:])
        return shapely.from_geojson(json.dumps(value))
    except Exception as exc:
        raise QueryError(f"invalid geometry in filter: {exc}") from None


class _Translator:
    def __init__(self, geometries: list[Any]) -> None:
        self.params: list[Any] = []
        self.geometries = geometries

    def literal(self, value: Any, time: bool = False) -> str:
        if isinstance(value, Mapping):
            if "timestamp" in value:
                value = _time(value["timestamp"], "timestamp")
            elif "date" in value:
                value = _time(value["date"], "date") if time else str(value["date"])
            elif "interval" in value:
                raise QueryError("an interval is only allowed in a temporal operator")
            elif "property" in value:
                return _property_sql(str(value["property"]))
            else:
                raise QueryError(f"unsupported CQL2 expression {json.dumps(value)[:80]}")
        elif isinstance(value, bool):
            value = int(value)
        elif isinstance(value, str) and time:
            value = _time(value, "timestamp")
        elif not isinstance(value, (int, float, str)) and value is not None:
            raise QueryError(f"unsupported CQL2 value {json.dumps(value)[:80]}")
        self.params.append(value)
        return "?"

    def operand(self, arg: Any, other: Any = None) -> str:
        time = _is_time_property(other)
        if isinstance(arg, Mapping) and ("op" in arg):
            raise QueryError(f"CQL2 operator {arg['op']!r} cannot be used as a value")
        return self.literal(arg, time=time)

    def expr(self, node: Any) -> str:
        if isinstance(node, bool):
            return "1" if node else "0"
        if not isinstance(node, Mapping) or "op" not in node:
            raise QueryError(f"a CQL2 filter must be a boolean expression, not {json.dumps(node)[:80]}")
        op = str(node["op"]).lower() if node["op"] not in ("isNull",) else "isnull"
        args = list(node.get("args") or [])
        if op in ("and", "or"):
            if not args:
                raise QueryError(f"CQL2 {op!r} needs arguments")
            return f" {op.upper()} ".join(f"({self.expr(a)})" for a in args)
        if op == "not":
            return f"NOT ({self.expr(self._one(op, args))})"
        if op in _COMPARE:
            a, b = self._two(op, args)
            return f"{self.operand(a, b)} {_COMPARE[op]} {self.operand(b, a)}"
        if op == "isnull":
            return f"{self.operand(self._one(op, args))} IS NULL"
        if op == "like":
            a, b = self._two(op, args)
            return f"{self.operand(a)} LIKE {self.operand(b)} ESCAPE '\\'"
        if op == "between":
            if len(args) == 2 and isinstance(args[1], list) and len(args[1]) == 2:
                args = [args[0], *args[1]]
            if len(args) != 3:
                raise QueryError("CQL2 'between' takes a value and two bounds")
            v = self.operand(args[0], args[1])
            lo, hi = self.operand(args[1], args[0]), self.operand(args[2], args[0])
            return f"{v} BETWEEN {lo} AND {hi}"
        if op == "in":
            a, values = self._two(op, args)
            if not isinstance(values, list) or not values:
                raise QueryError("CQL2 'in' takes a value and a non-empty list")
            return f"{self.operand(a)} IN ({', '.join(self.operand(v, a) for v in values)})"
        if op in ("s_intersects", "intersects"):
            a, b = self._two(op, args)
            geom = b if _is_property(a, "geometry") else a if _is_property(b, "geometry") else None
            if geom is None:
                raise QueryError("s_intersects needs the 'geometry' property and a geometry")
            shape = _geometry(geom)
            w, s, e, n = shape.bounds
            sql, params = bbox_sql([w, s, e, n])
            self.params.extend(params)
            self.geometries.append(shape)
            self.params.append(len(self.geometries) - 1)
            return f"({sql}) AND fusion_intersects(json_extract(doc, '$.geometry'), ?)"
        if op in ("t_intersects", "anyinteracts"):
            a, b = self._two(op, args)
            interval = b if isinstance(b, Mapping) else a
            if not isinstance(interval, Mapping):
                raise QueryError(f"{op} needs a property and an interval or timestamp")
            if "interval" in interval:
                start, end = [*interval["interval"], None, None][:2]
            else:
                start = end = interval.get("timestamp") or interval.get("date")
            sql, params = datetime_sql(start, end)
            self.params.extend(params)
            return sql
        raise QueryError(f"unsupported CQL2 operator {node['op']!r} (supported: and, or, not, =, <>, <, <=, >, >=, "
                         "isNull, like, between, in, s_intersects, t_intersects)")

    @staticmethod
    def _one(op: str, args: list[Any]) -> Any:
        if len(args) != 1:
            raise QueryError(f"CQL2 {op!r} takes one argument, not {len(args)}")
        return args[0]

    @staticmethod
    def _two(op: str, args: list[Any]) -> tuple[Any, Any]:
        if len(args) != 2:
            raise QueryError(f"CQL2 {op!r} takes two arguments, not {len(args)}")
        return args[0], args[1]


def _is_property(arg: Any, name: str) -> bool:
    return isinstance(arg, Mapping) and arg.get("property") in (name, f"properties.{name}")


def _is_time_property(arg: Any) -> bool:
    return isinstance(arg, Mapping) and str(arg.get("property", "")).removeprefix("properties.") in _TIME_COLUMNS


def filter_sql(expr: Any, lang: str | None, geometries: list[Any]) -> tuple[str, list[Any]]:
    """``(where, params)`` for a CQL2 filter (text or JSON, as ``lang`` says or as it looks); the shapes
    of its spatial tests are appended to ``geometries`` (the SQL names them by position there)."""
    import cql2

    try:
        if isinstance(expr, str):
            text = expr.strip()
            if lang == "cql2-json" or (lang is None and text.startswith("{")):
                parsed = cql2.parse_json(text).to_json()
            else:
                parsed = cql2.parse_text(text).to_json()
        else:
            parsed = cql2.parse_json(json.dumps(expr)).to_json()
    except (ValueError, cql2.ParseError, cql2.ValidationError) as exc:
        raise QueryError(f"invalid CQL2 filter: {str(exc)[:300]}") from None
    t = _Translator(geometries)
    sql = t.expr(parsed)
    return sql, t.params


def sort_sql(sortby: Sequence[Mapping[str, str]] | None) -> str:
    """An ``ORDER BY`` for STAC ``sortby`` (default: newest first, then collection and id)."""
    terms = []
    for s in sortby or ():
        fld = str(s.get("field", "")).strip()
        direction = str(s.get("direction", "asc")).lower()
        if direction not in ("asc", "desc"):
            raise QueryError(f"sortby direction must be 'asc' or 'desc', not {direction!r}")
        if not fld:
            raise QueryError("sortby needs a field")
        terms.append(f"{_property_sql(fld)} {direction.upper()}")
    if not terms:  # newest first; items with a footprint before those without (tables, reports)
        terms = ["datetime DESC", "minx IS NULL"]
    return ", ".join([*terms, "collection ASC", "id ASC"])
