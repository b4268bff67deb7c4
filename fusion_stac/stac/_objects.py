"""pystac catalogs and collections that keep the Fusion Platform's ``StacIO`` when copied.

pystac's ``Catalog.clone`` builds a new object without the ``StacIO`` of the original, and
``full_copy`` resolves the links of each clone with the clone's ``StacIO`` (pystac's default when it
has none), which cannot read ``fusion://`` hrefs. These subclasses carry it over, so ``full_copy``
(and anything else built on ``clone``) works on a catalog opened by :func:`fusion_stac.open_catalog`.
:class:`~fusion_stac.stac.io.FusionStacIO` builds every catalog and collection it reads as one of them.
"""

from __future__ import annotations

from typing import Any

import pystac


class FusionCatalog(pystac.Catalog):
    """A ``pystac.Catalog`` whose clones keep its ``StacIO``."""

    def clone(self) -> FusionCatalog:
        clone = super().clone()
        clone._stac_io = self._stac_io
        return clone  # type: ignore[return-value]  # cls(...) in pystac's clone: our class


class FusionCollection(pystac.Collection):
    """A ``pystac.Collection`` whose clones keep its ``StacIO``."""

    def clone(self) -> FusionCollection:
        clone = super().clone()
        clone._stac_io = self._stac_io
        return clone  # type: ignore[return-value]


def catalog_class(d: dict[str, Any]) -> type[pystac.Catalog] | None:
    """The class to build a STAC dict as, or None for anything but a catalog or collection."""
    kind = d.get("type")
    if kind == "Collection":
        return FusionCollection
    if kind == "Catalog":
        return FusionCatalog
    return None
