"""Offline STAC validation: the official core schemas from local files, extension fields checked too.

Both validators fetch schemas over the network by default, and fail without it. What is local:

* STAC core 1.1.0 and GeoJSON: shipped by pystac (``pystac/validation/jsonschemas``);
* PROJJSON 0.7 (referenced by the projection extension): shipped by pyproj / rasterio's PROJ data;
* the extension schemas (projection, raster, file, processing, timestamps) are published only on the
  web and no installable package ships them. Put copies in a directory named by
  ``FUSION_STAC_SCHEMA_DIR`` (files ``{name}-{version}.json``, e.g. ``raster-v1.1.0.json``) and they
  are used; without them, :func:`check_extension_fields` checks every extension field we write
  against the rules of its published specification (types, enums, array lengths). Those checks are
  written by hand from the specifications: they are stricter than nothing, not a substitute for the
  official schemas.

:func:`offline_validator` is a pystac validator that never touches the network;
:func:`schema_map` is the local set as ``{url: path}`` for stac-validator's ``schema_map``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pystac
from pystac.validation import JsonSchemaSTACValidator, RegisteredValidator, STACValidator
from pystac.validation.stac_validator import GetSchemaError

from fusion_stac.stac.mapping import EXTENSIONS

__all__ = [
    "check_extension_fields",
    "extension_schemas_available",
    "offline_validation",
    "offline_validator",
    "schema_map",
    "validate_tree",
]

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


def extension_schema_dir() -> Path | None:
    """The directory of official extension schemas named by ``FUSION_STAC_SCHEMA_DIR``, if any."""
    value = os.environ.get("FUSION_STAC_SCHEMA_DIR")
    return Path(value) if value else None


def schema_map(extension_dir: Path | None = None) -> dict[str, str]:
    """``{schema URL: local file}`` for every schema available offline (stac-validator's ``schema_map``).

    Extension schemas are included only when present in ``extension_dir`` (default:
    :func:`extension_schema_dir`).
    """
    core = _pystac_schema_dir()
    out = {url: str(core / "stac-spec" / "v1.1.0" / name) for url, name in _CORE_FILES.items()}
    out.update({f"https://geojson.org/schema/{n}.json": str(core / "geojson" / f"{n}.json") for n in ("Feature", "Geometry")})
    directory = extension_dir or extension_schema_dir()
    if directory is not None:
        for name, url in EXTENSIONS.items():
            path = directory / f"{name}-{url.rstrip('/').split('/')[-2]}.json"
            if path.is_file():
                out[url] = str(path)
    projjson = _projjson_path()
    if projjson is not None:
        out[PROJJSON_URL] = str(projjson)
    return out


def extension_schemas_available(extension_dir: Path | None = None) -> bool:
    """True when every extension schema we declare is available locally (full official validation)."""
    local = schema_map(extension_dir)
    return all(url in local for url in EXTENSIONS.values())


# --- extension fields, checked by the rules of their specifications --------------------------------

_RASTER_TYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
                 "float64", "cint16", "cint32", "cfloat32", "cfloat64", "other"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value


def _numbers(value: Any, lengths: tuple[int, ...]) -> bool:
    return isinstance(value, list) and len(value) in lengths and all(_is_number(v) for v in value)


def _check_band(band: Any) -> str | None:
    if not isinstance(band, dict):
        return "raster:bands items must be objects"
    nodata = band.get("nodata")
    if "nodata" in band and not (_is_number(nodata) or nodata in ("nan", "inf", "-inf")):
        return f"raster:bands nodata {nodata!r} must be a number or 'nan'/'inf'/'-inf'"
    if "data_type" in band and band["data_type"] not in _RASTER_TYPES:
        return f"raster:bands data_type {band['data_type']!r} is not one of the allowed types"
    if "sampling" in band and band["sampling"] not in ("area", "point"):
        return f"raster:bands sampling {band['sampling']!r} must be 'area' or 'point'"
    for key in ("spatial_resolution", "scale", "offset"):
        if key in band and not _is_number(band[key]):
            return f"raster:bands {key} must be a number"
    if "bits_per_sample" in band and not (_is_int(band["bits_per_sample"]) and band["bits_per_sample"] >= 1):
        return "raster:bands bits_per_sample must be a positive integer"
    stats = band.get("statistics")
    if stats is not None:
        if not isinstance(stats, dict) or not all(_is_number(v) for v in stats.values()):
            return "raster:bands statistics must be an object of numbers"
        if "valid_percent" in stats and not 0 <= stats["valid_percent"] <= 100:
            return "raster:bands statistics.valid_percent must be within 0..100"
    hist = band.get("histogram")
    if hist is not None:
        if not isinstance(hist, dict) or not {"count", "min", "max", "buckets"} <= set(hist):
            return "raster:bands histogram needs count, min, max and buckets"
        buckets = hist["buckets"]
        if not (isinstance(buckets, list) and all(_is_int(b) for b in buckets) and len(buckets) == hist["count"]):
            return "raster:bands histogram buckets must be `count` integers"
    return None


def _check_field(key: str, value: Any) -> str | None:
    """The rule of one extension field; ``None`` when it holds (unknown fields pass)."""
    if key in ("proj:code", "proj:wkt2"):
        ok = value is None or isinstance(value, str)
    elif key == "proj:projjson":
        ok = value is None or isinstance(value, dict)
    elif key == "proj:bbox":
        ok = _numbers(value, (4, 6))
    elif key == "proj:shape":
        ok = isinstance(value, list) and len(value) == 2 and all(_is_int(v) and v >= 0 for v in value)
    elif key == "proj:transform":
        ok = _numbers(value, (6, 9))
    elif key == "proj:geometry":
        ok = isinstance(value, dict) and "type" in value
    elif key == "proj:centroid":
        ok = (isinstance(value, dict) and _is_number(value.get("lat")) and _is_number(value.get("lon"))
              and -90 <= value["lat"] <= 90 and -180 <= value["lon"] <= 180)
    elif key == "raster:bands":
        if not isinstance(value, list):
            return "raster:bands must be an array"
        return next((problem for problem in map(_check_band, value) if problem), None)
    elif key in ("file:size", "file:header_size"):
        ok = _is_int(value) and value >= 0
    elif key == "file:checksum":
        ok = isinstance(value, str) and bool(re.fullmatch(r"[a-f0-9]+", value))
    elif key == "file:byte_order":
        ok = value in ("big-endian", "little-endian")
    elif key == "file:local_path" or key in ("processing:lineage", "processing:level", "processing:facility", "processing:version"):
        ok = isinstance(value, str)
    elif key == "processing:software":
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    elif key == "processing:expression":
        ok = isinstance(value, dict) and isinstance(value.get("format"), str) and "expression" in value
    elif key in ("processing:datetime", "published", "expires", "unpublished"):
        ok = _is_datetime(value)
    else:
        return None
    return None if ok else f"{key}: {value!r} does not follow the extension's specification"


_PREFIX_OF = {"projection": ("proj:",), "raster": ("raster:",), "file": ("file:",),
              "processing": ("processing:",), "timestamps": ("published", "expires", "unpublished")}


def check_extension_fields(stac_dict: dict[str, Any], schema_uri: str) -> None:
    """Check the fields of the extension at ``schema_uri`` wherever they stand in ``stac_dict``.

    Raises :class:`pystac.STACValidationError` naming the object, the field and the rule broken.
    """
    name = next((n for n, url in EXTENSIONS.items() if url == schema_uri), None)
    if name is None:
        raise GetSchemaError(schema_uri, LookupError("unknown extension; not available offline"))
    prefixes = _PREFIX_OF[name]
    places: list[tuple[str, dict[str, Any]]] = [("properties", stac_dict.get("properties") or {}), ("", stac_dict)]
    places += [(f"assets.{k}", a) for k, a in (stac_dict.get("assets") or {}).items() if isinstance(a, dict)]
    places += [(f"item_assets.{k}", a) for k, a in (stac_dict.get("item_assets") or {}).items() if isinstance(a, dict)]
    for where, fields in places:
        for key, value in fields.items():
            if key == "properties" or not key.startswith(prefixes):
                continue
            problem = _check_field(key, value)
            if problem:
                label = f"{stac_dict.get('type', 'object')} {stac_dict.get('id', '?')!r}"
                raise pystac.STACValidationError(f"{label}: {where + ': ' if where else ''}{problem}")


class _OfflineValidator(JsonSchemaSTACValidator):
    """pystac's JSON-schema validator with a schema cache filled from local files and no fetching."""

    def __init__(self) -> None:
        super().__init__()
        for url, path in schema_map().items():
            self.schema_cache.setdefault(url, json.loads(Path(path).read_text()))

    def validate_extension(self, stac_dict: dict[str, Any], stac_object_type: pystac.STACObjectType,
                           stac_version: str, extension_id: str, href: str | None = None) -> str | None:
        if extension_id.rstrip("#") in self.schema_cache:
            return super().validate_extension(stac_dict, stac_object_type, stac_version, extension_id, href)
        check_extension_fields(stac_dict, extension_id)
        return extension_id

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
    """A pystac validator that uses only local schemas, and the specification checks for extensions it lacks."""
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
