"""``fusion://``: the fsspec file system of the Fusion Platform (see :mod:`fusion_stac.fs.core`).

Registered through the ``fsspec.specs`` entry point, so ``fsspec.open("fusion://...")`` works
without importing anything. Public names:

* :class:`FusionFileSystem` -- the file system;
* :class:`FusionFile` -- its read-only file objects (``get_byte_ranges`` for multi-range reads);
* :class:`AmbiguousPathError` -- a ``FileNotFoundError`` for a name matching several items;
* :class:`FileChangedError`, :class:`TransferError` -- ``OSError`` s of the data plane;
* :class:`RetryPolicy` -- how hard reads try;
* :func:`rasterio_opener` -- an ``opener=`` for rasterio that also serves GDAL's multi-range reads.
"""

from __future__ import annotations

from fusion_stac.fs._errors import AmbiguousPathError
from fusion_stac.fs._file import FusionFile
from fusion_stac.fs._opener import rasterio_opener
from fusion_stac.fs.core import FusionFileSystem
from fusion_stac.storage import FileChangedError, FileKey, RetryPolicy, TransferError

__all__ = [
    "AmbiguousPathError",
    "FileChangedError",
    "FileKey",
    "FusionFile",
    "FusionFileSystem",
    "RetryPolicy",
    "TransferError",
    "rasterio_opener",
]
