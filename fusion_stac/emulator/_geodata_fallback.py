"""TEMPORARY stand-in for ``fusion_stac.emulator.geodata`` (written by another helper), same interface.

Used only while ``geodata`` cannot be imported; ``analysis.py`` prefers the real module. Kept small.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Analysis:
    fields: dict[str, Any] = field(default_factory=dict)
    geometry_wkb: bytes | None = None
    preview_png: bytes | None = None


@dataclass(frozen=True)
class Slice:
    index: int
    count: int
    bounds_lonlat: tuple[float, float, float, float]
    epsg: int
    geometry_wkb: bytes


def _utm_epsg(lon: float, lat: float) -> int:
    zone = min(max(int((lon + 180) // 6) + 1, 1), 60)
    return (32600 if lat >= 0 else 32700) + zone


def analyse_file(path: Path, file_type: str, file_name: str) -> Analysis:
    size = path.stat().st_size
    try:
        if file_type in ("GeoJSON", "KML", "KMZ", "ESRI Shapefile"):
            return _vector(path, size)
        if file_type in ("GeoTIFF", "DEM", "JPEG2000"):
            return _raster(path, size)
        return Analysis({"size": size, "publishable": True})
    except Exception as exc:
        return Analysis({"size": size, "error": True, "publishable": False,
                         "description": f"{type(exc).__name__}: {exc}"})


def _vector(path: Path, size: int) -> Analysis:
    import pyogrio
    import shapely
    from pyproj import CRS, Transformer

    meta, _, geometry, _ = pyogrio.raw.read(path)
    geoms = shapely.from_wkb(geometry)
    crs = CRS.from_user_input(meta["crs"]) if meta.get("crs") else CRS.from_epsg(4326)
    union = shapely.union_all(geoms)
    if not crs.equals(CRS.from_epsg(4326)):
        tr = Transformer.from_crs(crs, 4326, always_xy=True)
        union = shapely.transform(union, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    w, s, e, n = union.bounds
    epsg = _utm_epsg((w + e) / 2, (s + n) / 2)
    tr = Transformer.from_crs(4326, epsg, always_xy=True)
    metric = shapely.transform(union, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    kinds = shapely.get_type_id(geoms)
    fields = {
        "size": size, "publishable": True, "crs": "EPSG:4326", "bounds": [w, s, e, n],
        "area": round(metric.area, 1), "length": round(metric.length, 1),
        "points": int(np.isin(kinds, [0, 4]).sum()), "lines": int(np.isin(kinds, [1, 2, 5]).sum()),
        "polygons": int(np.isin(kinds, [3, 6]).sum()),
        "selectors": [{"selector": "geometry", "category": "Polygon", "area": round(metric.area, 1)}],
        "number_of_ingesters": 1, "ingesters": {"Common": {}},
    }
    if size < 100_000:
        fields["geojson"] = path.read_text(errors="replace")
    return Analysis(fields, shapely.to_wkb(union))


def _raster(path: Path, size: int) -> Analysis:
    import rasterio
    import shapely
    from rasterio.warp import transform_bounds

    with rasterio.open(path) as src:
        data = src.read(1, masked=True)
        bounds = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        valid = data.compressed()
        lo, hi = (float(valid.min()), float(valid.max())) if valid.size else (0.0, 0.0)
        if src.dtypes[0] == "uint8":
            hist = np.bincount(valid.astype(int), minlength=10)[:10]
            hlo, hhi = 0.0, 9.0
        else:
            hist, _ = np.histogram(valid, bins=10, range=(lo, hi if hi > lo else lo + 1))
            hlo, hhi = lo, hi
        fields = {
            "size": size, "publishable": True, "crs": src.crs.to_string(), "bounds": list(bounds),
            "resolution": round(abs(src.transform.a)),
            "area": float(abs(src.transform.a * src.transform.e) * src.width * src.height),
            "selectors": [{
                "selector": "1", "category": "Band", "data_type": src.dtypes[0], "minimum": lo, "maximum": hi,
                "mean": float(valid.mean()) if valid.size else 0.0, "sd": float(valid.std()) if valid.size else 0.0,
                "histogram_minimum": hlo, "histogram_maximum": hhi, "histogram": [int(v) for v in hist],
            }],
        }
        from PIL import Image

        scaled = np.zeros(data.shape, dtype=np.uint8)
        if hi > lo:
            scaled = ((data.filled(lo) - lo) / (hi - lo) * 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(scaled).save(buffer, format="PNG")
    return Analysis(fields, shapely.to_wkb(shapely.box(*bounds)), buffer.getvalue())


def slice_region(geometry_wkb: bytes, *, slice_size_m: float, max_region_m: float) -> list[Slice]:
    import shapely
    from pyproj import Transformer

    geom = shapely.from_wkb(geometry_wkb)
    w, s, e, n = geom.bounds
    epsg = _utm_epsg((w + e) / 2, (s + n) / 2)
    tr = Transformer.from_crs(4326, epsg, always_xy=True)
    x0, y0, x1, y1 = tr.transform_bounds(w, s, e, n)
    if max(x1 - x0, y1 - y0) <= max_region_m:
        return [Slice(1, 1, (w, s, e, n), epsg, geometry_wkb)]
    lat_step = slice_size_m / 111_320.0
    lon_step = slice_size_m / (111_320.0 * math.cos(math.radians((s + n) / 2)))
    cells = []
    for j in range(math.ceil((n - s) / lat_step)):
        for i in range(math.ceil((e - w) / lon_step)):
            box = shapely.box(w + i * lon_step, s + j * lat_step, w + (i + 1) * lon_step, s + (j + 1) * lat_step)
            part = geom.intersection(box)
            if not part.is_empty and part.area > 0:
                cells.append((box.bounds, part))
    out = []
    for k, (b, part) in enumerate(cells, start=1):
        c = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
        out.append(Slice(k, len(cells), b, _utm_epsg(*c), shapely.to_wkb(part)))
    return out


def _grid(slc: Slice, resolution_m: float) -> tuple[Any, int, int, np.ndarray, np.ndarray]:
    from pyproj import Transformer
    from rasterio.transform import from_origin

    tr = Transformer.from_crs(4326, slc.epsg, always_xy=True)
    x0, y0, x1, y1 = tr.transform_bounds(*slc.bounds_lonlat)
    x0 = math.floor(x0 / resolution_m) * resolution_m
    y1 = math.ceil(y1 / resolution_m) * resolution_m
    width = max(1, math.ceil((x1 - x0) / resolution_m))
    height = max(1, math.ceil((y1 - y0) / resolution_m))
    xs = x0 + (np.arange(width) + 0.5) * resolution_m
    ys = y1 - (np.arange(height) + 0.5) * resolution_m
    gx, gy = np.meshgrid(xs, ys)
    lon, lat = Transformer.from_crs(slc.epsg, 4326, always_xy=True).transform(gx, gy)
    return from_origin(x0, y1, resolution_m, resolution_m), width, height, lon, lat


def _write(path: Path, slc: Slice, transform: Any, array: np.ndarray, nodata: float | None) -> None:
    import rasterio

    profile = {"driver": "GTiff", "width": array.shape[1], "height": array.shape[0], "count": 1,
               "dtype": array.dtype.name, "crs": f"EPSG:{slc.epsg}", "transform": transform,
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate", "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def render_elevation(path: Path, slc: Slice, *, resolution_m: float) -> None:
    transform, _, _, lon, lat = _grid(slc, resolution_m)
    height = 300 + 250 * np.sin(lon * 7.0) * np.cos(lat * 9.0) + 120 * np.sin(lon * 23.0 + lat * 17.0)
    _write(path, slc, transform, height.astype("float32"), -9999.0)


def render_classification(path: Path, slc: Slice, *, resolution_m: float, date: datetime) -> None:
    transform, _, _, lon, lat = _grid(slc, resolution_m)
    phase = date.toordinal() % 97
    field_ = np.sin(lon * 31.0 + phase) + np.cos(lat * 27.0 - phase)
    classes = np.select([field_ < -0.5, field_ < 0.3, field_ < 1.0], [0, 3, 6], 9).astype("uint8")
    _write(path, slc, transform, classes, None)


def render_statistics_csv(path: Path, raster_paths: list[Path]) -> None:
    import rasterio

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["slice", "file", "count", "minimum", "maximum", "mean"])
    for index, raster in enumerate(raster_paths, start=1):
        with rasterio.open(raster) as src:
            data = src.read(1, masked=True).compressed()
        writer.writerow([index, raster.name, data.size, data.min(), data.max(), round(float(data.mean()), 4)])
    path.write_text(buffer.getvalue())
    json.dumps({})
