"""``open_timeseries``: the runs of a process stacked along ``time``, each run a mosaic.

A process that runs on a schedule (or is executed repeatedly) produces one output per run; a
large region gives one group of slices per run. Every run is mosaicked onto one common grid
(computed from the metadata of all of them) and stacked in start-time order, lazily.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fusion_stac.xarray._errors import MosaicError
from fusion_stac.xarray._http import FetchSettings
from fusion_stac.xarray._source import RasterSource, source_from_item
from fusion_stac.xarray._storage import Storage, as_storage

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr
    from odc.geo.geobox import GeoBox

__all__ = ["open_timeseries"]


def open_timeseries(
    client: Any = None,
    process: Any = None,
    *,
    executions: Sequence[Any] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    items: Iterable[Any] | None = None,
    asset: str | None = None,
    output: str | None = None,
    organisation: str | None = None,
    crs: Any = None,
    resolution: Any = None,
    bbox: Sequence[float] | None = None,
    bbox_crs: Any = None,
    geobox: GeoBox | None = None,
    bands: Sequence[int | str] | None = None,
    chunks: Any = None,
    resampling: str = "nearest",
    method: str = "first",
    dtype: Any = None,
    nodata: float | None = None,
    use_overviews: bool = True,
    storage: Storage | None = None,
    fetch: FetchSettings | None = None,
) -> xr.DataArray:
    """The runs of ``process`` as one DataArray (dims ``time, band, y, x``), lazily.

    Runs are groups (mosaicked like :func:`~fusion_stac.xarray.open_mosaic`) or single executions,
    ordered by start time, which is the ``time`` coordinate. ``executions`` (ids of executions or
    groups), ``start`` and ``end`` narrow the runs; runs still running or without raster output
    are left out with a warning. Instead of a process, ``items`` may be STAC items of several runs
    (grouped by their ``fusion:group_id`` / ``fusion:execution_id``). Every other argument is as
    for ``open_mosaic``; with ``chunks`` each chunk holds one time step.
    """
    from fusion_stac.xarray import _platform
    from fusion_stac.xarray._build import Stack, build_dataarray
    from fusion_stac.xarray._grid import output_geobox
    from fusion_stac.xarray.mosaic import output_attrs, read_config

    if items is not None:
        if process is not None or executions is not None:
            raise MosaicError("pass either items= or process= (with executions=), not both")
        layers, times = _layers_from_items(list(items), asset)
    else:
        if client is None or process is None:
            raise MosaicError("open_timeseries needs a client and a process (or items=)")
        runs = _platform.resolve_runs(client, process, organisation=organisation, executions=executions,
                                      start=start, end=end, asset=asset, output=output)
        layers = [[source_from_item(i, asset) for i in run.items] for run in runs]
        times = [run.started_at or _first_time(layer) for run, layer in zip(runs, layers, strict=True)]
    known = [t for t in times if t is not None]
    if len(known) != len(times):
        raise MosaicError("some runs have no start time; cannot place them on a time axis")
    every = [s for layer in layers for s in layer]
    the_storage = storage if storage is not None else as_storage(client)
    gbox = output_geobox(every, crs=crs, resolution=resolution, bbox=bbox, bbox_crs=bbox_crs, geobox=geobox)
    cfg, names = read_config(every, bands=bands, dtype=dtype, nodata=nodata, resampling=resampling,
                             method=method, use_overviews=use_overviews, fetch=fetch)
    stack = Stack(tuple(tuple(layer) for layer in layers), gbox, cfg, the_storage)
    attrs = output_attrs(every, cfg)
    attrs.pop("fusion:slices", None)
    for key in ("fusion:group_id", "fusion:group_count"):
        attrs.pop(key, None)
    attrs["fusion:runs"] = len(layers)
    return build_dataarray(stack, chunks=chunks, band_names=names, attrs=attrs, times=known)


def _first_time(layer: Sequence[RasterSource]) -> datetime | None:
    times = [s.datetime for s in layer if s.datetime is not None]
    return min(times) if times else None


def _layers_from_items(items: list[Any], asset: str | None) -> tuple[list[list[RasterSource]], list[datetime | None]]:
    if not items:
        raise MosaicError("items= is empty: no runs to stack", field="items")
    runs: dict[str, list[Any]] = {}
    for item in items:
        if isinstance(item, RasterSource):
            raise MosaicError("open_timeseries(items=) takes STAC items (their run and time are needed)")
        props = item.properties
        key = props.get("fusion:group_id") or props.get("fusion:execution_id") or str(props.get("start_datetime")
                                                                                     or item.datetime)
        runs.setdefault(str(key), []).append(item)
    out: list[tuple[datetime | None, list[RasterSource]]] = []
    for members in runs.values():
        members.sort(key=lambda i: (i.properties.get("fusion:group_index") or 0, i.id))
        starts = [_start(i) for i in members]
        known = [t for t in starts if t is not None]
        out.append((min(known) if known else None, [source_from_item(i, asset) for i in members]))
    out.sort(key=lambda p: (p[0] is None, p[0] or datetime.min))
    return [layer for _, layer in out], [t for t, _ in out]


def _start(item: Any) -> datetime | None:
    value = item.properties.get("start_datetime")
    if value:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return item.datetime
