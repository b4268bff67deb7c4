"""A pystac ``StacIO`` that builds STAC documents from the Fusion Platform API on demand.

pystac resolves every link through the ``StacIO`` of the root catalog, so attaching one
:class:`FusionStacIO` to the root (never ``StacIO.set_default``) makes the whole tree lazy: a
child or item is built only when pystac reads its href, and each build costs a bounded number of
API requests, fanned out through ``client.map``. Within one :class:`FusionStacIO` every listing
and every built document is cached, so browsing or exporting costs requests in proportion to the
objects visited, never to their square.

STAC hrefs
----------
A STAC object's href is the ``fusion://`` path of the node it describes, by ids only, plus a query
naming the kind of document::

    fusion://?stac=catalog                                            root: the user's organisations
    fusion://{org_id}?stac=catalog                                    an organisation
    fusion://{org_id}/uploads?stac=catalog                            its uploads
    fusion://{org_id}/uploads/{data_id}?stac=collection               one uploaded data item
    fusion://{org_id}/uploads/{data_id}/{file_id}?stac=item           one of its files
    fusion://{org_id}/processes?stac=catalog                          its processes
    fusion://{org_id}/processes/{process_id}?stac=catalog             one process
    fusion://{org_id}/processes/{process_id}/{execution_id}?stac=collection   an ungrouped execution
    fusion://{org_id}/processes/{process_id}/{group_id}?stac=group            a group (slices + aggregators)
    fusion://{org_id}/processes/{process_id}/latest?stac=collection           the whole latest run: its group's
                                                                      (or its one execution's) document
    fusion://{org_id}/processes/{process_id}/{execution_id}/{component_id}/{data_id}/{file_id}?stac=item

File paths of the ``fusion://`` filesystem never carry a query (the grammar percent-encodes ``?``
in names and drops queries), so a STAC href can never be mistaken for a file, while dropping
the query gives the filesystem path of the same node. Asset hrefs are the short, stable file form
``fusion://{org_id}/data/{data_id}/{file_id}`` (a preview: its ``preview_file_id`` in the same form),
or pre-signed ``https`` URLs with ``asset_hrefs="signed"``.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

from pystac.stac_io import DefaultStacIO

from fusion_stac import _urls
from fusion_stac.errors import FusionError, NotFoundError, ValidationError
from fusion_stac.models import (
    Data,
    DataFile,
    Organisation,
    Process,
    ProcessExecution,
    ProcessServiceExecution,
    SignedURL,
)
from fusion_stac.stac import mapping
from fusion_stac.stac._header import read_raster_info
from fusion_stac.stac._objects import catalog_class

__all__ = [
    "ROOT_HREF",
    "AssetHrefs",
    "FusionStacIO",
    "StacHref",
    "execution_href",
    "gateway_asset_href",
    "group_href",
    "organisation_href",
    "parse_stac_href",
    "process_href",
    "processes_href",
    "stac_href",
    "upload_href",
    "uploads_href",
]

logger = logging.getLogger(__name__)

AssetHrefs = Literal["fusion", "signed", "gateway"]
#: What ``asset_hrefs`` can be.
ASSET_HREFS: tuple[str, ...] = ("fusion", "signed", "gateway")
KINDS = ("catalog", "collection", "group", "item")
ROOT_HREF = "fusion://?stac=catalog"
JSON = "application/json"
GEOJSON = "application/geo+json"


# --------------------------------------------------------------------------------------------------
# Hrefs


@dataclass(frozen=True)
class StacHref:
    """A parsed STAC href: the node's path and the kind of document (catalog/collection/group/item)."""

    path: _urls.FusionPath
    kind: str

    @property
    def href(self) -> str:
        return stac_href(self.path, self.kind)


def stac_href(path: _urls.FusionPath | str, kind: str) -> str:
    """The STAC href of a node: its ``fusion://`` path plus ``?stac=<kind>``."""
    if kind not in KINDS:
        raise ValueError(f"unknown STAC document kind {kind!r}; expected one of {', '.join(KINDS)}")
    fp = path if isinstance(path, _urls.FusionPath) else _urls.parse(path)
    return f"{fp.url}?stac={kind}"


@functools.lru_cache(maxsize=65536)
def parse_stac_href(href: str) -> StacHref:
    """Parse a STAC href; :class:`~fusion_stac._urls.FusionURLError` if it is not one."""
    text = str(href)
    if text.startswith(f"{_urls.PROTOCOL}:") and not text.startswith(_urls.PREFIX):
        # pystac's href normalisation turns the root "fusion://?stac=..." into "fusion:?stac=..."
        text = _urls.PREFIX + text[len(_urls.PROTOCOL) + 1:].lstrip("/")
    query = urlsplit(text).query if "?" in text else ""
    kinds = parse_qs(query).get("stac") if query else None
    if not kinds or kinds[-1] not in KINDS:
        raise _urls.FusionURLError(
            f"{text.split('?', 1)[0]!r} is not a STAC href: STAC documents are named "
            f"fusion://...?stac=<{'|'.join(KINDS)}>"
        )
    return StacHref(_urls.parse(text), kinds[-1])


def organisation_href(org_id: str) -> str:
    return stac_href(_urls.FusionPath(organisation=org_id), "catalog")


def uploads_href(org_id: str) -> str:
    return stac_href(_urls.FusionPath(organisation=org_id, section="uploads"), "catalog")


def upload_href(org_id: str, data_id: str) -> str:
    return stac_href(_urls.FusionPath(organisation=org_id, section="uploads", data=data_id), "collection")


def upload_item_href(org_id: str, data_id: str, file_id: str) -> str:
    return stac_href(_urls.FusionPath(organisation=org_id, section="uploads", data=data_id, file=file_id), "item")


def processes_href(org_id: str) -> str:
    return stac_href(_urls.FusionPath(organisation=org_id, section="processes"), "catalog")


def process_href(org_id: str, process_id: str) -> str:
    return stac_href(_urls.process_url(org_id, process_id), "catalog")


def execution_href(org_id: str, process_id: str, execution_id: str) -> str:
    return stac_href(_urls.process_url(org_id, process_id, execution_id), "collection")


def group_href(org_id: str, process_id: str, group_id: str) -> str:
    return stac_href(_urls.process_url(org_id, process_id, group_id), "group")


def output_item_href(org_id: str, process_id: str, execution_id: str, component_id: str, data_id: str,
                     file_id: str) -> str:
    return stac_href(_urls.process_url(org_id, process_id, execution_id, component_id, data_id, file_id), "item")


def gateway_asset_href(gateway: str, organisation_id: str, data_id: str, file_id: str, *,
                       preview: bool = False) -> str:
    """The gateway's stable URL of a file (``preview``: of its PNG preview)."""
    ids = "/".join(quote(str(part), safe="") for part in (organisation_id, data_id, file_id))
    return f"{gateway}/assets/{ids}" + ("/preview" if preview else "")


def _is_fusion(href: str) -> bool:
    return href.startswith(f"{_urls.PROTOCOL}:")


def _link(rel: str, href: str, media_type: str = JSON, title: str | None = None) -> dict[str, Any]:
    out = {"rel": rel, "href": href, "type": media_type}
    if title:
        out["title"] = title
    return out


# --------------------------------------------------------------------------------------------------
# The StacIO


@dataclass(frozen=True)
class _Output:
    """One output file with everything its item needs."""

    execution: ProcessExecution
    component: ProcessServiceExecution
    file: DataFile
    aggregator: bool


class FusionStacIO(DefaultStacIO):
    """Serves ``fusion://...?stac=`` hrefs from the API; anything else goes to pystac's default I/O.

    One instance is one consistent view: listings and documents are cached for its lifetime (call
    :meth:`refresh` to drop them). Thread-safe; concurrent reads of the same href build it once.

    ``asset_hrefs``: ``"fusion"`` (stable ``fusion://`` file hrefs, read with the fusion filesystem)
    or ``"signed"`` (pre-signed ``https`` URLs any HTTP reader can open, valid until
    ``fusion:href_expires``) or ``"gateway"`` (``{gateway_url}/assets/{org}/{data}/{file}``, an
    asset gateway's never-expiring links; ``gateway_url`` is then required). ``read_headers``: read the first 64 KiB of rasters the API does not
    describe. ``include_intermediate``: also publish outputs of components marked intermediate.
    """

    def __init__(
        self,
        client: Any,
        *,
        asset_hrefs: AssetHrefs = "fusion",
        read_headers: bool = True,
        include_intermediate: bool = False,
        root_href: str = ROOT_HREF,
        gateway_url: str | None = None,
    ) -> None:
        super().__init__()
        if asset_hrefs not in ASSET_HREFS:
            raise ValidationError(f"asset_hrefs must be one of {', '.join(map(repr, ASSET_HREFS))}, not {asset_hrefs!r}",
                                  field="asset_hrefs")
        if (asset_hrefs == "gateway") != (gateway_url is not None):
            raise ValidationError("gateway_url goes with asset_hrefs='gateway' (and only with it)", field="gateway_url")
        self.client = client
        self.asset_hrefs: AssetHrefs = asset_hrefs
        self.gateway_url = gateway_url.rstrip("/") if gateway_url is not None else None
        self.read_headers = read_headers
        self.include_intermediate = include_intermediate
        self.root_href = parse_stac_href(root_href).href
        self._lock = threading.RLock()
        self._build_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self.refresh()

    def refresh(self) -> None:
        """Forget every cached listing and document (the next read asks the API again)."""
        with self._lock:
            self._docs: dict[str, str] = {}  # href -> serialized document (parsed afresh per read)
            self._orgs: dict[str, Organisation] = {}
            self._org_ids: list[str] | None = None
            self._uploads: dict[str, list[Data]] = {}
            self._processes: dict[str, list[Process]] = {}
            self._process: dict[tuple[str, str], Process] = {}
            self._executions: dict[tuple[str, str], list[ProcessExecution]] = {}

    def seed(self, models: Iterable[Any]) -> None:
        """Prime the caches with organisations and processes already fetched (e.g. by a name lookup)."""
        with self._lock:
            for model in models:
                if isinstance(model, Organisation):
                    self._orgs[model.id] = model
                elif isinstance(model, Process) and model.organisation_id:
                    self._process[(model.organisation_id, model.id)] = model

    def seed_executions(self, org_id: str, process_id: str, executions: Iterable[ProcessExecution]) -> None:
        """Prime the cache with the complete listing of a process's executions, most recent first (as
        :meth:`executions` lists them; e.g. one a caller already paged through): runs of that process
        are then built without listing it again."""
        with self._lock:
            self._executions[(org_id, process_id)] = list(executions)

    # -- pystac StacIO interface -------------------------------------------------------------------
    def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
        href = str(source)
        if not _is_fusion(href):
            return super().read_text(source, *args, **kwargs)
        return self._text(href)

    def read_json(self, source: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        href = str(source)
        if not _is_fusion(href):
            return super().read_json(source, *args, **kwargs)
        return self.document(href)

    def stac_object_from_dict(self, d: dict[str, Any], href: Any = None, root: Any = None,
                              preserve_dict: bool = True) -> Any:
        """pystac's, but catalogs and collections keep this StacIO when cloned (``full_copy``)."""
        cls = catalog_class(d)
        if cls is None:
            return super().stac_object_from_dict(d, href, root, preserve_dict)
        obj = cls.from_dict(d, href=None if href is None else str(href), root=root, migrate=True,
                            preserve_dict=preserve_dict)
        obj._stac_io = self
        return obj

    def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
        if _is_fusion(str(dest)):
            raise FusionError(
                f"{str(dest).split('?', 1)[0]}: the Fusion Platform catalog is read-only; "
                "write a copy with fusion_stac.export_catalog(catalog, dest)"
            )
        super().write_text(dest, txt, *args, **kwargs)

    # -- documents ---------------------------------------------------------------------------------
    def document(self, href: str) -> dict[str, Any]:
        """The STAC dict at ``href`` (a fresh copy the caller may modify)."""
        return json.loads(self._text(href))

    def _text(self, href: str) -> str:
        parsed = parse_stac_href(str(href))
        key = parsed.href
        with self._lock:
            doc = self._docs.get(key)
        if doc is None:
            with self._lock:
                build_lock = self._build_locks[self._build_key(parsed)]
            with build_lock:
                with self._lock:
                    doc = self._docs.get(key)
                if doc is None:
                    self._build(parsed)
                    with self._lock:
                        doc = self._docs.get(key)
            if doc is None:
                raise NotFoundError(f"no STAC {parsed.kind} at {parsed.path.url}", status=404, path=parsed.path.url)
        return doc

    def _build_key(self, parsed: StacHref) -> str:
        """Items are built with their collection: they share its build lock."""
        if parsed.kind != "item":
            return parsed.href
        p = parsed.path
        if p.section == "uploads":
            return upload_href(p.organisation or "", p.data or "")
        return f"{_urls.process_url(p.organisation or '', p.process, p.execution)}?items"

    def _put(self, href: str, doc: dict[str, Any]) -> None:
        text = json.dumps(doc, allow_nan=False)  # strict JSON: a NaN or inf here is a mapping bug
        with self._lock:
            self._docs[href] = text

    def _links(self, href: str, parent: str | None) -> list[dict[str, Any]]:
        links = [_link("root", self.root_href)]
        if parent is not None and href != self.root_href:
            links.append(_link("parent", parent))
        return links

    def _build(self, parsed: StacHref) -> None:
        p, kind = parsed.path, parsed.kind
        level = p.kind
        org = p.organisation
        if level == "root" and kind == "catalog":
            return self._build_root()
        assert org is not None or level == "root"
        if level == "organisation" and kind == "catalog" and org is not None:
            return self._build_organisation(self._org_id(org))
        if p.section == "uploads":
            if level == "section" and kind == "catalog":
                return self._build_uploads(org)  # type: ignore[arg-type]
            if level == "data" and kind == "collection":
                return self._build_upload(org, p.data)  # type: ignore[arg-type]
            if level == "file" and kind == "item":
                return self._build_upload(org, p.data)  # type: ignore[arg-type]
        if p.section == "processes":
            if level == "section" and kind == "catalog":
                return self._build_processes(org)  # type: ignore[arg-type]
            if level == "process" and kind == "catalog":
                return self._build_process(org, p.process)  # type: ignore[arg-type]
            if level == "run" and kind in ("collection", "group"):
                return self._build_latest(parsed)
            if level == "execution" and kind == "collection":
                return self._build_execution(org, p.process, p.execution)  # type: ignore[arg-type]
            if level == "execution" and kind == "group":
                return self._build_group(org, p.process, p.execution)  # type: ignore[arg-type]
            if level == "file" and kind == "item":
                return self._build_output_item(org, p.process, p.execution)  # type: ignore[arg-type]
        raise NotFoundError(f"{parsed.href.split('?', 1)[0]} has no STAC {kind} (see fusion_stac.stac.io for the href scheme)",
                            status=404, path=parsed.path.url)

    # -- cached lookups ----------------------------------------------------------------------------
    def _org_id(self, org: str) -> str:
        return _urls.normalise_uuid(org) if _urls.is_uuid(org) else org

    def organisation(self, org_id: str) -> Organisation:
        with self._lock:
            found = self._orgs.get(org_id)
        if found is None:
            found = self.client.get_organisation(org_id)
            with self._lock:
                self._orgs[org_id] = found
        return found

    def uploads(self, org_id: str) -> list[Data]:
        with self._lock:
            found = self._uploads.get(org_id)
        if found is None:
            found = list(self.client.iter_data(org_id))
            with self._lock:
                self._uploads[org_id] = found
        return found

    def processes(self, org_id: str) -> list[Process]:
        with self._lock:
            found = self._processes.get(org_id)
        if found is None:
            found = list(self.client.iter_processes(org_id))
            with self._lock:
                self._processes[org_id] = found
                for proc in found:
                    self._process[(org_id, proc.id)] = proc
        return found

    def process(self, org_id: str, process_id: str) -> Process:
        with self._lock:
            found = self._process.get((org_id, process_id))
        if found is None:
            found = self.client.get_process(org_id, process_id)
            with self._lock:
                self._process[(org_id, process_id)] = found
        return found

    def executions(self, org_id: str, process_id: str) -> list[ProcessExecution]:
        """Every execution of a process, most recent first (one paged listing, cached)."""
        with self._lock:
            found = self._executions.get((org_id, process_id))
        if found is None:
            found = list(self.client.iter_executions(org_id, process_id, reverse=True))
            with self._lock:
                self._executions[(org_id, process_id)] = found
        return found

    # -- catalogs ----------------------------------------------------------------------------------
    def _build_root(self) -> None:
        user = self.client.user
        orgs = self.client.map(self.organisation, list(user.organisation_ids))
        doc = mapping.catalog_dict(
            "fusion-platform", title="Fusion Platform",
            description=f"Organisations of {user.email or user.id} on the {mapping.PLATFORM}.",
        )
        doc["links"] = [_link("root", self.root_href)] + [
            _link("child", organisation_href(o.id), title=o.name) for o in orgs
        ]
        self._put(ROOT_HREF, doc)

    def _build_organisation(self, org_id: str) -> None:
        org = self.organisation(org_id)
        href = organisation_href(org.id)
        doc = mapping.organisation_catalog(org)
        doc["links"] = [
            *self._links(href, ROOT_HREF),
            _link("child", uploads_href(org.id), title="Uploads"),
            _link("child", processes_href(org.id), title="Processes"),
        ]
        self._put(href, doc)

    def _build_uploads(self, org_id: str) -> None:
        org = self.organisation(org_id)
        href = uploads_href(org_id)
        doc = mapping.catalog_dict(
            "uploads", title=f"{org.name}: uploads",
            description=f"Data uploaded to the {mapping.PLATFORM} by {org.name!r}: one collection per data item.",
            fields={"fusion:organisation_id": org_id},
        )
        doc["links"] = [*self._links(href, organisation_href(org_id))] + [
            _link("child", upload_href(org_id, d.id), title=d.name) for d in self.uploads(org_id)
        ]
        self._put(href, doc)

    def _build_processes(self, org_id: str) -> None:
        org = self.organisation(org_id)
        href = processes_href(org_id)
        doc = mapping.catalog_dict(
            "processes", title=f"{org.name}: processes",
            description=f"Processes of {org.name!r} on the {mapping.PLATFORM}: one catalog per process.",
            fields={"fusion:organisation_id": org_id},
        )
        doc["links"] = [*self._links(href, organisation_href(org_id))] + [
            _link("child", process_href(org_id, p.id), title=p.name) for p in self.processes(org_id)
        ]
        self._put(href, doc)

    def _build_process(self, org_id: str, process_id: str) -> None:
        proc = self.process(org_id, process_id)
        href = process_href(org_id, proc.id)
        children: list[dict[str, Any]] = []
        seen_groups: set[str] = set()
        for ex in self.executions(org_id, proc.id):
            when = f"{ex.started_at:%Y-%m-%d %H:%M} UTC" if ex.started_at else ex.id
            state = mapping.execution_state(ex)
            if ex.group_id is None:
                children.append(_link("child", execution_href(org_id, proc.id, ex.id), title=f"Execution {when} ({state})"))
            elif ex.group_id not in seen_groups:
                seen_groups.add(ex.group_id)
                children.append(_link("child", group_href(org_id, proc.id, ex.group_id),
                                      title=f"Group of {ex.group_count or '?'} slices, {when}"))
        doc = mapping.catalog_dict(
            proc.id, title=proc.name,
            description=f"Executions of process {proc.name!r} on the {mapping.PLATFORM}: one collection per "
                        "execution, or per group for a large region processed in slices.",
            fields=mapping._drop_none({"fusion:organisation_id": org_id, "fusion:process_id": proc.id,
                                       "fusion:service_id": proc.service_id, "fusion:process_status": proc.process_status}),
        )
        doc["links"] = [*self._links(href, processes_href(org_id)), *children]
        self._put(href, doc)

    # -- uploads -----------------------------------------------------------------------------------
    def _upload_data(self, org_id: str, data_id: str) -> Data:
        with self._lock:
            listed = self._uploads.get(org_id)
        for d in listed or ():
            if d.id == data_id:
                return d
        return self.client.get_data(org_id, data_id)

    def _build_upload(self, org_id: str, data_id: str) -> None:
        data = self._upload_data(org_id, data_id)
        href = upload_href(org_id, data.id)
        files = self.client.list_files(org_id, data.id)
        ready = [f for f in files if f.analysed]
        state = "ready" if len(ready) == len(files) else "analysing"
        extras = self._file_extras(org_id, ready)
        items: list[dict[str, Any]] = []
        for f in ready:
            raster, urls = extras.get(f.file_id or "", (None, None))
            item = mapping.file_item(f, organisation_id=org_id, data=data, raster=raster,
                                     **self._hrefs(org_id, f, urls))
            item_href = upload_item_href(org_id, data.id, f.file_id or "")
            item["collection"] = data.id
            item["links"] = [*self._links(item_href, href), _link("collection", href)]
            items.append(item)
            self._put(item_href, item)
        doc = mapping.upload_collection(data, items, state=state)
        if state != "ready":
            doc["fusion:files_pending"] = len(files) - len(ready)
        doc["links"] = [*self._links(href, uploads_href(org_id))] + [
            _link("item", upload_item_href(org_id, data.id, it["id"]), GEOJSON, title=it["properties"].get("title"))
            for it in items
        ]
        self._put(href, doc)

    # -- file extras: header reads and signed URLs, concurrently -----------------------------------
    def _wants_extras(self, f: DataFile) -> bool:
        return bool(f.file_id) and f.analysed and (
            (self.read_headers and mapping.needs_header(f)) or self.asset_hrefs == "signed")

    def _extras_for(self, org_id: str, f: DataFile) -> tuple[str, tuple[Any, Any]]:
        """``(file_id, (RasterInfo | None, (data URL, preview URL) | None))`` for one file."""
        raster = read_raster_info(self.client.storage, org_id, f) if self.read_headers and mapping.needs_header(f) else None
        urls = None
        if self.asset_hrefs == "signed":
            data_url = self.client.download_url(org_id, f.data_id, f.file_id)
            preview = self.client.download_url(org_id, f.data_id, f.file_id, preview=True) if f.preview_file_id else None
            urls = (data_url, preview)
        return f.file_id or "", (raster, urls)

    def _file_extras(self, org_id: str, files: Iterable[DataFile]) -> dict[str, tuple[Any, Any]]:
        """Header reads and signed URLs of ``files``, fetched concurrently."""
        todo = [f for f in files if self._wants_extras(f)]
        if not todo:
            return {}
        return dict(self.client.map(lambda f: self._extras_for(org_id, f), todo))

    def _hrefs(self, org_id: str, f: DataFile, urls: tuple[SignedURL, SignedURL | None] | None) -> dict[str, Any]:
        """The asset hrefs of ``f`` other than the default ``fusion://`` ones (as ``file_item`` arguments)."""
        if self.gateway_url is not None and f.data_id and f.file_id:
            return {"data_href": gateway_asset_href(self.gateway_url, org_id, f.data_id, f.file_id),
                    "thumbnail_href": gateway_asset_href(self.gateway_url, org_id, f.data_id, f.file_id, preview=True)
                    if f.preview_file_id else None}
        if urls is None:
            return {}
        data_url, preview = urls
        expiry = min(u.expires_at for u in (data_url, preview) if u is not None)
        return {"data_href": data_url.url, "thumbnail_href": preview.url if preview else None, "href_expires": expiry}

    # -- executions and groups ---------------------------------------------------------------------
    def _execution(self, org_id: str, process_id: str, execution_id: str) -> ProcessExecution:
        with self._lock:
            listed = self._executions.get((org_id, process_id))
        for ex in listed or ():
            if ex.id == execution_id:
                return ex
        ex = self.client.get_execution(org_id, execution_id)
        if ex.process_id and ex.process_id != process_id:
            raise NotFoundError(f"execution {execution_id} belongs to process {ex.process_id}, not {process_id}",
                                status=404, path=_urls.process_url(org_id, process_id, execution_id))
        return ex

    def _group_members(self, org_id: str, process_id: str, group_id: str) -> list[ProcessExecution]:
        with self._lock:
            listed = self._executions.get((org_id, process_id))
        if listed is not None:
            members = [e for e in listed if e.group_id == group_id]
            if members:
                return members
        slices, aggregators = self.client.group_executions(org_id, process_id, group_id)
        return [*slices, *aggregators]

    def _walk(self, org_id: str, executions: list[ProcessExecution]) -> tuple[list[_Output], dict[str, Any]]:
        """Components of each execution, the files of each output and their extras, pipelined.

        Each branch moves on as soon as its parent answers (a file listing starts when its
        execution's components arrive, a header read when its file is listed), on one bounded pool:
        one request per execution, one per output data item, plus extras only where needed.
        Returns the outputs (in execution, chain and file order) and ``file_id -> extras``.
        """
        comps_by_ex: dict[str, list[ProcessServiceExecution]] = {}
        files_by_data: dict[str, list[DataFile]] = {}
        extras: dict[str, tuple[Any, Any]] = {}
        claimed: set[str] = set()
        lock = threading.Lock()

        def get_extras(f: DataFile) -> None:
            key, value = self._extras_for(org_id, f)
            with lock:
                extras[key] = value

        def get_files(data_id: str) -> None:
            found = self.client.list_files(org_id, data_id)
            with lock:
                files_by_data[data_id] = found
            for f in found:
                if self._wants_extras(f):
                    fan.submit(get_extras, f)

        def get_components(ex: ProcessExecution) -> None:
            found = list(self.client.iter_components(org_id, ex.id))
            with lock:
                comps_by_ex[ex.id] = found
            for comp in found:
                if comp.intermediate and not self.include_intermediate:
                    continue
                for data_id in comp.outputs:
                    with lock:
                        if data_id in claimed:
                            continue
                        claimed.add(data_id)
                    fan.submit(get_files, data_id)

        with self.client.fanout() as fan:
            for ex in executions:
                fan.submit(get_components, ex)

        chain_services = self._chain_services(org_id, {ex.process_id for ex in executions})
        out: list[_Output] = []
        for ex in executions:
            for comp in sorted(comps_by_ex.get(ex.id, []), key=lambda c: (c.chain_index or 0, c.id)):
                if comp.intermediate and not self.include_intermediate:
                    continue
                aggregator = ex.is_aggregator or (bool(chain_services) and comp.service_id not in chain_services
                                                  and ex.group_id is not None)
                for data_id in comp.outputs:
                    out.extend(_Output(ex, comp, f, aggregator) for f in files_by_data.get(data_id, []))
        return out, extras

    def _chain_services(self, org_id: str, process_ids: set[str | None]) -> frozenset[str]:
        ids: set[str] = set()
        for pid in process_ids:
            if pid is not None:
                ids |= self.process(org_id, pid).chain_service_ids
        return frozenset(ids)

    def _output_items(self, org_id: str, process: Process, collection_href: str, collection_id: str,
                      outputs: list[_Output], extras: Mapping[str, Any], nominal: datetime | None) -> list[dict[str, Any]]:
        ready = [o for o in outputs if o.file.analysed and o.file.file_id]
        items = []
        for o in ready:
            raster, urls = extras.get(o.file.file_id or "", (None, None))
            ctx = mapping.OutputContext(process=process, execution=o.execution, component=o.component,
                                        nominal_datetime=nominal, aggregator=o.aggregator)
            item = mapping.file_item(o.file, organisation_id=org_id, output=ctx, raster=raster,
                                     **self._hrefs(org_id, o.file, urls))
            item_href = output_item_href(org_id, process.id, o.execution.id, o.component.id, o.file.data_id or "",
                                         o.file.file_id or "")
            item["collection"] = collection_id
            item["links"] = [*self._links(item_href, collection_href), _link("collection", collection_href)]
            items.append(item)
            self._put(item_href, item)
        return items

    def _finish_collection(self, href: str, doc: dict[str, Any], items: list[dict[str, Any]], parent: str) -> None:
        links = [*self._links(href, parent)]
        for it in items:
            links.append(_link("item", _item_href_of(it), GEOJSON, title=it["properties"].get("title")))
        doc["links"] = links
        self._put(href, doc)

    def _build_execution(self, org_id: str, process_id: str, execution_id: str) -> None:
        proc = self.process(org_id, process_id)
        ex = self._execution(org_id, proc.id, execution_id)
        if ex.group_id is not None:
            raise NotFoundError(
                f"execution {ex.id} is slice {ex.group_index} of group {ex.group_id}; its outputs are in the "
                f"group's collection {group_href(org_id, proc.id, ex.group_id)}",
                status=404, path=_urls.process_url(org_id, proc.id, ex.id),
            )
        href = execution_href(org_id, proc.id, ex.id)
        state = mapping.execution_state(ex)
        items = []
        if state == "succeeded":  # no half-built items: outputs appear once the execution has finished
            outputs, extras = self._walk(org_id, [ex])
            items = self._output_items(org_id, proc, href, ex.id, outputs, extras, ex.started_at)
        doc = mapping.execution_collection(proc, [ex], items)
        self._finish_collection(href, doc, items, process_href(org_id, proc.id))

    def _build_latest(self, parsed: StacHref) -> None:
        """``{process}/latest``: the whole latest run -- its group (every slice and aggregator) or its one
        execution -- answered with that run's document (whose self href names it by ids)."""
        p = parsed.path
        org_id, process_id = self._org_id(p.organisation or ""), p.process or ""
        latest = self.client.latest_execution(org_id, process_id)
        target = (group_href(org_id, process_id, latest.group_id) if latest.group_id
                  else execution_href(org_id, process_id, latest.id))
        text = self.read_text(target)
        with self._lock:
            self._docs[parsed.href] = text

    def _build_group(self, org_id: str, process_id: str, group_id: str) -> None:
        # the process (for names) and the group listing need only ids: ask for both at once
        proc, members = self.client.map(lambda f: f(), [
            lambda: self.process(org_id, process_id),
            lambda: self._group_members(org_id, process_id, group_id),
        ])
        if not members:
            raise NotFoundError(f"process {proc.name!r} has no group {group_id}", status=404,
                                path=_urls.process_url(org_id, proc.id, group_id))
        href = group_href(org_id, proc.id, group_id)
        expected = max((e.group_count or 0) for e in members) or None
        slices = [e for e in members if not e.is_aggregator]
        state = mapping.group_state(slices, expected)
        items: list[dict[str, Any]] = []
        aggregator_ids: set[str] = {e.id for e in members if e.is_aggregator}
        if state != "running" and mapping.group_state(members) != "running":
            done = [e for e in members if mapping.execution_state(e) == "succeeded"]
            outputs, extras = self._walk(org_id, done)
            aggregator_ids |= {o.execution.id for o in outputs if o.aggregator}
            nominal = min((e.started_at for e in members if e.started_at), default=None)
            items = self._output_items(org_id, proc, href, group_id, outputs, extras, nominal)
        doc = mapping.execution_collection(proc, members, items, group_id=group_id, aggregator_ids=aggregator_ids)
        self._finish_collection(href, doc, items, process_href(org_id, proc.id))

    def _build_output_item(self, org_id: str, process_id: str, execution_id: str) -> None:
        ex = self._execution(org_id, process_id, execution_id)
        if ex.group_id is not None:
            self.document(group_href(org_id, process_id, ex.group_id))
        else:
            self.document(execution_href(org_id, process_id, ex.id))


def _item_href_of(item: Mapping[str, Any]) -> str:
    p = item["properties"]
    return output_item_href(p["fusion:organisation_id"], p["fusion:process_id"], p["fusion:execution_id"],
                            p["fusion:component_id"], p["fusion:data_id"], p["fusion:file_id"])

