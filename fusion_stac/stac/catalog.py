"""Open the Fusion Platform as a lazy pystac catalog, search it, and export static copies.

* :func:`open_catalog` — a ``pystac.Catalog`` (or ``Collection``) whose children and items are
  built on demand through a :class:`~fusion_stac.stac.io.FusionStacIO` attached to its root;
* :func:`search` — items across organisations, pushing names, ids and time to the API listings
  and filtering the rest (bbox, datetime, text, properties) locally;
* :func:`export_catalog` — a self-contained static catalog written atomically, its assets linked,
  downloaded (concurrently, size- and checksum-verified) or pointed at an asset gateway.
"""

from __future__ import annotations

import contextlib
import copy as copy_module
import hashlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import pystac

from fusion_stac import _urls
from fusion_stac.errors import FusionError, NotFoundError, ValidationError
from fusion_stac.models import DataFile, ProcessExecution, parse_datetime
from fusion_stac.stac import mapping
from fusion_stac.stac._objects import FusionCatalog, FusionCollection
from fusion_stac.stac.bbox import bbox_intersects, check_bbox
from fusion_stac.stac.io import (
    ROOT_HREF,
    AssetHrefs,
    FusionStacIO,
    execution_href,
    gateway_asset_href,
    group_href,
    organisation_href,
    parse_stac_href,
    process_href,
    processes_href,
    upload_href,
    uploads_href,
)

__all__ = ["ASSET_MODES", "GDAL_GET_ONLY", "export_catalog", "gateway_asset_href", "open_catalog", "resolve_href",
           "search"]

logger = logging.getLogger(__name__)

Progress = Callable[[float], None]
AssetMode = Literal["link", "download", "gateway"]
#: What :func:`export_catalog` can make of asset hrefs.
ASSET_MODES: tuple[str, ...] = ("link", "download", "gateway")

#: GDAL settings for reading pre-signed URLs (``asset_hrefs="signed"``), which answer GET only:
#: ``with rasterio.Env(**GDAL_GET_ONLY): odc.stac.load(items, ...)``.
GDAL_GET_ONLY: dict[str, str] = {"CPL_VSIL_CURL_USE_HEAD": "NO", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


# ==================================================================================================
# open_catalog


def resolve_href(client: Any, path: str | None = None, *, seen: list[Any] | None = None) -> str:
    """The STAC href of the node a ``fusion://`` path (ids or names) designates.

    ``None`` is the root; a bare string without ``/`` is an organisation id or name. Executions
    are ids, a group id or ``latest``; an execution that belongs to a group resolves to the group.
    Models fetched on the way are appended to ``seen`` (to spare a catalog asking again).
    Unknown or ambiguous names raise :class:`~fusion_stac.errors.NotFoundError` /
    :class:`~fusion_stac.errors.AmbiguousNameError` naming what was looked for and where.
    """
    if path is None or path in ("", _urls.PREFIX):
        return ROOT_HREF
    if not isinstance(path, str):
        raise ValidationError(f"expected a fusion:// path or an organisation name, got {type(path).__name__}",
                              field="path")
    if "?stac=" in path:
        return parse_stac_href(path).href
    fp = _urls.parse(path if "://" in path or "/" in path else _urls.PREFIX + _urls.quote_segment(path))
    if fp.kind == "root":
        return ROOT_HREF
    org = client.organisation(fp.organisation)
    if seen is not None:
        seen.append(org)
    if fp.section is None:
        return organisation_href(org.id)
    if fp.section == "data":
        raise ValidationError(
            f"{fp.url}: the short form names stored files; open .../uploads/<data> or .../processes/<process> instead",
            field="path")
    if fp.section == "uploads":
        if fp.data is None:
            return uploads_href(org.id)
        if fp.file is not None:
            raise ValidationError(f"{fp.url} is a file; open its data item ({fp.parent.url}) and get_item()",
                                  field="path")
        data = _named(lambda: client.find_data(org.id, fp.data), f"no uploaded data named {fp.data!r} in "
                      f"organisation {org.name!r}")
        return upload_href(org.id, data.id)
    # processes
    if fp.process is None:
        return processes_href(org.id)
    proc = _named(lambda: client.find_process(org.id, fp.process),
                  f"no process named {fp.process!r} in organisation {org.name!r}")
    if seen is not None:
        seen.append(proc)
    if fp.execution is None and fp.run is None:
        return process_href(org.id, proc.id)
    if fp.component is not None:
        raise ValidationError(f"{fp.url}: open_catalog goes down to an execution; use get_items() below it",
                              field="path")
    # ``latest`` is the whole latest run; ``latest/{member}`` one of its executions (a slice: its group)
    ex = _execution(client, org.id, proc, _urls.LATEST if fp.run and fp.execution is None else fp.execution or "")
    if fp.run and fp.execution is not None:
        ex = _run_member(client, org.id, proc, fp.execution)
    if isinstance(ex, str):  # a group id
        return group_href(org.id, proc.id, ex)
    if ex.group_id is not None:
        return group_href(org.id, proc.id, ex.group_id)
    return execution_href(org.id, proc.id, ex.id)


def _run_member(client: Any, org_id: str, proc: Any, segment: str) -> ProcessExecution:
    """One execution of the latest run: its id, ``slice-{i}``, ``aggregator[-{i}]`` or ``execution``."""
    latest = _named(lambda: client.latest_execution(org_id, proc.id), f"process {proc.name!r} has no executions yet")
    members = [latest]
    if latest.group_id is not None:
        slices, aggregators = client.group_executions(org_id, proc.id, latest.group_id)
        members = [*slices, *aggregators]
    wanted = _urls.parse_member(segment)
    for ex in members:
        name = _urls.member_name(ex.group_index, ex.group_count) if ex.group_id else None
        if (ex.id == segment.lower() or (segment == _urls.SINGLE_MEMBER and ex.group_id is None)
                or (wanted is not None and name is not None and name.startswith(wanted[0] + "-")
                    and (wanted[1] is None or ex.group_index == wanted[1]))):
            return ex
    raise NotFoundError(f"the latest run of process {proc.name!r} has no execution {segment!r}", status=404,
                        path=_urls.run_url(org_id, proc.id, segment))


def _named(lookup: Callable[[], Any], message: str) -> Any:
    try:
        return lookup()
    except NotFoundError as exc:
        raise NotFoundError(message, status=404, path=exc.path) from exc


def _execution(client: Any, org_id: str, proc: Any, segment: str) -> ProcessExecution | str:
    where = f"process {proc.name!r}"
    if segment == _urls.LATEST:
        return _named(lambda: client.latest_execution(org_id, proc.id), f"{where} has no executions yet")
    if not _urls.is_uuid(segment):
        raise NotFoundError(f"no execution {segment!r} of {where}: give an execution id, a group id or 'latest'",
                            status=404, path=_urls.process_url(org_id, proc.id, segment))
    segment = _urls.normalise_uuid(segment)
    try:
        ex = client.get_execution(org_id, segment)
    except NotFoundError:
        members = list(client.iter_executions(org_id, proc.id, group_id=segment))
        if members:
            return segment
        raise NotFoundError(f"{where} has no execution or group {segment}", status=404,
                            path=_urls.process_url(org_id, proc.id, segment)) from None
    if ex.process_id and ex.process_id != proc.id:
        raise NotFoundError(f"execution {segment} belongs to another process, not {where}", status=404,
                            path=_urls.process_url(org_id, proc.id, segment))
    return ex


def open_catalog(
    client: Any,
    path: str | None = None,
    *,
    asset_hrefs: AssetHrefs = "fusion",
    gateway_url: str | None = None,
    read_headers: bool = True,
    include_intermediate: bool = False,
) -> pystac.Catalog:
    """The Fusion Platform (or the node at ``path``) as a lazily resolved pystac catalog.

    ``path`` is ``None`` (every organisation), an organisation name or id, or a ``fusion://`` path
    down to an execution (names or ids; ``latest``): ``fusion://Demo Org/processes/Thames/latest``.
    Data items and executions open as ``pystac.Collection``. Browsing (``get_children``,
    ``get_items(recursive=True)``, ``get_item``) makes API requests only for what it visits; the
    catalog caches them, so re-open it to see new data.

    ``asset_hrefs``: ``"fusion"`` (``fusion://`` files), ``"signed"`` (pre-signed ``https`` URLs that
    expire) or ``"gateway"`` (never-expiring ``{gateway_url}/assets/{org}/{data}/{file}`` links that
    GDAL, odc-stac and stackstac read as they are; see :func:`search`).
    """
    gateway = _asset_gateway(client, asset_hrefs, gateway_url)
    seen: list[Any] = []
    href = resolve_href(client, path, seen=seen)
    io = FusionStacIO(client, asset_hrefs=asset_hrefs, read_headers=read_headers,
                      include_intermediate=include_intermediate, root_href=href, gateway_url=gateway)
    io.seed(seen)
    kind = parse_stac_href(href).kind
    cls: type[pystac.Catalog] = FusionCatalog if kind == "catalog" else FusionCollection
    catalog = cls.from_file(href, stac_io=io)
    # The node opened is the root of the StacIO's tree. pystac recognises that by comparing the root
    # link's href with the one opened, after normalising only one of them, and "fusion://?stac=catalog"
    # normalises to "fusion:?stac=catalog": without this, the whole platform's root link stays a
    # string that every copy pystac saves would keep (normalize_and_save, full_copy).
    catalog.set_root(catalog)
    return catalog


def stac_io_of(obj: pystac.STACObject) -> FusionStacIO:
    """The :class:`FusionStacIO` behind a catalog, collection or item opened by this module."""
    root = obj.get_root() if not isinstance(obj, pystac.Catalog) else obj.get_root() or obj
    io = getattr(root, "_stac_io", None)
    if not isinstance(io, FusionStacIO):
        raise ValidationError("this STAC object was not opened with fusion_stac.open_catalog", field="catalog")
    return io


# ==================================================================================================
# search

Interval = tuple[datetime | None, datetime | None]


def _parse_interval(value: Any) -> Interval | None:
    """``"a/b"`` (``..`` or empty for open ends), one datetime, a ``(start, end)`` pair, or ``None``."""
    if value is None:
        return None

    def one(v: Any, end: bool) -> datetime | None:
        if v is None or v in ("", ".."):
            return None
        if isinstance(v, datetime):
            return v if v.tzinfo else v.replace(tzinfo=timezone.utc)
        text = str(v).strip()
        if len(text) == 10:  # a date: the whole day
            text += "T23:59:59.999999+00:00" if end else "T00:00:00+00:00"
        return parse_datetime(text)

    try:
        if isinstance(value, (tuple, list)):
            if len(value) != 2:
                raise ValueError("a datetime interval has two ends")
            start, end = one(value[0], False), one(value[1], True)
        elif isinstance(value, datetime):
            start = end = one(value, False)
        else:
            text = str(value)
            if "/" in text:
                a, b = text.split("/", 1)
                start, end = one(a, False), one(b, True)
            else:
                start, end = one(text, False), one(text, True)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"datetime {value!r} is not a datetime or an 'a/b' interval: {exc}",
                              field="datetime") from exc
    if start and end and start > end:
        raise ValidationError(f"datetime interval {value!r} ends before it starts", field="datetime")
    return (start, end)


def _overlaps(interval: Interval, start: datetime | None, end: datetime | None) -> bool:
    lo, hi = interval
    if start is None:
        if end is None:
            return True
        start = end
    elif end is None:
        end = start
    return (hi is None or start <= hi) and (lo is None or end >= lo)


def _item_interval(props: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    s = props.get("start_datetime") or props.get("datetime")
    e = props.get("end_datetime") or props.get("datetime")
    return (parse_datetime(s) if s else None, parse_datetime(e) if e else None)


def _bbox_intersects(query: Sequence[float], box: Sequence[float] | None) -> bool:
    return bbox_intersects(query, box)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a is not None and a < b,
    "le": lambda a, b: a is not None and a <= b,
    "gt": lambda a, b: a is not None and a > b,
    "ge": lambda a, b: a is not None and a >= b,
    "in": lambda a, b: a in b,
    "contains": lambda a, b: a is not None and b in a,
}


def _check_filter(filter: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Normalise ``{prop: value}`` / ``{prop: {op: value}}`` to ``{prop: {op: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, cond in (filter or {}).items():
        if isinstance(cond, Mapping):
            unknown = set(cond) - set(_OPS)
            if unknown:
                raise ValidationError(f"filter on {key!r}: unknown operator(s) {sorted(unknown)}; "
                                      f"use {', '.join(_OPS)}", field="filter")
            out[key] = dict(cond)
        else:
            out[key] = {"eq": cond}
    return out


def _matches(item: Mapping[str, Any], conditions: Mapping[str, Mapping[str, Any]]) -> bool:
    props = item.get("properties") or {}
    for key, cond in conditions.items():
        value = item.get(key) if key in ("id", "collection") else props.get(key)
        for op, expected in cond.items():
            try:
                if not _OPS[op](value, expected):
                    return False
            except TypeError:
                return False
    return True


def _pushed(conditions: Mapping[str, Mapping[str, Any]], key: str) -> set[str] | None:
    """Ids an equality/``in`` filter pins a property to (to prune listings before walking them)."""
    cond = conditions.get(key) or {}
    if "eq" in cond:
        return {str(cond["eq"])}
    if "in" in cond:
        return {str(v) for v in cond["in"]}
    return None


def search(
    client: Any,
    bbox: Sequence[float] | None = None,
    datetime: Any = None,
    text: str | None = None,
    collections: Iterable[str] | None = None,
    filter: Mapping[str, Any] | None = None,
    *,
    organisation: str | None = None,
    uploads: bool = True,
    outputs: bool = True,
    asset_hrefs: AssetHrefs = "fusion",
    gateway_url: str | None = None,
    read_headers: bool = True,
    max_items: int | None = None,
) -> pystac.ItemCollection:
    """Items of uploads and process outputs matching every criterion given.

    * ``bbox`` ``[west, south, east, north]`` (lon/lat; west > east crosses 180°): items whose bbox
      intersects it (items without a footprint never match);
    * ``datetime``: an instant, ``"start/end"`` (``..`` open) or a pair; items whose
      ``[start_datetime, end_datetime]`` (or ``datetime``) intersects it;
    * ``text``: case-insensitive, in the name of the data item (uploads) or the process (outputs);
      sent to the API's ``search`` so that only matching listings are walked;
    * ``collections``: collection ids (data, execution or group ids);
    * ``filter``: ``{property: value}`` or ``{property: {op: value}}`` with ops eq, ne, lt, le, gt,
      ge, in, contains, e.g. ``{"fusion:file_type": "GeoTIFF", "gsd": {"le": 30}}``; equality on
      ``fusion:data_id`` / ``fusion:process_id`` / ``fusion:execution_id`` / ``fusion:group_id``
      prunes the listings too.

    Executions still running contribute no items. Items come back with their root set to a lazy
    catalog, so ``item.get_collection()`` works.

    ``asset_hrefs="gateway"`` links every asset to an asset gateway,
    ``{gateway}/assets/{org}/{data}/{file}`` (previews ``.../preview``), which redirects each read
    to a freshly signed URL: odc-stac, stackstac and GDAL read them with no configuration, for as
    long as the gateway runs. ``gateway_url`` names one (``fusion-stac serve``'s URL); without it,
    this process starts ``fusion-stac serve`` in the background on a free loopback port, once,
    logged in as ``client`` (it stops when the interpreter exits; dask workers on this machine
    reach it too).
    """
    if bbox is not None:
        if isinstance(bbox, (str, bytes)) or not all(isinstance(v, (int, float)) for v in bbox):
            raise ValidationError(f"bbox must be [west, south, east, north], got {bbox!r}", field="bbox")
        try:
            bbox = list(check_bbox(bbox))
        except ValueError as exc:
            raise ValidationError(str(exc), field="bbox") from None
    interval = _parse_interval(datetime)
    conditions = _check_filter(filter)
    wanted = {str(c) for c in collections} if collections is not None else None
    needle = text.casefold() if text else None

    if organisation is not None:
        org_ids = [client.organisation(organisation).id]
    else:
        org_ids = list(client.user.organisation_ids)
    root_href = organisation_href(org_ids[0]) if len(org_ids) == 1 else ROOT_HREF
    gateway = _asset_gateway(client, asset_hrefs, gateway_url)
    io = FusionStacIO(client, asset_hrefs=asset_hrefs, read_headers=read_headers, root_href=root_href,
                      gateway_url=gateway)
    pin_data = _pushed(conditions, "fusion:data_id")
    pin_process = _pushed(conditions, "fusion:process_id")
    pin_execution = _pushed(conditions, "fusion:execution_id")
    pin_group = _pushed(conditions, "fusion:group_id")

    hrefs: list[str] = []
    for org_id in org_ids:
        if uploads and pin_process is None and pin_execution is None and pin_group is None:
            listed = list(client.iter_data(org_id, search=text)) if text else io.uploads(org_id)
            for data in listed:
                if needle and needle not in (data.name or "").casefold():
                    continue
                if wanted is not None and data.id not in wanted:
                    continue
                if pin_data is not None and data.id not in pin_data:
                    continue
                box = mapping._valid_bounds(data.bounds)
                if bbox is not None and box is not None and not _bbox_intersects(bbox, box):
                    continue
                hrefs.append(upload_href(org_id, data.id))
        if outputs and pin_data is None:
            procs = list(client.iter_processes(org_id, search=text)) if text else io.processes(org_id)
            procs = [p for p in procs if (not needle or needle in (p.name or "").casefold())
                     and (pin_process is None or p.id in pin_process)]
            listings = client.map(lambda p, org_id=org_id: (p, io.executions(org_id, p.id)), procs)
            for proc, executions in listings:
                groups: dict[str, list[ProcessExecution]] = {}
                for ex in executions:
                    if ex.group_id is not None:
                        groups.setdefault(ex.group_id, []).append(ex)
                        continue
                    if wanted is not None and ex.id not in wanted:
                        continue
                    if pin_execution is not None and ex.id not in pin_execution:
                        continue
                    if pin_group is not None:
                        continue
                    if interval and not _overlaps(interval, ex.started_at, ex.ended_at or ex.started_at):
                        continue
                    hrefs.append(execution_href(org_id, proc.id, ex.id))
                for gid, members in groups.items():
                    if wanted is not None and gid not in wanted:
                        continue
                    if pin_group is not None and gid not in pin_group:
                        continue
                    if pin_execution is not None and not pin_execution & {e.id for e in members}:
                        continue
                    starts = [e.started_at for e in members if e.started_at]
                    ends = [t for e in members if (t := e.ended_at or e.started_at)]
                    if interval and starts and not _overlaps(interval, min(starts), max(ends)):
                        continue
                    hrefs.append(group_href(org_id, proc.id, gid))

    docs = client.map(io.document, hrefs)
    root = pystac.Catalog.from_file(root_href, stac_io=io)
    found: list[pystac.Item] = []
    for doc in docs:
        for link in doc.get("links", []):
            if link.get("rel") != "item":
                continue
            item = io.document(link["href"])
            props = item["properties"]
            if bbox is not None and not _bbox_intersects(bbox, item.get("bbox")):
                continue
            if interval and not _overlaps(interval, *_item_interval(props)):
                continue
            if not _matches(item, conditions):
                continue
            obj = pystac.Item.from_dict(item, href=link["href"], root=root, preserve_dict=False)
            found.append(obj)
            if max_items is not None and len(found) >= max_items:
                return pystac.ItemCollection(found, clone_items=False)
    return pystac.ItemCollection(found, clone_items=False)


# ==================================================================================================
# export


class _Progress:
    """Monotonic, thread-safe fraction reporting in phases (resolve, download, write)."""

    def __init__(self, callback: Progress | None) -> None:
        self.callback = callback
        self._lock = threading.Lock()
        self._last = -1.0

    def report(self, fraction: float) -> None:
        if self.callback is None:
            return
        with self._lock:
            fraction = min(1.0, max(self._last, fraction))
            if fraction <= self._last:
                return
            self._last = fraction
            self.callback(fraction)


def _prefetch(io: FusionStacIO, client: Any, start: str, progress: _Progress, share: float) -> int:
    """Build every document below ``start`` level by level, each level concurrently; returns the count."""
    seen = {start}
    level = [start]
    count = 0
    while level:
        docs = client.map(io.document, level)
        count += len(docs)
        progress.report(share * (1 - 1 / (1 + count / 50)))
        nxt = []
        for doc in docs:
            for link in doc.get("links", []):
                href = link.get("href", "")
                if link.get("rel") in ("child", "item") and href.startswith(_urls.PREFIX) and href not in seen:
                    seen.add(href)
                    if link["rel"] == "child":
                        nxt.append(href)
                    else:
                        count += 1  # items are built with their collection
        level = nxt
    return count


def _safe_name(name: str | None, fallback: str) -> str:
    base = Path(name or "").name
    if not base or base in (".", "..") or any(ord(c) < 32 for c in base) or "\\" in base:
        return fallback
    return base


def _multihash_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "1220" + digest.hexdigest()


def export_catalog(
    catalog: pystac.Catalog,
    dest: str | os.PathLike[str],
    *,
    assets: AssetMode = "link",
    gateway_url: str | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
    validate: bool = False,
    max_workers: int | None = None,
) -> Path:
    """Write ``catalog`` (as opened by :func:`open_catalog`) as a self-contained static catalog at ``dest``.

    ``assets`` chooses the asset hrefs:

    * ``"link"`` keeps them as they are (``fusion://``, or signed ``https`` that expire with
      ``fusion:href_expires`` for a catalog opened with ``asset_hrefs="signed"``);
    * ``"download"`` downloads every asset next to its item (concurrently, through the client:
      resumed, re-signed on expiry, size-verified, SHA-256-verified when the platform gave a
      checksum) and makes its href relative;
    * ``"gateway"`` points every asset at the asset gateway at ``gateway_url`` (``fusion-stac
      serve``): ``{gateway_url}/assets/{organisation_id}/{data_id}/{file_id}``, a preview
      ``.../preview``. The gateway answers each with a freshly signed redirect, so these links
      never expire and any HTTP reader (GDAL, browsers) can open them; no ``fusion://`` href or
      signed URL is left in the assets.
 The catalog is built in a temporary directory beside
    ``dest`` and renamed into place: ``dest`` never holds a half-written catalog. With
    ``validate`` every document is checked against the STAC schemas (offline) before the rename.
    ``progress`` receives the fraction done (0.0 to 1.0). Returns the path of the root JSON file.

    The temporary directory (``.<dest>-partial``) is the same for every export to ``dest``: an
    export killed mid-way (SIGKILL, power loss) is resumed by the next one, which keeps the assets
    already downloaded (size- and checksum-checked) and resumes partial ones. Two exports to the
    same ``dest`` at once are refused. An export that fails with an exception removes it.
    """
    if assets not in ASSET_MODES:
        raise ValidationError(f"assets must be one of {', '.join(map(repr, ASSET_MODES))}, not {assets!r}",
                              field="assets")
    gateway = _gateway_base(gateway_url) if assets == "gateway" else None
    if gateway_url is not None and assets != "gateway":
        raise ValidationError(f"gateway_url is for assets='gateway', not {assets!r}", field="gateway_url")
    dest = Path(dest).absolute()
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists; pass overwrite=True to replace it")
    io = stac_io_of(catalog)
    client = io.client
    report = _Progress(progress)
    start = catalog.get_self_href()
    if start is None:
        raise ValidationError("the catalog has no self href; open it with fusion_stac.open_catalog", field="catalog")
    resolve_share = 0.1 if assets == "download" else 0.8
    _prefetch(io, client, start, report, resolve_share)

    copy = _materialise(io, start)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp, lock = _partial_dir(dest)
    try:
        copy.normalize_hrefs(str(tmp))
        kept: set[Path] = set()
        if assets == "download":
            kept = _download_assets(client, copy, report, resolve_share, 0.95, max_workers)
            copy.make_all_asset_hrefs_relative()
        elif gateway is not None:
            _link_to_gateway(copy, gateway)
        copy.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, stac_io=pystac.stac_io.DefaultStacIO())
        _prune(tmp, kept | _documents(copy))
        report.report(0.98)
        if validate:
            from fusion_stac.stac.validation import validate_tree

            written = pystac.read_file(str(tmp / copy_root_name(copy)))
            assert isinstance(written, pystac.Catalog)
            validate_tree(written)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            os.close(lock)
    report.report(1.0)
    return dest / copy_root_name(copy)


def _asset_gateway(client: Any, asset_hrefs: str, gateway_url: str | None) -> str | None:
    """The gateway base URL ``asset_hrefs`` needs: ``gateway_url`` checked, or a background
    ``fusion-stac serve`` of this process (started now if need be); ``None`` for other hrefs."""
    if asset_hrefs != "gateway":
        if gateway_url is not None:
            raise ValidationError(f"gateway_url is for asset_hrefs='gateway', not {asset_hrefs!r}", field="gateway_url")
        return None
    if gateway_url is not None:
        return _gateway_base(gateway_url)
    from fusion_stac.stac import _gateway_process

    return _gateway_process.gateway_url(client)


def _gateway_base(url: str | None) -> str:
    """The gateway's base URL, checked: ``http(s)://host[:port][/path]`` without query or fragment."""
    if not url:
        raise ValidationError("assets='gateway' needs gateway_url, the base URL of the asset gateway "
                              "(e.g. http://localhost:8080 for `fusion-stac serve`)", field="gateway_url")
    parts = urlsplit(str(url).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValidationError(f"gateway_url must be an http(s) URL without query or fragment, not {url!r}",
                              field="gateway_url")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _link_to_gateway(catalog: pystac.Catalog, gateway: str) -> None:
    """Point every asset of every item at the gateway (and drop what only signed URLs need)."""
    for item in catalog.get_items(recursive=True):
        props = item.properties
        org_id, data_id, file_id = (props.get(f"fusion:{key}") for key in ("organisation_id", "data_id", "file_id"))
        for key, asset in item.assets.items():
            if key == "data" and org_id and data_id and file_id:
                asset.href = gateway_asset_href(gateway, org_id, data_id, file_id)
            elif key == "thumbnail" and org_id and data_id and file_id:
                asset.href = gateway_asset_href(gateway, org_id, data_id, file_id, preview=True)
            elif asset.href.startswith(_urls.PREFIX) and _urls.parse(asset.href).file is not None:
                fp = _urls.parse(asset.href)
                asset.href = gateway_asset_href(gateway, fp.organisation or "", fp.data or "", fp.file or "")
            else:
                raise ValidationError(f"asset {key!r} of item {item.id} names no platform file; it cannot be "
                                      "linked to the gateway", field="assets")
            asset.extra_fields.pop("fusion:href_expires", None)
            asset.extra_fields.pop("fusion:href", None)


def _partial_dir(dest: Path) -> tuple[Path, int | None]:
    """The work directory of exports to ``dest`` (the same each time, so a killed export is resumed),
    locked (``flock`` on the directory) so that two exports to the same place cannot mix."""
    # no dot after the leading one: pystac takes a final segment with an extension for a file name
    tmp = dest.with_name(f".{dest.name.replace('.', '_')}-partial")
    tmp.mkdir(exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no advisory locks on this platform
        return tmp, None
    fd = os.open(tmp, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise FileExistsError(f"another export to {dest} is in progress ({tmp} is locked)") from None
    return tmp, fd


def _documents(catalog: pystac.Catalog) -> set[Path]:
    """The JSON files ``catalog.save`` wrote."""
    written = set()
    for node, _, items in catalog.walk():
        written.add(Path(node.get_self_href() or ""))
        written.update(Path(item.get_self_href() or "") for item in items)
    return written


def _prune(root: Path, keep: set[Path]) -> None:
    """Remove what a resumed export's work directory holds beyond ``keep`` (an earlier export of
    another catalog, partial files), so the destination holds exactly the catalog."""
    keep = {p.resolve() for p in keep}
    for path in sorted(root.rglob("*"), reverse=True):  # children before their directories
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()  # only if empty
        elif path.resolve() not in keep:
            path.unlink()


def _already_downloaded(path: Path, size: Any, checksum: Any) -> bool:
    """True if a resumed export already holds this asset, complete and verified."""
    if size is None or not path.is_file() or path.stat().st_size != int(size):
        return False
    return not (checksum and str(checksum).startswith("1220")) or _multihash_sha256(path) == checksum


def _prefixed(exc: FusionError, prefix: str) -> FusionError:
    """The same error (type and fields kept) with ``prefix`` before its message."""
    new = copy_module.copy(exc)
    new.message = f"{prefix}: {exc.message}"
    new.args = (f"{prefix}: {exc.args[0] if exc.args else exc.message}",)
    return new


def copy_root_name(catalog: pystac.Catalog) -> str:
    return "collection.json" if isinstance(catalog, pystac.Collection) else "catalog.json"


_STRUCTURAL = {"self", "root", "parent", "child", "item", "collection"}


def _materialise(io: FusionStacIO, href: str) -> pystac.Catalog:
    """An in-memory pystac tree of the documents below ``href`` (already built), wired by pystac itself.

    The platform's links are dropped and re-made with ``add_child``/``add_item``, so the copy has no
    reference back to ``fusion://`` documents (its parent, if it is a sub-tree, included).
    """
    doc = io.document(href)
    links = doc.get("links", [])
    doc["links"] = [lk for lk in links if lk.get("rel") not in _STRUCTURAL]
    cls = pystac.Collection if doc.get("type") == "Collection" else pystac.Catalog
    obj = cls.from_dict(doc, migrate=False, preserve_dict=False)
    for link in links:
        if link.get("rel") == "child":
            obj.add_child(_materialise(io, link["href"]), title=link.get("title"))
        elif link.get("rel") == "item":
            item_doc = io.document(link["href"])
            item_doc["links"] = [lk for lk in item_doc.get("links", []) if lk.get("rel") not in _STRUCTURAL]
            item_doc.pop("collection", None)
            obj.add_item(pystac.Item.from_dict(item_doc, migrate=False, preserve_dict=False), title=link.get("title"))
    return obj


def _download_assets(client: Any, catalog: pystac.Catalog, report: _Progress, lo: float, hi: float,
                     max_workers: int | None) -> set[Path]:
    """Download every asset next to its item; returns the files written."""
    written: set[Path] = set()
    jobs: list[tuple[pystac.Item, str, pystac.Asset]] = []
    for item in catalog.get_items(recursive=True):
        for key, asset in item.assets.items():
            jobs.append((item, key, asset))
    total = sum(int(a.extra_fields.get("file:size") or 0) for _, k, a in jobs if k == "data") or 1
    done_bytes: dict[int, float] = {}
    lock = threading.Lock()

    def tick(index: int, size: int) -> Callable[[float], None]:
        def cb(fraction: float) -> None:
            with lock:
                done_bytes[index] = fraction * size
                frac = sum(done_bytes.values()) / total
            report.report(lo + (hi - lo) * min(1.0, frac))
        return cb

    def fetch(job: tuple[int, tuple[pystac.Item, str, pystac.Asset]]) -> None:
        index, (item, key, asset) = job
        props = item.properties
        org_id, data_id, file_id = props["fusion:organisation_id"], props["fusion:data_id"], props["fusion:file_id"]
        item_dir = Path(item.get_self_href() or "").parent
        preview = key != "data"
        name = (f"{Path(_safe_name(props.get('fusion:file_name'), file_id)).stem}.{key}.png" if preview
                else _safe_name(props.get("fusion:file_name"), file_id))
        size = None if preview else asset.extra_fields.get("file:size")
        model = DataFile.from_api({"file_id": file_id, "data_id": data_id, "file_name": name, "size": size})
        label = f"{name!r} of item {item.id} (data {data_id})"
        checksum = asset.extra_fields.get("file:checksum")
        path = item_dir / name
        try:
            if not _already_downloaded(path, size, None if preview else checksum):
                path = client.download_file(org_id, data_id, model, path, preview=preview,
                                            progress=tick(index, int(size or 0)))
        except FusionError as exc:
            raise _prefixed(exc, f"export: download of {label} failed") from exc
        actual = path.stat().st_size
        if size is not None and actual != int(size):
            raise FusionError(f"export: {label} has {actual} bytes, expected {size}")
        if checksum and str(checksum).startswith("1220") and not preview:
            got = _multihash_sha256(path)
            if got != checksum:
                path.unlink(missing_ok=True)
                raise FusionError(f"export: {label} does not match its checksum ({got[:16]}… != {checksum[:16]}…)")
        original = asset.href
        asset.href = str(path)
        if original.startswith(_urls.PREFIX):
            asset.extra_fields["fusion:href"] = original
        asset.extra_fields.pop("fusion:href_expires", None)
        with lock:
            written.add(path)

    client.map(fetch, list(enumerate(jobs)), max_workers=max_workers)
    return written


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Move ``tmp`` to ``dest`` with renames only; an existing ``dest`` is swapped out, then removed."""
    backup: Path | None = None
    if dest.exists():
        backup = dest.with_name(f".{dest.name}.old-{os.getpid()}-{threading.get_ident()}")
        os.replace(dest, backup)
    try:
        os.replace(tmp, dest)
    except BaseException:
        if backup is not None:
            with contextlib.suppress(OSError):
                os.replace(backup, dest)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
