"""Bridge to the pure geodata functions (file analysis, region slicing, raster and CSV rendering).

The functions live in ``fusion_stac.emulator.geodata``; this module is the only place the server
imports them from, so the server code does not care which implementation is present.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("fusion_stac.emulator")

try:
    from fusion_stac.emulator.geodata import (  # type: ignore[import-not-found, unused-ignore]
        analyse_file,
        render_classification,
        render_elevation,
        render_statistics_csv,
        slice_region,
    )

    IMPLEMENTATION = "geodata"
except ImportError as _exc:  # pragma: no cover - only while geodata is being written
    logger.warning("fusion_stac.emulator.geodata unavailable (%s); using the built-in fallback", _exc)
    from fusion_stac.emulator._geodata_fallback import (
        analyse_file,
        render_classification,
        render_elevation,
        render_statistics_csv,
        slice_region,
    )

    IMPLEMENTATION = "fallback"

__all__ = [
    "IMPLEMENTATION",
    "analyse_file",
    "render_classification",
    "render_elevation",
    "render_statistics_csv",
    "slice_region",
]
