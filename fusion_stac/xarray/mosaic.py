"""``open_mosaic``: the slices of a grouped execution as one lazy, georeferenced DataArray.

A large region is processed by the platform as a group of executions, one slice each; users used
to download every slice and call ``rasterio.merge``. Here the output grid is computed from the
slices' metadata (no file opened), each chunk reads only the slices that touch it (a chunk no
slice touches costs no request), slices in another CRS are warped on the fly, overlaps are fused
with ``method``, and the native data type and nodata are kept.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fusion_stac.xarray._errors import MosaicError
from fusion_stac.xarray._http import DEFAULT_SETTINGS, FetchSettings
from fusion_stac.xarray._reader import METHODS, ReadConfig
from fusion_stac.xarray._source import RasterSource, check_nodata
from fusion_stac.xarray._storage import Storage, as_storage

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr
    from odc.geo.geobox import GeoBox

__all__ = ["open_mosaic"]

_RESAMPLING = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode", "min", "max",
               "med", "q1", "q3", "sum", "rms")


def open_mosaic(
    client: Any = None,
    *,
    process: Any = None,
    group_id: str | None = None,
    execution: Any = None,
    items: Iterable[Any] | None = None,
    asset: str | None = None,
    output: str | None = None,
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
    organisation: str | None = None,
    storage: Storage | None = None,
    fetch: FetchSettings | None = None,
) -> xr.DataArray:
    """Open the slices of a group as one mosaic (dims ``band, y, x``), lazily.

    What to mosaic (one of): ``items`` (pystac Items of the STAC view, or
    :class:`~fusion_stac.xarray.RasterSource`), ``execution`` (its group, or just it when it is
    not grouped), ``group_id`` of ``process``, or ``process`` alone (its most recent group).
    ``asset`` picks the asset of each item (default ``"data"``); ``output`` picks one output by its
    name or component when the run produced several rasters.

    Grid: ``crs`` (default: the CRS most slices are in; an even split is an error naming the
    slices), ``resolution`` in CRS units (default: the slices' own), ``bbox`` as
    (west, south, east, north) in lon/lat unless ``bbox_crs`` is given, or a whole ``geobox``.

    Pixels: ``bands`` (1-based numbers or band names), ``method`` for overlaps (``first``,
    ``last``, ``min``, ``max``, ``mean``; first/last follow the slices' group order),
    ``resampling`` when warping or reading coarser than native (GDAL then reads the slices'
    overviews, unless ``use_overviews=False``), ``dtype`` and ``nodata`` to override the native
    ones (default: kept; never widened to float64).

    ``chunks``: ``None`` (default) gives an xarray lazily indexed array, read on access, window by
    window, slices concurrently; ``{}``/``"auto"``/an int/``{"y": .., "x": ..}`` gives a dask
    array whose graph pickles without secrets (workers sign their own URLs).
    """
    from fusion_stac.xarray import _platform
    from fusion_stac.xarray._build import Stack, build_dataarray
    from fusion_stac.xarray._grid import output_geobox

    sources = _platform.resolve_sources(
        client, process=process, group_id=group_id, execution=execution, items=items, asset=asset,
        organisation=organisation, output=output,
    )
    the_storage = storage if storage is not None else as_storage(client)
    gbox = output_geobox(sources, crs=crs, resolution=resolution, bbox=bbox, bbox_crs=bbox_crs, geobox=geobox)
    cfg, names = read_config(sources, bands=bands, dtype=dtype, nodata=nodata, resampling=resampling,
                             method=method, use_overviews=use_overviews, fetch=fetch)
    stack = Stack((tuple(sources),), gbox, cfg, the_storage)
    return build_dataarray(stack, chunks=chunks, band_names=names, attrs=output_attrs(sources, cfg),
                           times=None, name=_name(sources))


def read_config(
    sources: Sequence[RasterSource],
    *,
    bands: Sequence[int | str] | None,
    dtype: Any,
    nodata: float | None,
    resampling: str,
    method: str,
    use_overviews: bool,
    fetch: FetchSettings | None,
) -> tuple[ReadConfig, tuple[str, ...]]:
    """Check the user's pixel options against the slices; the read config and band names."""
    if not sources:
        raise MosaicError("no slices to mosaic", field="items")
    if method not in METHODS:
        raise MosaicError(f"method={method!r}: expected one of {', '.join(METHODS)}", field="method")
    if resampling not in _RESAMPLING:
        raise MosaicError(f"resampling={resampling!r}: expected one of {', '.join(_RESAMPLING)}",
                          field="resampling")
    first = sources[0]
    count = min(s.count for s in sources)
    indexes = _band_indexes(bands, first, count)
    names = tuple(first.band_names[i - 1] for i in indexes)
    dtypes = {np.dtype(s.dtype) for s in sources}
    native = np.result_type(*dtypes)
    if native == np.float64 and np.dtype("float64") not in dtypes:
        native = np.dtype("float32")  # e.g. int32 + float32 slices: float32, never float64 by default
    try:
        out_dtype = np.dtype(dtype) if dtype is not None else np.dtype(native)
    except TypeError as exc:
        raise MosaicError(f"dtype={dtype!r} is not a data type", field="dtype") from exc
    fill: float | None
    if nodata is not None:
        fill = float(nodata)
        check_nodata(fill, out_dtype, "nodata=")
    else:
        declared = [s.nodata for s in sources if s.nodata is not None]
        fill = declared[0] if declared else (math.nan if out_dtype.kind == "f" else None)
        if fill is not None:
            try:
                check_nodata(fill, out_dtype, first.label)
            except MosaicError as exc:
                raise MosaicError(f"{exc}; pass nodata= for dtype={out_dtype.name}", field="nodata") from None
    cfg = ReadConfig(
        bands=indexes, dtype=out_dtype.name, fill=fill, resampling=resampling, method=method,
        use_overviews=use_overviews, settings=fetch or DEFAULT_SETTINGS,
    )
    return cfg, names


def _band_indexes(bands: Sequence[int | str] | None, first: RasterSource, count: int) -> tuple[int, ...]:
    if bands is None:
        return tuple(range(1, count + 1))
    if isinstance(bands, (str, int)):
        bands = [bands]
    out = []
    for b in bands:
        if isinstance(b, (int, np.integer)) and not isinstance(b, bool):
            if not 1 <= int(b) <= count:
                raise MosaicError(f"band {b} does not exist: the slices have bands 1..{count} "
                                  f"({', '.join(first.band_names[:count])})", field="bands")
            out.append(int(b))
        elif isinstance(b, str) and b in first.band_names[:count]:
            out.append(first.band_names.index(b) + 1)
        else:
            raise MosaicError(f"unknown band {b!r}: the slices have bands 1..{count} named "
                              f"{', '.join(repr(n) for n in first.band_names[:count])}", field="bands")
    if not out:
        raise MosaicError("bands=[] selects nothing", field="bands")
    return tuple(out)


def output_attrs(sources: Sequence[RasterSource], cfg: ReadConfig) -> dict[str, Any]:
    """rioxarray-style attributes (_FillValue, scale/offset, units) and the shared ``fusion:`` ones."""
    attrs: dict[str, Any] = {}
    if cfg.fill is not None:
        attrs["_FillValue"] = np.dtype(cfg.dtype).type(cfg.fill).item()
    first = sources[0]
    idx = [b - 1 for b in cfg.bands]
    scales = [first.scales[i] for i in idx] if first.scales else []
    offsets = [first.offsets[i] for i in idx] if first.offsets else []
    if scales and any(s != 1.0 for s in scales):
        attrs["scale_factor"] = scales[0] if len(set(scales)) == 1 else tuple(scales)
    if offsets and any(o != 0.0 for o in offsets):
        attrs["add_offset"] = offsets[0] if len(set(offsets)) == 1 else tuple(offsets)
    units = {first.units[i] for i in idx} if first.units else set()
    if len(units) == 1 and None not in units:
        attrs["units"] = units.pop()
    attrs["long_name"] = tuple(first.band_names[i] for i in idx) if len(idx) > 1 else first.band_names[idx[0]]
    shared = _shared_attrs(sources)
    for k in ("fusion:group_index", "fusion:file_id", "fusion:data_id", "fusion:execution_id"):
        shared.pop(k, None)
    attrs.update(shared)
    attrs["fusion:slices"] = len(sources)
    attrs["fusion:method"] = cfg.method
    return attrs


def _shared_attrs(sources: Sequence[RasterSource]) -> dict[str, Any]:
    common: dict[str, Any] | None = None
    for s in sources:
        mine = {k: v for k, v in s.attrs if _plain(v)}
        common = mine if common is None else {k: v for k, v in common.items() if mine.get(k, _MISSING) == v}
    return dict(common or {})


_MISSING = object()


def _plain(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) and v is not None


def _name(sources: Sequence[RasterSource]) -> Hashable | None:
    for k, v in sources[0].attrs:
        if k == "fusion:output_name" and isinstance(v, str):
            return v
    return None
