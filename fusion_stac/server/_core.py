"""The STAC API's logic: a stac-fastapi ``BaseCoreClient`` (and filter client) over the index.

Every answer comes from the local index (:mod:`._index`); the :class:`~._indexer.Indexer` keeps it
up to date. Item and collection documents gain their links and absolute asset hrefs here, from the
request's base URL, so that the index never stores a host name.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import attr
from fastapi import Request
from stac_fastapi.extensions.filter.client import BaseFiltersClient
from stac_fastapi.extensions.sort.client import BaseSortablesClient
from stac_fastapi.types.core import BaseCoreClient
from stac_fastapi.types.errors import InvalidQueryParameter, NotFoundError
from stac_fastapi.types.requests import get_base_url
from stac_fastapi.types.search import BaseSearchPostRequest

from fusion_stac.server._index import SCALAR_TYPES, Index
from fusion_stac.server._query import QueryError, SqlWhere, bbox_sql, datetime_sql, filter_sql, sort_sql

__all__ = ["MAX_LIMIT", "FusionCoreClient", "FusionFiltersClient", "FusionSortablesClient"]

MAX_LIMIT = 1000
GEOJSON = "application/geo+json"
JSON = "application/json"
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
SORTABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/sortables"
SCHEMA_JSON = "application/schema+json"
#: Always-present queryables (beyond the properties the index has seen).
_BASE_QUERYABLES: dict[str, Any] = {
    "id": {"title": "Item id (the file id)", "type": "string"},
    "collection": {"title": "Collection id (data item, execution or group id)", "type": "string"},
    "geometry": {"title": "Footprint", "$ref": "https://geojson.org/schema/Geometry.json"},
    "datetime": {"title": "Acquisition or nominal time", "type": "string", "format": "date-time"},
    "start_datetime": {"type": "string", "format": "date-time"},
    "end_datetime": {"type": "string", "format": "date-time"},
}
#: What ``sortby`` orders by as columns of the index (any other name: the item property of that name).
_BASE_SORTABLES: dict[str, Any] = {k: v for k, v in _BASE_QUERYABLES.items() if k != "geometry"}
_QUERYABLE_PREFIXES = ("fusion:", "proj:", "processing:")
_TIME_PROPERTIES = {"created", "updated", "published", "expires", "unpublished"}


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        offset = int(json.loads(base64.urlsafe_b64decode(padded.encode()))["offset"])
    except (ValueError, KeyError, TypeError):
        raise InvalidQueryParameter(f"invalid paging token {token[:40]!r}") from None
    if offset < 0:
        raise InvalidQueryParameter("invalid paging token (negative offset)")
    return offset


#: What an item keeps when a ``fields`` parameter names no field to include (the fields extension's default).
DEFAULT_FIELDS = ("type", "stac_version", "id", "geometry", "bbox", "links", "assets", "collection",
                  "properties.datetime", "properties.start_datetime", "properties.end_datetime")
#: Always kept when ``include`` names fields: what identifies the item.
IDENTITY_FIELDS = ("type", "stac_version", "id", "collection")


def _apply_fields(item: dict[str, Any], include: set[str], exclude: set[str], everything: bool = False) -> dict[str, Any]:
    """The fields extension: with ``include``, the item's identity plus those fields; without, the whole
    item (``everything``: only fields to exclude were named) or the default set; then ``exclude`` removed
    (a field both included and excluded is kept, and so is an included field inside an excluded one)."""

    def pick(doc: Any, path: list[str]) -> Any:
        for part in path:
            if not isinstance(doc, dict) or part not in doc:
                return _MISSING
            doc = doc[part]
        return doc

    if include:
        wanted = [*IDENTITY_FIELDS, *sorted(include)]
    elif everything:
        wanted = list(item)
    else:
        wanted = list(DEFAULT_FIELDS)
    out: dict[str, Any] = {}
    for name in wanted:
        if name in exclude and name not in include:
            continue
        path = name.split(".")
        value = pick(item, path)
        if value is _MISSING:
            continue
        target = out
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    for name in exclude - include:
        if any(kept.startswith(name + ".") for kept in include):
            continue  # the included field inside it is more specific
        path = name.split(".")
        parent = pick(out, path[:-1]) if len(path) > 1 else out
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
    return out


_MISSING = object()


@attr.s
class FusionCoreClient(BaseCoreClient):
    """Collections and search over an :class:`Index`; ``before`` runs first (a refresh if one is due)."""

    index: Index = attr.ib(default=None)
    before: Callable[[], None] = attr.ib(default=lambda: None)

    # -- documents -----------------------------------------------------------------------------
    def _item(self, text_or_doc: str | dict[str, Any], base: str) -> dict[str, Any]:
        item = json.loads(text_or_doc) if isinstance(text_or_doc, str) else text_or_doc
        cid = item.get("collection")
        for asset in (item.get("assets") or {}).values():
            href = asset.get("href", "")
            if href.startswith("/"):
                asset["href"] = base + href
        item["links"] = [
            {"rel": "self", "type": GEOJSON, "href": f"{base}/collections/{cid}/items/{item['id']}"},
            {"rel": "parent", "type": JSON, "href": f"{base}/collections/{cid}"},
            {"rel": "collection", "type": JSON, "href": f"{base}/collections/{cid}"},
            {"rel": "root", "type": JSON, "href": f"{base}/"},
        ]
        return item

    def _collection(self, doc: dict[str, Any], base: str) -> dict[str, Any]:
        cid = doc["id"]
        doc["links"] = [
            {"rel": "self", "type": JSON, "href": f"{base}/collections/{cid}"},
            {"rel": "parent", "type": JSON, "href": f"{base}/"},
            {"rel": "root", "type": JSON, "href": f"{base}/"},
            {"rel": "items", "type": GEOJSON, "href": f"{base}/collections/{cid}/items"},
            {"rel": QUERYABLES_REL, "type": SCHEMA_JSON, "href": f"{base}/collections/{cid}/queryables"},
            {"rel": SORTABLES_REL, "type": SCHEMA_JSON, "href": f"{base}/collections/{cid}/sortables"},
        ]
        return doc

    @staticmethod
    def _base(request: Request) -> str:
        return get_base_url(request).rstrip("/")

    # -- core endpoints -------------------------------------------------------------------------
    def landing_page(self, **kwargs: Any) -> Any:
        page = super().landing_page(**kwargs)
        page["links"].append({"rel": SORTABLES_REL, "type": SCHEMA_JSON, "title": "Sortables available for this Catalog",
                              "href": f"{self._base(kwargs['request'])}/sortables"})
        return page

    def all_collections(self, **kwargs: Any) -> Any:
        self.before()
        base = self._base(kwargs["request"])
        collections = [self._collection(c, base) for c in self.index.collections()]
        return {"collections": collections, "links": [
            {"rel": "self", "type": JSON, "href": f"{base}/collections"},
            {"rel": "parent", "type": JSON, "href": f"{base}/"},
            {"rel": "root", "type": JSON, "href": f"{base}/"},
        ]}

    def get_collection(self, collection_id: str, **kwargs: Any) -> Any:
        self.before()
        doc = self.index.collection(collection_id)
        if doc is None:
            raise NotFoundError(f"no collection {collection_id!r}")
        return self._collection(doc, self._base(kwargs["request"]))

    def get_item(self, item_id: str, collection_id: str, **kwargs: Any) -> Any:
        self.before()
        doc = self.index.item(collection_id, item_id)
        if doc is None:
            raise NotFoundError(f"no item {item_id!r} in collection {collection_id!r}")
        return self._item(doc, self._base(kwargs["request"]))

    def item_collection(self, collection_id: str, bbox: Any = None, datetime: Any = None, limit: int = 10,
                        token: str | None = None, **kwargs: Any) -> Any:
        self.before()
        if self.index.collection(collection_id) is None:
            raise NotFoundError(f"no collection {collection_id!r}")
        request: Request = kwargs["request"]
        return self._search(request, collections=[collection_id], bbox=bbox, datetime=datetime, limit=limit,
                            token=token, filter_expr=kwargs.get("filter_expr"), filter_lang=kwargs.get("filter_lang"),
                            sortby=kwargs.get("sortby"), fields=kwargs.get("fields"), method="GET",
                            body=None, collection_items=True)

    def get_search(self, collections: list[str] | None = None, ids: list[str] | None = None, bbox: Any = None,
                   intersects: Any = None, datetime: str | None = None, limit: int | None = 10,
                   **kwargs: Any) -> Any:
        self.before()
        if isinstance(intersects, str):
            try:
                intersects = json.loads(intersects)
            except ValueError:
                raise InvalidQueryParameter("intersects must be a GeoJSON geometry") from None
        return self._search(kwargs["request"], collections=collections, ids=ids, bbox=bbox, intersects=intersects,
                            datetime=datetime, limit=limit, token=kwargs.get("token"),
                            filter_expr=kwargs.get("filter_expr"), filter_lang=kwargs.get("filter_lang"),
                            sortby=kwargs.get("sortby"), fields=kwargs.get("fields"), method="GET", body=None)

    def post_search(self, search_request: BaseSearchPostRequest, **kwargs: Any) -> Any:
        self.before()
        r = search_request
        body = r.model_dump(mode="json", by_alias=True, exclude_none=True)
        sortby = [s.model_dump(mode="json") if hasattr(s, "model_dump") else dict(s)
                  for s in (getattr(r, "sortby", None) or [])]
        fields = getattr(r, "fields", None) if "fields" in r.model_fields_set else None
        fields_list: list[str] | None = None
        if fields is not None:
            fields_list = [*(fields.include or ()), *(f"-{x}" for x in (fields.exclude or ()))]
            if "include" in fields.model_fields_set and not fields.include:
                fields_list.append("+")  # include given, and empty: the default set, not everything
        intersects = r.intersects.model_dump(mode="json", exclude_none=True) if r.intersects is not None else None
        return self._search(kwargs["request"], collections=r.collections, ids=r.ids, bbox=r.bbox,
                            intersects=intersects, datetime=r.datetime, limit=r.limit, token=getattr(r, "token", None),
                            filter_expr=getattr(r, "filter_expr", None), filter_lang=getattr(r, "filter_lang", None),
                            sortby=sortby, fields=fields_list, method="POST", body=body)

    # -- search --------------------------------------------------------------------------------
    def _search(self, request: Request, *, collections: Sequence[str] | None = None, ids: Sequence[str] | None = None,
                bbox: Sequence[float] | None = None, intersects: Mapping[str, Any] | None = None,
                datetime: Any = None, limit: int | None = 10, token: str | None = None, filter_expr: Any = None,
                filter_lang: str | None = None, sortby: Any = None, fields: Sequence[str] | None = None,
                method: str, body: dict[str, Any] | None, collection_items: bool = False) -> dict[str, Any]:
        base = self._base(request)
        if bbox and intersects:
            raise InvalidQueryParameter("bbox and intersects are mutually exclusive: give one of them")
        limit = max(1, min(int(limit or 10), MAX_LIMIT))
        offset = _decode_token(token)
        where = SqlWhere()
        geometries: list[Any] = []
        try:
            if collections:
                where.add(f"collection IN ({','.join('?' * len(collections))})", *collections)
            if ids:
                where.add(f"id IN ({','.join('?' * len(ids))})", *ids)
            if bbox:
                sql, params = bbox_sql(list(bbox))
                where.add(sql, *params)
            if datetime:
                start, end = _interval(datetime)
                sql, params = datetime_sql(start, end)
                where.add(sql, *params)
            if intersects:
                sql, params = filter_sql({"op": "s_intersects", "args": [
                    {"property": "geometry"}, dict(intersects)]}, "cql2-json", geometries)
                where.add(sql, *params)
            if filter_expr:
                sql, params = filter_sql(filter_expr, filter_lang, geometries)
                where.add(sql, *params)
            order = sort_sql(_sortby(sortby))
        except QueryError as exc:
            raise InvalidQueryParameter(str(exc)) from None
        con = self.index.connect()
        if geometries:
            _register_intersects(con, geometries)
        import sqlite3

        try:
            texts = self.index.query(where.sql, where.params, order, limit + 1, offset)
        except sqlite3.Error as exc:
            raise InvalidQueryParameter(f"the search could not be answered: {exc}") from None
        more_pages = len(texts) > limit
        features = [self._item(t, base) for t in texts[:limit]]
        if fields is not None:
            include, exclude = _fields(fields)
            everything = bool(exclude) and not include and "+" not in fields
            features = [_apply_fields(f, include, exclude, everything) for f in features]
        self_href = str(request.url)
        links: list[dict[str, Any]] = [{"rel": "root", "type": JSON, "href": f"{base}/"}]
        if collection_items and collections:
            links.append({"rel": "collection", "type": JSON, "href": f"{base}/collections/{collections[0]}"})
        if method == "GET":
            links.append({"rel": "self", "type": GEOJSON, "href": self_href})
        if more_pages:
            next_token = _encode_token(offset + limit)
            if method == "GET":
                query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                query.append(("token", next_token))
                links.append({"rel": "next", "type": GEOJSON, "method": "GET",
                              "href": f"{str(request.url).split('?', 1)[0]}?{urlencode(query)}"})
            else:
                links.append({"rel": "next", "type": GEOJSON, "method": "POST", "href": f"{base}/search",
                              "body": {**(body or {}), "token": next_token}, "merge": False})
        return {"type": "FeatureCollection", "features": features, "links": links,
                "numberReturned": len(features)}


def _register_intersects(con: Any, geometries: list[Any]) -> None:
    import shapely

    shapes = list(geometries)
    for g in shapes:
        shapely.prepare(g)

    def intersects(geometry: str | None, index: int) -> int:
        if geometry is None:
            return 0
        try:
            return int(shapes[int(index)].intersects(shapely.from_geojson(geometry)))
        except Exception:
            return 0

    con.create_function("fusion_intersects", 2, intersects, deterministic=True)


def _interval(value: Any) -> tuple[Any, Any]:
    if isinstance(value, (tuple, list)):
        return (value[0], value[1]) if len(value) == 2 else (value[0], value[0])
    if hasattr(value, "isoformat"):
        return value, value
    text = str(value)
    if "/" in text:
        start, end = text.split("/", 1)
        return start, end
    return text, text


def _sortby(sortby: Any) -> list[dict[str, str]]:
    out = []
    for s in sortby or ():
        if isinstance(s, str):
            s = s.strip()
            direction = "desc" if s.startswith("-") else "asc"
            out.append({"field": s.lstrip("+-"), "direction": direction})
        else:
            out.append({"field": str(s.get("field")), "direction": str(s.get("direction", "asc"))})
    return out


def _fields(fields: Sequence[str] | None) -> tuple[set[str], set[str]]:
    include, exclude = set(), set()
    for f in fields or ():
        f = f.strip()
        if f.startswith("-"):
            exclude.add(f[1:])
        elif f.lstrip("+"):
            include.add(f.lstrip("+"))
    return include, exclude


def _schema(request: Request, title: str, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": str(request.url),
        "type": "object",
        "title": title,
        "properties": props,
        "additionalProperties": True,
    }


def _known(index: Index, collection_id: str | None) -> None:
    if collection_id is not None and index.collection(collection_id) is None:
        raise NotFoundError(f"no collection {collection_id!r}")


def _property_entry(name: str, kind: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": kind}
    if name in _TIME_PROPERTIES:
        entry["format"] = "date-time"
    return entry


@attr.s
class FusionFiltersClient(BaseFiltersClient):
    """``/queryables``: the item columns plus every ``fusion:``, ``proj:`` and ``processing:`` property
    (and the other date-time properties) the index has seen; per collection, those of its items."""

    index: Index = attr.ib(default=None)
    before: Callable[[], None] = attr.ib(default=lambda: None)

    def get_queryables(self, collection_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        self.before()
        _known(self.index, collection_id)
        props: dict[str, Any] = dict(_BASE_QUERYABLES)
        for name, kind in self.index.property_types(collection_id).items():
            if name not in props and (name.startswith(_QUERYABLE_PREFIXES) or name in _TIME_PROPERTIES):
                props[name] = _property_entry(name, kind)
        title = "Queryables of the Fusion Platform STAC API" + (f", collection {collection_id}" if collection_id else "")
        return _schema(kwargs["request"], title, props)


@attr.s
class FusionSortablesClient(BaseSortablesClient):
    """``/sortables``: what ``sortby`` orders by, i.e. the item columns of the index (id, collection and
    the times) and every item property with a single value (string, number, integer, boolean) the
    index has seen; per collection, those of its items. (A sort by an array or object would order
    by its JSON text: not listed.)"""

    index: Index = attr.ib(default=None)
    before: Callable[[], None] = attr.ib(default=lambda: None)

    def _sortables(self, request: Request, collection_id: str | None) -> dict[str, Any]:
        self.before()
        _known(self.index, collection_id)
        props: dict[str, Any] = dict(_BASE_SORTABLES)
        for name, kind in self.index.property_types(collection_id).items():
            if name not in props and kind in SCALAR_TYPES:
                props[name] = _property_entry(name, kind)
        title = "Sortables of the Fusion Platform STAC API" + (f", collection {collection_id}" if collection_id else "")
        return _schema(request, title, props)

    def get_sortables(self, request: Request | None = None, **kwargs: Any) -> dict[str, Any]:
        assert request is not None
        return self._sortables(request, None)

    def get_collection_sortables(self, collection_id: str, request: Request | None = None,
                                 **kwargs: Any) -> dict[str, Any]:
        assert request is not None
        return self._sortables(request, collection_id)
