"""What the loaders know about one raster file before reading a byte of it.

A :class:`RasterSource` is built from metadata alone (a STAC item of the STAC view, or an explicit
record), so the output grid, the per-chunk source lists and the dask graph are all computed
without opening any file. It names the file by stable ids only (:class:`FileKey`); signed URLs are
obtained at read time, on whichever process does the reading.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from fusion_stac import _urls
from fusion_stac.storage import FileKey
from fusion_stac.xarray._errors import MosaicError

if TYPE_CHECKING:  # pragma: no cover
    import pystac
    from odc.geo.geobox import GeoBox

__all__ = ["FileKey", "RasterSource", "file_key", "source_from_item", "sources_from_items"]

#: STAC asset keys tried, in order, when an item has no ``asset=`` chosen by the caller.
DEFAULT_ASSET_KEYS = ("data",)


def file_key(url: str) -> FileKey:
    """The :class:`FileKey` of ``fusion://{org}/data/{data_id}/{file_id}`` (other forms need the API)."""
    try:
        path = _urls.parse(url)
    except _urls.FusionURLError as exc:
        raise MosaicError(f"{url!r} is not a file URL of the form fusion://{{organisation}}/data/{{data_id}}/"
                          f"{{file_id}}: {exc}", field="href") from exc
    if path.kind != "file" or not path.is_short_form:
        raise MosaicError(
            f"{url!r} is not a file URL of the form fusion://{{organisation}}/data/{{data_id}}/{{file_id}}",
            field="href",
        )
    assert path.organisation and path.data and path.file
    return FileKey(path.organisation, _urls.normalise_uuid(path.data), _urls.normalise_uuid(path.file))


@dataclass(frozen=True)
class RasterSource:
    """One raster file as the loaders see it: grid, pixel type and nodata, all from metadata.

    ``label`` names the file for humans in every error (execution, slice and file), ``size`` is
    its length in bytes when known (so no request is needed to learn it), ``cog`` says it is laid
    out as a cloud-optimized GeoTIFF (header first, then the coarsest overview's tiles: a coarse
    read finds its pixels right behind the header) and ``overviews`` lists its overview factors
    when known, ``datetime`` orders time series, and ``attrs`` carries the item's ``fusion:``
    properties into the output.
    """

    key: FileKey
    crs: str
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int]
    dtype: str
    count: int = 1
    nodata: float | None = None
    size: int | None = None
    band_names: tuple[str, ...] = ()
    scales: tuple[float, ...] = ()
    offsets: tuple[float, ...] = ()
    units: tuple[str | None, ...] = ()
    label: str = ""
    datetime: datetime | None = None
    group_index: int | None = None
    attrs: tuple[tuple[str, Any], ...] = field(default=(), compare=False)
    cog: bool = False
    overviews: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        name = self.label or self.key.url
        if len(self.transform) != 6:
            raise MosaicError(f"{name}: transform must have 6 numbers, got {len(self.transform)}")
        if len(self.shape) != 2 or min(self.shape) <= 0:
            raise MosaicError(f"{name}: invalid shape {self.shape!r}")
        if self.count < 1:
            raise MosaicError(f"{name}: a raster needs at least one band, got count={self.count}")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError as exc:
            raise MosaicError(f"{name}: unknown data type {self.dtype!r}") from exc
        if dtype.kind not in "uifc":
            raise MosaicError(f"{name}: data type {self.dtype!r} is not a numeric raster type")
        object.__setattr__(self, "dtype", dtype.name)
        if self.nodata is not None:
            check_nodata(self.nodata, dtype, name)
        if not self.band_names:
            object.__setattr__(self, "band_names", tuple(str(i + 1) for i in range(self.count)))
        elif len(self.band_names) != self.count:
            raise MosaicError(f"{name}: {len(self.band_names)} band names for {self.count} bands")
        if not self.label:
            object.__setattr__(self, "label", f"file {self.key.url}")

    @cached_property
    def geobox(self) -> GeoBox:
        """The file's pixel grid (odc-geo), from metadata."""
        from affine import Affine
        from odc.geo.geobox import GeoBox

        return GeoBox(self.shape, Affine(*self.transform), self.crs)

    def mismatches(self, shape: tuple[int, int], count: int,
                   transform: tuple[float, ...] | None) -> list[str]:
        """How a file's own grid (``shape``, band ``count``, ``transform``) differs from this metadata;
        empty when reading it puts every pixel where the metadata says."""
        problems = []
        if tuple(shape) != tuple(self.shape):
            problems.append(f"shape {tuple(shape)} (metadata: {tuple(self.shape)})")
        if count < self.count:
            problems.append(f"{count} bands (metadata: {self.count})")
        if transform is None or not np.allclose(transform[:6], self.transform, rtol=0,
                                                atol=1e-6 * max(self.resolution)):
            problems.append(f"transform {None if transform is None else tuple(transform[:6])} "
                            f"(metadata: {self.transform})")
        return problems

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units, both positive."""
        a, b, _, d, e, _ = self.transform
        return (math.hypot(a, d), math.hypot(b, e))

    @property
    def fusion_attrs(self) -> dict[str, Any]:
        return dict(self.attrs)


def check_nodata(nodata: float, dtype: np.dtype, name: str) -> None:
    """Fail (naming the file) when a nodata value cannot be stored in the data type."""
    if isinstance(nodata, float) and math.isnan(nodata):
        if dtype.kind not in "fc":
            raise MosaicError(f"{name}: nodata NaN is not representable in {dtype.name}")
        return
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        if not float(nodata).is_integer() or not info.min <= nodata <= info.max:
            raise MosaicError(
                f"{name}: nodata {nodata!r} is not representable in {dtype.name} "
                f"(range {info.min}..{info.max})"
            )
    elif dtype.kind == "f":
        finfo = np.finfo(dtype)
        if math.isfinite(nodata) and abs(nodata) > finfo.max:
            raise MosaicError(f"{name}: nodata {nodata!r} is outside the range of {dtype.name}")


# ------------------------------------------------------------------------------------------
# STAC items -> sources


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


def _crs_of(fields: Mapping[str, Any]) -> str | None:
    code = fields.get("proj:code")
    if code:
        return str(code)
    epsg = fields.get("proj:epsg")
    if epsg:
        return f"EPSG:{int(epsg)}"
    for key in ("proj:wkt2", "proj:projjson"):
        value = fields.get(key)
        if value:
            if isinstance(value, Mapping):
                from pyproj import CRS

                return CRS.from_json_dict(dict(value)).to_wkt()
            return str(value)
    return None


def _pick_asset(item: pystac.Item, asset: str | None) -> tuple[str, pystac.Asset]:
    if asset is not None:
        if asset not in item.assets:
            raise MosaicError(
                f"item {item.id!r} has no asset {asset!r}; it has {', '.join(sorted(item.assets)) or 'none'}",
                field="asset",
            )
        return asset, item.assets[asset]
    for key in DEFAULT_ASSET_KEYS:
        if key in item.assets:
            return key, item.assets[key]
    fusion_assets = [k for k, a in item.assets.items() if str(a.href).startswith(_urls.PREFIX)]
    if len(fusion_assets) == 1:
        return fusion_assets[0], item.assets[fusion_assets[0]]
    raise MosaicError(
        f"item {item.id!r}: cannot tell which asset holds the raster (assets: "
        f"{', '.join(sorted(item.assets)) or 'none'}); pass asset=",
        field="asset",
    )


def describe_item(item: pystac.Item, key: FileKey | None = None) -> str:
    """A human label naming the execution, slice and file of an item (used in every error)."""
    props = item.properties
    parts = []
    index, count = props.get("fusion:group_index"), props.get("fusion:group_count")
    if index is not None:
        parts.append(f"slice {index}/{count}" if count else f"slice {index}")
    execution = props.get("fusion:execution_id")
    if execution:
        parts.append(f"execution {execution}")
    parts.append(f"item {item.id!r}")
    if key is not None:
        parts.append(f"file {key.url}")
    return ", ".join(parts)


def source_from_item(item: pystac.Item, asset: str | None = None) -> RasterSource:
    """Build a :class:`RasterSource` from a STAC item of the STAC view (no request made).

    Grid and pixel-type fields are taken from the asset first, then from the item properties
    (both places are valid STAC); an item without them is an error naming the item.
    """
    asset_key, stac_asset = _pick_asset(item, asset)
    key = file_key(str(stac_asset.href))
    label = describe_item(item, key)
    afields: dict[str, Any] = dict(stac_asset.extra_fields)
    pfields: dict[str, Any] = dict(item.properties)

    def get(name: str) -> Any:
        return _first(afields.get(name), pfields.get(name))

    crs = _crs_of(afields) or _crs_of(pfields)
    shape = get("proj:shape")
    transform = get("proj:transform")
    missing = [n for n, v in (("proj:code/proj:epsg", crs), ("proj:shape", shape), ("proj:transform", transform))
               if not v]
    if missing:
        raise MosaicError(f"{label}: missing {', '.join(missing)}; cannot place it on a grid without reading it")
    bands = get("raster:bands") or []
    if not bands:
        # Without raster:bands we know neither the data type nor the band count.
        raise MosaicError(f"{label}: missing raster:bands (data type, nodata) on asset {asset_key!r}")
    dtypes = {b.get("data_type") for b in bands}
    if len(dtypes) != 1 or None in dtypes:
        raise MosaicError(f"{label}: bands must share one data_type, got {sorted(map(str, dtypes))}")
    nodatas = {_nodata_key(b.get("nodata")) for b in bands}
    if len(nodatas) != 1:
        raise MosaicError(f"{label}: bands with different nodata values are not supported")
    nodata = _parse_nodata(bands[0].get("nodata"))
    names = tuple(str(b.get("name") or (b.get("eo:common_name")) or i + 1) for i, b in enumerate(bands))
    size = afields.get("file:size")
    when = item.datetime or _parse_dt(pfields.get("start_datetime"))
    fusion = tuple(sorted((k, v) for k, v in pfields.items() if k.startswith("fusion:")))
    return RasterSource(
        key=key,
        crs=crs,  # type: ignore[arg-type]
        transform=tuple(float(v) for v in list(transform)[:6]),  # type: ignore[arg-type]
        shape=(int(shape[0]), int(shape[1])),
        dtype=str(dtypes.pop()),
        count=len(bands),
        nodata=nodata,
        size=int(size) if size is not None else None,
        cog="profile=cloud-optimized" in str(stac_asset.media_type or "").replace(" ", "").lower(),
        overviews=_overviews(afields.get("fusion:overviews")),
        band_names=names if len(set(names)) == len(names) else tuple(str(i + 1) for i in range(len(bands))),
        scales=tuple(float(b.get("scale", 1.0)) for b in bands),
        offsets=tuple(float(b.get("offset", 0.0)) for b in bands),
        units=tuple(b.get("unit") for b in bands),
        label=label,
        datetime=when,
        group_index=_int_or_none(pfields.get("fusion:group_index")),
        attrs=fusion,
    )


def sources_from_items(items: Any, asset: str | None = None) -> list[RasterSource]:
    """Sources of every item (pystac Items or ItemCollection), in the given order."""
    return [source_from_item(item, asset) for item in items]


def _overviews(value: Any) -> tuple[int, ...]:
    # Only a hint for request sizes: anything malformed counts as unknown.
    try:
        factors = tuple(int(v) for v in value or ())
    except (TypeError, ValueError):
        return ()
    return factors if all(f > 1 for f in factors) else ()


def _parse_nodata(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "nan":
            return float("nan")
        if lowered in ("inf", "+inf"):
            return float("inf")
        if lowered == "-inf":
            return float("-inf")
    return float(value)


def _nodata_key(value: Any) -> Any:
    parsed = _parse_nodata(value)
    return "nan" if parsed is not None and math.isnan(parsed) else parsed


def _parse_dt(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
