"""Offline STAC validation: every JSON schema our catalogs use, served from local files.

Both validators fetch schemas over the network by default, and fail without it. The schemas we need:

* STAC core 1.1.0 and GeoJSON — shipped by pystac (``pystac/validation/jsonschemas``);
* PROJJSON 0.7 (referenced by the projection extension) — shipped by pyproj / rasterio's PROJ data;
* the projection, raster, file, processing and timestamps extension schemas at the versions we
  declare — vendored in ``fusion_stac/stac/schemas/`` (Apache-2.0, copied verbatim from the
  ``stac-extensions`` repositories at their release tags; see ``schemas/README.md``).

:func:`offline_validator` is a pystac validator that never touches the network (an unknown schema
is an error naming it); :func:`schema_map` is the same set as ``{url: local path}`` for
stac-validator's ``schema_map`` argument.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pystac
from pystac.validation import JsonSchemaSTACValidator, RegisteredValidator, STACValidator
from pystac.validation.stac_validator import GetSchemaError

from fusion_stac.stac.mapping import EXTENSIONS

__all__ = ["offline_validation", "offline_validator", "schema_map", "validate_tree"]

_CORE = "https://schemas.stacspec.org/v1.1.0"
_CORE_FILES = {
    f"{_CORE}/item-spec/json-schema/item.json": "item.json",
    f"{_CORE}/catalog-spec/json-schema/catalog.json": "catalog.json",
    f"{_CORE}/collection-spec/json-schema/collection.json": "collection.json",
    **{f"{_CORE}/item-spec/json-schema/{n}.json": f"{n}.json" for n in (
        "bands", "basics", "common", "data-values", "datetime", "instrument", "licensing", "provider")},
}
PROJJSON_URL = "https://proj.org/schemas/v0.7/projjson.schema.json"


def _pystac_schema_dir() -> Path:
    return Path(str(resources.files("pystac.validation") / "jsonschemas"))


def _projjson_path() -> Path | None:
    """PROJ's own copy of the PROJJSON schema (pyproj, else rasterio), if it is version 0.7."""
    candidates: list[Path] = []
    with contextlib.suppress(ImportError):
        import pyproj.datadir

        candidates.append(Path(pyproj.datadir.get_data_dir()) / "projjson.schema.json")
    with contextlib.suppress(ImportError):
        import rasterio

        candidates.append(Path(rasterio.__file__).parent / "proj_data" / "projjson.schema.json")
    for path in candidates:
        try:
            if json.loads(path.read_text()).get("$id") == PROJJSON_URL:
                return path
        except (OSError, ValueError):
            continue
    return None


def schema_map() -> dict[str, str]:
    """``{schema URL: local file}`` for every schema our catalogs need (stac-validator's ``schema_map``)."""
    core = _pystac_schema_dir()
    out = {url: str(core / "stac-spec" / "v1.1.0" / name) for url, name in _CORE_FILES.items()}
    out.update({f"https://geojson.org/schema/{n}.json": str(core / "geojson" / f"{n}.json") for n in ("Feature", "Geometry")})
    vendored = Path(str(resources.files("fusion_stac.stac") / "schemas"))
    for name, url in EXTENSIONS.items():
        version = url.rstrip("/").split("/")[-2]
        out[url] = str(vendored / f"{name}-{version}.json")
    projjson = _projjson_path()
    if projjson is not None:
        out[PROJJSON_URL] = str(projjson)
    return out


class _OfflineValidator(JsonSchemaSTACValidator):
    """pystac's JSON-schema validator with a schema cache filled from local files and no fetching."""

    def __init__(self) -> None:
        super().__init__()
        for url, path in schema_map().items():
            self.schema_cache.setdefault(url, json.loads(Path(path).read_text()))

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        key = schema_uri.rstrip("#")
        if key in self.schema_cache:
            return self.schema_cache[key]
        raise GetSchemaError(
            schema_uri,
            LookupError("not available offline; fusion_stac.stac.validation knows "
                        + ", ".join(sorted(self.schema_cache))),
        )


def offline_validator() -> STACValidator:
    """A pystac validator that uses only local schemas (raises naming any schema it lacks)."""
    return _OfflineValidator()


@contextlib.contextmanager
def offline_validation() -> Iterator[STACValidator]:
    """Make pystac's ``validate``/``validate_all`` use :func:`offline_validator` inside the block.

    pystac's ``Catalog.validate_all`` takes no validator argument and reads the process-wide one,
    so this swaps it and restores the previous one on exit.
    """
    previous = RegisteredValidator._validator
    validator = offline_validator()
    pystac.validation.set_validator(validator)
    try:
        yield validator
    finally:
        RegisteredValidator._validator = previous


def validate_tree(catalog: pystac.Catalog, validator: STACValidator | None = None) -> int:
    """Validate a catalog, every descendant catalog/collection and every item; returns the item count.

    Unlike ``Catalog.validate_all`` this takes the validator as an argument (no global state).
    """
    validator = validator or offline_validator()
    count = 0
    for root, _children, items in catalog.walk():
        root.validate(validator=validator)
        for item in items:
            item.validate(validator=validator)
            count += 1
    return count
