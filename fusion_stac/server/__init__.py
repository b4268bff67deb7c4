"""The Fusion Platform as a STAC API, with asset links that never expire (``fusion-stac serve``).

``create_app(client)`` returns an ASGI application (FastAPI, built with stac-fastapi's app factory)
serving what ``client``'s user can see: one collection per uploaded data item and one per process
run (a grouped run is one collection of its slices and aggregator), item search (GET and POST) with
the filter (CQL2 text and JSON), sort and fields extensions, from a local SQLite index refreshed
incrementally (:class:`Index`, :class:`Indexer`). Every asset href is a URL of the server itself,
``/assets/{organisation_id}/{data_id}/{file_id}`` (``.../preview``), that redirects to a freshly
signed storage URL or streams the bytes: hrefs that never expire, readable by GDAL, rasterio,
odc-stac, stackstac and ``curl -L`` with no configuration.

Needs the ``server`` extra (``pip install 'fusion-stac[server]'``, Python >= 3.11, as stac-fastapi 7
does). **Security**: the server holds the user's session, so whoever can reach it reads the user's
data: it binds 127.0.0.1 by default, and binding elsewhere requires an API key (``api_key=``, sent
by clients as ``X-API-Key`` or ``Authorization: Bearer``).
"""

from __future__ import annotations

import logging as _logging


class _QuietDefaults(_logging.Filter):
    # stac-fastapi warns at import that its settings have default titles; ours are set per app
    def filter(self, record: _logging.LogRecord) -> bool:
        return "Using default values for stac_fastapi" not in record.getMessage()


_quiet = _QuietDefaults()
_logging.getLogger("stac_fastapi.types.config").addFilter(_quiet)
try:
    import cql2  # noqa: F401
    import fastapi  # noqa: F401
    import shapely  # noqa: F401
    import stac_fastapi.api
    import stac_fastapi.extensions  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"fusion_stac.server needs the 'server' extra (Python >= 3.11): pip install 'fusion-stac[server]' "
        f"({exc.name or exc} is missing)"
    ) from exc

from fusion_stac.server._app import (  # noqa: E402
    API_KEY_ENV,
    API_KEY_HEADER,
    ServerState,
    create_app,
    default_index_path,
    is_loopback,
)
from fusion_stac.server._gateway import ASSET_MODES  # noqa: E402
from fusion_stac.server._index import Index  # noqa: E402
from fusion_stac.server._indexer import Indexer, RefreshReport  # noqa: E402
from fusion_stac.server._query import QueryError  # noqa: E402

__all__ = [
    "API_KEY_ENV",
    "API_KEY_HEADER",
    "ASSET_MODES",
    "Index",
    "Indexer",
    "QueryError",
    "RefreshReport",
    "ServerState",
    "create_app",
    "default_index_path",
    "is_loopback",
]
