"""File analysis: the platform's "basic + extended analysis" of an uploaded or generated file.

:func:`analyse_file` returns the DataFile fields (API names), a lon/lat footprint and a PNG preview. Bad
content never raises: it yields ``error: True`` with a reason, exactly like the platform flags a failed
analysis. Rasters are read by :mod:`raster_analysis`, vectors by :mod:`vector_analysis`; other types get
light content checks here. Pure functions, no server state.
"""

from __future__ import annotations

import csv
import gzip
import logging
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyproj
import shapely

from fusion_stac.emulator.geobase import (
    _COG_MEDIA_TYPE,
    _RASTER_TYPES,
    _VECTOR_TYPES,
    CLOUD_CLASSES,
    FILE_TYPES,
    Analysis,
    _BadContent,
    _iso,
    _plain,
    _sha256,
    _short,
    _sniff,
)
from fusion_stac.emulator.raster_analysis import _analyse_raster

# one table of media types: a STAC asset says what storage serves the file as
from fusion_stac.emulator.storage import CONTENT_TYPES as _MEDIA_TYPES
from fusion_stac.emulator.vector_analysis import _analyse_vector

logger = logging.getLogger(__name__)

_STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
]
_RASTER_EXTENSION = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
_CLASSIFICATION_EXTENSION = "https://stac-extensions.github.io/classification/v1.1.0/schema.json"


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


# ----- other file types ----------------------------------------------------------------------------------


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
