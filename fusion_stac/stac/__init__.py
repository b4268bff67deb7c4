"""The Fusion Platform as STAC: a lazy pystac catalog, search, and static exports.

``open_catalog(client)`` returns a ``pystac.Catalog`` (root -> organisations -> uploads / processes
-> collections per data item, execution or group -> items per file) resolved on demand through a
:class:`FusionStacIO` attached to its root. Hrefs are ``fusion://`` paths by ids plus ``?stac=<kind>``
(see :mod:`fusion_stac.stac.io`); asset hrefs are ``fusion://{org}/data/{data_id}/{file_id}`` or, with
``asset_hrefs="signed"``, pre-signed URLs. Readers of signed URLs should run GDAL with
:data:`GDAL_GET_ONLY` (pre-signed URLs answer GET only).
"""

from __future__ import annotations

from fusion_stac.stac.catalog import GDAL_GET_ONLY, export_catalog, open_catalog, resolve_href, search
from fusion_stac.stac.io import FusionStacIO, parse_stac_href, stac_href
from fusion_stac.stac.mapping import RasterInfo

__all__ = [
    "GDAL_GET_ONLY",
    "FusionStacIO",
    "RasterInfo",
    "export_catalog",
    "open_catalog",
    "parse_stac_href",
    "resolve_href",
    "search",
    "stac_href",
]
