"""Geospatial engine of the local Fusion Platform: file analysis, region slicing and a synthetic world.

Pure functions with no server state, so the server can call them from worker threads and tests can call
them directly:

* :func:`analyse_file` plays the platform's "basic + extended analysis" of an uploaded or generated file
  and returns the DataFile fields (API names), a lon/lat footprint and a PNG preview. Bad content never
  raises: it yields ``error: True`` with a reason, exactly like the platform flags a failed analysis.
* :func:`slice_region` splits a large region into per-UTM-zone grid cells, one execution ("slice") each.
* :func:`render_elevation` / :func:`render_classification` write Cloud-Optimized GeoTIFFs of a
  deterministic synthetic world, evaluated at pixel centres as a function of (lon, lat[, date]) only,
  so neighbouring slices join seamlessly and every run is reproducible.
* :func:`render_statistics_csv` is the "Statistics Aggregator" of a group of slices.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import gzip
import hashlib
import io
import json
import logging
import math
import os
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import rasterio
import rasterio.features
import rasterio.shutil
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.windows import Window

__all__ = [
    "CLOUD_CLASSES",
    "DEFAULT_MAX_REGION_M",
    "DEFAULT_SLICE_SIZE_M",
    "FILE_TYPES",
    "Analysis",
    "Slice",
    "analyse_file",
    "classification_lonlat",
    "elevation_lonlat",
    "region_names",
    "region_path",
    "render_classification",
    "render_elevation",
    "render_statistics_csv",
    "slice_region",
    "utm_epsg",
]

logger = logging.getLogger(__name__)

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

_MEDIA_TYPES = {
    "GeoTIFF": "image/tiff; application=geotiff",
    "DEM": "image/tiff; application=geotiff",
    "JPEG2000": "image/jp2",
    "GeoJSON": "application/geo+json",
    "KML": "application/vnd.google-earth.kml+xml",
    "KMZ": "application/vnd.google-earth.kmz",
    "ESRI Shapefile": "application/zip",
    "CSV": "text/csv",
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "PDF": "application/pdf",
    "GZIP": "application/gzip",
    "ZIP": "application/zip",
    "Other": "application/octet-stream",
}
_COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
]
_RASTER_EXTENSION = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
_CLASSIFICATION_EXTENSION = "https://stac-extensions.github.io/classification/v1.1.0/schema.json"

_GEOD = pyproj.Geod(ellps="WGS84")
_SMALL_GEOJSON = 64 * 1024
_PREVIEW_SIZE = 512
_MAX_STATS_PIXELS = 16 * 1024 * 1024  # above this, raster statistics are computed from a decimated read


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
# File analysis
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


def _file_type(value: str) -> str:
    lowered = value.strip().lower()
    for known in FILE_TYPES:
        if known.lower() == lowered:
            return known
    return "Other"


def analyse_file(
    path: Path, file_type: str, file_name: str, *, item_id: str | None = None, when: datetime | None = None
) -> Analysis:
    """Analyse one stored file the way the platform does after an upload or a generated output.

    Never raises for bad content: a corrupt or mislabelled file yields ``{size, error: True,
    description}``. ``item_id``/``when`` set the STAC Item id and datetime (defaults: the file name's stem;
    the raster's acquisition tag, else the file's modification time). Raises ``FileNotFoundError`` only if
    ``path`` does not exist (a server bug, not bad content).
    """
    path = Path(path)
    size = path.stat().st_size
    kind = _file_type(file_type)
    with path.open("rb") as handle:
        head = handle.read(4096)
    try:
        if size == 0 and kind != "Other":
            raise _BadContent("the file is empty")
        if kind in _RASTER_TYPES:
            fields, geometry, preview = _analyse_raster(path, kind, head)
        elif kind in _VECTOR_TYPES:
            fields, geometry, preview = _analyse_vector(path, kind, head)
        else:
            fields, geometry, preview = _analyse_plain(path, kind, head), None, None
    except Exception as exc:  # analysis must never take the server down; report why instead
        reason = _short(exc)
        if not isinstance(exc, _BadContent):
            logger.info("analysis of %s (%s) failed", file_name, kind, exc_info=True)
        return Analysis(
            fields={
                "size": size,
                "error": True,
                "description": f"{file_name} is not a valid {kind} file: {reason}",
            }
        )

    common = fields.setdefault("ingesters", {}).setdefault("Common", {})
    common.update({"file_type": kind, "media_type": common.get("media_type") or _MEDIA_TYPES[kind]})
    common["sha256"] = _sha256(path)
    fields["size"] = size
    fields["publishable"] = True
    fields["number_of_ingesters"] = len(fields["ingesters"])
    fields["stac_item"] = _stac_item(
        fields,
        file_name=file_name,
        item_id=item_id or Path(file_name).stem or file_name,
        when=when
        or fields.pop("_datetime", None)
        or datetime.fromtimestamp(path.stat().st_mtime, timezone.utc),
        geometry=geometry,
    )
    fields.pop("_datetime", None)
    for selector in fields.get("selectors", []):
        selector.pop("_counts", None)
    return Analysis(
        fields=_plain(fields),
        geometry_wkb=None if geometry is None else shapely.to_wkb(geometry),
        preview_png=preview,
    )


def _stac_item(
    fields: dict, *, file_name: str, item_id: str, when: datetime, geometry: shapely.Geometry | None
) -> dict:
    """A STAC 1.0 Item for the file, built from the analysis alone (no second read of the file)."""
    common = fields["ingesters"]["Common"]
    raster = fields["ingesters"].get("Raster")
    properties: dict[str, Any] = {"datetime": _iso(when)}
    extensions = list(_STAC_EXTENSIONS)
    asset: dict[str, Any] = {
        "href": file_name,
        "type": common["media_type"],
        "title": file_name,
        "roles": ["data"],
        "file:size": fields["size"],
        "file:checksum": "1220" + common["sha256"],
    }
    crs = fields.get("crs")
    epsg = None
    if crs is not None:
        try:
            epsg = pyproj.CRS.from_user_input(crs).to_epsg()
        except pyproj.exceptions.CRSError:
            epsg = None
    if raster is not None:
        epsg = raster.get("epsg", epsg)
        properties.update(
            {
                "proj:shape": [raster["height"], raster["width"]],
                "proj:transform": raster["transform"],
                "proj:bbox": raster["native_bounds"],
                "gsd": raster["resolution"],
            }
        )
        extensions.append(_RASTER_EXTENSION)
        asset["raster:bands"] = [
            _without_nones(
                {
                    "data_type": sel["data_type"],
                    "nodata": raster["nodata"],
                    "unit": sel.get("unit"),
                    "spatial_resolution": raster["resolution"],
                    "statistics": {
                        "minimum": sel.get("minimum"),
                        "maximum": sel.get("maximum"),
                        "mean": sel.get("mean"),
                        "stddev": sel.get("sd"),
                        "valid_percent": sel.get("valid_percent"),
                    },
                    "histogram": {
                        "count": len(sel["_counts"]),
                        "min": sel["histogram_minimum"],
                        "max": sel["histogram_maximum"],
                        "buckets": sel["_counts"],
                    }
                    if "_counts" in sel
                    else None,
                }
            )
            for sel in fields["selectors"]
        ]
        if raster.get("cog"):
            asset["type"] = _COG_MEDIA_TYPE
        if raster.get("tags", {}).get("PRODUCT") == "cloud_classification":
            extensions.append(_CLASSIFICATION_EXTENSION)
            asset["roles"] = ["data", "classification"]
            asset["classification:classes"] = [
                {
                    "value": v,
                    "name": name.lower().replace(" ", "_"),
                    "description": name,
                    "color_hint": "".join(f"{c:02X}" for c in rgb),
                }
                for v, (name, rgb) in CLOUD_CLASSES.items()
            ]
        if raster.get("band_descriptions"):
            properties["title"] = raster["band_descriptions"][0]
    if crs is not None or raster is not None:
        properties["proj:epsg"] = epsg
        if epsg is None and raster is not None:
            properties["proj:wkt2"] = raster["crs_wkt"]
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": extensions,
        "id": item_id,
        "geometry": None,
        "properties": properties,
        "links": [],
        "assets": {"asset": asset},
    }
    if geometry is not None and not geometry.is_empty:
        item["geometry"] = shapely.geometry.mapping(_bounded_geometry(geometry))
        item["bbox"] = list(fields["bounds"])
    return item


def _without_nones(value: dict) -> dict:
    """Drop None members (recursively): STAC extension schemas want absent rather than null fields."""
    return {k: _without_nones(v) if isinstance(v, dict) else v for k, v in value.items() if v is not None}


def _bounded_geometry(geometry: shapely.Geometry, max_coordinates: int = 4000) -> shapely.Geometry:
    """A topology-preserving simplification with at most ``max_coordinates`` vertices (STAC items stay small)."""
    if shapely.get_type_id(geometry) == 7:  # GeometryCollection: STAC geometries are better as one footprint
        geometry = shapely.convex_hull(geometry)
    tolerance = 1e-5
    simplified = geometry
    while shapely.get_num_coordinates(simplified) > max_coordinates and tolerance < 1.0:
        simplified = shapely.simplify(geometry, tolerance, preserve_topology=True)
        tolerance *= 2.0
    return simplified


# ----- rasters --------------------------------------------------------------------------------------------

_RASTER_DRIVERS = {"GeoTIFF": {"GTiff", "COG"}, "JPEG2000": {"JP2OpenJPEG", "JPEG2000", "JP2KAK", "JP2ECW"}}
_RASTER_SIGNATURES = {
    "GeoTIFF": ("a TIFF", "a BigTIFF"),
    "JPEG2000": ("a JPEG 2000 image", "a JPEG 2000 codestream"),
}


def _analyse_raster(path: Path, kind: str, head: bytes) -> tuple[dict, shapely.Geometry, bytes]:
    seen = _sniff(head)
    expected = _RASTER_SIGNATURES.get(kind)
    if expected is not None and seen not in expected:
        raise _BadContent(f"the content is {seen}, not a {kind}")
    if kind == "DEM" and seen in (
        "a PNG image",
        "a JPEG image",
        "a PDF document",
        "a zip archive",
        "JSON text",
    ):
        raise _BadContent(f"the content is {seen}, not an elevation raster")
    with (
        rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"),
        rasterio.open(path) as src,
    ):
        allowed = _RASTER_DRIVERS.get(kind)
        if allowed is not None and src.driver not in allowed:
            raise _BadContent(f"GDAL reads it as {src.driver}, not {kind}")
        if src.crs is None:
            raise _BadContent("the raster has no coordinate reference system (not georeferenced)")
        if src.transform.is_identity:
            raise _BadContent("the raster has no geotransform (not georeferenced)")
        return _describe_raster(src, kind)


def _crs_string(crs: CRS | pyproj.CRS) -> str:
    pcrs = pyproj.CRS.from_user_input(crs)
    if pcrs.equals(pyproj.CRS.from_epsg(4326), ignore_axis_order=True):
        return "EPSG:4326"
    epsg = pcrs.to_epsg()
    if epsg is not None:
        return f"EPSG:{epsg}"
    authority = pcrs.to_authority()
    return f"{authority[0]}:{authority[1]}" if authority else pcrs.to_wkt()


def _footprint(crs: Any, bounds: Sequence[float], points_per_edge: int = 21) -> shapely.Polygon:
    """Rectangle ``bounds`` in ``crs`` as a densified lon/lat polygon."""
    west, south, east, north = bounds
    t = np.linspace(0.0, 1.0, points_per_edge, endpoint=False)
    xs = np.concatenate(
        [west + (east - west) * t, np.full_like(t, east), east - (east - west) * t, np.full_like(t, west)]
    )
    ys = np.concatenate(
        [
            np.full_like(t, south),
            south + (north - south) * t,
            np.full_like(t, north),
            north - (north - south) * t,
        ]
    )
    lon, lat = _transformer(_crs_key(crs), "EPSG:4326").transform(xs, ys)
    polygon = shapely.Polygon(np.column_stack([lon, lat]))
    return polygon if polygon.is_valid else shapely.make_valid(polygon)


def _crs_key(crs: Any) -> str:
    if isinstance(crs, int):
        return f"EPSG:{crs}"
    if isinstance(crs, str):
        return crs
    return pyproj.CRS.from_user_input(crs).to_wkt()


def _resolution_m(src: rasterio.io.DatasetReader, lonlat_bounds: Sequence[float]) -> float:
    """Pixel size in metres (x direction): native units for projected CRSs, geodesic for geographic ones."""
    pcrs = pyproj.CRS.from_user_input(src.crs)
    pixel = abs(src.transform.a) or abs(src.transform.b)
    if pcrs.is_geographic:
        lat = (lonlat_bounds[1] + lonlat_bounds[3]) / 2.0
        lon = (lonlat_bounds[0] + lonlat_bounds[2]) / 2.0
        return abs(_GEOD.inv(lon, lat, lon + pixel, lat)[2])
    factor = pcrs.axis_info[0].unit_conversion_factor if pcrs.axis_info else 1.0
    return pixel * factor


def _describe_raster(src: rasterio.io.DatasetReader, kind: str) -> tuple[dict, shapely.Geometry, bytes]:
    footprint = _footprint(src.crs, src.bounds)
    lonlat_bounds = tuple(float(v) for v in footprint.bounds)
    resolution = _resolution_m(src, lonlat_bounds)
    area = abs(_GEOD.geometry_area_perimeter(shapely.orient_polygons(footprint))[0])
    decimation = max(1, math.ceil(math.sqrt(src.width * src.height / _MAX_STATS_PIXELS)))
    out_shape = (max(1, src.height // decimation), max(1, src.width // decimation))
    units = [u or None for u in src.units]
    structure = src.tags(ns="IMAGE_STRUCTURE")
    selectors = []
    for band in range(1, src.count + 1):
        data = src.read(band, masked=True, out_shape=out_shape, resampling=Resampling.nearest)
        unit = units[band - 1] or ("m" if kind == "DEM" else None)
        selectors.append(_band_selector(band, data, src.dtypes[band - 1], _normalise_unit(unit)))
    tags = src.tags()
    epsg = pyproj.CRS.from_user_input(src.crs).to_epsg()
    raster = {
        "driver": src.driver,
        "width": src.width,
        "height": src.height,
        "count": src.count,
        "dtype": src.dtypes[0],
        "dtypes": list(src.dtypes),
        "nodata": "nan" if src.nodata is not None and math.isnan(src.nodata) else src.nodata,
        "transform": list(src.transform)[:6],
        "epsg": epsg,
        "crs_wkt": src.crs.to_wkt(),
        "native_bounds": list(src.bounds),
        "resolution": resolution,
        "blocksize": list(src.block_shapes[0]),
        "overviews": src.overviews(1),
        "compression": src.compression.value if src.compression else None,
        "predictor": structure.get("PREDICTOR"),
        "cog": structure.get("LAYOUT", "").upper() == "COG",
        "interleave": src.interleaving.value if src.interleaving else None,
        "band_descriptions": [d or "" for d in src.descriptions] if any(src.descriptions) else [],
        "units": units,
        "statistics_decimation": decimation,
        "tags": tags,
    }
    fields: dict[str, Any] = {
        "crs": _crs_string(src.crs),
        "bounds": list(lonlat_bounds),
        "resolution": max(1, round(resolution)),
        "area": round(area, 1),
        "selectors": selectors,
        "ingesters": {
            "Common": {"media_type": _COG_MEDIA_TYPE if raster["cog"] else _MEDIA_TYPES[kind]},
            "Raster": raster,
        },
    }
    acquired = tags.get("ACQUISITION_DATETIME")
    if acquired:
        with contextlib.suppress(ValueError):
            fields["_datetime"] = datetime.fromisoformat(acquired.replace("Z", "+00:00"))
    return fields, footprint, _raster_preview(src, kind, resolution)


def _normalise_unit(unit: str | None) -> str | None:
    if unit is None:
        return None
    return "m" if unit.strip().lower() in ("m", "metre", "metres", "meter", "meters") else unit


def _band_selector(band: int, data: np.ma.MaskedArray, dtype: str, unit: str | None) -> dict:
    """Per-band selector: statistics over valid pixels and a histogram in percent of valid pixels.

    Integer bands whose values span at most 256 get one bin per integer value (at least 10 bins, the
    first at 0 for non-negative data), so a classification 0..9 has its class ``c`` in bin ``c``. Other
    bands get 256 equal bins between the minimum and the maximum. ``histogram_minimum``/``maximum`` are
    the outer bin edges (GDAL convention, e.g. -0.5..9.5 for classes 0..9).
    """
    values = data.compressed() if np.ma.isMaskedArray(data) else np.asarray(data).ravel()
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    total = data.size
    selector: dict[str, Any] = {
        "selector": str(band),
        "category": "Raster",
        "data_type": dtype,
        "unit": unit,
        "valid_percent": round(100.0 * values.size / total, 4) if total else 0.0,
    }
    if values.size == 0:
        selector.update(
            minimum=None, maximum=None, mean=None, sd=None,
            histogram_minimum=None, histogram_maximum=None, histogram=[0.0] * 10,
        )  # fmt: skip
        return selector
    v64 = values.astype(np.float64, copy=False)
    vmin, vmax = float(v64.min()), float(v64.max())
    mean = float(v64.mean())
    sd = float(v64.std())
    if values.dtype.kind in "iu" and vmax - vmin < 256:
        low = 0 if vmin >= 0 else int(vmin)
        bins = max(10, int(vmax) - low + 1)
        counts = np.bincount((values.astype(np.int64) - low), minlength=bins)[:bins]
        edges = (low - 0.5, low + bins - 0.5)
    else:
        bins = 256
        hi = vmax if vmax > vmin else vmin + 1.0
        counts, _ = np.histogram(v64, bins=bins, range=(vmin, hi))
        edges = (vmin, hi)
    percent = np.round(counts * (100.0 / values.size), 6)
    selector["_counts"] = counts.astype(np.int64).tolist()  # for STAC (integer buckets); not an API field
    selector.update(
        minimum=vmin, maximum=vmax, mean=round(mean, 6), sd=round(sd, 6),
        histogram_minimum=edges[0], histogram_maximum=edges[1], histogram=percent.tolist(),
    )  # fmt: skip
    return selector


# ----- previews -------------------------------------------------------------------------------------------

# Colour ramps, hand-written because matplotlib is not an emulator dependency. Generic: position 0..1
# (2nd..98th percentile) -> RGB. Elevation: metres -> RGB (hypsometric tints), stretched when the data
# rise above 1300 m.
_RAMP = np.array(
    [[0.0, 68, 1, 84], [0.25, 59, 82, 139], [0.5, 33, 145, 140], [0.75, 94, 201, 98], [1.0, 253, 231, 37]]
)
_ELEVATION_RAMP = np.array(
    [
        [-20.0, 30, 70, 140],
        [-0.01, 110, 165, 205],
        [0.0, 70, 130, 70],
        [150.0, 120, 170, 90],
        [400.0, 205, 195, 120],
        [750.0, 165, 120, 80],
        [1050.0, 140, 130, 125],
        [1300.0, 245, 245, 245],
    ]
)


def _raster_preview(src: rasterio.io.DatasetReader, kind: str, resolution: float) -> bytes:
    """A PNG (RGBA, nodata transparent) of at most 512 px per side, read from overviews when present."""
    from PIL import Image

    scale = max(1.0, max(src.width, src.height) / _PREVIEW_SIZE)
    shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
    if src.count >= 3 and all(d == "uint8" for d in src.dtypes[:3]):
        data = src.read([1, 2, 3], masked=True, out_shape=(3, *shape), resampling=Resampling.nearest)
        rgb = np.moveaxis(np.ma.filled(data, 0), 0, -1).astype(np.uint8)
        alpha = np.where(np.ma.getmaskarray(data).any(axis=0), 0, 255).astype(np.uint8)
    else:
        data = src.read(1, masked=True, out_shape=shape, resampling=Resampling.nearest)
        mask = np.ma.getmaskarray(data) | ~np.isfinite(np.ma.filled(data.astype(np.float64), np.nan))
        values = np.ma.filled(data.astype(np.float64), np.nan)
        valid = values[~mask]
        if (
            values.dtype.kind
            and src.dtypes[0] in ("uint8", "int8", "uint16", "int16")
            and valid.size
            and set(np.unique(valid).astype(int).tolist()) <= set(CLOUD_CLASSES)
        ):
            rgb = np.zeros((*shape, 3), np.uint8)
            for value, (_name, colour) in CLOUD_CLASSES.items():
                rgb[(values == value) & ~mask] = colour
        else:
            if kind == "DEM" or (src.units and _normalise_unit(src.units[0]) == "m"):
                rgb = _hillshade(values, mask, resolution * scale, _elevation_colours(values, mask))
            else:
                rgb = _ramp_colours(values, mask)
        alpha = np.where(mask, 0, 255).astype(np.uint8)
    image = Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _ramp_colours(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    valid = values[~mask]
    if valid.size == 0:
        return np.zeros((*values.shape, 3), np.uint8)
    low, high = np.percentile(valid, [2.0, 98.0])
    span = high - low if high > low else 1.0
    position = np.clip((np.where(mask, low, values) - low) / span, 0.0, 1.0)
    channels = [np.interp(position, _RAMP[:, 0], _RAMP[:, c]) for c in (1, 2, 3)]
    return np.dstack(channels).astype(np.uint8)


def _elevation_colours(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    valid = values[~mask]
    top = max(1300.0, float(np.percentile(valid, 98.0))) if valid.size else 1300.0
    stops = _ELEVATION_RAMP[:, 0] * np.where(_ELEVATION_RAMP[:, 0] > 0, top / 1300.0, 1.0)
    filled = np.where(mask, 0.0, values)
    return np.dstack([np.interp(filled, stops, _ELEVATION_RAMP[:, c]) for c in (1, 2, 3)]).astype(np.uint8)


def _hillshade(values: np.ndarray, mask: np.ndarray, pixel_m: float, rgb: np.ndarray) -> np.ndarray:
    """Shade colours by a north-west light so relief reads at a glance."""
    if min(values.shape) < 3:
        return rgb
    filled = np.where(mask, np.nanmean(values[~mask]) if (~mask).any() else 0.0, values)
    dy, dx = np.gradient(filled, pixel_m)
    slope = np.arctan(np.hypot(dx, dy))
    aspect = np.arctan2(-dx, dy)
    azimuth, altitude = math.radians(315.0), math.radians(45.0)
    shade = np.sin(altitude) * np.cos(slope) + np.cos(altitude) * np.sin(slope) * np.cos(azimuth - aspect)
    factor = 0.55 + 0.45 * np.clip(shade, 0.0, 1.0)
    return np.clip(rgb * factor[..., None], 0, 255).astype(np.uint8)


# ----- vectors --------------------------------------------------------------------------------------------

_VECTOR_DRIVERS = {
    "GeoJSON": {"GeoJSON", "GeoJSONSeq", "ESRIJSON", "TopoJSON"},
    "KML": {"KML", "LIBKML"},
    "KMZ": {"KML", "LIBKML"},
    "ESRI Shapefile": {"ESRI Shapefile"},
}
_GEOMETRY_CATEGORY = {0: "Point", 1: "Line", 2: "Line", 3: "Polygon", 4: "Point", 5: "Line", 6: "Polygon"}


def _vector_source(path: Path, kind: str, head: bytes) -> str:
    """GDAL dataset name for the file, checking that the content matches the declared type."""
    seen = _sniff(head)
    if kind == "GeoJSON":
        if seen != "JSON text":
            raise _BadContent(f"the content is {seen}, not GeoJSON")
        try:
            with path.open("rb") as handle:
                json.load(handle)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _BadContent(f"the JSON does not parse: {_short(exc)}") from None
        return str(path)
    if kind == "KML":
        if seen != "a KML document":
            raise _BadContent(f"the content is {seen}, not a KML document")
        return str(path)
    if not zipfile.is_zipfile(path):
        raise _BadContent(f"the content is {seen}, not a zip archive")
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
    archive_name = f"/vsizip/{{{path}}}"
    if kind == "KMZ":
        kml = [n for n in names if n.lower().endswith(".kml")]
        if not kml:
            raise _BadContent("the KMZ archive contains no .kml document")
        main = "doc.kml" if "doc.kml" in kml else kml[0]
        return f"{archive_name}/{main}"
    shapefiles = [n for n in names if n.lower().endswith(".shp")]
    if not shapefiles:
        raise _BadContent("the zip archive contains no .shp file")
    stems = {n[:-4].lower() for n in shapefiles}
    for stem in stems:
        present = {n[len(stem) :].lower() for n in names if n.lower().startswith(stem)}
        missing = [ext for ext in (".shx", ".dbf") if ext not in present]
        if missing:
            raise _BadContent(f"the shapefile {stem}.shp has no {' or '.join(missing)} in the archive")
    return archive_name


def _analyse_vector(path: Path, kind: str, head: bytes) -> tuple[dict, shapely.Geometry, None]:
    import pyogrio

    source = _vector_source(path, kind, head)
    layers = pyogrio.list_layers(source)
    if len(layers) == 0:
        raise _BadContent("no layers found")
    geoms_lonlat: list[np.ndarray] = []
    fields_seen: dict[str, dict[str, Any]] = {}
    layer_info = []
    source_crs: str | None = None
    driver = None
    for layer_name, _geometry_type in layers:
        info = pyogrio.read_info(source, layer=layer_name)
        driver = info.get("driver")
        if driver not in _VECTOR_DRIVERS[kind]:
            raise _BadContent(f"GDAL reads it as {driver}, not {kind}")
        meta, _fids, wkb, field_data = pyogrio.raw.read(source, layer=layer_name)
        geometries = (
            shapely.force_2d(shapely.from_wkb(wkb)) if wkb is not None else np.array([], dtype=object)
        )
        crs = meta.get("crs")
        geometries = _to_lonlat(geometries, crs, kind)
        if source_crs is None and crs is not None:
            source_crs = crs
        geoms_lonlat.append(geometries)
        layer_info.append({"name": str(layer_name), "features": len(geometries), "crs": crs})
        for name, dtype, values in zip(meta["fields"], meta["dtypes"], field_data, strict=True):
            if kind in ("KML", "KMZ") and all(_is_null(v) for v in values):
                continue  # LIBKML declares a dozen schema fields that are usually empty
            entry = fields_seen.setdefault(str(name), {"dtype": str(dtype), "values": []})
            entry["values"].append(values)
    geometries = np.concatenate(geoms_lonlat) if geoms_lonlat else np.array([], dtype=object)
    present = geometries[~shapely.is_missing(geometries) & ~shapely.is_empty(geometries)]
    if present.size == 0:
        raise _BadContent("no features with a geometry")
    counts = _count_types(present)
    footprint = shapely.union_all(shapely.make_valid(present))
    polygonal = _parts_of(footprint, (3, 6))
    area = 0.0
    if polygonal is not None:
        area = abs(_GEOD.geometry_area_perimeter(shapely.orient_polygons(polygonal))[0])
    length = sum(_GEOD.geometry_length(part) for part in shapely.get_parts(_linear_parts(footprint)))
    category = _category(counts)
    selectors = [
        _field_selector(name, entry["dtype"], np.concatenate(entry["values"]), category, counts)
        for name, entry in fields_seen.items()
    ]
    crs_string = _crs_string(source_crs) if source_crs else "EPSG:4326"
    fields: dict[str, Any] = {
        "crs": crs_string,
        "bounds": [float(v) for v in footprint.bounds],
        "area": round(area, 1),
        "length": round(length, 1),
        "points": counts["points"],
        "lines": counts["lines"],
        "polygons": counts["polygons"],
        "selectors": selectors,
        "ingesters": {
            "Common": {},
            "Vector": {
                "driver": driver,
                "layers": layer_info,
                "features": int(geometries.size),
                "features_with_geometry": int(present.size),
                "source_crs": crs_string,
                "fields": list(fields_seen),
            },
        },
    }
    if kind == "GeoJSON" and path.stat().st_size <= _SMALL_GEOJSON:
        fields["geojson"] = path.read_text(encoding="utf-8-sig")
    return fields, footprint, None


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def _to_lonlat(geometries: np.ndarray, crs: str | None, kind: str) -> np.ndarray:
    """Transform geometries to lon/lat; a missing CRS means lon/lat (GeoJSON/KML) unless coordinates say otherwise."""
    if geometries.size == 0:
        return geometries
    if crs is None:
        bounds = shapely.total_bounds(geometries)
        if kind == "ESRI Shapefile" and not (
            np.all(np.isfinite(bounds))
            and bounds[0] >= -180
            and bounds[2] <= 180
            and bounds[1] >= -90
            and bounds[3] <= 90
        ):
            raise _BadContent("the shapefile has no .prj and its coordinates are not longitude/latitude")
        return geometries
    pcrs = pyproj.CRS.from_user_input(crs)
    if pcrs.equals(pyproj.CRS.from_epsg(4326), ignore_axis_order=True):
        return geometries
    transformer = _transformer(crs, "EPSG:4326")
    # Densify long edges first so straight lines in a projected CRS stay faithful in lon/lat.
    bounds = shapely.total_bounds(geometries)
    step = max(bounds[2] - bounds[0], bounds[3] - bounds[1]) / 200.0
    if step > 0:
        geometries = shapely.segmentize(geometries, step)

    def to_lonlat(xy: np.ndarray) -> np.ndarray:
        lon, lat = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    return shapely.transform(geometries, to_lonlat)


def _count_types(geometries: np.ndarray) -> dict[str, int]:
    counts = {"points": 0, "lines": 0, "polygons": 0}
    types = shapely.get_type_id(geometries)
    counts["points"] += int(np.isin(types, (0, 4)).sum())
    counts["lines"] += int(np.isin(types, (1, 2, 5)).sum())
    counts["polygons"] += int(np.isin(types, (3, 6)).sum())
    collections = geometries[types == 7]
    if collections.size:
        inner = _count_types(shapely.get_parts(collections))
        for key, value in inner.items():
            counts[key] += value
    return counts


def _category(counts: dict[str, int]) -> str:
    kinds = [
        name for name, key in (("Point", "points"), ("Line", "lines"), ("Polygon", "polygons")) if counts[key]
    ]
    return kinds[0] if len(kinds) == 1 else "Mixed"


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


def _field_selector(
    name: str, dtype: str, values: np.ndarray, category: str, counts: dict[str, int]
) -> dict[str, Any]:
    """Selector for one attribute field: type, first distinct values and, for numbers, statistics."""
    data_type = {"object": "string", "bool": "boolean"}.get(dtype, dtype)
    initial: list[str] = []
    for value in values:
        if _is_null(value):
            continue
        text = value.isoformat() if hasattr(value, "isoformat") else str(value)
        if text not in initial:
            initial.append(text)
            if len(initial) == 10:
                break
    selector: dict[str, Any] = {
        "selector": name,
        "category": category,
        "data_type": data_type,
        "unit": None,
        "initial_values": initial,
        "points": counts["points"],
        "lines": counts["lines"],
        "polygons": counts["polygons"],
    }
    if np.asarray(values).dtype.kind in "iuf":
        numbers = np.asarray(values, dtype=np.float64)
        numbers = numbers[np.isfinite(numbers)]
        if numbers.size:
            low, high = float(numbers.min()), float(numbers.max())
            counts_, _ = np.histogram(numbers, bins=10, range=(low, high if high > low else low + 1.0))
            selector.update(
                minimum=low, maximum=high, mean=float(numbers.mean()), sd=float(numbers.std()),
                histogram_minimum=low, histogram_maximum=high if high > low else low + 1.0,
                histogram=np.round(counts_ * (100.0 / numbers.size), 6).tolist(),
            )  # fmt: skip
    return selector


# ----- everything else ------------------------------------------------------------------------------------


def _analyse_plain(path: Path, kind: str, head: bytes) -> dict:
    """Light content checks for non-geospatial types: the bytes must be what the type says."""
    seen = _sniff(head)
    common: dict[str, Any] = {}
    if kind in ("PNG", "JPEG"):
        wanted = "a PNG image" if kind == "PNG" else "a JPEG image"
        if seen != wanted:
            raise _BadContent(f"the content is {seen}, not {wanted}")
        from PIL import Image

        with Image.open(path) as image:
            common.update(width=image.width, height=image.height, mode=image.mode)
            image.verify()
    elif kind == "PDF":
        if b"%PDF-" not in head[:1024]:
            raise _BadContent(f"the content is {seen}, not a PDF document")
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 2048))
            if b"%%EOF" not in handle.read():
                raise _BadContent("the PDF has no end-of-file marker (truncated?)")
    elif kind == "GZIP":
        if seen != "a gzip archive":
            raise _BadContent(f"the content is {seen}, not a gzip archive")
        with gzip.open(path, "rb") as handle:
            handle.read(64 * 1024)  # a corrupt header or first block fails here
    elif kind == "ZIP":
        if not zipfile.is_zipfile(path):
            raise _BadContent(f"the content is {seen}, not a zip archive")
        with zipfile.ZipFile(path) as archive:
            common["members"] = len(archive.infolist())
    elif kind == "CSV":
        if seen not in ("text", "JSON text") and not seen.startswith("an XML"):
            raise _BadContent(f"the content is {seen}, not comma-separated text")
        try:
            sample = head.decode("utf-8-sig")
        except UnicodeDecodeError:
            sample = head.decode("latin-1")
        lines = sample.splitlines()[:-1] or sample.splitlines()
        rows = list(csv.reader(lines))
        if not rows:
            raise _BadContent("no rows")
        common["columns"] = rows[0]
    return {"ingesters": {"Common": common}}


# ---------------------------------------------------------------------------------------------------------
# Region slicing
# ---------------------------------------------------------------------------------------------------------


def slice_region(
    geometry_wkb: bytes,
    *,
    slice_size_m: float = DEFAULT_SLICE_SIZE_M,
    max_region_m: float = DEFAULT_MAX_REGION_M,
    max_slices: int = 10_000,
) -> list[Slice]:
    """Split a lon/lat region into the slices of a grouped run.

    A region whose extent fits within ``max_region_m`` in both directions is one slice. Otherwise the
    region is cut along UTM zone (and equator) boundaries and each part is covered by a grid of
    ``slice_size_m`` squares in its own UTM zone, anchored on whole kilometres; only cells that intersect
    the region are kept. Cells of one zone tile exactly, so rasters rendered on them share one pixel grid.
    Order: by zone, then north to south, west to east. Raises ``ValueError`` for an empty or invalid
    region, non-positive sizes or more than ``max_slices`` cells.
    """
    if not slice_size_m > 0 or not max_region_m > 0:
        raise ValueError("slice_size_m and max_region_m must be positive")
    try:
        region = shapely.from_wkb(geometry_wkb)
    except shapely.errors.GEOSException as exc:
        raise ValueError(f"region geometry is not valid WKB: {_short(exc)}") from None
    if region is None or region.is_empty:
        raise ValueError("region geometry is empty")
    if not region.is_valid:
        region = shapely.make_valid(region)
    west, south, east, north = region.bounds
    if not (-180.0 <= west <= east <= 180.0 and -90.0 <= south <= north <= 90.0):
        raise ValueError(f"region bounds {region.bounds} are not longitude/latitude")
    dense = shapely.segmentize(region, 0.01)
    centre_epsg = utm_epsg((west + east) / 2.0, (south + north) / 2.0)
    projected = _project(dense, "EPSG:4326", centre_epsg)
    px0, py0, px1, py1 = projected.bounds
    if px1 - px0 <= max_region_m and py1 - py0 <= max_region_m:
        return [
            Slice(
                index=1, count=1, bounds_lonlat=(west, south, east, north), epsg=centre_epsg,
                geometry_wkb=shapely.to_wkb(region), bounds_native=(px0, py0, px1, py1),
            )
        ]  # fmt: skip
    cells: list[tuple[int, float, float, shapely.Geometry, tuple[float, float, float, float]]] = []
    for epsg, band in _zone_bands(west, south, east, north):
        part = shapely.intersection(dense, band) if band is not None else dense
        if part.is_empty:
            continue
        part_utm = _project(part, "EPSG:4326", epsg)
        band_utm = _project(shapely.segmentize(band, 0.01), "EPSG:4326", epsg) if band is not None else None
        shapely.prepare(part_utm)
        x0, y0, x1, y1 = part_utm.bounds
        anchor = 1000.0
        gx0, gy1 = math.floor(x0 / anchor) * anchor, math.ceil(y1 / anchor) * anchor
        columns = max(1, math.ceil((x1 - gx0) / slice_size_m - 1e-9))
        rows = max(1, math.ceil((gy1 - y0) / slice_size_m - 1e-9))
        if columns * rows > 100 * max_slices:  # do not even enumerate absurd grids
            raise ValueError(
                f"the region needs about {columns * rows} slices, more than max_slices={max_slices}"
            )
        for row in range(rows):
            top = gy1 - row * slice_size_m
            boxes = shapely.box(
                gx0 + np.arange(columns) * slice_size_m,
                top - slice_size_m,
                gx0 + (np.arange(columns) + 1) * slice_size_m,
                top,
            )
            hits = shapely.intersects(part_utm, boxes)
            for column in np.flatnonzero(hits):
                cell = boxes[column]
                if band_utm is not None:
                    cell = shapely.intersection(cell, band_utm)
                    if cell.is_empty or not shapely.intersects(cell, part_utm):
                        continue
                cells.append((epsg, -top, float(gx0 + column * slice_size_m), cell, cell.bounds))
                if len(cells) > max_slices:
                    raise ValueError(f"the region needs more than max_slices={max_slices} slices")
    cells.sort(key=lambda c: (c[0], c[1], c[2]))
    slices = []
    for number, (epsg, _row, _col, cell, native) in enumerate(cells, start=1):
        cell_lonlat = _project(shapely.segmentize(cell, slice_size_m / 20.0), epsg, "EPSG:4326")
        piece = shapely.intersection(region, cell_lonlat)
        if piece.is_empty:  # touches only along an edge; keep the shared boundary so the slice is non-empty
            piece = shapely.intersection(region.boundary, cell_lonlat)
        slices.append(
            Slice(
                index=number, count=len(cells), bounds_lonlat=tuple(float(v) for v in cell_lonlat.bounds),
                epsg=epsg, geometry_wkb=shapely.to_wkb(piece), bounds_native=tuple(float(v) for v in native),
            )
        )  # fmt: skip
    return slices


def _project(geometry: shapely.Geometry, src: str | int, dst: str | int) -> shapely.Geometry:
    transformer = _transformer(src, dst)

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geometry, apply)


def _zone_bands(
    west: float, south: float, east: float, north: float
) -> Iterator[tuple[int, shapely.Polygon | None]]:
    """(EPSG, lon/lat band) for each UTM zone/hemisphere the bounds touch; band None when only one."""
    zones = range(utm_epsg(west, 0.0) % 100, utm_epsg(east, 0.0) % 100 + 1)
    hemispheres = [h for h, ok in ((True, north >= 0.0), (False, south < 0.0)) if ok]
    if len(zones) == 1 and len(hemispheres) == 1:
        yield (32600 if hemispheres[0] else 32700) + zones[0], None
        return
    for zone in zones:
        lon0, lon1 = -180.0 + (zone - 1) * 6.0, -180.0 + zone * 6.0
        for north_side in hemispheres:
            lat0, lat1 = (0.0, 90.0) if north_side else (-90.0, 0.0)
            band = shapely.box(
                max(lon0, west - 1e-9),
                max(lat0, south - 1e-9),
                min(lon1, east + 1e-9),
                min(lat1, north + 1e-9),
            )
            yield (32600 if north_side else 32700) + zone, band


# ---------------------------------------------------------------------------------------------------------
# The synthetic world
# ---------------------------------------------------------------------------------------------------------
#
# Both fields are sums of plane waves sin(k . P + phi) where P is the point's position on a sphere in
# metres (3-D, earth-centred). Evaluating waves in 3-D rather than in lon/lat or in a map projection
# gives a field that is smooth everywhere (no seams at zone boundaries, the antimeridian or the poles),
# isotropic and metric (a wave of 2 km looks like 2 km anywhere), and a pure function of (lon, lat).
# Hand-written instead of a noise library because the emulator must stay dependency-light, be bit-for-bit
# deterministic and be fast: the sum vectorises perfectly (see _Lattice).


@dataclass(frozen=True)
class _Octaves:
    """A fixed, seeded set of octaves of plane waves.

    Per wave: unit direction, phase offset, drift (radians per day, for time-varying fields) and octave.
    Per octave: wavelength, amplitude, and whether it is "ridged". An octave's value is the sum of its
    waves' sines divided by sqrt(count) (a smooth random field of unit-ish variance); a ridged octave
    uses 1 - 2|value|, whose sharp crests follow the curved zero lines of that field (mountain ridges).
    """

    direction: np.ndarray  # (n, 3)
    phase: np.ndarray  # (n,)
    drift: np.ndarray  # (n,)
    octave: np.ndarray  # (n,) index into the per-octave arrays
    wavelength: np.ndarray  # (m,) metres
    amplitude: np.ndarray  # (m,)
    ridged: np.ndarray  # (m,) bool
    count: np.ndarray  # (m,) waves per octave

    @staticmethod
    def make(
        seed: int, wavelengths: Sequence[float], amplitudes: Sequence[float], waves: Sequence[int],
        ridged: Sequence[bool] | None = None, drift: float = 0.0,
    ) -> _Octaves:  # fmt: skip
        rng = np.random.default_rng(seed)  # PCG64: a stable stream across numpy versions and platforms
        count = np.asarray(waves, int)
        n = int(count.sum())
        vectors = rng.normal(size=(n, 3))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return _Octaves(
            direction=vectors,
            phase=rng.uniform(0.0, 2.0 * math.pi, n),
            drift=rng.uniform(-drift, drift, n) if drift else np.zeros(n),
            octave=np.repeat(np.arange(len(count)), count),
            wavelength=np.asarray(wavelengths, float),
            amplitude=np.asarray(amplitudes, float),
            ridged=np.asarray(ridged if ridged is not None else [False] * len(count), bool),
            count=count,
        )

    def combine(self, o: int, value: np.ndarray, weight: float) -> np.ndarray:
        """Scale an octave's summed sines into its contribution (in place where possible)."""
        value *= value.dtype.type(1.0 / math.sqrt(self.count[o]))
        if self.ridged[o]:
            np.abs(value, out=value)
            value *= value.dtype.type(-2.0)
            value += value.dtype.type(1.0)
        value *= value.dtype.type(self.amplitude[o] * weight)
        return value


# Elevation: continental swell (sets lowland vs upland), hills whose strength follows the swell (ridged in
# the middle octaves) and fine roughness. Wavelengths fall by ~2.2 per octave, amplitudes roughly with
# them. Long octaves get more waves (more isotropic, and nearly free: they are summed on the lattice).
_CONTINENT = _Octaves.make(7101, [900e3, 420e3, 190e3, 90e3], [1.0, 0.62, 0.38, 0.22], [7, 7, 7, 7])
_HILLS = _Octaves.make(
    7202, [42e3, 19e3, 8.5e3, 3.8e3, 1.7e3], [260.0, 170.0, 95.0, 45.0, 20.0], [7, 5, 4, 4, 3],
    ridged=[False, True, True, True, False],
)  # fmt: skip
_ROUGH = _Octaves.make(7303, [760.0, 340.0, 150.0, 70.0], [9.0, 4.0, 1.8, 0.8], [3, 3, 3, 2])
# Domain warp of the hills: three smooth fields displace the positions at which the hill octaves are
# evaluated by up to ~2.5 km, bending ridge lines so they stop looking like interference rings. Long
# wavelengths keep the warp nearly linear across a lattice cell (sub-metre interpolation error).
_WARP = tuple(_Octaves.make(seed, [90e3, 55e3], [1.0, 0.6], [4, 4]) for seed in (7401, 7402, 7403))
_WARP_M = 2500.0

# Clouds: drifting, evolving cells from synoptic to convective scales.
_CLOUDS = _Octaves.make(
    8101, [260e3, 110e3, 48e3, 21e3, 9e3, 4e3, 1.8e3, 0.8e3], [1.0, 0.8, 0.62, 0.45, 0.3, 0.2, 0.12, 0.07],
    [7, 7, 6, 3, 3, 3, 2, 2], drift=2.5,
)  # fmt: skip
_COVER = _Octaves.make(8202, [1500e3, 600e3], [1.0, 0.7], [5, 5], drift=0.9)
_WIND_M_PER_DAY = np.array([310e3, 140e3, -90e3])  # the whole cloud field drifts through 3-D space over time
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


class _Lattice:
    """Pixel-centre positions of a raster grid, interpolated from a coarse node lattice.

    Nodes sit at multiples of ``K`` pixels in the zone's global pixel grid, so every raster of the same
    zone and resolution uses the same nodes and the same interpolation weights for a given pixel: values
    at a pixel never depend on which slice renders it (bit-identical overlaps). Per wave, the phase at
    the nodes is computed exactly in float64, reduced modulo 2*pi per lattice cell, and interpolated
    bilinearly (exact, since the phase is linear in position) in float32 within the cell, where the
    sine is cheap. Node spacing is ~512 m, far below the curvature scale of the projection.
    """

    def __init__(self, epsg: int, transform: Affine, width: int, height: int, resolution: float) -> None:
        self.k = k = max(1, int(512.0 // resolution))
        col0 = round(transform.c / resolution)
        row0 = round(-transform.f / resolution)  # global row index grows southwards
        self.cell_x = np.arange(math.floor(col0 / k), math.floor((col0 + width - 1) / k) + 1)
        self.cell_y = np.arange(math.floor(row0 / k), math.floor((row0 + height - 1) / k) + 1)
        node_x = np.append(self.cell_x, self.cell_x[-1] + 1) * (k * resolution)
        node_y = -np.append(self.cell_y, self.cell_y[-1] + 1) * (k * resolution)
        gx, gy = np.meshgrid(node_x, node_y)
        lon, lat = _transformer(epsg, "EPSG:4326").transform(gx, gy)
        self.lon, self.lat = lon, lat
        self.xyz = _ecef(lon, lat)
        self.offset = (row0 - self.cell_y[0] * k, col0 - self.cell_x[0] * k)
        self.shape = (height, width)
        f = ((np.arange(k) + 0.5) / k).astype(np.float32)
        self.fx = f[None, None, None, :]
        self.fy = f[None, :, None, None]
        self.fxy = (f[:, None] * f[None, :])[None, :, None, :]

    def evaluate(self, field: Callable[[_Lattice], np.ndarray], band_pixels: int = 1 << 20) -> np.ndarray:
        """Evaluate ``field`` (a function of a lattice returning its padded (ny, k, nx, k) values) in bands
        of lattice-cell rows of about ``band_pixels`` pixels, and return the raster's (height, width).
        Banding bounds memory (and keeps arrays cache-sized); per-pixel values do not depend on it."""
        ny, nx = len(self.cell_y), len(self.cell_x)
        rows = max(1, band_pixels // (self.k * self.k * nx))
        padded: np.ndarray | None = None
        for start in range(0, ny, rows):
            stop = min(ny, start + rows)
            block = field(self._band(start, stop))
            if padded is None:
                padded = np.empty((ny, self.k, nx, self.k), block.dtype)
            padded[start:stop] = block
        assert padded is not None
        return np.ascontiguousarray(self.crop(padded))

    def _band(self, start: int, stop: int) -> _Lattice:
        band = object.__new__(_Lattice)
        band.__dict__.update(self.__dict__)
        band.cell_y = self.cell_y[start:stop]
        band.lon, band.lat = self.lon[start : stop + 1], self.lat[start : stop + 1]
        band.xyz = self.xyz[:, start : stop + 1]
        return band

    def crop(self, padded: np.ndarray) -> np.ndarray:
        """Cell-blocked array (ny, k, nx, k) -> the raster's (height, width)."""
        ny, k, nx, _ = padded.shape
        flat = padded.reshape(ny * k, nx * k)
        r, c = self.offset
        return flat[r : r + self.shape[0], c : c + self.shape[1]]

    def waves(self, octaves: _Octaves, xyz: np.ndarray, resolution: float, days: float = 0.0) -> np.ndarray:
        """Sum of the octaves over the padded grid, as float32 (ny, k, nx, k).

        Octaves at least 64 node spacings long are evaluated exactly at the nodes and interpolated once
        (error below 1e-4 of their amplitude); shorter ones get a per-pixel sine for every wave.
        """
        total = np.zeros((len(self.cell_y), self.k, len(self.cell_x), self.k), np.float32)
        weights = _band_limit(octaves, resolution)
        node_sum = np.zeros(xyz.shape[1:])
        for o in np.flatnonzero(weights > 0):
            members = np.flatnonzero(octaves.octave == o)
            if octaves.wavelength[o] >= 64.0 * self.k * resolution:
                value = np.zeros(xyz.shape[1:])
                for i in members:
                    value += np.sin(np.mod(_phase(octaves, i, xyz, days), 2.0 * math.pi))
                node_sum += octaves.combine(o, value, weights[o])
                continue
            value = np.zeros_like(total)
            for i in members:
                wave = self._bilinear(_phase(octaves, i, xyz, days), wrap=True)
                np.sin(wave, out=wave)
                value += wave
            total += octaves.combine(o, value, weights[o])
        if node_sum.any():
            total += self._bilinear(node_sum, wrap=False)
        return total

    def _bilinear(self, nodes: np.ndarray, *, wrap: bool) -> np.ndarray:
        """Node values (float64) -> float32 pixel values (ny, k, nx, k), bilinear within each lattice cell.
        With ``wrap`` (phases) each cell's corner value is reduced modulo 2*pi first; the in-cell
        differences stay small, so float32 keeps ~1e-5 rad precision."""
        v00, v10, v01, v11 = nodes[:-1, :-1], nodes[:-1, 1:], nodes[1:, :-1], nodes[1:, 1:]
        base = (np.mod(v00, 2.0 * math.pi) if wrap else v00).astype(np.float32)[:, None, :, None]
        dx = (v10 - v00).astype(np.float32)[:, None, :, None]
        dy = (v01 - v00).astype(np.float32)[:, None, :, None]
        dxy = (v11 - v10 - v01 + v00).astype(np.float32)[:, None, :, None]
        out = dxy * self.fxy
        out += dx * self.fx
        out += dy * self.fy
        out += base
        return out


def _phase(octaves: _Octaves, i: int, xyz: np.ndarray, days: float) -> np.ndarray:
    """Phase of wave ``i`` at 3-D positions, with plain element-wise float64 operations: unlike a BLAS dot
    product (whose kernels may fuse or reorder differently at array edges) the result for a point never
    depends on where the point sits in the array."""
    k = octaves.direction[i] * (2.0 * math.pi / octaves.wavelength[octaves.octave[i]])
    phase = xyz[0] * k[0]
    phase += xyz[1] * k[1]
    phase += xyz[2] * k[2]
    phase += octaves.phase[i] + octaves.drift[i] * days
    return phase


def _band_limit(octaves: _Octaves, resolution: float) -> np.ndarray:
    """Fade out waves shorter than ~4 pixels (a coarser raster is a smoother one, and no aliasing)."""
    return np.clip((octaves.wavelength / max(resolution, 1e-9) - 2.0) / 2.0, 0.0, 1.0)


def _ecef(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Earth-centred 3-D positions (metres, WGS 84 ellipsoid surface) of lon/lat points, shape (3, ...).
    PROJ transforms point by point, so a point's position is bit-identical whatever array it comes in."""
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    x, y, z = _transformer("EPSG:4326", "EPSG:4978").transform(lon, lat, np.zeros_like(lon))
    return np.stack([np.asarray(x), np.asarray(y), np.asarray(z)])


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _shape_elevation(continent: np.ndarray, hills: np.ndarray, rough: np.ndarray) -> np.ndarray:
    """Combine the octave sums into metres: lowlands near sea level, rugged uplands up to ~1300 m."""
    c = continent / np.float32(1.4)  # roughly -1..1
    rugged = _smoothstep(-0.35, 0.75, c).astype(np.float32)
    height = (
        np.float32(230.0) + np.float32(430.0) * c + (np.float32(0.25) + np.float32(0.75) * rugged) * hills
    )
    height += rough
    # Rational soft clamps (no transcendental functions: identical results whatever the SIMD path):
    # the sea floor flattens towards -20 m and peaks roll off towards 1300 m.
    below = height < 0
    u = -height[below] / np.float32(60.0)
    height[below] = np.float32(-20.0) * u / (np.float32(1.0) + u)
    high = height > 1050
    v = (height[high] - np.float32(1050.0)) / np.float32(250.0)
    height[high] = np.float32(1050.0) + np.float32(250.0) * v / (np.float32(1.0) + v)
    # Keep 1/128 m (~8 mm, finer than any real DEM's precision): multiples of a power of two are exact in
    # float32, and the zeroed low mantissa bits let DEFLATE + float predictor halve the file size.
    height *= np.float32(128.0)
    np.round(height, out=height)
    height *= np.float32(1.0 / 128.0)
    return height


def _classify_clouds(cloud: np.ndarray, cover: np.ndarray, shade: np.ndarray) -> np.ndarray:
    """Thresholds on the cloud field: thick where dense, thin on the fringes, shadow under offset thick cloud."""
    threshold = np.float32(0.55) - np.float32(0.45) * cover  # cover ~ -1.5..1.5: clear days to overcast
    classes = np.zeros(cloud.shape, np.uint8)
    classes[shade > threshold] = 3
    classes[cloud > threshold - np.float32(0.35)] = 9
    classes[cloud > threshold] = 6
    return classes


def _days(date: datetime) -> float:
    if date.tzinfo is None:
        date = date.replace(tzinfo=timezone.utc)
    return (date - _EPOCH).total_seconds() / 86400.0


def _towards_sun(lon: np.ndarray, lat: np.ndarray, date: datetime) -> np.ndarray:
    """3-D positions of the points where a 3.5 km-high cloud must be to shade (lon, lat) at local noon on
    ``date``: along the ground towards the sun (south of the subsolar latitude's north, and vice versa),
    farther when the sun is low. Geodesic steps via PROJ's Geod (point by point, hence deterministic)."""
    if date.tzinfo is None:
        date = date.replace(tzinfo=timezone.utc)
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    declination = 23.44 * math.sin(2.0 * math.pi * (date.timetuple().tm_yday - 81) / 365.0)
    elevation = np.clip(90.0 - np.abs(lat - declination), 12.0, 90.0)
    distance = 3500.0 / np.tan(np.radians(elevation))
    azimuth = np.where(lat > declination, 180.0, 0.0)
    lon2, lat2, _ = _GEOD.fwd(lon.ravel(), lat.ravel(), azimuth.ravel(), distance.ravel())
    return _ecef(np.reshape(lon2, lon.shape), np.reshape(lat2, lat.shape))


def elevation_lonlat(lon: Any, lat: Any, *, resolution_m: float = 10.0) -> np.ndarray:
    """The world's elevation (float32 metres) at lon/lat points: the reference the renderer samples at pixel
    centres. Rendered pixels differ from it by a few centimetres at most (the longest octaves and the domain
    warp are interpolated from a ~512 m lattice). ``resolution_m`` band-limits the field like a raster of
    that resolution would. Shapes broadcast like numpy arrays."""
    lon, lat = np.broadcast_arrays(np.asarray(lon, float), np.asarray(lat, float))
    xyz = _ecef(lon, lat)
    continent = _direct_waves(_CONTINENT, xyz, resolution_m)
    hills = _direct_waves(_HILLS, _warped(xyz), resolution_m)
    return _shape_elevation(continent, hills, _direct_waves(_ROUGH, xyz, resolution_m)).astype(np.float32)


def _warped(xyz: np.ndarray) -> np.ndarray:
    """Positions displaced by the hills' domain warp (float64, element-wise: deterministic per point)."""
    shifted = np.array(xyz, dtype=float, copy=True)
    for axis, octaves in enumerate(_WARP):
        field = np.zeros(xyz.shape[1:])
        for o in range(len(octaves.wavelength)):
            value = np.zeros(xyz.shape[1:])
            for i in np.flatnonzero(octaves.octave == o):
                value += np.sin(np.mod(_phase(octaves, i, xyz, 0.0), 2.0 * math.pi))
            field += octaves.combine(o, value, 1.0)
        shifted[axis] += _WARP_M * field
    return shifted


def classification_lonlat(lon: Any, lat: Any, date: datetime, *, resolution_m: float = 20.0) -> np.ndarray:
    """The world's cloud classification (uint8 classes of :data:`CLOUD_CLASSES`) at lon/lat on ``date``."""
    lon, lat = np.broadcast_arrays(np.asarray(lon, float), np.asarray(lat, float))
    days = _days(date)
    xyz = _ecef(lon, lat)
    drifted = xyz - (_WIND_M_PER_DAY * days)[:, None].reshape(3, *([1] * lon.ndim))
    cloud = _direct_waves(_CLOUDS, drifted, resolution_m, days)
    cover = _direct_waves(_COVER, xyz, resolution_m, days)
    sun = _towards_sun(lon, lat, date) - (_WIND_M_PER_DAY * days).reshape(3, *([1] * lon.ndim))
    shade = _direct_waves(_CLOUDS, sun, resolution_m, days)
    return _classify_clouds(cloud, cover, shade)


def _direct_waves(octaves: _Octaves, xyz: np.ndarray, resolution: float, days: float = 0.0) -> np.ndarray:
    """The octave sum at arbitrary points (no lattice): the reference the renderer approximates."""
    weights = _band_limit(octaves, resolution)
    total = np.zeros(xyz.shape[1:], np.float32)
    for o in np.flatnonzero(weights > 0):
        value = np.zeros(xyz.shape[1:])
        for i in np.flatnonzero(octaves.octave == o):
            value += np.sin(np.mod(_phase(octaves, i, xyz, days), 2.0 * math.pi))
        total += octaves.combine(o, value, weights[o]).astype(np.float32)
    return total


# ---------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------


def _slice_grid(slc: Slice, resolution: float) -> tuple[Affine, int, int]:
    """The slice's pixel grid in its UTM zone: its rectangle snapped outwards to multiples of the resolution."""
    if not resolution > 0:
        raise ValueError(f"resolution_m must be positive, got {resolution}")
    if slc.bounds_native is not None:
        x0, y0, x1, y1 = slc.bounds_native
    else:
        x0, y0, x1, y1 = _transformer("EPSG:4326", slc.epsg).transform_bounds(
            *slc.bounds_lonlat, densify_pts=21
        )
    eps = 1e-6
    c0, c1 = math.floor(x0 / resolution + eps), math.ceil(x1 / resolution - eps)
    r0, r1 = math.floor(y0 / resolution + eps), math.ceil(y1 / resolution - eps)
    width, height = max(1, c1 - c0), max(1, r1 - r0)
    if width * height > 40_000 * 40_000:
        raise ValueError(f"slice {slc.index} would be {width}x{height} pixels at {resolution} m; too large")
    return (
        Affine(resolution, 0.0, c0 * resolution, 0.0, -resolution, (r0 + height) * resolution),
        width,
        height,
    )


def render_elevation(path: Path, slc: Slice, *, resolution_m: float) -> None:
    """Write the world's elevation over a slice as a float32 COG (metres, nodata -9999, all pixels valid)."""
    transform, width, height = _slice_grid(slc, resolution_m)
    lattice = _Lattice(slc.epsg, transform, width, height, resolution_m)

    def field(band: _Lattice) -> np.ndarray:
        continent = band.waves(_CONTINENT, band.xyz, resolution_m)
        hills = band.waves(_HILLS, _warped(band.xyz), resolution_m)
        return _shape_elevation(continent, hills, band.waves(_ROUGH, band.xyz, resolution_m))

    data = lattice.evaluate(field)
    _write_cog(
        Path(path), data.astype(np.float32), transform, slc.epsg, ELEVATION_NODATA,
        description="Elevation", unit="m", resampling="AVERAGE",
        tags={**_slice_tags(slc, resolution_m), "PRODUCT": "elevation", "VERTICAL_DATUM": "synthetic (sea level 0 m)"},
    )  # fmt: skip


def render_classification(path: Path, slc: Slice, *, resolution_m: float, date: datetime) -> None:
    """Write the world's cloud classification on ``date`` over a slice as a uint8 COG (nodata 255 outside
    the slice's part of the region; classes in :data:`CLOUD_CLASSES`)."""
    transform, width, height = _slice_grid(slc, resolution_m)
    lattice = _Lattice(slc.epsg, transform, width, height, resolution_m)
    days = _days(date)
    wind = (_WIND_M_PER_DAY * days)[:, None, None]

    def field(band: _Lattice) -> np.ndarray:
        cloud = band.waves(_CLOUDS, band.xyz - wind, resolution_m, days)
        cover = band.waves(_COVER, band.xyz, resolution_m, days)
        shade = band.waves(_CLOUDS, _towards_sun(band.lon, band.lat, date) - wind, resolution_m, days)
        return _classify_clouds(cloud, cover, shade)

    classes = lattice.evaluate(field)
    polygons = _parts_of(slc.geometry, (3, 6))
    if polygons is not None and shapely.area(polygons) > 0:
        region = _project(shapely.segmentize(polygons, 0.01), "EPSG:4326", slc.epsg)
        outside = rasterio.features.geometry_mask([region], out_shape=(height, width), transform=transform)
        classes[outside] = CLASSIFICATION_NODATA
    moment = date if date.tzinfo else date.replace(tzinfo=timezone.utc)
    _write_cog(
        Path(path), classes, transform, slc.epsg, CLASSIFICATION_NODATA,
        description="Cloud classification", unit="", resampling="NEAREST",
        tags={
            **_slice_tags(slc, resolution_m),
            "PRODUCT": "cloud_classification",
            "CLASSES": ",".join(f"{v}:{name}" for v, (name, _) in CLOUD_CLASSES.items()),
            "ACQUISITION_DATETIME": _iso(moment),
            "TIFFTAG_DATETIME": moment.astimezone(timezone.utc).strftime("%Y:%m:%d %H:%M:%S"),
        },
        colormap={
            **{v: (*rgb, 255) for v, (_name, rgb) in CLOUD_CLASSES.items()},
            CLASSIFICATION_NODATA: (0, 0, 0, 0),
        },
    )  # fmt: skip


def _slice_tags(slc: Slice, resolution: float) -> dict[str, str]:
    return {
        "SLICE_INDEX": str(slc.index),
        "SLICE_COUNT": str(slc.count),
        "RESOLUTION_M": f"{resolution:g}",
        "GENERATOR": "fusion-stac emulator (synthetic world)",
    }


def _write_cog(
    path: Path, data: np.ndarray, transform: Affine, epsg: int, nodata: float, *, description: str, unit: str,
    resampling: str, tags: dict[str, str], colormap: dict[int, tuple[int, int, int, int]] | None = None,
) -> None:  # fmt: skip
    """Write one band as a COG: tiled, DEFLATE + predictor, internal overviews; temp file then rename."""
    height, width = data.shape
    block = 512 if min(width, height) >= 1024 else 256
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": data.dtype.name,
        "crs": CRS.from_epsg(epsg), "transform": transform, "nodata": nodata,
    }  # fmt: skip
    target = _atomic_target(path)
    try:
        with MemoryFile() as memory:
            with memory.open(**profile) as staging:
                staging.write(data, 1)
                staging.set_band_description(1, description)
                if unit:
                    staging.set_band_unit(1, unit)
                staging.update_tags(AREA_OR_POINT="Area", **tags)
                if colormap:
                    staging.write_colormap(1, colormap)
            with memory.open() as staging:
                rasterio.shutil.copy(
                    staging, str(target), driver="COG", BLOCKSIZE=block, COMPRESS="DEFLATE", PREDICTOR="YES",
                    LEVEL=6, OVERVIEWS="AUTO", OVERVIEW_RESAMPLING=resampling, RESAMPLING=resampling,
                    NUM_THREADS="ALL_CPUS", BIGTIFF="IF_SAFER",
                )  # fmt: skip
        os.replace(target, path)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------------------
# Statistics aggregation
# ---------------------------------------------------------------------------------------------------------

_CLASS_COLUMNS = {v: f"{name.lower().replace(' ', '_')}_percent" for v, (name, _rgb) in CLOUD_CLASSES.items()}


def render_statistics_csv(path: Path, raster_paths: list[Path]) -> None:
    """Write one CSV row per raster (slice): size, valid-pixel statistics and, for cloud classifications,
    the percentage of valid pixels in each class. Streams each raster by blocks (bounded memory)."""
    rows = [_raster_statistics(Path(p), position) for position, p in enumerate(raster_paths, start=1)]
    classified = any(row.pop("_classified") for row in rows)
    columns = ["slice", "file", "crs", "width", "height", "resolution_m", "count", "nodata_count",
               "area_m2", "min", "max", "mean", "sd"]  # fmt: skip
    if classified:
        columns += list(_CLASS_COLUMNS.values())
    target = _atomic_target(Path(path))
    try:
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
        os.replace(target, path)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _raster_statistics(path: Path, position: int) -> dict[str, Any]:
    with rasterio.open(path) as src:
        tags = src.tags()
        classified = tags.get("PRODUCT") == "cloud_classification"
        count, mean, m2 = 0, 0.0, 0.0
        low, high = math.inf, -math.inf
        histogram = np.zeros(256, np.int64)
        for row in range(0, src.height, 1024):
            window = Window(0, row, src.width, min(1024, src.height - row))
            block = src.read(1, window=window, masked=True)
            values = block.compressed()
            if values.dtype.kind == "f":
                values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            if classified:
                histogram += np.bincount(values.astype(np.int64), minlength=256)[:256]
            v = values.astype(np.float64)
            n_b, mean_b = v.size, float(v.mean())
            m2_b = float(((v - mean_b) ** 2).sum())
            delta = mean_b - mean
            total = count + n_b
            mean += delta * n_b / total
            m2 += m2_b + delta * delta * count * n_b / total
            count = total
            low, high = min(low, float(v.min())), max(high, float(v.max()))
        resolution = abs(src.transform.a)
        row_out: dict[str, Any] = {
            "slice": int(tags.get("SLICE_INDEX", position)),
            "file": path.name,
            "crs": _crs_string(src.crs) if src.crs else "",
            "width": src.width,
            "height": src.height,
            "resolution_m": resolution,
            "count": count,
            "nodata_count": src.width * src.height - count,
            "area_m2": round(count * resolution * abs(src.transform.e), 1),
            "min": low if count else None,
            "max": high if count else None,
            "mean": round(mean, 6) if count else None,
            "sd": round(math.sqrt(m2 / count), 6) if count else None,
            "_classified": classified,
        }
        if classified:
            for value, column in _CLASS_COLUMNS.items():
                row_out[column] = round(100.0 * histogram[value] / count, 4) if count else None
        return row_out
