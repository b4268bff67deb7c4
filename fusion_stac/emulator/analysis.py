"""Bridge to the pure geodata functions (file analysis, region slicing, raster and CSV rendering).

The functions live in ``fusion_stac.emulator.geodata`` (pure, no server state); this module is the only place
the server imports them from, which keeps that dependency in one line.
"""

from __future__ import annotations

from fusion_stac.emulator.geodata import (
    Analysis,
    Slice,
    analyse_file,
    render_classification,
    render_elevation,
    render_statistics_csv,
    slice_region,
)

__all__ = [
    "Analysis",
    "Slice",
    "analyse_file",
    "render_classification",
    "render_elevation",
    "render_statistics_csv",
    "slice_region",
]
