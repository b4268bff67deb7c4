"""Read a raster's grid from its header when the API does not describe it.

One ranged GET of the first 64 KiB through the storage layer (:class:`fusion_stac.storage.Transport`:
URL signed by file id, answer verified, short bodies resumed, retried): a cloud-optimized GeoTIFF
keeps every IFD (and so shape, transform, CRS, dtype, nodata, tiling and overviews) at the front of
the file, and GDAL reads that from memory. A file whose header does not fit (a striped TIFF with its
tags at the end, JPEG2000 boxes further in) is read whole through the same transport when it is at
most :data:`WHOLE_FILE_LIMIT` bytes; a larger one is published without a grid (logged). Results are
cached per process by file id: a stored file never changes under the same id.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from typing import Any

from fusion_stac.models import DataFile
from fusion_stac.stac.mapping import RasterInfo, crs_code
from fusion_stac.storage import FileKey, Transport

__all__ = ["HEADER_BYTES", "WHOLE_FILE_LIMIT", "cache_clear", "read_raster_info"]

logger = logging.getLogger(__name__)

HEADER_BYTES = 64 * 1024
#: A file whose header is not in its first bytes is read whole up to this size (else no grid).
WHOLE_FILE_LIMIT = 64 * 1024 * 1024
_CACHE_SIZE = 4096
_cache: OrderedDict[str, RasterInfo | None] = OrderedDict()
_lock = threading.Lock()

def cache_clear() -> None:
    """Forget every cached header (tests; a long-lived process never needs it)."""
    with _lock:
        _cache.clear()


def _cached(file_id: str) -> tuple[bool, RasterInfo | None]:
    with _lock:
        if file_id in _cache:
            _cache.move_to_end(file_id)
            return True, _cache[file_id]
    return False, None


def _store(file_id: str, info: RasterInfo | None) -> None:
    with _lock:
        _cache[file_id] = info
        _cache.move_to_end(file_id)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def _info_from_dataset(src: Any) -> RasterInfo:
    structure = src.tags(ns="IMAGE_STRUCTURE") or {}
    overviews = tuple(src.overviews(1)) if src.count else ()
    tiled = bool(src.block_shapes and src.block_shapes[0][1] < src.width)
    layout = str(structure.get("LAYOUT", "")).upper()
    crs = None
    if src.crs is not None:
        epsg = src.crs.to_epsg()
        crs = f"EPSG:{epsg}" if epsg else src.crs.to_wkt()
    return RasterInfo(
        width=int(src.width), height=int(src.height),
        transform=tuple(float(v) for v in tuple(src.transform)[:6]),  # type: ignore[arg-type]
        crs=crs_code(crs) or crs, count=int(src.count), dtype=str(src.dtypes[0]) if src.count else None,
        nodata=None if src.nodata is None else float(src.nodata),
        cog=(layout == "COG") or (tiled and bool(overviews)) if src.driver == "GTiff" else None,
        overviews=overviews, source="header",
    )


def _from_bytes(head: bytes) -> RasterInfo | None:
    import rasterio
    from rasterio.io import MemoryFile

    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), MemoryFile(head) as mem, mem.open() as src:
        return _info_from_dataset(src)


def read_raster_info(transport: Transport, organisation_id: str, file: DataFile) -> RasterInfo | None:
    """The grid of ``file`` read from its header (cached by file id); ``None`` if it cannot be read.

    Never raises for an unreadable file: the item is then published without ``proj:shape`` and
    ``proj:transform``, and the reason is logged with the file named (never its signed URL).
    """
    if not file.file_id or not file.data_id:
        return None
    hit, info = _cached(file.file_id)
    if hit:
        return info
    try:
        import rasterio  # noqa: F401
    except ImportError:
        logger.info("rasterio is not installed: no header read for %s (%s)", file.file_name, file.file_id)
        return None
    label = f"{file.file_name!r} (file {file.file_id} of data {file.data_id})"
    key = FileKey(organisation_id, file.data_id, file.file_id)
    info = None
    try:
        end = HEADER_BYTES if file.size is None else min(HEADER_BYTES, file.size)
        head = transport.read_range(key, 0, end, path=label, size=file.size)
        with contextlib.suppress(Exception):
            info = _from_bytes(head)
        if info is None and file.size is not None and len(head) < file.size:
            if file.size <= WHOLE_FILE_LIMIT:
                info = _from_bytes(transport.read_range(key, 0, file.size, path=label, size=file.size))
            else:
                logger.info("the header of %s is not in its first %d bytes and the file is larger than %d "
                            "bytes: published without its grid", label, HEADER_BYTES, WHOLE_FILE_LIMIT)
    except Exception as exc:  # a catalog must not fail because one file's header is unreadable
        from fusion_stac.errors import redact

        logger.warning("could not read the raster header of %s: %s", label, redact(str(exc))[:300])
        return None  # not cached: the next build tries again
    _store(file.file_id, info)
    return info
