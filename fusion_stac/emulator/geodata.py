"""Transitional alias: the geodata engine is being split; its code now lives in ``terrain`` (renamed)."""

from __future__ import annotations

from fusion_stac.emulator.terrain import *  # noqa: F403
from fusion_stac.emulator.terrain import __all__ as __all__  # noqa: F401
from fusion_stac.emulator.terrain import _HILLS, _Lattice, _slice_grid, rasterio  # noqa: F401
