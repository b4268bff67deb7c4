"""Analysis of vector files (GeoJSON, KML, KMZ, zipped ESRI Shapefile): footprint, CRS, field selectors."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import shapely

from fusion_stac.emulator.geobase import (
    _GEOD,
    _BadContent,
    _crs_string,
    _linear_parts,
    _parts_of,
    _short,
    _sniff,
    _transformer,
    lonlat_bounds,
)

_SMALL_GEOJSON = 64 * 1024


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
    west, south, east, north = (float(v) for v in shapely.total_bounds(present))
    if not (-180.0 <= west <= east <= 180.0 and -90.0 <= south <= north <= 90.0):
        # Not wrapped: the API's bounds are plain lon/lat, and a wrapped polygon would cross the antimeridian.
        raise _BadContent(
            f"its coordinates are not longitude/latitude within -180..180 and -90..90 "
            f"(bounds {west:g}, {south:g}, {east:g}, {north:g}); split a region that crosses the "
            f"antimeridian into parts on either side of it"
        )
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
        # west > east for a region split at 180 (RFC 7946 5.2), not the whole globe
        "bounds": [float(v) for v in lonlat_bounds(footprint)],
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
