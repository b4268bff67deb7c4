"""An ``opener=`` for rasterio that lets GDAL read ``fusion://`` files through our file objects.

``rasterio.open(url, opener=fs)`` already works with any fsspec file system, but rasterio only hands
GDAL's *multi-range* reads (the GTiff driver asks for all the tiles of a window at once) to openers
that implement its ``MultiByteRangeResourceContainer`` interface. This adapter does, so a window read
becomes one parallel batch of merged range requests instead of one request per tile.

rasterio is optional (the ``xarray`` extra); it is imported when the opener is created.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from fusion_stac.fs.core import FusionFileSystem

__all__ = ["rasterio_opener"]


def _could_be_file(path: str) -> bool:
    """Files live at least four levels down (organisation/section/data/file): no API call needed
    to know that anything shallower is not one."""
    from fusion_stac._urls import FusionURLError, parse

    try:
        return parse(path).kind == "file"
    except FusionURLError:
        return False


@functools.cache
def _opener_class() -> type:
    from rasterio.abc import MultiByteRangeResourceContainer

    class FusionOpener(MultiByteRangeResourceContainer):
        """rasterio/GDAL view of a :class:`FusionFileSystem` (read-only)."""

        def __init__(self, fs: FusionFileSystem) -> None:
            self.fs = fs

        def open(self, path: str, mode: str = "rb", **kwds: Any) -> Any:
            if "r" not in mode:
                raise PermissionError(f"{path}: the rasterio opener of fusion:// is read-only")
            return self.fs.open(path, "rb")

        def isfile(self, path: str) -> bool:
            return _could_be_file(path) and self.fs.isfile(path)

        def isdir(self, path: str) -> bool:
            return self.fs.isdir(path)

        def ls(self, path: str) -> list[str]:
            return self.fs.ls(path, detail=False)

        def mtime(self, path: str) -> int:
            try:
                return int(self.fs.modified(path).timestamp())
            except (NotImplementedError, ValueError, TypeError):
                return 0

        def rm(self, path: str) -> None:
            self.fs.rm(path)

        def size(self, path: str) -> int:
            if not _could_be_file(path):
                raise FileNotFoundError(path)  # rasterio probes with "test": answer without the API
            return int(self.fs.size(path) or 0)

        def __repr__(self) -> str:
            return f"FusionOpener({self.fs!r})"

    return FusionOpener


def rasterio_opener(fs: FusionFileSystem | None = None, **storage_options: Any) -> Any:
    """An opener for ``rasterio.open("fusion://...", opener=...)`` serving GDAL's multi-range reads.

    ``fs`` defaults to ``FusionFileSystem(**storage_options)``.
    """
    if fs is None:
        from fusion_stac.fs.core import FusionFileSystem

        fs = FusionFileSystem(**storage_options)
    return _opener_class()(fs)
