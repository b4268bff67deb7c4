"""The output grid of a mosaic, from metadata only (odc-geo), and which sources touch which chunk.

Target CRS: the one most slices are in, unless ``crs=`` says otherwise; a tie is an error that
names the slices in each CRS (there is no sensible default between two UTM zones split evenly).
Resolution: the native pixel size of the slices in the target CRS (the finest, if they differ)
unless ``resolution=`` is given. The grid is snapped to the slices' own pixel grid, so slices in
the target CRS are pasted, never resampled.

Across the antimeridian: in a geographic target CRS the grid's longitudes run on past 180° (a
region from 179.6° to -179.6° gets a grid from 179.6° to 180.4°) rather than over the whole globe
or onto a CRS centred on 180°. The grid stays plain EPSG:4326 (any reader of the CRS understands
it; GDAL and PROJ take longitudes past 180 as they are), its x coordinates increase without a jump,
and it spans the region only. The extent is the shortest longitude arc covering every slice (see
:mod:`fusion_stac.stac.bbox`); a bbox given with ``west > east`` (STAC's antimeridian box) is read
the same way.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from odc.geo import CRS, XY, xy_
from odc.geo.crs import norm_crs
from odc.geo.geobox import GeoBox, GeoboxTiles
from odc.geo.geom import BoundingBox
from odc.geo.overlap import compute_output_geobox

from fusion_stac.stac.bbox import check_bbox, union_lon_intervals, unwrap_bbox
from fusion_stac.xarray._errors import CRSConflictError, MosaicError
from fusion_stac.xarray._source import RasterSource
from fusion_stac.xarray._warp import reproject_info

__all__ = ["bin_sources", "choose_crs", "output_geobox"]


@functools.lru_cache(maxsize=256)
def _source_crs(text: str) -> CRS:
    """A source's CRS (a string from its metadata) as odc-geo's CRS, built once per process:
    planning compares each source's CRS several times (odc-geo's own cache costs ~20 µs a call)."""
    return norm_crs(text)


def _crs_name(crs: CRS) -> str:
    epsg = crs.epsg
    return f"EPSG:{epsg}" if epsg is not None else crs.to_wkt()


def choose_crs(sources: Sequence[RasterSource], crs: Any = None) -> CRS:
    """The target CRS: ``crs`` if given, else the most common CRS of the sources."""
    if crs is not None:
        try:
            return norm_crs(crs)
        except Exception as exc:
            raise MosaicError(f"crs={crs!r} is not a CRS pyproj understands: {exc}", field="crs") from exc
    by_crs: dict[str, list[RasterSource]] = {}
    for src in sources:
        by_crs.setdefault(_crs_name(_source_crs(src.crs)), []).append(src)
    counts = Counter({name: len(members) for name, members in by_crs.items()})
    ranked = counts.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        tied = [name for name, n in ranked if n == ranked[0][1]]
        detail = "; ".join(
            f"{name}: {', '.join(s.label for s in by_crs[name])}" for name in tied
        )
        raise CRSConflictError(
            f"the slices are split evenly between {', '.join(tied)} ({detail}); pass crs= to choose "
            "the output CRS",
            slices={name: [s.label for s in members] for name, members in by_crs.items()},
        )
    return norm_crs(ranked[0][0])


def _resolution_of(sources: Sequence[RasterSource], crs: CRS) -> tuple[float, float]:
    same = [s for s in sources if _source_crs(s.crs) == crs]
    if same:
        rx = min(s.resolution[0] for s in same)
        ry = min(s.resolution[1] for s in same)
        return rx, ry
    # No slice is in the target CRS: the finest equivalent of the slices' resolutions there.
    fits = [compute_output_geobox(s.geobox, crs, resolution="auto").resolution for s in sources]
    return min(abs(r.x) for r in fits), min(abs(r.y) for r in fits)


def _anchor(sources: Sequence[RasterSource], crs: CRS, res: tuple[float, float]) -> XY[float] | Literal["edge"]:
    """Snap to the pixel grid of the first source on the target CRS (when coarser, to a grid whose
    pixel edges pass through that source's origin, so that integer decimation can read overviews);
    with no such source, to the CRS origin."""
    on_crs = [s for s in sources if not (s.transform[1] or s.transform[3]) and _source_crs(s.crs) == crs]
    same_res = [s for s in on_crs if math.isclose(abs(s.transform[0]), res[0], rel_tol=1e-9)
                and math.isclose(abs(s.transform[4]), res[1], rel_tol=1e-9)]
    for s in same_res or on_crs:
        c, f = s.transform[2], s.transform[5]
        return xy_(_snap01((c / res[0]) % 1.0), _snap01((f / res[1]) % 1.0))
    return "edge"


def _snap01(v: float) -> float:
    return 0.0 if math.isclose(v, 0.0, abs_tol=1e-6) or math.isclose(v, 1.0, abs_tol=1e-6) else v


def _footprint_bbox(sources: Sequence[RasterSource], crs: CRS) -> BoundingBox:
    boxes = []
    for s in sources:
        a, b, c, d, e, f = s.transform
        same = _source_crs(s.crs) == crs
        if same and not (b or d):  # north-up on the target CRS: the corners, without a polygon
            h, w = s.shape
            xs, ys = (c, c + a * w), (f, f + e * h)
            boxes.append(BoundingBox(min(xs), min(ys), max(xs), max(ys), crs=crs))
            continue
        gbox = s.geobox
        if same:
            boxes.append(gbox.extent.boundingbox)
        elif crs.geographic:
            boxes.append(_lonlat_box(gbox.extent, crs))
        else:
            boxes.append(gbox.extent.to_crs(crs).boundingbox)
    if crs.geographic:
        lons = union_lon_intervals((b.left, b.right) for b in boxes)
        assert lons is not None
        west, east = unwrap_bbox((lons[0], 0.0, lons[1], 1.0))[::2]
        return BoundingBox(west, min(b.bottom for b in boxes), east, max(b.top for b in boxes), crs=crs)
    return BoundingBox(
        min(b.left for b in boxes), min(b.bottom for b in boxes),
        max(b.right for b in boxes), max(b.top for b in boxes), crs=crs,
    )


def _lonlat_box(geom: Any, crs: CRS, points: int = 400) -> BoundingBox:
    """The bbox of a polygon in the geographic ``crs``, its outline followed point by point so that
    longitudes stay continuous across 180: ``left > right`` for one that crosses it."""
    from pyproj import Transformer

    outline = geom.exterior if geom.geom_type == "Polygon" else geom.geoms[0].exterior
    outline = outline.segmented(max(outline.length / points, 1e-9))
    xs, ys = np.asarray(outline.points, dtype=np.float64).T
    lon, lat = Transformer.from_crs(geom.crs.to_wkt(), crs.to_wkt(), always_xy=True).transform(xs, ys)
    lon = np.degrees(np.unwrap(np.radians(np.asarray(lon))))
    west, east = float(np.nanmin(lon)), float(np.nanmax(lon))
    if east - west >= 360.0:
        west, east = -180.0, 180.0
    else:
        west = ((west + 180.0) % 360.0) - 180.0
        east = west + (float(np.nanmax(lon)) - float(np.nanmin(lon)))
        if east > 180.0:
            east -= 360.0
    return BoundingBox(west, float(np.nanmin(lat)), east, float(np.nanmax(lat)), crs=crs)


def _norm_resolution(resolution: Any) -> tuple[float, float]:
    if isinstance(resolution, (int, float)):
        values = (float(resolution), float(resolution))
    else:
        try:
            x, y = resolution
            values = (abs(float(x)), abs(float(y)))
        except (TypeError, ValueError) as exc:
            raise MosaicError(f"resolution={resolution!r}: expected a number or (x, y)", field="resolution") from exc
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise MosaicError(f"resolution={resolution!r}: must be positive", field="resolution")
    return abs(values[0]), abs(values[1])


def _norm_bbox(bbox: Any, bbox_crs: Any, crs: CRS) -> BoundingBox:
    """``bbox`` in ``crs``; in lon/lat, ``west > east`` crosses the antimeridian (STAC)."""
    try:
        left, bottom, right, top = (float(v) for v in bbox)
    except (TypeError, ValueError) as exc:
        raise MosaicError(f"bbox={bbox!r}: expected (west, south, east, north)", field="bbox") from exc
    src = norm_crs(bbox_crs) if bbox_crs is not None else norm_crs("EPSG:4326")
    if src.geographic:
        try:
            left, bottom, right, top = check_bbox((left, bottom, right, top))
        except ValueError as exc:
            raise MosaicError(str(exc), field="bbox") from None
        left, bottom, right, top = unwrap_bbox((left, bottom, right, top))
    elif not (left < right and bottom < top):
        raise MosaicError(f"bbox={bbox!r}: west must be < east and south < north", field="bbox")
    box = BoundingBox(left, bottom, right, top, crs=src)
    if box.crs != crs:
        # in lon/lat, longitudes on the circle (left > right across 180)
        box = _lonlat_box(box.polygon, crs) if crs.geographic else box.to_crs(crs)
    return box


def _intersect(extent: BoundingBox, wanted: BoundingBox) -> tuple[float, float, float, float]:
    """Intersection of two boxes; in a geographic CRS, ``wanted`` first shifted by whole turns of
    longitude to where it overlaps ``extent`` most."""
    shifts = [0.0]
    if extent.crs is not None and extent.crs.geographic:
        if wanted.left > wanted.right:
            wanted = BoundingBox(wanted.left, wanted.bottom, wanted.right + 360.0, wanted.top, crs=wanted.crs)
        shifts = [-360.0, 0.0, 360.0]

    def clip(dx: float) -> tuple[float, float, float, float]:
        return (max(extent.left, wanted.left + dx), max(extent.bottom, wanted.bottom),
                min(extent.right, wanted.right + dx), min(extent.top, wanted.top))

    return max((clip(dx) for dx in shifts), key=lambda b: b[2] - b[0])


def output_geobox(
    sources: Sequence[RasterSource],
    *,
    crs: Any = None,
    resolution: Any = None,
    bbox: Any = None,
    bbox_crs: Any = None,
    geobox: GeoBox | None = None,
) -> GeoBox:
    """The grid the mosaic is read onto (see module doc); ``geobox=`` overrides everything."""
    if not sources:
        raise MosaicError("no slices to mosaic", field="items")
    if geobox is not None:
        return geobox
    target = choose_crs(sources, crs)
    res = _norm_resolution(resolution) if resolution is not None else _resolution_of(sources, target)
    extent = _footprint_bbox(sources, target)
    if bbox is not None:
        wanted = _norm_bbox(bbox, bbox_crs, target)
        inter = _intersect(extent, wanted)
        if not (inter[0] < inter[2] and inter[1] < inter[3]):
            where = f" (in {bbox_crs})" if bbox_crs is not None else " (lon/lat)"
            raise MosaicError(
                f"bbox={tuple(bbox)!r}{where} does not intersect the slices, which cover "
                f"{_fmt_box(extent)} in {_crs_name(target)}", field="bbox",
            )
        extent = BoundingBox(*inter, crs=target)
    anchor = _anchor(sources, target, res)
    return GeoBox.from_bbox(extent, target, resolution=_res_signed(res), anchor=anchor)


def _res_signed(res: tuple[float, float]) -> Any:
    from odc.geo import resxy_

    return resxy_(res[0], -res[1])


def _fmt_box(box: BoundingBox) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in box.bbox) + ")"


def bin_sources(geobox: GeoBox, chunks: tuple[int, int], sources: Sequence[RasterSource]
                ) -> tuple[GeoboxTiles, dict[tuple[int, int], list[int]]]:
    """Which sources (indexes) touch which chunk; chunks no source touches are absent."""
    from odc.geo.overlap import compute_reproject_roi
    from odc.geo.roi import roi_is_empty

    tiles = GeoboxTiles(geobox, chunks)
    bins: dict[tuple[int, int], list[int]] = {}
    ny, nx = tiles.shape.yx
    ch_y, ch_x = chunks
    for idx, src in enumerate(sources):
        if src.geobox.crs == geobox.crs:
            rr = compute_reproject_roi(src.geobox, geobox, ttol=0.05)
        else:  # odc-geo wraps longitudes and misses slices east of 180 on a grid that runs past it
            rr = reproject_info(src.geobox, geobox)
        if roi_is_empty(rr.roi_dst):
            continue
        ys, xs = rr.roi_dst
        for iy in range(ys.start // ch_y, min(ny, math.ceil(ys.stop / ch_y))):
            for ix in range(xs.start // ch_x, min(nx, math.ceil(xs.stop / ch_x))):
                bins.setdefault((iy, ix), []).append(idx)
    return tiles, bins


def chunk_sizes(total: int, size: int) -> tuple[int, ...]:
    """Dask-style chunk sizes along one axis."""
    full, rest = divmod(total, size)
    return (size,) * full + ((rest,) if rest else ())
