"""Glue to the rest of fusion-stac: find a group's items, and sign URLs with the user's session.

Kept apart so the engine (grid, reader, graph) depends on nothing but metadata records and a
storage, and can be tested on files served locally.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fusion_stac.xarray._errors import MosaicError
from fusion_stac.xarray._source import RasterSource, source_from_item
from fusion_stac.xarray._storage import Storage

__all__ = ["resolve_sources", "storage_for"]


def _as_sources(items: Iterable[Any], asset: str | None) -> list[RasterSource]:
    out: list[RasterSource] = []
    for item in items:
        if isinstance(item, RasterSource):
            out.append(item)
        else:
            out.append(source_from_item(item, asset))
    return out


def resolve_sources(client: Any, *, process: Any = None, group_id: str | None = None, execution: Any = None,
                    items: Iterable[Any] | None = None, asset: str | None = None,
                    organisation: str | None = None) -> list[RasterSource]:
    """The sources to mosaic, in group order, from whichever of the inputs was given."""
    given = [n for n, v in (("items", items), ("execution", execution), ("group_id", group_id)) if v is not None]
    if len(given) > 1:
        raise MosaicError(f"pass only one of items=, execution=, group_id= (got {', '.join(given)})")
    if items is not None:
        sources = _as_sources(items, asset)
        if not sources:
            raise MosaicError("items= is empty: no slices to mosaic", field="items")
        return sources
    raise MosaicError("nothing to mosaic: pass items=, or a client with process=/group_id=/execution=")


def storage_for(obj: Any) -> Storage:
    """The storage of a FusionClient or FusionFileSystem."""
    raise MosaicError(f"cannot read stored files with {type(obj).__name__}; pass a FusionClient, a FusionFileSystem or storage=")
