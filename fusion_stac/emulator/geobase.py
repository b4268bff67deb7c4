"""Shared ground of the emulator's geodata modules: constants, result types and small helpers.

Holds what more than one of ``analysis``, ``raster_analysis``, ``vector_analysis``, ``slicing``, ``terrain``
and ``rendering`` needs (file types, the cloud classes, :class:`Analysis`, :class:`Slice`, CRS and
geometry helpers, the shipped region files), so those modules import from here and never from each other
in a circle. Pure functions, no server state.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import shapely
from rasterio.crs import CRS

#: Regions whose extent is at most this many metres in both directions run as one execution.
DEFAULT_MAX_REGION_M = 30_000.0
#: Edge of a slice cell (metres, in the slice's UTM zone) when a region is split.
DEFAULT_SLICE_SIZE_M = 20_000.0

#: File types of the API (section 10.1).
FILE_TYPES = (
    "GeoTIFF", "JPEG2000", "DEM", "GeoJSON", "KML", "KMZ", "CSV", "ESRI Shapefile",
    "JPEG", "PNG", "PDF", "GZIP", "ZIP", "Other",
)  # fmt: skip
_RASTER_TYPES = frozenset({"GeoTIFF", "JPEG2000", "DEM"})
_VECTOR_TYPES = frozenset({"GeoJSON", "KML", "KMZ", "ESRI Shapefile"})

#: Cloud classification scheme: value -> (name, RGB). The values are spaced so that a 10-bin histogram
#: over 0..9 puts each class in its own bin (0, 3, 6, 9), which is how the SDK's detailed example reads it.
CLOUD_CLASSES: dict[int, tuple[str, tuple[int, int, int]]] = {
    0: ("Ground", (104, 132, 66)),
    3: ("Shadow", (58, 58, 72)),
    6: ("Thick Cloud", (250, 250, 250)),
    9: ("Thin Cloud", (178, 204, 232)),
}
CLASSIFICATION_NODATA = 255
ELEVATION_NODATA = -9999.0

_COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

_GEOD = pyproj.Geod(ellps="WGS84")


# ---------------------------------------------------------------------------------------------------------
# Public data types
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """Result of analysing one file.

    ``fields`` are DataFile fields under their API names (JSON-ready: plain ``int``/``float``/``str``/
    ``list``/``dict``). ``geometry_wkb`` is the footprint in EPSG:4326 (vectors and rasters);
    ``preview_png`` a small coloured preview of rasters with transparent nodata.
    """

    fields: dict
    geometry_wkb: bytes | None = None
    preview_png: bytes | None = None


@dataclass(frozen=True)
class Slice:
    """One cell of a sliced region: what one execution of a grouped run covers.

    ``bounds_native`` (optional, in ``epsg`` metres) is the cell's exact rectangle in its UTM zone; the
    renderers use it when present so that cells of one zone tile without overlap. Without it they fall
    back to ``bounds_lonlat`` transformed to the zone (slightly larger, still on the shared pixel grid).
    """

    index: int
    count: int
    bounds_lonlat: tuple[float, float, float, float]
    epsg: int
    geometry_wkb: bytes
    bounds_native: tuple[float, float, float, float] | None = None

    @property
    def geometry(self) -> shapely.Geometry:
        """The slice's part of the region, in lon/lat."""
        return shapely.from_wkb(self.geometry_wkb)


class _BadContent(Exception):
    """The file's content does not match its declared type (reported, never raised to callers)."""


# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------

_local = threading.local()


def _transformer(src: str | int, dst: str | int) -> pyproj.Transformer:
    """A cached lon/lat-ordered transformer, one cache per thread (pyproj transformers are not shareable)."""
    cache: dict[tuple[str, str], pyproj.Transformer] | None = getattr(_local, "transformers", None)
    if cache is None:
        cache = _local.transformers = {}
    key = (str(src), str(dst))
    found = cache.get(key)
    if found is None:
        found = cache[key] = pyproj.Transformer.from_crs(_crs_input(src), _crs_input(dst), always_xy=True)
    return found


def _crs_input(value: str | int) -> Any:
    return f"EPSG:{value}" if isinstance(value, int) else value


def _plain(value: Any) -> Any:
    """Convert numpy scalars/arrays (recursively) to JSON-ready Python values; NaN/inf become None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


def _short(exc: BaseException) -> str:
    """First line of an exception message, bounded, for user-facing descriptions."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 240 else text[:237] + "..."


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(functools.partial(handle.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 / UTM zone containing (lon, lat): 326zz north of the equator, 327zz south.

    Plain 6-degree zones (the Norway/Svalbard exceptions are MGRS conventions, not part of the EPSG
    zone definitions, and are not applied).
    """
    if not (math.isfinite(lon) and math.isfinite(lat)) or not -90.0 <= lat <= 90.0:
        raise ValueError(f"not a lon/lat position: ({lon}, {lat})")
    if not -180.0 <= lon <= 180.0:
        lon = ((lon + 180.0) % 360.0) - 180.0
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return (32600 if lat >= 0.0 else 32700) + zone


# ---------------------------------------------------------------------------------------------------------
# Region files shipped with the package
# ---------------------------------------------------------------------------------------------------------

_REGION_DIR = Path(__file__).resolve().parent / "regions"


def region_names() -> list[str]:
    """Names of the region files shipped with the emulator (e.g. ``glasgow``)."""
    return sorted(p.stem for p in _REGION_DIR.glob("*.geojson"))


def region_path(name: str) -> Path:
    """Path of a shipped region file, by name (``"glasgow"`` or ``"glasgow.geojson"``, any case)."""
    stem = name.strip().lower().removesuffix(".geojson").replace(" ", "_").replace("-", "_")
    path = _REGION_DIR / f"{stem}.geojson"
    if not path.is_file():
        raise KeyError(f"no shipped region named {name!r}; available: {', '.join(region_names())}")
    return path


# ---------------------------------------------------------------------------------------------------------
# What a file's first bytes look like
# ---------------------------------------------------------------------------------------------------------

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"II*\x00", "a TIFF"),
    (b"MM\x00*", "a TIFF"),
    (b"II+\x00", "a BigTIFF"),
    (b"MM\x00+", "a BigTIFF"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (b"\xffO\xffQ", "a JPEG 2000 codestream"),
    (b"%PDF-", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"GIF8", "a GIF image"),
)


def _sniff(head: bytes) -> str:
    """Describe what the first bytes of a file look like (for error messages and type checks)."""
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if b"\x00" in head[:1024]:
        return "binary data"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"{", b"[")):
        return "JSON text"
    if text.startswith(b"<"):
        return "a KML document" if b"<kml" in text else "an XML/HTML document"
    return "text"


def _crs_string(crs: CRS | pyproj.CRS) -> str:
    pcrs = pyproj.CRS.from_user_input(crs)
    if pcrs.equals(pyproj.CRS.from_epsg(4326), ignore_axis_order=True):
        return "EPSG:4326"
    epsg = pcrs.to_epsg()
    if epsg is not None:
        return f"EPSG:{epsg}"
    authority = pcrs.to_authority()
    return f"{authority[0]}:{authority[1]}" if authority else pcrs.to_wkt()


def _normalise_unit(unit: str | None) -> str | None:
    if unit is None:
        return None
    return "m" if unit.strip().lower() in ("m", "metre", "metres", "meter", "meters") else unit


def _flatten(geometry: shapely.Geometry) -> np.ndarray:
    parts = shapely.get_parts(geometry)
    while (shapely.get_type_id(parts) >= 4).any():
        parts = shapely.get_parts(parts)
    return parts


def _parts_of(geometry: shapely.Geometry, type_ids: tuple[int, ...]) -> shapely.Geometry | None:
    parts = _flatten(geometry)
    chosen = parts[np.isin(shapely.get_type_id(parts), type_ids)]
    return shapely.multipolygons(chosen) if chosen.size else None


def _linear_parts(geometry: shapely.Geometry) -> shapely.Geometry:
    """Lines plus polygon boundaries: what "length covered" measures."""
    parts = _flatten(geometry)
    types = shapely.get_type_id(parts)
    lines = list(parts[np.isin(types, (1, 2))])
    for polygon in parts[types == 3]:
        lines.extend(_flatten(shapely.boundary(polygon)))
    return shapely.multilinestrings(lines) if lines else shapely.MultiLineString()


def _project(geometry: shapely.Geometry, src: str | int, dst: str | int) -> shapely.Geometry:
    transformer = _transformer(src, dst)

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geometry, apply)


# ---------------------------------------------------------------------------------------------------------
# The antimeridian (RFC 7946 §3.1.9: geometries that cross it are split into parts on either side)
# ---------------------------------------------------------------------------------------------------------


def lonlat_bounds(geometry: shapely.Geometry) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` of a lon/lat geometry, its parts' longitude ranges united on the
    circle: a MultiPolygon split at 180° gets ``west > east`` (RFC 7946 §5.2), not the whole globe."""
    parts = [p for p in shapely.get_parts(geometry) if not p.is_empty]
    if not parts:
        raise ValueError("empty geometry")
    arcs = sorted((float(p.bounds[0]) + 360.0 * (p.bounds[0] >= 180.0), float(p.bounds[2]) + 360.0 * (
        p.bounds[0] >= 180.0)) for p in parts)
    south = min(float(p.bounds[1]) for p in parts)
    north = max(float(p.bounds[3]) for p in parts)
    if any(e - w >= 360.0 for w, e in arcs):
        return (-180.0, south, 180.0, north)
    # The union is what the largest uncovered gap between the parts leaves (exact input values kept).
    best_gap, gap_start, gap_end = -1.0, 0.0, 0.0
    reach = arcs[0][1]
    for start, stop in arcs[1:]:
        if start - reach > best_gap:
            best_gap, gap_start, gap_end = start - reach, reach, start
        reach = max(reach, stop)
    if arcs[0][0] + 360.0 - reach > best_gap:
        best_gap, gap_start, gap_end = arcs[0][0] + 360.0 - reach, reach, arcs[0][0]
    if best_gap <= 0.0:
        return (-180.0, south, 180.0, north)
    west = gap_end - 360.0 if gap_end >= 180.0 else gap_end
    east = gap_start - 360.0 if gap_start > 180.0 else gap_start
    return (west, south, east, north)


def unwrap_lonlat(geometry: shapely.Geometry) -> shapely.Geometry:
    """A region split at 180° joined again, its eastern parts moved past 180° (longitudes + 360), so
    that it can be measured, projected and cut as one; unchanged when it does not cross 180°."""
    west, _, east, _ = lonlat_bounds(geometry)
    if west <= east:
        return geometry

    def shift(xy: np.ndarray) -> np.ndarray:
        out = xy.copy()
        out[:, 0] = np.where(out[:, 0] < west - 1e-9, out[:, 0] + 360.0, out[:, 0])
        return out

    moved = shapely.transform(geometry, shift)
    joined = shapely.union_all(shapely.make_valid(moved))
    return joined


def rewrap_lonlat(geometry: shapely.Geometry) -> shapely.Geometry:
    """An unwrapped geometry back in -180..180, split at 180° into parts on either side (RFC 7946)."""
    west, _, east, _ = geometry.bounds
    if east <= 180.0 and west >= -180.0:
        return geometry
    inside = shapely.intersection(geometry, shapely.box(-180.0, -90.0, 180.0, 90.0))
    beyond = shapely.intersection(geometry, shapely.box(180.0, -90.0, 540.0, 90.0))
    beyond = shapely.transform(beyond, lambda xy: xy - np.array([360.0, 0.0]))
    parts = [p for g in (inside, beyond) for p in shapely.get_parts(g) if not p.is_empty
             and shapely.get_dimensions(p) == shapely.get_dimensions(geometry)]
    if not parts:
        return shapely.union_all([inside, beyond])
    polys = [p for p in parts if p.geom_type == "Polygon"]
    if len(polys) == len(parts):
        return shapely.MultiPolygon(polys) if len(polys) > 1 else polys[0]
    return shapely.GeometryCollection(parts)
