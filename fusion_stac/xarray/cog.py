"""Write a (lazy or dask) georeferenced DataArray to a Cloud-Optimized GeoTIFF, in one call.

Memory stays bounded: the array is computed block by block into a temporary tiled GeoTIFF next
to the destination, then GDAL's COG driver writes the final file (compression, internal
overviews, the COG layout) to a temporary name, which is renamed over the destination only once
complete. A failure leaves no half-written file behind.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from fusion_stac.xarray._errors import MosaicError

__all__ = ["FusionAccessor", "to_cog"]

_TILE = 512


def to_cog(
    da: xr.DataArray,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = True,
    compress: str = "deflate",
    level: int | None = None,
    predictor: bool = True,
    blocksize: int = _TILE,
    overviews: bool = True,
    overview_resampling: str | None = None,
    nodata: float | None = None,
    tags: dict[str, Any] | None = None,
    num_threads: int | str = "ALL_CPUS",
) -> Path:
    """Write ``da`` (dims ``band, y, x`` or ``y, x``, e.g. from ``open_mosaic``) as a COG at ``path``.

    ``compress`` (deflate, zstd, lzw, lerc...) with ``level`` and a floating-point/horizontal
    ``predictor``; ``overviews`` are built with ``overview_resampling`` (default: ``average`` for
    floats, ``nearest`` otherwise). ``nodata`` defaults to the array's ``_FillValue``/``nodata``;
    ``fusion:`` attributes (as ``fusion_*``) and ``tags`` become GDAL metadata, band names band
    descriptions.
    Returns the path written.
    """
    import rasterio
    import rasterio.shutil

    dest = Path(path)
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists; pass overwrite=True to replace it")
    if not dest.parent.is_dir():
        raise FileNotFoundError(f"{dest.parent} is not a directory")
    arr = _as_band_yx(da)
    geobox = _geobox(arr)
    nb, ny, nx = arr.shape
    dtype = np.dtype(arr.dtype)
    if nodata is None:
        nodata = _nodata_of(arr)
    resampling = overview_resampling or ("average" if dtype.kind == "f" else "nearest")
    token = uuid.uuid4().hex[:12]
    tmp = dest.parent / f".{dest.name}.{token}.tmp.tif"
    partial = dest.parent / f".{dest.name}.{token}.partial"
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": nx, "height": ny, "count": nb, "dtype": dtype.name,
        "crs": geobox.crs.to_wkt() if geobox.crs is not None else None, "transform": geobox.transform,
        "tiled": True, "blockxsize": _TILE, "blockysize": _TILE, "BIGTIFF": "IF_SAFER",
    }
    if nodata is not None:
        profile["nodata"] = nodata
    try:
        with rasterio.Env(GDAL_CACHEMAX=256), rasterio.open(tmp, "w", **profile) as dst:
            for window, block in _blocks(arr):
                dst.write(block, window=window)
            _describe(dst, arr, tags)
        options: dict[str, Any] = {
            "COMPRESS": compress.upper(), "BLOCKSIZE": blocksize, "BIGTIFF": "IF_SAFER",
            "OVERVIEWS": "AUTO" if overviews else "NONE", "OVERVIEW_RESAMPLING": resampling.upper(),
            "NUM_THREADS": str(num_threads),
        }
        if predictor and compress.lower() in ("deflate", "zstd", "lzw", "lzma"):
            options["PREDICTOR"] = "YES"
        if level is not None:
            options["LEVEL"] = level
        with rasterio.Env(GDAL_CACHEMAX=256):
            rasterio.shutil.copy(tmp, partial, driver="COG", **options)
        os.replace(partial, dest)
    finally:
        for leftover in (tmp, partial):
            if leftover.exists():
                leftover.unlink()
        aux = tmp.with_name(tmp.name + ".aux.xml")
        if aux.exists():
            aux.unlink()
    return dest


def _as_band_yx(da: xr.DataArray) -> xr.DataArray:
    if not isinstance(da, xr.DataArray):
        raise MosaicError(f"to_cog writes an xarray.DataArray, got {type(da).__name__}")
    extra = [d for d in da.dims if d not in ("band", "y", "x", "latitude", "longitude")]
    for dim in extra:
        if da.sizes[dim] != 1:
            raise MosaicError(f"to_cog writes one image: select one {dim!r} first (it has {da.sizes[dim]})")
        da = da.isel({dim: 0})
    if "band" not in da.dims:
        da = da.expand_dims("band")
    ydim = "y" if "y" in da.dims else "latitude"
    xdim = "x" if "x" in da.dims else "longitude"
    return da.transpose("band", ydim, xdim)


def _geobox(da: xr.DataArray) -> Any:
    import odc.geo.xr  # noqa: F401 - registers the .odc accessor

    gbox = da.odc.geobox
    if gbox is None:
        raise MosaicError("to_cog needs a georeferenced array (x/y coordinates and a CRS, e.g. spatial_ref)")
    return gbox


def _nodata_of(da: xr.DataArray) -> float | None:
    for where in (da.attrs, da.encoding):
        for key in ("_FillValue", "nodata"):
            value = where.get(key)
            if value is not None:
                return float(value)
    return None


def _blocks(da: xr.DataArray) -> Iterator[tuple[Any, np.ndarray]]:
    """(window, pixels) pieces of the array, computed a few at a time (bounded memory)."""
    from rasterio.windows import Window

    nb, ny, nx = da.shape
    data = da.data
    if hasattr(data, "dask"):
        import dask

        ychunks, xchunks = data.chunks[1], data.chunks[2]
        yoff = np.concatenate([[0], np.cumsum(ychunks)])
        xoff = np.concatenate([[0], np.cumsum(xchunks)])
        bands = data.rechunk({0: nb})
        keys = [(iy, ix) for iy in range(len(ychunks)) for ix in range(len(xchunks))]
        batch = max(2, os.cpu_count() or 2)
        for start in range(0, len(keys), batch):
            part = keys[start:start + batch]
            values = dask.compute(*[bands.blocks[0, iy, ix] for iy, ix in part])
            for (iy, ix), block in zip(part, values, strict=True):
                yield Window(int(xoff[ix]), int(yoff[iy]), int(xchunks[ix]), int(ychunks[iy])), np.asarray(block)
        return
    # Lazily indexed (or in memory): read strips of whole tiles.
    step = max(_TILE, (16 * 2**20 // max(1, nx * nb * da.dtype.itemsize)) // _TILE * _TILE)
    for y0 in range(0, ny, step):
        h = min(step, ny - y0)
        block = np.asarray(da[:, y0:y0 + h, :].values)
        yield Window(0, y0, nx, h), block


def _describe(dst: Any, da: xr.DataArray, tags: dict[str, Any] | None) -> None:
    # GDAL splits metadata keys at ':' (``fusion:group_id`` would read back as ``fusion``).
    meta = {k.replace(":", "_"): str(v) for k, v in da.attrs.items() if k.startswith("fusion:")}
    if tags:
        meta.update({k: str(v) for k, v in tags.items()})
    if meta:
        dst.update_tags(**meta)
    names = da.coords["band_name"].values.tolist() if "band_name" in da.coords else None
    if names:
        for i, name in enumerate(names, start=1):
            dst.set_band_description(i, str(name))
    scale, offset = da.attrs.get("scale_factor"), da.attrs.get("add_offset")
    n = da.sizes["band"]
    if scale is not None or offset is not None:
        scales = scale if isinstance(scale, (tuple, list)) else [scale if scale is not None else 1.0] * n
        offsets = offset if isinstance(offset, (tuple, list)) else [offset if offset is not None else 0.0] * n
        dst.scales = tuple(float(s) for s in scales)
        dst.offsets = tuple(float(o) for o in offsets)
    units = da.attrs.get("units")
    if isinstance(units, str):
        dst.units = (units,) * n


@xr.register_dataarray_accessor("fusion")
class FusionAccessor:
    """``da.fusion.to_cog(path)``: the same as :func:`to_cog`."""

    def __init__(self, da: xr.DataArray) -> None:
        self._da = da

    def to_cog(self, path: str | os.PathLike[str], **kwargs: Any) -> Path:
        return to_cog(self._da, path, **kwargs)
