"""xarray loaders for Fusion Platform rasters: an ``xr.open_dataset`` engine, mosaics of grouped
executions, time series of executions, and Cloud-Optimized GeoTIFF output.

Heavy imports (xarray, dask, rasterio, odc-geo) happen on first use of a name, so that importing
this package (for instance through the ``xarray.backends`` entry point) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "open_mosaic": "fusion_stac.xarray.mosaic",
    "open_timeseries": "fusion_stac.xarray.timeseries",
    "to_cog": "fusion_stac.xarray.cog",
    "FusionBackendEntrypoint": "fusion_stac.xarray.backend",
    "RasterSource": "fusion_stac.xarray._source",
    "FileKey": "fusion_stac.xarray._source",
    "source_from_item": "fusion_stac.xarray._source",
    "Storage": "fusion_stac.xarray._storage",
    "FileSystemStorage": "fusion_stac.xarray._storage",
    "SignerStorage": "fusion_stac.xarray._storage",
    "FetchSettings": "fusion_stac.xarray._http",
    "MosaicError": "fusion_stac.xarray._errors",
    "CRSConflictError": "fusion_stac.xarray._errors",
    "RasterReadError": "fusion_stac.xarray._errors",
}

__all__ = [
    "CRSConflictError",
    "FetchSettings",
    "FileKey",
    "FileSystemStorage",
    "FusionBackendEntrypoint",
    "MosaicError",
    "RasterReadError",
    "RasterSource",
    "SignerStorage",
    "Storage",
    "open_mosaic",
    "open_timeseries",
    "source_from_item",
    "to_cog",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fusion_stac.xarray' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover
    from fusion_stac.xarray._errors import CRSConflictError, MosaicError, RasterReadError
    from fusion_stac.xarray._http import FetchSettings
    from fusion_stac.xarray._source import FileKey, RasterSource, source_from_item
    from fusion_stac.xarray._storage import FileSystemStorage, SignerStorage, Storage
    from fusion_stac.xarray.backend import FusionBackendEntrypoint
    from fusion_stac.xarray.cog import to_cog
    from fusion_stac.xarray.mosaic import open_mosaic
    from fusion_stac.xarray.timeseries import open_timeseries
