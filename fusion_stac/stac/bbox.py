"""Longitude/latitude bounding boxes as STAC and GeoJSON (RFC 7946 §5.2) define them.

A bbox is ``[west, south, east, north]`` in degrees; ``west > east`` means the box crosses the
antimeridian (it runs east from ``west`` over 180° to ``east``). Longitudes live on a circle, so a
union of boxes is the shortest arc that covers every box (the complement of the largest gap
between them), never a naive min/max: ``[179.6, .., -179.6, ..]`` and ``[179.7, .., 179.9, ..]``
unite to ``[179.6, .., -179.6, ..]``, not to the whole globe.

Pure functions, no third-party imports (the ``antimeridian`` package does this for shapely
geometries; the client side does not depend on shapely).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["WORLD", "bbox_intersects", "check_bbox", "geometry_bbox", "lon_span", "union_bboxes",
           "union_lon_intervals", "unwrap_bbox"]

WORLD = (-180.0, -90.0, 180.0, 90.0)


def _wrap(lon: float) -> float:
    """``lon`` in [-180, 180)."""
    return ((lon + 180.0) % 360.0) - 180.0


def lon_span(west: float, east: float) -> float:
    """Width in degrees of the arc from ``west`` eastwards to ``east`` (0..360)."""
    if east - west >= 360.0:
        return 360.0
    return (east - west) % 360.0 if west > east else east - west


def union_lon_intervals(intervals: Iterable[tuple[float, float]]) -> tuple[float, float] | None:
    """The shortest arc ``(west, east)`` covering every ``(west, east)`` arc (``west > east``: across
    180°); ``(-180, 180)`` when they leave no gap. ``None`` for no intervals."""
    arcs = []
    for west, east in intervals:
        span = lon_span(west, east)
        if span >= 360.0:
            return (-180.0, 180.0)
        start = _wrap(west)
        arcs.append((start, start + span))
    if not arcs:
        return None
    arcs.sort()
    # Sweep once round the circle; the largest uncovered gap is what the union leaves out.
    best_gap, gap_end = -1.0, 0.0
    reach = arcs[0][1]
    for start, stop in arcs[1:]:
        if start > reach and start - reach > best_gap:
            best_gap, gap_end = start - reach, start
        reach = max(reach, stop)
    wrap_gap = arcs[0][0] + 360.0 - reach
    if wrap_gap > best_gap:
        best_gap, gap_end = wrap_gap, arcs[0][0] + 360.0
    if best_gap <= 0.0:
        return (-180.0, 180.0)
    west = _wrap(gap_end)
    east = west + (360.0 - best_gap)
    if east > 180.0:
        east -= 360.0
    if west == -180.0 and east == -180.0:  # pragma: no cover - degenerate
        east = 180.0
    return (west, east)


def union_bboxes(bboxes: Iterable[Sequence[float]]) -> list[float] | None:
    """The smallest ``[west, south, east, north]`` covering all ``bboxes`` (see module doc)."""
    boxes = [list(b[:4]) for b in bboxes if b and len(b) >= 4]
    if not boxes:
        return None
    lons = union_lon_intervals((b[0], b[2]) for b in boxes)
    assert lons is not None
    return [lons[0], min(b[1] for b in boxes), lons[1], max(b[3] for b in boxes)]


def unwrap_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """``bbox`` with ``east`` > ``west`` always: a box across 180° gets ``east + 360`` (a longitude
    range beyond 180, continuous across the antimeridian)."""
    west, south, east, north = (float(v) for v in bbox[:4])
    if west > east:
        east += 360.0
    return west, south, east, north


def check_bbox(bbox: Any, *, name: str = "bbox") -> tuple[float, float, float, float]:
    """``bbox`` as four floats, or ``ValueError`` naming what is wrong. ``west > east`` is a box
    across the antimeridian (STAC/RFC 7946); west == east is refused (a zero-width box)."""
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        raise ValueError(f"{name}={bbox!r}: expected four numbers (west, south, east, north)") from None
    if len(values) != 4:
        raise ValueError(f"{name}={bbox!r}: expected four numbers (west, south, east, north), got {len(values)}")
    west, south, east, north = values
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name}={bbox!r}: values must be finite")
    if not (-180.0 <= west <= 180.0 and -180.0 <= east <= 180.0):
        raise ValueError(f"{name}={bbox!r}: longitudes must be within -180..180 (west > east crosses 180°)")
    if not (-90.0 <= south < north <= 90.0):
        raise ValueError(f"{name}={bbox!r}: latitudes must be within -90..90 with south < north")
    if west == east:
        raise ValueError(f"{name}={bbox!r}: west == east is a zero-width box")
    return west, south, east, north


def bbox_intersects(a: Sequence[float], b: Sequence[float] | None) -> bool:
    """Whether two lon/lat bboxes (either may cross 180°) share any point."""
    if not b:
        return False
    if a[1] > b[3] or b[1] > a[3]:
        return False

    def spans(west: float, east: float) -> list[tuple[float, float]]:
        return [(west, east)] if west <= east else [(west, 180.0), (-180.0, east)]

    return any(a0 <= b1 and b0 <= a1 for a0, a1 in spans(a[0], a[2]) for b0, b1 in spans(b[0], b[2]))


def _polygons(geometry: Mapping[str, Any]) -> list[list[list[Sequence[float]]]]:
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "Polygon":
        return [coords] if coords else []
    if kind == "MultiPolygon":
        return list(coords or [])
    if kind in ("LineString", "MultiPoint"):
        return [[coords]] if coords else []
    if kind == "MultiLineString":
        return [[line] for line in coords or []]
    if kind == "Point":
        return [[[coords]]] if coords else []
    if kind == "GeometryCollection":
        return [p for g in geometry.get("geometries") or [] for p in _polygons(g)]
    raise ValueError(f"not a GeoJSON geometry type: {kind!r}")


def geometry_bbox(geometry: Mapping[str, Any]) -> list[float] | None:
    """The bbox of a GeoJSON geometry in lon/lat, parts split at 180° (RFC 7946 §3.1.9) joined again:
    each part's longitude range, united on the circle (so a MultiPolygon split at 180° gets
    ``west > east``). ``None`` for an empty geometry."""
    parts = []
    for poly in _polygons(geometry):
        pts = [p for ring in poly for p in ring]
        if pts:
            parts.append([min(p[0] for p in pts), min(p[1] for p in pts), max(p[0] for p in pts),
                          max(p[1] for p in pts)])
    return union_bboxes(parts)
