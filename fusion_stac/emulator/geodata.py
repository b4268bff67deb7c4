"""Geospatial engine of the local Fusion Platform: file analysis, region slicing and a synthetic world.

A facade: the code lives in focused modules, and this one re-exports their public names so that callers
(the server, the CLI demo, tests) have one stable place to import from.

* :mod:`analysis` (with :mod:`raster_analysis` and :mod:`vector_analysis`): :func:`analyse_file` plays the
  platform's "basic + extended analysis" of an uploaded or generated file.
* :mod:`slicing`: :func:`slice_region` splits a large region into per-UTM-zone grid cells.
* :mod:`terrain`: the deterministic synthetic world (:func:`elevation_lonlat`, :func:`classification_lonlat`).
* :mod:`rendering`: :func:`render_elevation` / :func:`render_classification` (COGs of a slice),
  :func:`render_statistics_csv` and the PNG previews.
* :mod:`geobase`: the shared constants, :class:`Analysis`, :class:`Slice`, :func:`utm_epsg` and the shipped
  region files (:func:`region_names`, :func:`region_path`).
"""

from __future__ import annotations

from fusion_stac.emulator.analysis import analyse_file
from fusion_stac.emulator.geobase import (
    CLOUD_CLASSES,
    DEFAULT_MAX_REGION_M,
    DEFAULT_SLICE_SIZE_M,
    FILE_TYPES,
    Analysis,
    Slice,
    region_names,
    region_path,
    utm_epsg,
)
from fusion_stac.emulator.rendering import render_classification, render_elevation, render_statistics_csv
from fusion_stac.emulator.slicing import slice_region
from fusion_stac.emulator.terrain import classification_lonlat, elevation_lonlat

__all__ = [
    "CLOUD_CLASSES",
    "DEFAULT_MAX_REGION_M",
    "DEFAULT_SLICE_SIZE_M",
    "FILE_TYPES",
    "Analysis",
    "Slice",
    "analyse_file",
    "classification_lonlat",
    "elevation_lonlat",
    "region_names",
    "region_path",
    "render_classification",
    "render_elevation",
    "render_statistics_csv",
    "slice_region",
    "utm_epsg",
]
