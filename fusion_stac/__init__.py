"""fusion-stac: the Fusion Platform's data from the open geospatial Python stack.

The public surface is re-exported here and listed in ``__all__``; everything else lives in
private modules. Heavy parts (pystac, xarray, the emulator) are imported lazily so that
``import fusion_stac`` stays cheap for a CLI start or a dask worker.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it (imported on first attribute access)
_LAZY: dict[str, str] = {
    # errors
    "FusionError": "fusion_stac.errors",
    "APIError": "fusion_stac.errors",
    "AuthenticationError": "fusion_stac.errors",
    "PermissionDeniedError": "fusion_stac.errors",
    "NotFoundError": "fusion_stac.errors",
    "RateLimitedError": "fusion_stac.errors",
    "ServerError": "fusion_stac.errors",
    "ValidationError": "fusion_stac.errors",
    "AmbiguousNameError": "fusion_stac.errors",
    "TransportError": "fusion_stac.errors",
    "ConflictError": "fusion_stac.errors",
    "AnalysisError": "fusion_stac.errors",
    "ExecutionFailedError": "fusion_stac.errors",
    "WaitTimeout": "fusion_stac.errors",
    # client
    "FusionClient": "fusion_stac.client",
    "login": "fusion_stac.client",
    "ProcessDraft": "fusion_stac.client",
    "RetryPolicy": "fusion_stac.storage",
    "SignedURL": "fusion_stac.models",
    "FusionFileSystem": "fusion_stac.fs",
    # stac
    "open_catalog": "fusion_stac.stac",
    "search": "fusion_stac.stac",
    "export_catalog": "fusion_stac.stac",
    # xarray loaders
    "open_mosaic": "fusion_stac.xarray.mosaic",
    "open_timeseries": "fusion_stac.xarray.timeseries",
    "to_cog": "fusion_stac.xarray.cog",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fusion_stac' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs; a test keeps it in step with _LAZY
    from fusion_stac.client import FusionClient, ProcessDraft, login
    from fusion_stac.errors import (
        AmbiguousNameError,
        AnalysisError,
        APIError,
        AuthenticationError,
        ConflictError,
        ExecutionFailedError,
        FusionError,
        NotFoundError,
        PermissionDeniedError,
        RateLimitedError,
        ServerError,
        TransportError,
        ValidationError,
        WaitTimeout,
    )
    from fusion_stac.fs import FusionFileSystem
    from fusion_stac.models import SignedURL
    from fusion_stac.stac import export_catalog, open_catalog, search
    from fusion_stac.storage import RetryPolicy
    from fusion_stac.xarray.cog import to_cog
    from fusion_stac.xarray.mosaic import open_mosaic
    from fusion_stac.xarray.timeseries import open_timeseries
