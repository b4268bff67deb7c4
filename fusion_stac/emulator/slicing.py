"""Region slicing: :func:`slice_region` splits a large region into per-UTM-zone grid cells, one execution
("slice") each."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import shapely

from fusion_stac.emulator.geobase import (
    DEFAULT_MAX_REGION_M,
    DEFAULT_SLICE_SIZE_M,
    Slice,
    _project,
    _short,
    lonlat_bounds,
    rewrap_lonlat,
    unwrap_lonlat,
    utm_epsg,
)

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
    # A region split at 180 (RFC 7946) is cut as one: its eastern parts moved past 180 (UTM zones 61..
    # are zones 1.. again), and every geometry handed out is split at 180 again.
    crossing = lonlat_bounds(region)[0] > lonlat_bounds(region)[2]
    if crossing:
        region = unwrap_lonlat(region)
        west, south, east, north = region.bounds
    dense = shapely.segmentize(region, 0.01)
    centre_epsg = utm_epsg((west + east) / 2.0, (south + north) / 2.0)
    projected = _project(dense, "EPSG:4326", centre_epsg)
    px0, py0, px1, py1 = projected.bounds
    if px1 - px0 <= max_region_m and py1 - py0 <= max_region_m:
        return [
            Slice(
                index=1, count=1, bounds_lonlat=_wrapped_bounds(region), epsg=centre_epsg,
                geometry_wkb=shapely.to_wkb(rewrap_lonlat(region)), bounds_native=(px0, py0, px1, py1),
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
        if crossing:  # back in the region's frame (PROJ answers in -180..180)
            cell_lonlat = shapely.transform(cell_lonlat, lambda xy: _past_180(xy, west))
        piece = shapely.intersection(region, cell_lonlat)
        if piece.is_empty:  # touches only along an edge; keep the shared boundary so the slice is non-empty
            piece = shapely.intersection(region.boundary, cell_lonlat)
        slices.append(
            Slice(
                index=number, count=len(cells), bounds_lonlat=_wrapped_bounds(cell_lonlat),
                epsg=epsg, geometry_wkb=shapely.to_wkb(rewrap_lonlat(piece)),
                bounds_native=(float(native[0]), float(native[1]), float(native[2]), float(native[3])),
            )
        )  # fmt: skip
    return slices


def _past_180(xy: np.ndarray, west: float) -> np.ndarray:
    out = xy.copy()
    out[:, 0] = np.where(out[:, 0] < west - 1.0, out[:, 0] + 360.0, out[:, 0])
    return out


def _wrapped_bounds(geometry: shapely.Geometry) -> tuple[float, float, float, float]:
    """Bounds of an unwrapped lon/lat geometry in -180..180 (``west > east`` across 180)."""
    west, south, east, north = (float(v) for v in geometry.bounds)
    if east - west >= 360.0:
        return (-180.0, south, 180.0, north)
    wrap = lambda lon: lon - 360.0 if lon > 180.0 else lon  # noqa: E731
    return (wrap(west) if west != 180.0 else -180.0, south, wrap(east), north)


def _zone_bands(
    west: float, south: float, east: float, north: float
) -> Iterator[tuple[int, shapely.Polygon | None]]:
    """(EPSG, lon/lat band) for each UTM zone/hemisphere the bounds touch; band None when only one."""
    # Zone numbers in the region's frame: past 180 (an unwrapped region) they run on as 61, 62, ..
    zones = range(_zone_number(west), _zone_number(east) + 1)
    hemispheres = [h for h, ok in ((True, north >= 0.0), (False, south < 0.0)) if ok]
    if len(zones) == 1 and len(hemispheres) == 1:
        yield (32600 if hemispheres[0] else 32700) + (zones[0] - 1) % 60 + 1, None
        return
    for zone in zones:
        lon0, lon1 = -180.0 + (zone - 1) * 6.0, -180.0 + zone * 6.0
        epsg_zone = (zone - 1) % 60 + 1
        for north_side in hemispheres:
            lat0, lat1 = (0.0, 90.0) if north_side else (-90.0, 0.0)
            band = shapely.box(
                max(lon0, west - 1e-9),
                max(lat0, south - 1e-9),
                min(lon1, east + 1e-9),
                min(lat1, north + 1e-9),
            )
            yield (32600 if north_side else 32700) + epsg_zone, band


def _zone_number(lon: float) -> int:
    """UTM zone number of a longitude, counting on past 60 beyond 180 (61 is zone 1 again)."""
    return min(int((lon + 180.0) // 6.0) + 1, 60) if lon <= 180.0 else int((lon + 180.0) // 6.0) + 1
