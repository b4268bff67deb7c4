"""Analysis of raster files (GeoTIFF, JPEG2000, DEM): georeferencing, footprint, band statistics."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import rasterio
import rasterio.features
import rasterio.shutil
import shapely
from rasterio.enums import Resampling

from fusion_stac.emulator.geobase import (
    _COG_MEDIA_TYPE,
    _GEOD,
    _BadContent,
    _crs_string,
    _normalise_unit,
    _sniff,
    _transformer,
)
from fusion_stac.emulator.rendering import _raster_preview

# one table of media types: a STAC asset says what storage serves the file as
from fusion_stac.emulator.storage import CONTENT_TYPES as _MEDIA_TYPES

_MAX_STATS_PIXELS = 16 * 1024 * 1024  # above this, raster statistics are computed from a decimated read


# ----- rasters --------------------------------------------------------------------------------------------

_RASTER_DRIVERS = {"GeoTIFF": {"GTiff", "COG"}, "JPEG2000": {"JP2OpenJPEG", "JPEG2000", "JP2KAK", "JP2ECW"}}
_RASTER_SIGNATURES = {
    "GeoTIFF": ("a TIFF", "a BigTIFF"),
    "JPEG2000": ("a JPEG 2000 image", "a JPEG 2000 codestream"),
}


def _analyse_raster(path: Path, kind: str, head: bytes) -> tuple[dict, shapely.Geometry, bytes | None]:
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


def _footprint(crs: Any, bounds: Sequence[float], points_per_edge: int = 21) -> shapely.geometry.base.BaseGeometry:
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
