"""The ``fusion`` xarray engine: ``xr.open_dataset("fusion://...", engine="fusion", chunks={})``.

A thin entry point (as rioxarray's is): what to open is turned into a
:class:`~fusion_stac.xarray._source.RasterSource` and read by the same engine as the mosaics,
lazily, through freshly signed URLs at read time. Accepts ``fusion://`` paths (ids or names, any
form the file system resolves), pystac Items and Assets of the STAC view, and ``RasterSource``.
The result is rioxarray-compatible: a ``band_data`` variable (``band, y, x``), a ``spatial_ref``
coordinate with the CRS and transform, ``_FillValue``, ``scale_factor``/``add_offset`` and the
``fusion:`` attributes. With ``mask_and_scale=True`` nodata becomes NaN and scale/offset are
applied (CF decoding); by default the native data type is kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import xarray as xr
from xarray.backends import BackendEntrypoint

from fusion_stac import _urls
from fusion_stac.xarray._errors import MosaicError
from fusion_stac.xarray._source import RasterSource, source_from_item

__all__ = ["FusionBackendEntrypoint"]


class FusionBackendEntrypoint(BackendEntrypoint):
    """xarray backend for Fusion Platform rasters (registered as ``engine="fusion"``)."""

    description = "Fusion Platform rasters (fusion:// paths, STAC items) read lazily with GDAL"
    url = "https://github.com/fusion-stac/fusion-stac"
    open_dataset_parameters = (
        "filename_or_obj", "drop_variables", "mask_and_scale", "bands", "asset", "client", "storage",
        "variable_name", "fetch",
    )

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        mask_and_scale: bool = False,
        bands: Any = None,
        asset: str | None = None,
        client: Any = None,
        storage: Any = None,
        variable_name: str = "band_data",
        fetch: Any = None,
    ) -> xr.Dataset:
        from fusion_stac.xarray._build import Stack, build_dataarray
        from fusion_stac.xarray._storage import as_storage
        from fusion_stac.xarray.mosaic import output_attrs, read_config

        the_storage = as_storage(storage if storage is not None else client)
        source = _source_of(filename_or_obj, asset=asset, client=client, storage=the_storage)
        cfg, names = read_config([source], bands=bands, dtype=None, nodata=None, resampling="nearest",
                                 method="first", use_overviews=True, fetch=fetch)
        stack = Stack(((source,),), source.geobox, cfg, the_storage)
        da = build_dataarray(stack, chunks=None, band_names=names, attrs=output_attrs([source], cfg), times=None)
        for key in ("fusion:slices", "fusion:method"):
            da.attrs.pop(key, None)
        # Whole COG tiles per chunk when the caller asks for chunks={}.
        from fusion_stac.xarray._build import _auto_chunk

        side = _auto_chunk(da.dtype, len(cfg.bands))
        da.encoding["preferred_chunks"] = {"band": len(cfg.bands), "y": side, "x": side}
        ds = da.to_dataset(name=variable_name)
        ds[variable_name].encoding.update(da.encoding)
        if mask_and_scale:
            ds = xr.decode_cf(ds, mask_and_scale=True, decode_times=False, decode_coords=False)
        if drop_variables is not None:
            ds = ds.drop_vars(drop_variables, errors="ignore")
        return ds

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        if isinstance(filename_or_obj, (str, os.PathLike)):
            return str(filename_or_obj).startswith(_urls.PREFIX)
        if isinstance(filename_or_obj, RasterSource):
            return True
        href = _fusion_href(filename_or_obj)
        return href is not None


def _fusion_href(obj: Any) -> str | None:
    """The fusion:// href of a pystac Item's data asset or of a pystac Asset, if any."""
    try:
        import pystac
    except ImportError:  # pragma: no cover
        return None
    href: str | None
    if isinstance(obj, pystac.Asset):
        href = obj.href
    elif isinstance(obj, pystac.Item):
        asset = obj.assets.get("data") or next(iter(obj.assets.values()), None)
        href = asset.href if asset is not None else None
    else:
        return None
    return href if isinstance(href, str) and href.startswith(_urls.PREFIX) else None


def _source_of(obj: Any, *, asset: str | None, client: Any, storage: Any) -> RasterSource:
    import pystac

    if isinstance(obj, RasterSource):
        return obj
    if isinstance(obj, pystac.Item):
        return source_from_item(obj, asset)
    if isinstance(obj, pystac.Asset):
        owner = obj.owner
        if not isinstance(owner, pystac.Item):
            raise MosaicError("a pystac Asset must belong to an Item (its grid and ids are on the Item)")
        key = next((k for k, a in owner.assets.items() if a is obj or a.href == obj.href), None)
        return source_from_item(owner, key)
    if isinstance(obj, (str, os.PathLike)):
        return _source_from_path(str(obj), client=client, storage=storage)
    raise MosaicError(f"the fusion engine opens fusion:// paths, pystac Items/Assets and RasterSource, not "
                      f"{type(obj).__name__}")


def _source_from_path(path: str, *, client: Any, storage: Any) -> RasterSource:
    """Resolve a path to its file ids and size (API metadata), then read the grid from its header."""
    from fusion_stac.fs import FusionFileSystem
    from fusion_stac.storage import FileKey
    from fusion_stac.xarray._reader import describe_file
    from fusion_stac.xarray._storage import FileSystemStorage

    fs = storage.fs if isinstance(storage, FileSystemStorage) else (
        FusionFileSystem(client=client) if client is not None else FusionFileSystem())
    info = fs.info(path)
    if info.get("type") != "file":
        raise MosaicError(f"{path} is a {info.get('kind') or info.get('type')}, not a file; open one of its files "
                          "(or use open_mosaic for a group)", field="filename_or_obj")
    key = FileKey(info["organisation_id"], info["data_id"], info["file_id"])
    return describe_file(key, storage, size=info.get("size"), label=f"file {path}")
