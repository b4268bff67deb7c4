"""Plain pastes read without GDAL: a file's tiles fetched and decoded here (:mod:`._tiff`).

A cold process reading a few tiles of each of a group's slices spends more on GDAL than on pixels:
registering its drivers and opening the first file (~20 ms), then one ``rasterio.open`` per file on
the opener thread (3-5 ms each, serialised: GDAL's Python opener holds the GIL). For a read that
needs at most :data:`NATIVE_MAX_TILES` tiles of a file, laid out as GDAL writes COGs by default,
:func:`read_native` takes the tiles' byte ranges from the header already in hand, fetches them in
one request through the same :class:`~._http.RemoteFile` GDAL would read through (verified,
pinned to the header's version, counted), and decodes them on the reading thread. Anything else
(another codec, a warp, a bigger read, a file unlike its metadata) returns ``None``: GDAL reads it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from fusion_stac.xarray._errors import RasterReadError
from fusion_stac.xarray._headers import Header
from fusion_stac.xarray._http import FetchSettings, RemoteFile, load_header
from fusion_stac.xarray._source import RasterSource
from fusion_stac.xarray._storage import Storage
from fusion_stac.xarray._tiff import TiffError, TiffLayout, parse_tiff, paste_tiles

__all__ = ["NATIVE_MAX_TILES", "native_layout", "read_native"]

#: Most tiles a read of one file decodes without GDAL. Each tile costs ~1.5x what it costs GDAL
#: (libdeflate and numpy against C, 512² float32 with the floating point predictor: ~3.5 against
#: ~2.2 ms); skipping GDAL's open saves ~3-5 ms per file, ~20 ms for the first in a process. A cold
#: 1024² window over four slices (one tile each): 46 ms without GDAL, 63 ms with; the whole 8192²
#: mosaic (16 tiles a slice): 502 ms with GDAL, 721 ms without (medians, benchmarks/mosaic.py).
NATIVE_MAX_TILES = 4

_LAYOUTS: OrderedDict[tuple[Any, ...], TiffLayout | None] = OrderedDict()
_LAYOUTS_LOCK = threading.Lock()


def native_layout(source: RasterSource, header: Header) -> TiffLayout | None:
    """The file's layout when :mod:`._tiff` reads it as GDAL would and it matches ``source``'s
    metadata (else GDAL opens it, and says what does not match). Parsed once per file version;
    checked against the metadata every time (two sources may describe one file differently)."""
    key = (source.key, header.etag, header.size, header.usable)
    with _LAYOUTS_LOCK:
        cached = key in _LAYOUTS
        if cached:
            _LAYOUTS.move_to_end(key)
            layout = _LAYOUTS[key]
    if not cached:
        layout = parse_tiff(memoryview(header.data)[: header.usable])
        with _LAYOUTS_LOCK:
            _LAYOUTS[key] = layout
            while len(_LAYOUTS) > 4096:
                _LAYOUTS.popitem(last=False)
    return layout if layout is not None and _matches(source, layout) else None


def _matches(source: RasterSource, layout: TiffLayout) -> bool:
    full = layout.levels[0]
    return (layout.dtype.newbyteorder("=") == np.dtype(source.dtype)
            and not source.mismatches((full.height, full.width), layout.samples, layout.transform))


def read_native(source: RasterSource, rows: tuple[int, int], cols: tuple[int, int], shape: tuple[int, int, int],
                bands: Sequence[int], storage: Storage, settings: FetchSettings, first: int = 0,
                into: np.ndarray | None = None) -> np.ndarray | None:
    """The pixels GDAL's nearest neighbour read of full-resolution ``rows`` x ``cols`` of ``bands``
    into a buffer of ``shape`` (bands, rows, columns) gives, in the source's type (in ``into`` when
    given), or ``None`` when this read is GDAL's to do. ``first``: bytes for the file's first
    request (:func:`~._http.load_header`)."""
    if "GDAL_OVERVIEW_OVERSAMPLING_THRESHOLD" in os.environ:
        return None  # GDAL would choose overviews by another rule
    transport = storage.transport()
    header = load_header(transport, source.key, source.label, settings, source.size, first)
    layout = native_layout(source, header)
    if layout is None or max(bands) > layout.samples:
        return None
    plan = layout.plan(rows, cols, (shape[1], shape[2]))
    if plan is None:
        return None
    touched = plan.tiles(layout)
    if len(touched) > NATIVE_MAX_TILES:
        return None  # GDAL decodes a tile faster: worth an open for a big read
    level = layout.levels[plan.level]
    planes = sorted({b - 1 for b in bands}) if layout.planar == 2 else [0]
    wanted: list[tuple[tuple[int, int, int], int, int]] = []
    for row, col in touched:
        for band in planes:
            i = layout.tile_index(plan.level, row, col, band)
            wanted.append(((row, col, band), level.offsets[i], level.counts[i]))
    present = [w for w in wanted if w[1] and w[2]]  # offset or size 0: a sparse tile, never written
    failures: list[BaseException] = []
    remote = RemoteFile(transport, source.key, source.label, settings, header, failures)
    got = remote.get_byte_ranges([o for _, o, _ in present], [n for _, _, n in present]) if present else []
    if failures:
        raise failures[0]  # a changed file (StaleHeaderError: the caller reads again), or a failed fetch
    tiles: dict[tuple[int, int, int], bytes | None] = {k: None for k, _, _ in wanted}
    tiles.update((k, data) for (k, _, _), data in zip(present, got, strict=True))
    pix = into if into is not None else np.empty(shape, dtype=source.dtype)
    try:
        paste_tiles(layout, plan, tiles, bands, pix)
    except TiffError as exc:
        raise RasterReadError(f"{source.label}: could not decode it: {exc}", source=source.label) from exc
    return pix
