"""Where fusion-stac keeps things on disk: the cache directory and the STAC server's index files.

Shared by the layers that need them (the xarray cache, the STAC server, the background gateway the
``stac`` package starts): computed here, below all of them, so that none imports another for a path.

``$FUSION_STAC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fusion-stac`` (``~/.cache/fusion-stac``);
``FUSION_STAC_CACHE=off`` (or ``0``/``no``/``false``) turns the disk caches off.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["cache_base", "cache_disabled", "cache_root", "stac_index_path"]

_OFF = {"0", "off", "no", "false", "none", "disable", "disabled"}


def cache_disabled() -> bool:
    """``FUSION_STAC_CACHE=off`` (or ``0``/``no``/``false``...): nothing is cached on disk."""
    return os.environ.get("FUSION_STAC_CACHE", "").strip().lower() in _OFF


def cache_base() -> Path:
    """The cache directory, whether caching is turned off or not."""
    root = os.environ.get("FUSION_STAC_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fusion-stac"


def cache_root() -> Path | None:
    """The cache directory, or ``None`` when caching on disk is turned off."""
    return None if cache_disabled() else cache_base()


def stac_index_path(api_url: object, user_id: object) -> Path:
    """The STAC server's index of one user of one platform: ``<cache>/stac-index/<hash>.sqlite``.

    The name is a hash of the API URL and the user id (no email in a file name). Nothing is created.
    """
    digest = hashlib.sha256(f"{api_url}|{user_id}".encode()).hexdigest()[:20]
    return cache_base() / "stac-index" / f"{digest}.sqlite"
