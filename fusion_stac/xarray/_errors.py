"""Errors of the xarray loaders: typed, picklable (they cross dask worker boundaries), secret-free.

::

    MosaicError (ValidationError, ValueError)   bad input: empty group, unknown band, bbox outside
    └── CRSConflictError                        no sensible common CRS; ``slices`` names them per CRS
    RasterReadError (FusionError, OSError)      GDAL could not decode a file; names the slice
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fusion_stac.errors import FusionError, ValidationError

__all__ = ["CRSConflictError", "MosaicError", "RasterReadError"]


class MosaicError(ValidationError, ValueError):
    """Input the loaders cannot turn into an array; the message names what was wrong."""


class CRSConflictError(MosaicError):
    """The slices are in several CRSs and none is the obvious target; pass ``crs=``.

    ``slices`` maps each CRS to the labels of the slices in it.
    """

    def __init__(self, message: str, *, slices: Mapping[str, Sequence[str]]) -> None:
        super().__init__(message, field="crs")
        self.slices = {str(k): list(v) for k, v in slices.items()}


class RasterReadError(FusionError, OSError):
    """A file could be fetched but not decoded (or not opened as a raster); names the slice."""

    def __init__(self, message: str, *, source: str | None = None, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.source = source
