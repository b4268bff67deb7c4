"""Pure mapping from Fusion Platform models to STAC dictionaries (no I/O, no client).

Everything a catalog needs is computed here from API payloads, so that it can be tested against
JSON fixtures alone, the way odc-stac keeps metadata parsing apart from readers:

* :class:`RasterInfo` — grid facts of a raster (shape, transform, CRS, dtype, nodata, COG layout),
  taken from the file's extended analysis (``ingesters``) or its ``stac_item`` when the platform
  sends them, otherwise from a header read done by the caller (see :mod:`fusion_stac.stac._header`);
* :func:`file_item` — one STAC Item per file, with the projection, raster, file, processing and
  timestamps extensions and ``fusion:`` properties naming every id a user may need;
* :func:`collection_dict` / :func:`catalog_dict` — containers with extents computed from their items.

Links are the caller's business (:mod:`fusion_stac.stac.io` adds them): a mapping result is a
plain dict that pystac loads with ``Item.from_dict`` / ``Collection.from_dict``.
"""

from __future__ import annotations

import math
import mimetypes
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pystac.extensions.file import SCHEMA_URI as FILE_SCHEMA
from pystac.extensions.projection import SCHEMA_URI as PROJECTION_SCHEMA
from pystac.extensions.raster import SCHEMA_URI as RASTER_SCHEMA
from pystac.extensions.timestamps import SCHEMA_URI as TIMESTAMPS_SCHEMA

from fusion_stac import _urls
from fusion_stac.models import (
    Data,
    DataFile,
    Organisation,
    Process,
    ProcessExecution,
    ProcessServiceExecution,
    Selector,
)
from fusion_stac.stac.bbox import geometry_bbox, union_bboxes, unwrap_bbox

__all__ = [
    "EXTENSIONS",
    "PROCESSING_SCHEMA",
    "STAC_VERSION",
    "CollectionState",
    "OutputContext",
    "RasterInfo",
    "catalog_dict",
    "collection_dict",
    "execution_state",
    "file_item",
    "footprint",
    "group_state",
    "is_raster",
    "media_type",
    "needs_header",
    "raster_info_from_file",
    "rfc3339",
]

STAC_VERSION = "1.1.0"
#: The processing extension has no pystac module; this is the version the official SDK declares.
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
EXTENSIONS: Mapping[str, str] = {
    "projection": PROJECTION_SCHEMA,
    "raster": RASTER_SCHEMA,
    "file": FILE_SCHEMA,
    "processing": PROCESSING_SCHEMA,
    "timestamps": TIMESTAMPS_SCHEMA,
}

PLATFORM = "Fusion Platform"
PROVIDER: Mapping[str, Any] = {
    "name": "Digital Content Analysis Technology Ltd (Fusion Platform)",
    "roles": ["producer", "processor", "host"],
    "url": "https://www.d-cat.co.uk",
}
LICENSE = "other"  # STAC 1.1: the platform's terms are not an SPDX licence

RASTER_FILE_TYPES = frozenset({"GeoTIFF", "JPEG2000", "DEM"})
_MEDIA_TYPES: Mapping[str, str] = {
    "GeoTIFF": "image/tiff; application=geotiff",
    "JPEG2000": "image/jp2",
    "DEM": "application/octet-stream",
    "GeoJSON": "application/geo+json",
    "KML": "application/vnd.google-earth.kml+xml",
    "KMZ": "application/vnd.google-earth.kmz",
    "CSV": "text/csv",
    "ESRI Shapefile": "application/zip",
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "PDF": "application/pdf",
    "GZIP": "application/gzip",
    "ZIP": "application/zip",
}
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
PREVIEW_MEDIA_TYPE = "image/png"

# numpy / GDAL data type names -> raster extension names
_DTYPES: Mapping[str, str] = {
    **{n: n for n in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                      "float16", "float32", "float64", "cint16", "cint32", "cfloat32", "cfloat64")},
    "byte": "uint8", "complex64": "cfloat32", "complex128": "cfloat64",
}

CollectionState = str  # "succeeded" | "running" | "failed" | "stopped" | "analysing" | "ready"

# --------------------------------------------------------------------------------------------------
# Small helpers


def rfc3339(value: datetime | str | None) -> str | None:
    """UTC RFC 3339 with a ``Z`` (what STAC asks for); ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    text = value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _number(value: Any) -> float | int | None:
    """A finite JSON number, or ``None`` (NaN/inf are not valid JSON numbers)."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return int(f) if f.is_integer() and not isinstance(value, float) else f


def _nodata(value: Any) -> float | int | str | None:
    """Nodata in the raster extension's encoding: numbers, or ``"nan"``/``"inf"``/``"-inf"``."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        text = str(value).strip().lower()
        return text if text in ("nan", "inf", "-inf") else None
    if math.isnan(f):
        return "nan"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return int(f) if f.is_integer() else f


def crs_code(crs: Any) -> str | None:
    """An authority code (``EPSG:32630``) for an EPSG int, ``"EPSG:n"`` / ``"epsg:n"`` string or URN."""
    if crs is None or crs == "":
        return None
    if isinstance(crs, int) or (isinstance(crs, str) and crs.strip().isdigit()):
        return f"EPSG:{int(crs)}"
    text = str(crs).strip()
    upper = text.upper()
    if upper.startswith("URN:OGC:DEF:CRS:EPSG::"):
        return f"EPSG:{text.rsplit(':', 1)[-1]}"
    if ":" in text and " " not in text and "[" not in text:
        auth, _, code = text.partition(":")
        return f"{auth.upper()}:{code}"
    return None  # WKT or PROJ string: not a code


def is_raster(file: DataFile) -> bool:
    """True for the platform's raster file types (GeoTIFF, JPEG2000, DEM)."""
    return (file.file_type or "") in RASTER_FILE_TYPES


def media_type(file_type: str | None, file_name: str | None = None, *, cog: bool | None = None) -> str | None:
    """IANA media type of a platform file; COGs get ``profile=cloud-optimized``."""
    if file_type == "GeoTIFF" and cog:
        return COG_MEDIA_TYPE
    if file_type is not None and file_type in _MEDIA_TYPES:
        return _MEDIA_TYPES[file_type]
    if file_name:
        guessed, _ = mimetypes.guess_type(file_name)
        return guessed
    return None


# --------------------------------------------------------------------------------------------------
# Raster grid facts


@dataclass(frozen=True)
class RasterInfo:
    """The grid of a raster: what a loader needs to plan reads without opening the file.

    ``transform`` is the GDAL/rasterio affine ``(a, b, c, d, e, f)``; ``crs`` an authority code
    (``EPSG:32630``) or WKT. ``cog`` is ``None`` when the layout is unknown.
    """

    width: int
    height: int
    transform: tuple[float, float, float, float, float, float]
    crs: str | None = None
    count: int = 1
    dtype: str | None = None
    nodata: float | None = None
    cog: bool | None = None
    overviews: tuple[int, ...] = ()
    source: str = "api"  # "api" (ingesters), "stac_item", or "header"

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"raster shape must be positive, got {self.height}x{self.width}")
        if len(self.transform) != 6:
            raise ValueError(f"raster transform needs 6 coefficients, got {len(self.transform)}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``, as ``proj:shape`` orders it."""
        return (self.height, self.width)

    @property
    def native_bbox(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` of the grid in its own CRS."""
        xs, ys = zip(*self.corners(), strict=True)
        return (min(xs), min(ys), max(xs), max(ys))

    def corners(self, densify: int = 0) -> list[tuple[float, float]]:
        """The outline of the grid (clockwise from the origin), ``densify`` extra points per edge."""
        a, b, c, d, e, f = self.transform
        pts: list[tuple[float, float]] = []
        edges = [((0, 0), (self.width, 0)), ((self.width, 0), (self.width, self.height)),
                 ((self.width, self.height), (0, self.height)), ((0, self.height), (0, 0))]
        for (c0, r0), (c1, r1) in edges:
            for i in range(densify + 1):
                t = i / (densify + 1)
                col, row = c0 + (c1 - c0) * t, r0 + (r1 - r0) * t
                pts.append((a * col + b * row + c, d * col + e * row + f))
        return pts

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width, "height": self.height, "transform": list(self.transform), "crs": self.crs,
            "count": self.count, "dtype": self.dtype, "nodata": self.nodata, "cog": self.cog,
            "overviews": list(self.overviews), "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str | None = None) -> RasterInfo:
        """From ``to_dict`` output, or from an ingester record (``width``, ``height``, ``transform``,
        ``epsg``/``crs``, ``dtype``, ``nodata``, ``overviews``, ``count``/``bands``, ``cog``/``tiled``)."""
        transform = [float(v) for v in d["transform"]][:6]
        crs = d.get("crs") or d.get("crs_wkt")
        if d.get("epsg") is not None:
            crs = f"EPSG:{int(d['epsg'])}"
        crs = crs_code(crs) or (str(crs) if crs else None)
        overviews = tuple(int(o) for o in d.get("overviews") or ())
        cog = d.get("cog")
        if cog is None and d.get("layout") is not None:
            cog = str(d["layout"]).upper() == "COG"
        if cog is None and d.get("tiled") is not None:
            cog = bool(d["tiled"]) and bool(overviews)
        count = d.get("count", d.get("bands", 1))
        if isinstance(count, (list, tuple)):
            count = len(count)
        nodata = d.get("nodata")
        return cls(
            width=int(d["width"]), height=int(d["height"]),
            transform=tuple(transform),  # type: ignore[arg-type]
            crs=crs, count=int(count or 1),
            dtype=str(d["dtype"]) if d.get("dtype") is not None else None,
            nodata=None if nodata is None else float(nodata),
            cog=None if cog is None else bool(cog), overviews=overviews,
            source=source or str(d.get("source") or "api"),
        )


_RASTER_INGESTER_KEYS = ("Raster", "raster", "GeoTIFF", "Image")


def raster_info_from_file(file: DataFile) -> RasterInfo | None:
    """Grid facts from the API alone: an ingester record, else the file's ``stac_item``; else ``None``."""
    ingesters: Mapping[str, Any] = file.ingesters or {}
    for key in _RASTER_INGESTER_KEYS:
        record = ingesters.get(key)
        if isinstance(record, Mapping) and {"width", "height", "transform"} <= set(record):
            try:
                info = RasterInfo.from_dict(record, source="api")
            except (KeyError, TypeError, ValueError):
                continue
            if info.crs is None and file.crs:
                info = _replace_crs(info, crs_code(file.crs) or file.crs)
            return info
    props = (file.stac_item or {}).get("properties") or {}
    assets = (file.stac_item or {}).get("assets") or {}
    for holder in [props, *[a for a in assets.values() if isinstance(a, Mapping)]]:
        shape, transform = holder.get("proj:shape"), holder.get("proj:transform")
        if shape and transform and len(shape) == 2 and len(transform) >= 6:
            crs = holder.get("proj:code") or props.get("proj:code")
            epsg = holder.get("proj:epsg", props.get("proj:epsg"))
            if crs is None and epsg is not None:
                crs = f"EPSG:{int(epsg)}"
            crs = crs or file.crs
            try:
                return RasterInfo(
                    width=int(shape[1]), height=int(shape[0]),
                    transform=tuple(float(v) for v in transform[:6]),  # type: ignore[arg-type]
                    crs=crs_code(crs) or crs, source="stac_item",
                )
            except (TypeError, ValueError):
                return None
    return None


def _replace_crs(info: RasterInfo, crs: str | None) -> RasterInfo:
    from dataclasses import replace

    return replace(info, crs=crs)


def needs_header(file: DataFile) -> bool:
    """True when a raster's grid is not in the API payload and must be read from the file itself."""
    return is_raster(file) and file.analysed and not file.analysis_failed and raster_info_from_file(file) is None


# --------------------------------------------------------------------------------------------------
# Footprints


def _is_geographic(code: str | None) -> bool:
    return code in ("EPSG:4326", "OGC:CRS84", "EPSG:4258", "EPSG:4269")


def _transformer(crs: str) -> Any | None:
    try:
        from pyproj import Transformer
    except ImportError:  # pragma: no cover - pyproj ships with the xarray/emulator extras
        return None
    return _cached_transformer(crs, Transformer)


_TRANSFORMERS: dict[str, Any] = {}


def _cached_transformer(crs: str, transformer_cls: Any) -> Any:
    t = _TRANSFORMERS.get(crs)
    if t is None:
        t = transformer_cls.from_crs(crs, "EPSG:4326", always_xy=True)
        _TRANSFORMERS[crs] = t
    return t


def _split_antimeridian(ring: list[tuple[float, float]]) -> dict[str, Any]:
    """A lon/lat ring that may cross 180° -> Polygon, or MultiPolygon split at the antimeridian.

    Longitudes are unwrapped (consecutive jumps over 180° mean a crossing), then the ring is
    clipped against each side of lon=180 (Sutherland-Hodgman on one vertical line), as the
    GeoJSON RFC 7946 §3.1.9 asks. Hand-written because shapely is not a core dependency.
    """
    unwrapped = [ring[0]]
    for lon, lat in ring[1:]:
        prev = unwrapped[-1][0]
        while lon - prev > 180:
            lon -= 360
        while lon - prev < -180:
            lon += 360
        unwrapped.append((lon, lat))
    lons = [p[0] for p in unwrapped]
    if min(lons) >= -180 and max(lons) <= 180:
        return {"type": "Polygon", "coordinates": [_close([list(p) for p in unwrapped])]}
    shift = 360.0 if min(lons) < -180 else 0.0
    pts = [(lon + shift, lat) for lon, lat in unwrapped]

    def clip(points: list[tuple[float, float]], keep_west: bool) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        inside = (lambda p: p[0] <= 180) if keep_west else (lambda p: p[0] >= 180)
        for i, cur in enumerate(points):
            prev = points[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(_cross(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(_cross(prev, cur))
        return out

    west = clip(pts, True)
    east = [(lon - 360, lat) for lon, lat in clip(pts, False)]
    polys = [[_close([list(p) for p in part])] for part in (west, east) if len(part) >= 3]
    return {"type": "MultiPolygon", "coordinates": polys}


def _cross(p: tuple[float, float], q: tuple[float, float]) -> tuple[float, float]:
    t = (180 - p[0]) / (q[0] - p[0])
    return (180.0, p[1] + t * (q[1] - p[1]))


def _close(ring: list[list[float]]) -> list[list[float]]:
    ring = [[round(x, 9), round(y, 9)] for x, y in ring]
    if ring[0] != ring[-1]:
        ring.append(list(ring[0]))
    return ring


def _bbox_of(geometry: Mapping[str, Any]) -> list[float]:
    box = geometry_bbox(geometry)
    if box is None:
        raise ValueError("empty geometry")
    return box


def _simplify_edges(ring: list[tuple[float, float]], per_edge: int, tolerance: float = 1e-5) -> list[tuple[float, float]]:
    """Drop densified points within ``tolerance`` degrees (about a metre) of a straight edge (Douglas-Peucker).

    Reprojection bends long edges; tiles of a few kilometres stay straight to within a metre, and then
    only their corners are kept.
    """
    out: list[tuple[float, float]] = []
    for start in range(0, len(ring), per_edge):
        edge = [*ring[start:start + per_edge], ring[(start + per_edge) % len(ring)]]
        out.extend(_douglas_peucker(edge, tolerance)[:-1])
    return out


def _douglas_peucker(pts: list[tuple[float, float]], tol: float) -> list[tuple[float, float]]:
    if len(pts) <= 2:
        return pts
    (x0, y0), (x1, y1) = pts[0], pts[-1]
    dx, dy = x1 - x0, y1 - y0
    norm = math.hypot(dx, dy) or 1e-300
    dists = [abs(dy * (x - x0) - dx * (y - y0)) / norm for x, y in pts[1:-1]]
    worst = max(range(len(dists)), key=dists.__getitem__)
    if dists[worst] <= tol:
        return [pts[0], pts[-1]]
    split = worst + 1
    return _douglas_peucker(pts[: split + 1], tol)[:-1] + _douglas_peucker(pts[split:], tol)


def footprint(info: RasterInfo | None = None, bounds: Sequence[float] | None = None,
              crs: str | None = None) -> tuple[dict[str, Any] | None, list[float] | None]:
    """``(geometry, bbox)`` in WGS84 for a raster grid, else for ``[w, s, e, n]`` bounds.

    Grids are reprojected outline-first (21 points per edge, then simplified) so that a footprint
    keeps its true shape with as few vertices as it needs; bounds in a projected CRS are reprojected the same way. Without pyproj, only
    lon/lat inputs give a footprint; anything else gives ``(None, None)`` rather than a wrong one.
    """
    if info is not None:
        code = crs_code(info.crs) or info.crs
        if code is None:
            return None, None
        ring = info.corners(densify=20)
    elif bounds is not None and len(bounds) >= 4:
        w, s, e, n = (float(v) for v in bounds[:4])
        code = crs_code(crs) if crs else None
        if code is None or _is_geographic(code):
            if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
                return None, None  # not lon/lat after all: refuse to guess
            if w == e:
                return None, None  # a zero-width box is no footprint
            code = "EPSG:4326"
            w, s, e, n = unwrap_bbox((w, s, e, n))  # west > east: across 180 (RFC 7946 5.2)
        ring = RasterInfo(width=1, height=1, transform=(e - w, 0.0, w, 0.0, s - n, n), crs=code).corners(20)
    else:
        return None, None
    if not _is_geographic(code):
        transformer = _transformer(code)
        if transformer is None:
            return None, None
        xs, ys = transformer.transform([p[0] for p in ring], [p[1] for p in ring])
        ring = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]
        if not all(math.isfinite(x) and math.isfinite(y) for x, y in ring):
            return None, None
        ring = _simplify_edges(ring, per_edge=21)
    else:
        ring = [ring[i] for i in range(0, len(ring), 21)]  # straight in lon/lat: the 4 corners suffice
    geometry = _split_antimeridian(ring)
    return geometry, [round(v, 9) for v in _bbox_of(geometry)]


def platform_footprint(geometry: Any) -> tuple[dict[str, Any] | None, list[float] | None]:
    """``(geometry, bbox)`` from a GeoJSON geometry the platform gave (a file's ``stac_item``), the
    bbox computed from the geometry (``west > east`` across 180); ``(None, None)`` when it is absent
    or not lon/lat GeoJSON."""
    if not isinstance(geometry, Mapping) or not geometry.get("type"):
        return None, None
    try:
        box = geometry_bbox(geometry)
    except (ValueError, TypeError, IndexError, KeyError):
        return None, None
    if box is None or not all(math.isfinite(v) for v in box):
        return None, None
    if not (-180 <= box[0] <= 180 and -180 <= box[2] <= 180 and -90 <= box[1] <= box[3] <= 90):
        return None, None
    return dict(geometry), [round(v, 9) for v in box]


# --------------------------------------------------------------------------------------------------
# Bands


def _band_index(selector: Selector, position: int) -> int:
    try:
        return int(selector.selector or "")
    except ValueError:
        return position + 1


def raster_bands(file: DataFile, info: RasterInfo | None) -> list[dict[str, Any]]:
    """``raster:bands`` entries: dtype and nodata from the grid, statistics/histogram from selectors."""
    selectors = sorted(enumerate(file.selectors), key=lambda p: _band_index(p[1], p[0]))
    count = max(info.count if info else 0, len(selectors), 1)
    by_band = {_band_index(s, i): s for i, s in selectors}
    bands: list[dict[str, Any]] = []
    for index in range(1, count + 1):
        band: dict[str, Any] = {}
        sel = by_band.get(index)
        dtype = info.dtype if info and info.dtype else (sel.data_type if sel else None)
        dtype = _DTYPES.get(str(dtype).lower()) if dtype else None
        if dtype:
            band["data_type"] = dtype
        nodata = _nodata(info.nodata) if info else None
        if nodata is not None:
            band["nodata"] = nodata
        if info is not None and file.resolution:
            band["spatial_resolution"] = float(file.resolution)
        if sel is not None:
            if sel.unit:
                band["unit"] = sel.unit
            stats = _drop_none({
                "minimum": _number(sel.minimum), "maximum": _number(sel.maximum),
                "mean": _number(sel.mean), "stddev": _number(sel.sd),
                "valid_percent": _number(sel.get("valid_percent")),
            })
            if stats:
                band["statistics"] = stats
            hist = _histogram(sel)
            if hist is not None:
                key = "histogram" if all(isinstance(b, int) for b in hist["buckets"]) else "fusion:histogram"
                band[key] = hist
        bands.append(band or {"data_type": "other"})
    return bands


def _histogram(sel: Selector) -> dict[str, Any] | None:
    """The selector's histogram; integer counts go to ``histogram``, anything else is kept apart."""
    buckets = sel.histogram
    lo, hi = _number(sel.histogram_minimum), _number(sel.histogram_maximum)
    if buckets is None or len(buckets) < 3 or lo is None or hi is None:
        return None
    if not all(math.isfinite(b) for b in buckets):
        return None
    values: list[int | float] = [int(b) if float(b).is_integer() else float(b) for b in buckets]
    return {"count": len(values), "min": lo, "max": hi, "buckets": values}


# --------------------------------------------------------------------------------------------------
# States


def execution_state(execution: ProcessExecution) -> CollectionState:
    """``running`` until progress reaches 100, then ``succeeded``, ``stopped`` or ``failed``."""
    if not execution.is_complete:
        return "running"
    if execution.success:
        return "succeeded"
    return "stopped" if execution.stopped else "failed"


def group_state(executions: Iterable[ProcessExecution], expected: int | None = None) -> CollectionState:
    """A group is ``running`` while any member (or a member not yet listed) is; else the worst outcome."""
    states = [execution_state(e) for e in executions]
    if "running" in states or (expected is not None and len(states) < expected):
        return "running"
    for worst in ("failed", "stopped"):
        if worst in states:
            return worst
    return "succeeded"


# --------------------------------------------------------------------------------------------------
# Items


@dataclass(frozen=True)
class OutputContext:
    """Where an output file comes from: the process, the execution and the component that wrote it.

    ``nominal_datetime`` overrides the item's ``datetime``; a group passes its earliest start so that
    every slice shares one timestamp and loaders (odc-stac ``groupby="time"``) mosaic them.
    """

    process: Process
    execution: ProcessExecution
    component: ProcessServiceExecution
    nominal_datetime: datetime | None = None
    aggregator: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


def file_item(
    file: DataFile,
    *,
    organisation_id: str,
    data: Data | None = None,
    output: OutputContext | None = None,
    raster: RasterInfo | None = None,
    data_href: str | None = None,
    thumbnail_href: str | None = None,
    href_expires: datetime | None = None,
    checksum: str | None = None,
) -> dict[str, Any]:
    """The STAC Item (a dict, without links) of one file of an upload or of an output.

    ``raster`` defaults to :func:`raster_info_from_file`. Asset hrefs default to the short,
    stable ``fusion://{org}/data/{data_id}/{file_id}`` form (preview: the preview file's id in the
    same form); pass signed ``https`` hrefs with ``href_expires`` to record when they stop working.
    """
    if not file.file_id or not file.data_id:
        raise ValueError(f"file {file.file_name!r} has no file_id/data_id; cannot name its STAC item")
    raster = raster if raster is not None else raster_info_from_file(file)
    stac_item = file.stac_item or {}
    hint_props: Mapping[str, Any] = stac_item.get("properties") or {}

    # --- footprint: the grid first, then the platform's own geometry (a vector's true shape, split at
    # 180 as RFC 7946 asks; its bbox recomputed from it), then the file's bounds
    geometry, bbox = footprint(raster) if raster is not None else (None, None)
    if geometry is None:
        geometry, bbox = platform_footprint(stac_item.get("geometry"))
    if geometry is None and file.bounds:
        geometry, bbox = footprint(None, file.bounds, file.crs)

    # --- time
    props: dict[str, Any] = {}
    if output is not None:
        ex = output.execution
        start = ex.started_at or output.component.started_at
        end = ex.ended_at or output.component.ended_at or start
        nominal = output.nominal_datetime or start
        # not the platform's stac_item datetime: that may be a file time, different for each slice
        props["datetime"] = rfc3339(nominal)
        if start is not None:
            props["start_datetime"] = rfc3339(start)
            props["end_datetime"] = rfc3339(max(end, start) if end else start)
    else:
        when = (data.created_at if data is not None else None) or file.created_at
        props["datetime"] = rfc3339(hint_props.get("datetime") or when)
    if props.get("datetime") is None:
        raise ValueError(f"file {file.file_id}: no time to give its STAC item (no created_at or started_at)")

    title = file.title or file.file_name
    props.update(_drop_none({
        "title": title,
        "description": file.description,
        "created": rfc3339(file.created_at),
        "updated": rfc3339(file.updated_at),
        "gsd": float(file.resolution) if file.resolution else None,
    }))

    # --- fusion: ids and provenance
    props.update(_drop_none({
        "fusion:organisation_id": organisation_id,
        "fusion:data_id": file.data_id,
        "fusion:data_name": data.name if data is not None else None,
        "fusion:file_id": file.file_id,
        "fusion:file_type": file.file_type,
        "fusion:file_name": file.file_name,
        "fusion:analysis_error": True if file.analysis_failed else None,
    }))
    extensions: set[str] = set()
    if output is not None:
        ex, comp, proc = output.execution, output.component, output.process
        props.update(_drop_none({
            "fusion:process_id": proc.id,
            "fusion:process_name": proc.name,
            "fusion:execution_id": ex.id,
            "fusion:group_id": ex.group_id,
            "fusion:group_index": ex.group_index,
            "fusion:group_count": ex.group_count,
            "fusion:aggregator": True if output.aggregator else None,
            "fusion:component": comp.name,
            "fusion:component_id": comp.id,
            "fusion:service_id": comp.service_id,
        }))
        props.update(dict(output.extra))
        # processing extension
        props["processing:facility"] = PLATFORM
        if comp.name:
            props["processing:software"] = {comp.name: comp.service_id or "unknown"}
        where = f" (slice {ex.group_index} of {ex.group_count})" if ex.group_id and not output.aggregator else ""
        props["processing:lineage"] = (
            f"Output of the {comp.name or 'unnamed'} component of process {proc.name or proc.id!s}, "
            f"execution {ex.id}{where}, run on the {PLATFORM}."
        )
        processed = comp.ended_at or ex.ended_at
        if processed is not None:
            props["processing:datetime"] = rfc3339(processed)
        extensions.add(PROCESSING_SCHEMA)
        # timestamps extension: when the platform will delete the output
        if ex.delete_expiry is not None:
            props["expires"] = rfc3339(ex.delete_expiry)
    published = (data.created_at if data is not None else None) or file.created_at
    if published is not None:
        props["published"] = rfc3339(published)
    if "expires" in props or "published" in props:
        extensions.add(TIMESTAMPS_SCHEMA)

    # --- projection at item level: the CRS (shape and transform live on the data asset)
    asset_proj: dict[str, Any] = {}
    if raster is not None:
        code = crs_code(raster.crs)
        if code:
            props["proj:code"] = code
        elif raster.crs:
            props["proj:wkt2"] = raster.crs
        props["proj:bbox"] = [round(v, 9) for v in raster.native_bbox]
        asset_proj = {
            "proj:shape": list(raster.shape),
            "proj:transform": [float(v) for v in raster.transform],
        }
        extensions.add(PROJECTION_SCHEMA)
    elif file.crs and crs_code(file.crs):
        props["proj:code"] = crs_code(file.crs)
        extensions.add(PROJECTION_SCHEMA)

    # --- assets
    asset_hrefs_expire = rfc3339(href_expires) if href_expires is not None else None
    data_asset: dict[str, Any] = {
        "href": data_href or _urls.file_url(organisation_id, file.data_id, file.file_id),
        "type": media_type(file.file_type, file.file_name, cog=raster.cog if raster else None),
        "title": file.file_name,
        "roles": ["data"],
    }
    data_asset = _drop_none(data_asset)
    if raster is not None and raster.overviews:
        # Not in any STAC extension; readers size their first request of a COG by it.
        data_asset["fusion:overviews"] = list(raster.overviews)
    if file.size is not None:
        data_asset["file:size"] = int(file.size)
        extensions.add(FILE_SCHEMA)
    checksum = checksum or _checksum_from_api(file)
    if checksum:
        data_asset["file:checksum"] = checksum
        extensions.add(FILE_SCHEMA)
    data_asset.update(asset_proj)
    if is_raster(file) and (raster is not None or file.selectors):
        data_asset["raster:bands"] = raster_bands(file, raster)
        extensions.add(RASTER_SCHEMA)
    if asset_hrefs_expire:
        data_asset["fusion:href_expires"] = asset_hrefs_expire
    assets: dict[str, Any] = {"data": data_asset}
    if file.preview_file_id:
        thumb = {
            "href": thumbnail_href or _urls.file_url(organisation_id, file.data_id, file.preview_file_id),
            "type": PREVIEW_MEDIA_TYPE,
            "title": f"Preview of {file.file_name}" if file.file_name else "Preview",
            "roles": ["thumbnail", "overview"],
        }
        if asset_hrefs_expire and thumbnail_href:
            thumb["fusion:href_expires"] = asset_hrefs_expire
        assets["thumbnail"] = thumb

    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": sorted(extensions),
        "id": file.file_id,
        "geometry": geometry,
        "properties": props,
        "links": [],
        "assets": assets,
    }
    if geometry is not None and bbox is not None:
        item["bbox"] = bbox
    return item


def _checksum_from_api(file: DataFile) -> str | None:
    """A multihash (``1220`` + SHA-256 hex) when the analysis reports the file's SHA-256."""
    for record in (file.ingesters or {}).values():
        digest = record.get("sha256") if isinstance(record, Mapping) else None
        if isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdefABCDEF" for c in digest):
            return "1220" + digest.lower()
    for asset in ((file.stac_item or {}).get("assets") or {}).values():
        value = asset.get("file:checksum") if isinstance(asset, Mapping) else None
        if isinstance(value, str) and value:
            return value
    return None


# --------------------------------------------------------------------------------------------------
# Collections and catalogs

WORLD_BBOX = [-180.0, -90.0, 180.0, 90.0]


def _union_bbox(bboxes: Sequence[Sequence[float]]) -> list[float] | None:
    """The smallest bbox covering all, antimeridian-aware (``west > east`` when it crosses 180)."""
    box = union_bboxes(bboxes)
    return None if box is None else [round(v, 9) for v in box]


def _interval(items: Sequence[Mapping[str, Any]]) -> list[str | None]:
    starts: list[str] = []
    ends: list[str] = []
    for it in items:
        p = it.get("properties") or {}
        s = p.get("start_datetime") or p.get("datetime")
        e = p.get("end_datetime") or p.get("datetime")
        if s:
            starts.append(s)
        if e:
            ends.append(e)
    # RFC 3339 strings in UTC with 'Z' sort chronologically once normalised to the same precision
    key = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
    return [min(starts, key=key) if starts else None, max(ends, key=key) if ends else None]


def collection_dict(
    collection_id: str,
    *,
    title: str | None,
    description: str,
    items: Sequence[Mapping[str, Any]],
    state: CollectionState,
    fields: Mapping[str, Any] | None = None,
    fallback_bbox: Sequence[float] | None = None,
    fallback_interval: Sequence[datetime | None] | None = None,
    keywords: Sequence[str] = (),
    processing: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A STAC Collection (a dict, without links) whose extents enclose ``items``.

    The first spatial bbox is the union; one bbox per item follows (STAC's sub-extents), so that a
    group's slices stay individually visible. A collection without items (still running, or
    empty) takes ``fallback_bbox`` (else the whole world) and ``fallback_interval``.
    """
    bboxes = [it["bbox"] for it in items if it.get("bbox")]
    union = _union_bbox(bboxes)
    spatial = [union, *bboxes] if union and len(bboxes) > 1 else [union] if union else [
        list(fallback_bbox) if fallback_bbox else list(WORLD_BBOX)
    ]
    interval = _interval(items) if items else [None, None]
    if interval == [None, None] and fallback_interval:
        interval = [rfc3339(fallback_interval[0]), rfc3339(fallback_interval[1])]
    if interval == [None, None]:
        interval = [rfc3339(datetime.now(timezone.utc)), None]

    provider = dict(PROVIDER)
    extensions: list[str] = []
    if processing:
        provider.update(processing)
        extensions.append(PROCESSING_SCHEMA)
    summaries: dict[str, Any] = {}
    for key in ("proj:code", "gsd", "fusion:file_type"):
        values = sorted({v for it in items if (v := (it.get("properties") or {}).get(key)) is not None})
        if values:
            summaries[key] = values
    out: dict[str, Any] = {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "id": collection_id,
        "title": title,
        "description": description or title or collection_id,
        "keywords": list(keywords) or None,
        "license": LICENSE,
        "providers": [provider],
        "extent": {"spatial": {"bbox": spatial}, "temporal": {"interval": [interval]}},
        "summaries": summaries or None,
        "links": [],
        "fusion:state": state,
        **dict(fields or {}),
    }
    return _drop_none(out)


def catalog_dict(catalog_id: str, *, title: str | None, description: str,
                 fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A STAC Catalog (a dict, without links)."""
    return _drop_none({
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": catalog_id,
        "title": title,
        "description": description or title or catalog_id,
        "links": [],
        **dict(fields or {}),
    })


def organisation_catalog(org: Organisation) -> dict[str, Any]:
    return catalog_dict(org.id, title=org.name, description=f"Data of the organisation {org.name!r} on the {PLATFORM}.",
                        fields={"fusion:organisation_id": org.id})


def upload_collection(data: Data, items: Sequence[Mapping[str, Any]], *, state: CollectionState) -> dict[str, Any]:
    """The collection of one uploaded data item."""
    return collection_dict(
        data.id, title=data.name, description=f"Files uploaded to the {PLATFORM} as {data.name!r}.",
        items=items, state=state, fallback_bbox=_valid_bounds(data.bounds),
        fallback_interval=(data.created_at, data.created_at),
        fields=_drop_none({"fusion:organisation_id": data.organisation_id or data.uploaded_organisation_id,
                           "fusion:data_id": data.id, "created": rfc3339(data.created_at),
                           "updated": rfc3339(data.updated_at)}),
    )


def _valid_bounds(bounds: Sequence[float] | None) -> list[float] | None:
    if bounds and len(bounds) >= 4:
        w, s, e, n = bounds[:4]
        if -180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= n <= 90:
            return [float(w), float(s), float(e), float(n)]
    return None


def execution_collection(
    process: Process,
    executions: Sequence[ProcessExecution],
    items: Sequence[Mapping[str, Any]],
    *,
    group_id: str | None = None,
    aggregator_ids: Iterable[str] = (),
) -> dict[str, Any]:
    """The collection of one execution, or of a whole group (slices and aggregators) when ``group_id``."""
    if not executions:
        raise ValueError("an execution collection needs at least one execution")
    aggregator_ids = set(aggregator_ids)
    slices = [e for e in executions if e.id not in aggregator_ids]
    if group_id is not None:
        expected = max((e.group_count or 0) for e in executions) or None
        state = group_state(slices, expected)
        agg_state = group_state([e for e in executions if e.id in aggregator_ids]) if aggregator_ids else "succeeded"
        if state == "succeeded" and agg_state != "succeeded":
            state = agg_state
        cid = group_id
        first = min((e.started_at for e in executions if e.started_at), default=None)
        title = f"{process.name} — group of {len(slices)} slices" + (f", {first:%Y-%m-%d %H:%M} UTC" if first else "")
        description = (f"Outputs of a grouped run of process {process.name!r} on the {PLATFORM}: "
                       f"{len(slices)} slice execution(s) and {len(aggregator_ids)} aggregator execution(s).")
    else:
        ex = executions[0]
        state = execution_state(ex)
        cid = ex.id
        first = ex.started_at
        title = f"{process.name} — {first:%Y-%m-%d %H:%M} UTC" if first else f"{process.name} — {ex.id}"
        description = f"Outputs of one execution of process {process.name!r} on the {PLATFORM}."
    last = max((t for e in executions if (t := e.ended_at or e.started_at)), default=None)
    failed = sorted(e.id for e in executions if execution_state(e) in ("failed", "stopped"))
    fields = _drop_none({
        "fusion:organisation_id": process.organisation_id,
        "fusion:process_id": process.id,
        "fusion:process_name": process.name,
        "fusion:execution_id": executions[0].id if group_id is None else None,
        "fusion:group_id": group_id,
        "fusion:group_count": max((e.group_count or 0) for e in executions) or None if group_id else None,
        "fusion:execution_ids": sorted(e.id for e in slices) if group_id else None,
        "fusion:aggregator_execution_ids": sorted(aggregator_ids) or None,
        "fusion:progress": min(e.progress or 0 for e in executions),
        "fusion:failed_execution_ids": failed or None,
        "fusion:abort_reasons": sorted({e.abort_reason for e in executions if e.abort_reason}) or None,
        "expires": rfc3339(min((e.delete_expiry for e in executions if e.delete_expiry), default=None)),
    })
    if "expires" in fields:
        # timestamps fields on a collection are allowed only in properties of items/assets; keep it namespaced
        fields["fusion:expires"] = fields.pop("expires")
    processing = _drop_none({
        "processing:facility": PLATFORM,
        "processing:lineage": f"Process {process.name!r} ({process.id}) run on the {PLATFORM}.",
        "processing:datetime": rfc3339(last) if state != "running" else None,
    })
    return collection_dict(
        cid, title=title, description=description, items=items, state=state, fields=fields,
        fallback_interval=(first, last if state != "running" else None), processing=processing,
        keywords=[k for k in (process.name,) if k],
    )
