"""``fusion://`` paths resolved and listed: ``ls``, ``info``, name resolution and the listing caches."""

from __future__ import annotations

import errno
import hashlib
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fsspec.spec import AbstractFileSystem
from fsspec.utils import stringify_path

from fusion_stac._urls import (
    LATEST,
    PREFIX,
    SINGLE_MEMBER,
    FusionPath,
    data_url,
    file_url,
    is_uuid,
    member_name,
    normalise_uuid,
    parse,
    parse_member,
    process_url,
    quote_segment,
)
from fusion_stac.errors import AuthenticationError
from fusion_stac.fs._cache import ListingCache
from fusion_stac.fs._conn import _Connection
from fusion_stac.fs._errors import AmbiguousPathError, translated
from fusion_stac.storage import FileKey

if TYPE_CHECKING:  # pragma: no cover
    from fusion_stac.client import FusionClient

#: Info keys every entry has (``None`` where they do not apply).
INFO_KEYS: tuple[str, ...] = (
    "name", "type", "size", "kind", "id", "item_name", "organisation_id", "data_id", "file_id",
    "file_type", "crs", "bounds", "fusion_url",
)
SECTIONS_LISTED: tuple[str, ...] = ("uploads", "processes")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _label_children(items: Sequence[tuple[str, str | None]]) -> list[str]:
    """Path segment per child: its name where unique among siblings (and usable), else its id."""
    counts: dict[str, int] = {}
    for _, name in items:
        if name:
            counts[name] = counts.get(name, 0) + 1
    ids = {i for i, _ in items}
    labels = []
    for item_id, name in items:
        usable = (
            bool(name) and counts.get(name or "", 0) == 1 and name not in (".", "..", LATEST)
            and not any(ord(c) < 32 for c in name or "") and (name not in ids or name == item_id)
        )
        labels.append(quote_segment(name) if usable else item_id)  # type: ignore[arg-type]
    return labels


class _Listing(AbstractFileSystem):
    """Paths and what is at them: ``ls``, ``info`` and name resolution, entries built from API
    models, the listing caches, file keys and sizes, and the plumbing every call goes through.

    The base of :class:`~fusion_stac.fs.FusionFileSystem`; its ``__init__`` sets these attributes.
    """

    _conn: _Connection
    _nodes: ListingCache
    dircache: ListingCache
    upload_timeout: float
    _collect: threading.local

    # -- plumbing ---------------------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = stringify_path(path)
        if path.startswith("fusion:"):
            # "fusion://x", and "fusion:/x" as path libraries (and GDAL) collapse the double slash
            path = path[len("fusion:"):].lstrip("/") if not path.startswith("fusion::") else path[8:]
        return path.strip("/")

    def unstrip_protocol(self, name: str) -> str:
        return PREFIX + self._strip_protocol(name)

    def _url(self, path: str) -> str:
        return PREFIX + path

    def _call(self, path: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """An API call on behalf of ``path``: errors translated, new session token cached."""
        try:
            with translated(self._url(path)):
                result = fn(*args, **kwargs)
        except PermissionError as exc:
            if isinstance(exc.__cause__, AuthenticationError):
                self._conn.forget_cached_token()
            raise
        self._conn.remember_token()
        return result

    # -- info builders -----------------------------------------------------------------------------
    @staticmethod
    def _entry(path: str, kind: str, *, type: str = "directory", **fields: Any) -> dict[str, Any]:
        info: dict[str, Any] = dict.fromkeys(INFO_KEYS)
        info.update(name=path, type=type, size=0 if type == "directory" else None, kind=kind)
        info.update(fields)
        return info

    def _org_entry(self, path: str, org: Any) -> dict[str, Any]:
        return self._entry(path, "organisation", id=org.id, item_name=org.name, organisation_id=org.id,
                           fusion_url=PREFIX + org.id)

    def _section_entry(self, path: str, org_id: str, section: str) -> dict[str, Any]:
        return self._entry(path, "section", id=section, item_name=section, organisation_id=org_id,
                           fusion_url=f"{PREFIX}{org_id}/{section}")

    def _data_entry(self, path: str, kind: str, org_id: str, data: Any, **extra: Any) -> dict[str, Any]:
        return self._entry(
            path, kind, id=data.id, item_name=data.name, organisation_id=org_id, data_id=data.id,
            bounds=list(data.bounds) if data.bounds else None, fusion_url=data_url(org_id, data.id),
            created=_iso(data.created_at), updated=_iso(data.updated_at), **extra,
        )

    def _file_entry(self, path: str, org_id: str, f: Any) -> dict[str, Any]:
        return self._entry(
            path, "file", type="file", size=f.size, id=f.file_id, item_name=f.file_name,
            organisation_id=org_id, data_id=f.data_id, file_id=f.file_id, record_id=f.id,
            file_type=f.file_type, crs=f.crs, bounds=list(f.bounds) if f.bounds else None,
            resolution=f.resolution, analysed=f.analysed, fusion_url=file_url(org_id, f.data_id, f.file_id),
            created=_iso(f.created_at), updated=_iso(f.updated_at),
        )

    def _process_entry(self, path: str, org_id: str, p: Any) -> dict[str, Any]:
        return self._entry(path, "process", id=p.id, item_name=p.name, organisation_id=org_id, process_id=p.id,
                           process_status=p.process_status, fusion_url=process_url(org_id, p.id),
                           created=_iso(p.created_at), updated=_iso(p.updated_at))

    def _execution_entry(self, path: str, org_id: str, process_id: str, e: Any) -> dict[str, Any]:
        return self._entry(
            path, "execution", id=e.id, item_name=e.name, organisation_id=org_id, process_id=process_id,
            execution_id=e.id, group_id=e.group_id, group_index=e.group_index, group_count=e.group_count,
            progress=e.progress, success=e.success, started_at=_iso(e.started_at), ended_at=_iso(e.ended_at),
            fusion_url=process_url(org_id, process_id, e.id),
            created=_iso(e.created_at), updated=_iso(e.updated_at),
        )

    def _run_entry(self, path: str, org_id: str, process_id: str, members: Sequence[Any]) -> dict[str, Any]:
        """The whole latest run: one execution, or a group's slices and aggregators."""
        first = members[0]
        group_id = first.group_id
        done = [e for e in members if e.success is not None]
        success = None if len(done) < len(members) else all(e.success for e in members)
        slices = [e for e in members if not e.is_aggregator]
        return self._entry(
            path, "run", id=group_id or first.id, item_name=LATEST, organisation_id=org_id, process_id=process_id,
            group_id=group_id, execution_ids=[e.id for e in members], slices=len(slices) if group_id else None,
            aggregators=len(members) - len(slices) if group_id else None, success=success,
            progress=min((e.progress or 0) for e in members),
            started_at=_iso(min((e.started_at for e in members if e.started_at), default=None)),
            fusion_url=process_url(org_id, process_id, LATEST if group_id else first.id),
        )

    def _run_members(self, path: str, org_id: str, process_id: str, node: dict[str, Any] | None = None) -> list[Any]:
        """Executions of the latest run (of the run ``node`` if given), slices then aggregators."""
        client = self._lazy_client(path)
        if node is not None and node.get("group_id") is None and node.get("execution_ids"):
            return [self._call(path, client.get_execution, org_id, node["execution_ids"][0])]
        group_id = node.get("group_id") if node is not None else None
        if group_id is None:
            latest = self._call(path, client.latest_execution, org_id, process_id)
            if latest.group_id is None:
                return [latest]
            group_id = latest.group_id
        slices, aggregators = self._call(path, client.group_executions, org_id, process_id, group_id)
        return [*slices, *aggregators]

    def _component_entry(self, path: str, org_id: str, process_id: str, execution_id: str,
                         c: Any) -> dict[str, Any]:
        return self._entry(
            path, "component", id=c.id, item_name=c.name, organisation_id=org_id, process_id=process_id,
            execution_id=execution_id, component_id=c.id, outputs=list(c.outputs), inputs=list(c.inputs),
            success=c.success, fusion_url=process_url(org_id, process_id, execution_id, c.id),
            created=_iso(c.created_at), updated=_iso(c.updated_at),
        )

    # -- listing ----------------------------------------------------------------------------------
    def ls(self, path: str, detail: bool = True, refresh: bool = False, **kwargs: Any) -> list[Any]:
        """Children of ``path`` (names where unique among siblings, ids otherwise); a file lists itself."""
        path = self._strip_protocol(path)
        listing = None if refresh else self._cached_listing(path)
        if listing is None:
            node = self._cheap_node(path) if not refresh else self._node(path, refresh=True)
            listing = [node] if node["type"] == "file" else self._fill_listing(path, node)
        if detail:
            return [dict(entry) for entry in listing]
        return sorted(entry["name"] for entry in listing)

    def _cached_listing(self, path: str) -> list[dict[str, Any]] | None:
        try:
            return self.dircache[path]
        except KeyError:
            return None

    def _fill_listing(self, path: str, node: dict[str, Any]) -> list[dict[str, Any]]:
        listing = self._list_children(path, node)
        if _finished_run(path, node):
            self.dircache.mark_final(path)
        self.dircache[path] = listing
        for child in listing:
            self._nodes[child["name"]] = child
        return listing

    def _list_children(self, path: str, node: dict[str, Any]) -> list[dict[str, Any]]:
        kind = node["kind"]
        client = self._lazy_client(path)
        prefix = f"{path}/" if path else ""

        def named(items: list[Any], build: Callable[[str, Any], dict[str, Any]],
                  name_of: Callable[[Any], str | None] = lambda m: m.name,
                  id_of: Callable[[Any], str] = lambda m: m.id) -> list[dict[str, Any]]:
            labels = _label_children([(id_of(m), name_of(m)) for m in items])
            return [build(prefix + label, m) for label, m in zip(labels, items, strict=True)]

        if kind == "root":
            orgs = self._call(path, lambda: client.map(client.get_organisation, client.user.organisation_ids))
            return named(orgs, self._org_entry)
        org_id = node["organisation_id"]
        if kind == "organisation":
            return [self._section_entry(prefix + s, org_id, s) for s in SECTIONS_LISTED]
        if kind == "section":
            section = node["id"]
            if section in ("uploads", "data"):
                items = self._call(path, lambda: list(client.iter_data(org_id)))
                if section == "data":  # the addressing form: ids only
                    return [self._data_entry(prefix + d.id, "data", org_id, d) for d in items]
                return named(items, lambda p, d: self._data_entry(p, "data", org_id, d))
            items = self._call(path, lambda: list(client.iter_processes(org_id)))
            return named(items, lambda p, m: self._process_entry(p, org_id, m))
        if kind in ("data", "output"):
            files = self._call(path, client.list_files, org_id, node["data_id"])
            return named(files, lambda p, f: self._file_entry(p, org_id, f),
                         name_of=lambda f: f.file_name, id_of=lambda f: f.file_id)
        if kind == "process":
            pid = node["process_id"]
            runs = self._call(path, lambda: list(client.iter_executions(org_id, pid)))
            return [self._execution_entry(prefix + e.id, org_id, pid, e) for e in runs]
        if kind == "run":
            pid = node["process_id"]
            members = self._run_members(path, org_id, pid, node)
            labels = [member_name(e.group_index, e.group_count) if e.group_id else e.id for e in members]
            return [self._execution_entry(prefix + str(label), org_id, pid, e)
                    for label, e in zip(labels, members, strict=True)]
        if kind == "execution":
            pid, eid = node["process_id"], node["execution_id"]
            comps = self._call(path, lambda: list(client.iter_components(org_id, eid)))
            return named(comps, lambda p, c: self._component_entry(p, org_id, pid, eid, c))
        if kind == "component":
            outputs = self._call(path, lambda: client.map(lambda d: client.get_data(org_id, d), node["outputs"]))
            return named(outputs, lambda p, d: self._data_entry(
                p, "output", org_id, d, process_id=node["process_id"], execution_id=node["execution_id"],
                component_id=node["component_id"]))
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", self._url(path))  # pragma: no cover

    def _lazy_client(self, path: str) -> FusionClient:
        with translated(self._url(path)):
            return self._conn.client

    # -- resolution -------------------------------------------------------------------------------
    def info(self, path: str, refresh: bool = False, **kwargs: Any) -> dict[str, Any]:
        """What is at ``path`` (see the module docs for the keys); ``FileNotFoundError`` if nothing."""
        path = self._strip_protocol(path)
        return dict(self._node(path, refresh=refresh))

    def _node(self, path: str, refresh: bool = False) -> dict[str, Any]:
        if not refresh:
            try:
                return self._nodes[path]
            except KeyError:
                pass
        url = self._url(path)
        with translated(url):
            fp = parse(path)
        try:
            node = self._resolve(path, fp)
        except FileNotFoundError as exc:
            if exc.filename in (None, url):
                raise
            raise _renamed(exc, url) from exc
        node = dict(node, name=path)
        self._nodes[path] = node
        return node

    def _cheap_node(self, path: str) -> dict[str, Any]:
        """The node at ``path``, or a stand-in with just its kind and ids when ids alone determine it
        (an organisation id, the short ``data/{data_id}`` form): lets ``{org_id}/data/{data_id}/{file_id}``
        resolve with a single API request (listing the files)."""
        try:
            return self._nodes[path]
        except KeyError:
            pass
        with translated(self._url(path)):
            fp = parse(path)
        org = fp.organisation
        if org is not None and is_uuid(org):
            org_id = normalise_uuid(org)
            if fp.kind == "organisation":
                return self._entry(path, "organisation", id=org_id, organisation_id=org_id,
                                   fusion_url=PREFIX + org_id)
            if fp.kind == "data" and fp.section == "data":
                data_id = normalise_uuid(fp.data or "")
                return self._entry(path, "data", id=data_id, organisation_id=org_id, data_id=data_id,
                                   fusion_url=data_url(org_id, data_id))
        return self._node(path)

    def _resolve(self, path: str, fp: FusionPath) -> dict[str, Any]:
        kind = fp.kind
        if kind == "root":
            return self._entry("", "root", item_name="")
        client = self._lazy_client(path)
        parent_path = self._parent(path)
        segment = fp.segments[-1]
        if kind == "organisation":
            if is_uuid(segment):
                try:
                    return self._org_entry(path, self._call(path, client.get_organisation, segment))
                except FileNotFoundError:
                    pass  # maybe a name that looks like an id
            return self._match(path, self.ls("", detail=True), segment, "organisation")
        if kind == "section":  # check the organisation exists (one request, cached)
            return self._section_entry(path, self._node(parent_path)["organisation_id"], segment)
        parent = self._cheap_node(parent_path)
        org_id = parent["organisation_id"]
        if kind == "data":
            if fp.section == "data" or is_uuid(segment):
                try:
                    data = self._call(path, client.get_data, org_id, segment)
                    return self._data_entry(path, "data", org_id, data)
                except FileNotFoundError:
                    if fp.section == "data":
                        raise
            candidates = self._call(path, lambda: [d for d in client.iter_data(org_id, name=segment)
                                                   if d.name == segment])
            data = self._one(path, candidates, segment, "data")
            return self._data_entry(path, "data", org_id, data)
        if kind == "process":
            if is_uuid(segment):
                try:
                    return self._process_entry(path, org_id, self._call(path, client.get_process, org_id, segment))
                except FileNotFoundError:
                    pass
            candidates = self._call(path, lambda: [p for p in client.iter_processes(org_id, name=segment)
                                                   if p.name == segment])
            return self._process_entry(path, org_id, self._one(path, candidates, segment, "process"))
        if kind == "run":
            pid = parent["process_id"]
            return self._run_entry(path, org_id, pid, self._run_members(path, org_id, pid))
        if kind == "execution" and fp.run is not None:
            return self._run_member(path, parent, segment)
        if kind == "execution":
            pid = parent["process_id"]
            if not is_uuid(segment):
                raise FileNotFoundError(errno.ENOENT, f"executions are named by id (or {LATEST!r} for the whole "
                                        f"latest run), not {segment!r}", self._url(path))
            else:
                run = self._call(path, client.get_execution, org_id, segment)
                if run.process_id and run.process_id != pid:
                    raise FileNotFoundError(errno.ENOENT, f"execution {segment} belongs to another process",
                                            self._url(path))
            return self._execution_entry(path, org_id, pid, run)
        # component, output and file: match against the parent's listing (cached)
        siblings = self._cached_listing(parent_path)
        if siblings is None:
            siblings = self._fill_listing(parent_path, parent)
        return self._match(path, siblings, segment, kind)

    def _run_member(self, path: str, run: dict[str, Any], segment: str) -> dict[str, Any]:
        """One execution of the latest run: by id, ``slice-{i}``, ``aggregator[-{i}]`` or ``execution``."""
        run_path = self._parent(path)
        members = self._cached_listing(run_path)
        if members is None:
            members = self._fill_listing(run_path, run)
        wanted = parse_member(segment)
        found: list[dict[str, Any]] = []
        if is_uuid(segment):
            found = [m for m in members if str(m["id"]).lower() == segment.lower()]
        elif segment == SINGLE_MEMBER and run.get("group_id") is None:
            found = members[:1]
        elif wanted is not None:
            role, index = wanted
            found = [m for m in members if member_name(m.get("group_index"), m.get("group_count")) is not None
                     and str(member_name(m.get("group_index"), m.get("group_count"))).startswith(role + "-")
                     and (index is None or m.get("group_index") == index)]
        if len(found) == 1:
            return found[0]
        names = ", ".join(m["name"].rsplit("/", 1)[-1] for m in members[:8])
        what = "several executions" if found else "no execution"
        raise FileNotFoundError(
            errno.ENOENT, f"the latest run has {what} named {segment!r} (it has: {names}); `latest` is the whole "
            "run: name one execution by id, slice-N or aggregator-N before its component", self._url(path))

    def _match(self, path: str, siblings: list[dict[str, Any]], segment: str, kind: str) -> dict[str, Any]:
        """The sibling called ``segment``: by id first (any case), then by exact name."""
        folded = segment.lower()
        for entry in siblings:
            if folded in (str(entry.get("id") or "").lower(), str(entry.get("record_id") or "").lower()):
                return entry
        named = [e for e in siblings if e.get("item_name") == segment]
        if len(named) == 1:
            return named[0]
        if named:
            raise AmbiguousPathError(self._url(path), kind, segment, [(e["id"], e["item_name"]) for e in named])
        listed = [e for e in siblings if e["name"].rsplit("/", 1)[-1] == quote_segment(segment)]
        if listed:
            return listed[0]
        raise FileNotFoundError(errno.ENOENT, f"no {kind} with id or name {segment!r}", self._url(path))

    def _one(self, path: str, items: list[Any], segment: str, kind: str) -> Any:
        if len(items) == 1:
            return items[0]
        if not items:
            raise FileNotFoundError(errno.ENOENT, f"no {kind} with id or name {segment!r}", self._url(path))
        raise AmbiguousPathError(self._url(path), kind, segment, [(m.id, m.name) for m in items])

    def _file(self, path: str) -> tuple[str, dict[str, Any], FileKey]:
        """(stripped path, info, key) of a file; ``IsADirectoryError`` for anything else."""
        path = self._strip_protocol(path)
        info = self._node(path)
        if info["type"] != "file":
            raise IsADirectoryError(errno.EISDIR, f"this is a {info['kind']}, not a file", self._url(path))
        key = FileKey(info["organisation_id"], info["data_id"], info["file_id"])
        if info["size"] is None:
            info = dict(info, size=self._probe_size(path, key))
            self._nodes[path] = info
        return path, info, key

    def _probe_size(self, path: str, key: FileKey) -> int:
        """Size of a file whose analysis has not recorded one: from a 1-byte ranged GET (never HEAD)."""
        reader = self._conn.transport.open_range(key, 0, 1, path=self._url(path))
        try:
            reader.read()
        except OSError as exc:
            if getattr(exc, "errno", None) == errno.EIO or "416" in str(exc):
                return 0
            raise
        finally:
            reader.close()
        if reader.total is None:
            raise OSError(errno.EIO, "storage did not report the file size", self._url(path))
        return reader.total

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget listings and resolved names: all, or those of ``path``, below it and of its parents."""
        if path is None:
            self.dircache.clear()
            self._nodes.clear()
        else:
            path = self._strip_protocol(path)
            below = path + "/"
            for key in list(self.dircache._cache):
                if key == path or key.startswith(below) or below.startswith(key + "/") or key == "":
                    self.dircache.pop(key)
            for key in list(self._nodes._cache):
                if key == path or key.startswith(below):
                    self._nodes.pop(key)
        super().invalidate_cache(path)

    def ukey(self, path: str) -> str:
        """A key that changes only when the file does: its stable file id and size."""
        _, info, key = self._file(path)
        return f"{key.file_id}:{info['size']}"

    def checksum(self, path: str) -> int:
        return int(hashlib.sha256(self.ukey(path).encode()).hexdigest()[:16], 16)

    def created(self, path: str) -> datetime:
        return self._when(path, "created")

    def modified(self, path: str) -> datetime:
        return self._when(path, "updated")

    def _when(self, path: str, field: str) -> datetime:
        value = self.info(path).get(field) or self.info(path).get("created")
        if not value:
            raise NotImplementedError(f"{self._url(self._strip_protocol(path))} has no {field} time")
        return datetime.fromisoformat(value)

    def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> str:
        """A pre-signed HTTPS URL of the file (valid as long as the platform says; a secret)."""
        _, _, key = self._file(path)
        return self._conn.broker.lease(key).url


def _finished_run(path: str, node: dict[str, Any]) -> bool:
    """An execution named by id (not through ``latest``) that has ended: nothing below it changes."""
    if node.get("kind") != "execution" or node.get("success") is None:
        return False
    try:
        return parse(path).run is None
    except ValueError:  # pragma: no cover - a listed path always parses
        return False


def _renamed(exc: FileNotFoundError, url: str) -> FileNotFoundError:
    """The same error, naming the path the caller asked for (and, once, the part that failed)."""
    where = exc.filename
    if isinstance(exc, AmbiguousPathError):
        new: FileNotFoundError = AmbiguousPathError(url, exc.kind, exc.name, exc.candidates)
        if " (at " not in str(new.strerror):
            new.strerror = f"{new.strerror} (at {where})"
        return new
    text = str(exc.strerror or exc)
    if " (at " not in text:
        text = f"{text} (at {where})"
    return FileNotFoundError(exc.errno or errno.ENOENT, text, url)
