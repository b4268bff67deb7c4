"""Writing files: PNG previews of rasters, COGs of the synthetic world over a slice, and the
"Statistics Aggregator" CSV of a group of slices.

* :func:`render_elevation` / :func:`render_classification` write Cloud-Optimized GeoTIFFs of
  :mod:`terrain`'s world on the slice's pixel grid.
* :func:`render_statistics_csv` is the "Statistics Aggregator" of a group of slices.
"""

from __future__ import annotations

import csv
import io
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.features
import rasterio.shutil
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.windows import Window

from fusion_stac.emulator.geobase import (
    CLASSIFICATION_NODATA,
    CLOUD_CLASSES,
    ELEVATION_NODATA,
    Slice,
    _atomic_target,
    _crs_string,
    _iso,
    _normalise_unit,
    _parts_of,
    _project,
)
from fusion_stac.emulator.terrain import (
    _CLOUDS,
    _CONTINENT,
    _COVER,
    _HILLS,
    _ROUGH,
    _WIND_M_PER_DAY,
    _classify_clouds,
    _days,
    _Lattice,
    _shape_elevation,
    _slice_grid,
    _towards_sun,
    _warped,
)

_PREVIEW_SIZE = 512


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
