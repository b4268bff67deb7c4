"""Glue to the rest of fusion-stac: find the STAC items of a run, and the storage to read them.

Kept apart so the engine (grid, reader, graph) depends only on metadata records and a storage,
and can be tested on files served locally. A *run* is what one ``execute`` produced: a group of
slice executions (plus aggregators, whose outputs are not mosaicked), or a single execution.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fusion_stac import _urls
from fusion_stac.errors import NotFoundError
from fusion_stac.xarray._cache import DiskCache
from fusion_stac.xarray._errors import MosaicError
from fusion_stac.xarray._source import RasterSource, source_from_item
from fusion_stac.xarray._storage import storage_for

__all__ = ["Run", "resolve_runs", "resolve_sources", "storage_for"]


@dataclass(frozen=True)
class Run:
    """The raster items of one run (a group or an execution), in group order."""

    segment: str  # group id, or execution id when not grouped
    label: str
    started_at: datetime | None
    items: tuple[Any, ...]


def _is_model(obj: Any, name: str) -> bool:
    return type(obj).__name__ == name and hasattr(obj, "id")


def _org_id(client: Any, organisation: str | None, *owners: Any) -> str:
    for owner in owners:
        org = getattr(owner, "organisation_id", None)
        if org:
            return str(org)
    return str(client.organisation(organisation).id)


def _process(client: Any, org_id: str, process: Any) -> Any:
    if _is_model(process, "Process"):
        return process
    return client.find_process(org_id, str(process))


def _raster_items(items: Iterable[Any], *, asset: str | None, output: str | None, where: str) -> list[Any]:
    """Raster outputs of slices (not aggregators), one output only, sorted by group index."""
    key_asset = asset or "data"
    candidates = []
    for item in items:
        props = item.properties
        if props.get("fusion:aggregator"):
            continue
        a = item.assets.get(key_asset)
        if a is None or not a.extra_fields.get("raster:bands"):
            continue
        candidates.append(item)
    if not candidates:
        raise MosaicError(f"{where} has no raster outputs to mosaic")
    by_output: dict[tuple[str, str], list[Any]] = {}
    for item in candidates:
        props = item.properties
        by_output.setdefault((str(props.get("fusion:component") or ""), str(props.get("fusion:data_name") or "")),
                             []).append(item)
    if output is not None:
        chosen = [v for (comp, name), v in by_output.items() if output in (comp, name)]
        if not chosen:
            names = sorted({n or c for c, n in by_output})
            raise MosaicError(f"{where} has no output {output!r}; it has {', '.join(map(repr, names))}",
                              field="output")
        selected = [i for group in chosen for i in group]
    elif len(by_output) > 1:
        names = sorted({n or c for c, n in by_output})
        raise MosaicError(f"{where} has several raster outputs ({', '.join(map(repr, names))}); pass output=",
                          field="output")
    else:
        selected = next(iter(by_output.values()))
    return sorted(selected, key=lambda i: (i.properties.get("fusion:group_index") or 0, i.id))


_RUNS = DiskCache("runs", 256 * 1024 * 1024)
_RUN_WALKERS = 4  # runs walked at once (each walk fans out on the client's own pool)


def _stamp(ex: Any) -> list[Any]:
    """What says an execution changed: its modification time, progress and outcome (as the API gave)."""
    updated = getattr(ex, "updated_at", None)
    return [updated.isoformat() if updated is not None else None, getattr(ex, "progress", None),
            getattr(ex, "success", None)]


_ASSET_FIELDS = ("href", "type", "title", "description", "roles")


@dataclass(frozen=True)
class CachedAsset:
    """The parts of a ``pystac.Asset`` the readers use, rebuilt from a cached item."""

    href: str
    media_type: str | None
    extra_fields: dict[str, Any]


@dataclass(frozen=True)
class CachedItem:
    """The parts of a ``pystac.Item`` the readers use (``id``, ``properties``, ``assets``,
    ``datetime``), rebuilt from its STAC dict without pystac (whose first ``Item.from_dict`` in a
    process looks for extension hooks among the installed packages: tens of ms, then ~0.2 ms each)."""

    id: str
    properties: dict[str, Any]
    assets: dict[str, CachedAsset]
    datetime: datetime | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CachedItem:
        props = dict(d.get("properties") or {})
        when = props.get("datetime")
        assets = {k: CachedAsset(str(a["href"]), a.get("type"), {f: v for f, v in a.items() if f not in _ASSET_FIELDS})
                  for k, a in (d.get("assets") or {}).items()}
        return cls(str(d["id"]), props, assets,
                   datetime.fromisoformat(str(when).replace("Z", "+00:00")) if when else None)


def _run_cache_key(client: Any, org_id: str, process_id: str, segment: str) -> str:
    return "|".join(("run", str(getattr(client, "api_url", "")), org_id, process_id, segment))


def _cached_run(key: str, members: Sequence[Any] | None, complete: bool) -> dict[str, Any] | None:
    """A finished run's collection as walked before, if nothing says it changed since: every member the
    caller knows of has the same stamp as then, and (``complete``: the caller knows them all) no member
    was added or removed."""
    raw = _RUNS.get(key)
    if raw is None:
        return None
    try:
        entry = json.loads(raw)
        stamps: dict[str, Any] = entry["members"]
        known = {m.id: _stamp(m) for m in members or ()}
        if any(stamps.get(i) != v for i, v in known.items()) or (complete and set(stamps) != set(known)):
            return None
        return dict(entry)
    except (ValueError, KeyError, TypeError, AttributeError):
        _RUNS.delete(key)
        return None


def _store_run(key: str, members: Sequence[Any] | None, progress: Any, failed: Any, items: list[Any]) -> None:
    """Keep a finished run's collection on disk (not a running one: its metadata still changes)."""
    if progress is not None and progress < 100:
        return
    if not members or any((m.progress or 0) < 100 for m in members):
        return
    entry = {"members": {m.id: _stamp(m) for m in members}, "progress": progress, "failed": failed,
             "items": [i.to_dict(include_self_link=False, transform_hrefs=False) for i in items]}
    _RUNS.put(key, json.dumps(entry, separators=(",", ":")).encode())


def _process_view(client: Any, org_id: str, process: Any, listed: Sequence[Any]) -> Any:
    """One STAC view of a process for all its runs, primed with what the caller already has (the
    process and its complete executions listing): a run's walk then asks only for its executions'
    components and files."""
    from fusion_stac.stac.io import FusionStacIO

    view = FusionStacIO(client)
    view.seed([process])
    view.seed_executions(org_id, process.id, list(reversed(listed)))
    return view


def _open_run(view: Any, org_id: str, process_id: str, segment: str, grouped: bool) -> Any:
    from fusion_stac.stac import io as stac_io
    from fusion_stac.stac.catalog import FusionCollection

    href = (stac_io.group_href if grouped else stac_io.execution_href)(org_id, process_id, segment)
    coll = FusionCollection.from_file(href, stac_io=view)
    coll.set_root(coll)
    return coll


def _fetch_run(client: Any, org_id: str, process_id: str, segment: str, members: Sequence[Any] | None = None,
               complete: bool = False, view: Any = None) -> tuple[Any, Any, list[Any]]:
    """``(progress, failed execution ids, items)`` of a run's STAC collection. ``members``: the run's
    executions as listed (all of them when ``complete``): a finished run walked before, whose members
    have not changed since, is answered from the disk cache without a request. ``view``: a STAC view
    of the process to walk it in (:func:`_process_view`; default: a view of its own)."""
    key = _run_cache_key(client, org_id, process_id, segment)
    entry = _cached_run(key, members, complete)
    if entry is not None:
        return entry["progress"], entry["failed"], [CachedItem.from_dict(d) for d in entry["items"]]
    from fusion_stac.stac.catalog import open_catalog

    if view is not None and members:
        coll = _open_run(view, org_id, process_id, segment, members[0].group_id is not None)
    else:
        coll = open_catalog(client, _urls.process_url(org_id, process_id, segment))
    progress = coll.extra_fields.get("fusion:progress")
    failed = coll.extra_fields.get("fusion:failed_execution_ids")
    if progress is not None and progress < 100:
        return progress, failed, []  # still running: its items are not walked
    items = list(coll.get_items(recursive=True))
    if members is not None:
        _store_run(key, members, progress, failed, items)
    return progress, failed, items


def _checked_items(fetched: tuple[Any, Any, list[Any]], *, asset: str | None, output: str | None,
                   label: str) -> list[Any]:
    progress, failed, items = fetched
    if progress is not None and progress < 100:
        raise MosaicError(f"{label} is still running ({progress}% done); wait for it to complete")
    if failed:
        warnings.warn(f"{label}: execution(s) {', '.join(failed)} failed; their slices are missing from the mosaic",
                      stacklevel=4)
    return _raster_items(items, asset=asset, output=output, where=label)


def _run_items(client: Any, org_id: str, process_id: str, segment: str, *, asset: str | None,
               output: str | None, label: str, members: Sequence[Any] | None = None,
               complete: bool = False) -> list[Any]:
    """The raster items of a run (from the disk cache when known and unchanged, see :func:`_fetch_run`)."""
    fetched = _fetch_run(client, org_id, process_id, segment, members, complete)
    return _checked_items(fetched, asset=asset, output=output, label=label)


def _as_sources(items: Iterable[Any], asset: str | None) -> list[RasterSource]:
    return [item if isinstance(item, RasterSource) else source_from_item(item, asset) for item in items]


def resolve_sources(client: Any, *, process: Any = None, group_id: str | None = None, execution: Any = None,
                    items: Iterable[Any] | None = None, asset: str | None = None,
                    organisation: str | None = None, output: str | None = None) -> list[RasterSource]:
    """The sources to mosaic, in group order, from whichever of the inputs was given."""
    given = [n for n, v in (("items", items), ("execution", execution), ("group_id", group_id)) if v is not None]
    if len(given) > 1:
        raise MosaicError(f"pass only one of items=, execution=, group_id= (got {', '.join(given)})")
    if items is not None:
        if not isinstance(items, (list, tuple)):
            items = list(items)
        sources = _as_sources(items, asset)
        if not sources:
            raise MosaicError("items= is empty: no slices to mosaic", field="items")
        return sources
    if client is None:
        raise MosaicError("nothing to mosaic: pass items=, or a client with process=, group_id= or execution=")
    if execution is not None:
        ex = execution if _is_model(execution, "ProcessExecution") else None
        org_id = _org_id(client, organisation, ex, process)
        if ex is None:
            ex = client.get_execution(org_id, str(execution))
        process_id = ex.process_id
        segment = ex.group_id or ex.id
        members = [ex]
        label = f"group {ex.group_id}" if ex.group_id else f"execution {ex.id}"
    else:
        members = None
        if process is None:
            raise MosaicError("nothing to mosaic: pass process= (optionally with group_id=), execution= or items=")
        org_id = _org_id(client, organisation, process)
        proc = _process(client, org_id, process)
        process_id = proc.id
        if group_id is not None:
            segment = _urls.normalise_uuid(group_id) if _urls.is_uuid(group_id) else group_id
            label = f"group {segment} of process {proc.name!r}"
        else:
            try:
                latest = client.latest_execution(org_id, proc.id)
            except NotFoundError as exc:
                raise MosaicError(f"process {proc.name!r} has not run yet: nothing to mosaic") from exc
            segment = latest.group_id or latest.id
            members = [latest]
            what = f"group {latest.group_id}" if latest.group_id else f"execution {latest.id}"
            label = f"the latest run ({what}) of process {proc.name!r}"
    items_ = _run_items(client, org_id, process_id, segment, asset=asset, output=output, label=label,
                        members=members)
    return _as_sources(items_, asset)


def resolve_runs(client: Any, process: Any, *, organisation: str | None = None, executions: Sequence[Any] | None = None,
                 start: datetime | None = None, end: datetime | None = None, asset: str | None = None,
                 output: str | None = None) -> list[Run]:
    """The completed runs of a process (groups and single executions), oldest first."""
    org_id = _org_id(client, organisation, process)
    proc = _process(client, org_id, process)
    wanted = None
    if executions is not None:
        wanted = {getattr(e, "id", e) for e in executions}
    runs: dict[str, list[Any]] = {}
    listed = list(client.iter_executions(org_id, proc.id, reverse=False))
    for ex in listed:
        if wanted is not None and ex.id not in wanted and ex.group_id not in wanted:
            continue
        runs.setdefault(ex.group_id or ex.id, []).append(ex)
    todo: list[tuple[str, list[Any], datetime | None, str]] = []
    for segment, members in runs.items():
        started = min((m.started_at for m in members if m.started_at is not None), default=None)
        if start is not None and started is not None and started < start:
            continue
        if end is not None and started is not None and started > end:
            continue
        grouped = members[0].group_id is not None
        label = f"{'group' if grouped else 'execution'} {segment} of process {proc.name!r}"
        if any((m.progress or 0) < 100 for m in members):
            warnings.warn(f"{label} is still running: left out of the time series", stacklevel=3)
            continue
        todo.append((segment, members, started, label))
    # Runs not seen before are walked a few at a time (each walk is a chain of dependent requests);
    # known ones come from the disk cache. Warnings and errors are raised here, in run order.
    view = _process_view(client, org_id, proc, listed)
    with ThreadPoolExecutor(max_workers=max(1, min(_RUN_WALKERS, len(todo))),
                            thread_name_prefix="fusion-runs") as pool:
        fetches = [pool.submit(_fetch_run, client, org_id, proc.id, segment, members, True, view)
                   for segment, members, _, _ in todo]
        out: list[Run] = []
        for (segment, _, started, label), fetch in zip(todo, fetches, strict=True):
            try:
                items = _checked_items(fetch.result(), asset=asset, output=output, label=label)
            except MosaicError as exc:
                if exc.field == "output":
                    raise
                warnings.warn(f"{exc}: left out of the time series", stacklevel=3)
                continue
            out.append(Run(segment, label, started, tuple(items)))
    out.sort(key=lambda r: (r.started_at is None, r.started_at or datetime.min))
    if not out:
        raise MosaicError(f"process {proc.name!r} has no completed runs with raster outputs"
                          + (" in the requested time range" if start or end else ""))
    return out
