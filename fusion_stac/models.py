"""Typed, immutable views of Fusion Platform API payloads (pure: a dict in, an object out).

Every model is a frozen dataclass built with ``Model.from_api(payload)``. Attribute names are the API's
field names; ids are ``str``; datetimes are timezone-aware (a naive value is taken as UTC); money and
credits are :class:`~decimal.Decimal`; coordinates and measures are ``float``; lists become tuples.
``.raw`` keeps the whole payload (read-only at the top level), so fields this version does not know
are never lost. Equality compares type and payload; hashing uses type, ``id`` and ``updated_at``.

Option values are strings on the wire; :class:`Option` turns Python values into that encoding and
validates them against the option's ``validation`` string (``min``/``max``, ``format=``, constrained
``values=``/``names=``), raising :class:`~fusion_stac.errors.ValidationError` that names the option.
"""

# ruff: noqa: RUF009  -- `_f` returns a dataclasses.field(), which ruff cannot see through.
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qs, urlsplit

from fusion_stac.errors import ValidationError, redact_url

__all__ = [
    "FILE_TYPE_EXTENSIONS",
    "INPUT_SUBSTITUTES",
    "Chain",
    "Credit",
    "Data",
    "DataFile",
    "Dispatcher",
    "ExecutionStatus",
    "FrozenDict",
    "Input",
    "Model",
    "Option",
    "Organisation",
    "Process",
    "ProcessExecution",
    "ProcessServiceExecution",
    "ProcessServiceExecutionLog",
    "Selector",
    "Service",
    "SignedURL",
    "User",
    "file_type_for_path",
]

# --------------------------------------------------------------------------------------------------
# Constants (API doc section 10)

#: Local file extensions -> platform file type, as the official CLI maps them (10.1).
FILE_TYPE_EXTENSIONS: Mapping[str, str] = {
    ".tif": "GeoTIFF",
    ".tiff": "GeoTIFF",
    ".jp2": "JPEG2000",
    ".dem": "DEM",
    ".json": "GeoJSON",
    ".geojson": "GeoJSON",
    ".kml": "KML",
    ".kmz": "KMZ",
    ".csv": "CSV",
    ".zip": "ESRI Shapefile",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".pdf": "PDF",
    ".gz": "GZIP",
}

#: Input file type -> the data file types the platform accepts for it (10.2).
INPUT_SUBSTITUTES: Mapping[str, frozenset[str]] = {
    "GeoTIFF": frozenset({"GeoTIFF", "DEM", "JPEG2000"}),
    "GeoJSON": frozenset({"GeoJSON", "KML", "KMZ", "ESRI Shapefile"}),
}


def file_type_for_path(path: str) -> str:
    """Platform file type for a local file name, from its extension (``Other`` if unknown)."""
    lower = path.lower()
    for ext in sorted(FILE_TYPE_EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext):
            return FILE_TYPE_EXTENSIONS[ext]
    return "Other"


# --------------------------------------------------------------------------------------------------
# Value converters: tolerant of absent/null, strict about types they can't make sense of.


def parse_datetime(value: Any) -> datetime | None:
    """ISO 8601 (offset or ``Z``) -> aware datetime; naive values are taken as UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    else:
        raise TypeError(f"expected an ISO 8601 datetime string, got {type(value).__name__}")
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return Decimal(str(value))


def _bool(value: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes", "y", "t"}
    return bool(value)


def _flag(value: Any) -> bool:
    """Flag-strings (``deletable``, ``has_executions``, ``unlinked``): set and non-empty means true."""
    if isinstance(value, str):
        return value.strip().lower() not in {"", "false", "0", "none", "null"}
    return bool(value)


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


def _opt_strs(value: Any) -> tuple[str | None, ...]:
    return tuple(None if v is None else str(v) for v in value or ())


def _floats(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    return tuple(float(v) for v in value)


def _dict(value: Any) -> dict[str, Any] | None:
    return None if value is None else dict(value)


def _dicts(value: Any) -> tuple[FrozenDict, ...]:
    return tuple(FrozenDict(v) for v in value or ())


class FrozenDict(dict[str, Any]):
    """A read-only ``dict`` (top level only) that still pickles, copies and JSON-encodes as a dict."""

    __slots__ = ()

    def _readonly(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("model payloads are read-only; copy with dict(model.raw) to modify")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _readonly

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        import copy

        # A deep copy is for modifying: hand back a plain, mutable dict.
        return {k: copy.deepcopy(v, memo) for k, v in self.items()}

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted((k, repr(v)) for k, v in self.items())))


# --------------------------------------------------------------------------------------------------
# Base model


def _f(conv: Callable[[Any], Any] | None = None, *, key: str | None = None, default: Any = None,
       repr: bool = True) -> Any:
    """A model field read from ``raw[key or name]`` through ``conv``."""
    return field(default=default, repr=repr, metadata={"conv": conv, "key": key})


M = TypeVar("M", bound="Model")


@dataclass(frozen=True, eq=False)
class Model:
    """Base of all API models: ``from_api`` fills declared fields; ``raw`` keeps everything."""

    raw: FrozenDict = field(default_factory=FrozenDict, repr=False)

    #: the API's class name, as used in ``Model[field]`` request bodies.
    api_name: ClassVar[str] = ""

    @classmethod
    def from_api(cls: type[M], payload: Mapping[str, Any], **extra: Any) -> M:
        """Build the model from an API payload; ``extra`` keys are merged in (e.g. injected ids)."""
        if not isinstance(payload, Mapping):
            raise TypeError(f"{cls.__name__}.from_api expects a mapping, got {type(payload).__name__}")
        raw = dict(payload)
        for k, v in extra.items():
            if v is not None and raw.get(k) is None:
                raw[k] = v
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "raw" or not f.init:
                continue
            key = f.metadata.get("key") or f.name
            conv = f.metadata.get("conv")
            value = raw.get(key)
            if conv is not None:
                try:
                    value = conv(value)
                except (TypeError, ValueError, InvalidOperation) as exc:
                    raise ValueError(f"{cls.__name__}.{key}: cannot read {value!r}: {exc}") from exc
            values[f.name] = value
        return cls(raw=FrozenDict(raw), **values)

    def to_api(self) -> dict[str, Any]:
        """The payload as a plain dict (a copy)."""
        import copy

        return copy.deepcopy(dict(self.raw))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return dict(self.raw) == dict(other.raw)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.raw.get("id"), self.raw.get("updated_at")))


@dataclass(frozen=True, eq=False)
class _Entity(Model):
    """A top-level model: has ``id``, ``created_at`` and ``updated_at``."""

    id: str = _f(_str)
    created_at: datetime | None = _f(parse_datetime, repr=False)
    updated_at: datetime | None = _f(parse_datetime, repr=False)


# --------------------------------------------------------------------------------------------------
# Users, organisations, credits


@dataclass(frozen=True, eq=False)
class User(_Entity):
    """The logged-in user (7.1); ``organisation_ids`` come from the hidden ``organisations`` list."""

    api_name: ClassVar[str] = "User"

    email: str | None = _f(_str)
    given_name: str | None = _f(_str)
    family_name: str | None = _f(_str)
    telephone: str | None = _f(_str, repr=False)
    role: int | None = _f(_int, repr=False)
    default_output_storage_period: int | None = _f(_int, repr=False)
    time_zone: str | None = _f(_str, repr=False)
    locale: str | None = _f(_str, repr=False)
    units: str | None = _f(_str, repr=False)
    last_request_at: datetime | None = _f(parse_datetime, repr=False)
    organisation_ids: tuple[str, ...] = _f(
        lambda v: tuple(str(o["id"]) for o in v or () if isinstance(o, Mapping) and o.get("id")),
        key="organisations", default=(),
    )

    @property
    def name(self) -> str:
        """Full name (given and family names)."""
        return " ".join(p for p in (self.given_name, self.family_name) if p) or (self.email or self.id)

    @property
    def last_organisation_id(self) -> str | None:
        """The organisation the user used last (``last: true``), else the first one."""
        for entry in self.raw.get("organisations") or ():
            if isinstance(entry, Mapping) and entry.get("last"):
                return str(entry["id"])
        return self.organisation_ids[0] if self.organisation_ids else None


@dataclass(frozen=True, eq=False)
class OrganisationMember(Model):
    """A member of an organisation and the roles they hold."""

    id: str | None = _f(_str)
    email: str | None = _f(_str)
    roles: tuple[str, ...] = _f(_strs, default=())


@dataclass(frozen=True, eq=False)
class Organisation(_Entity):
    """An organisation (7.2): owns data, processes and credits."""

    api_name: ClassVar[str] = "Organisation"

    name: str | None = _f(_str)
    address_line_1: str | None = _f(_str, repr=False)
    address_line_2: str | None = _f(_str, repr=False)
    address_town_city: str | None = _f(_str, repr=False)
    address_post_zip_code: str | None = _f(_str, repr=False)
    address_country: str | None = _f(_str, repr=False)
    currency: str | None = _f(_str, repr=False)
    income_tax_rate: Decimal | None = _f(_decimal, repr=False)
    users: tuple[OrganisationMember, ...] = _f(
        lambda v: tuple(OrganisationMember.from_api(u) for u in v or ()), default=(), repr=False
    )
    agreed_licenses: tuple[str, ...] = _f(_strs, default=(), repr=False)
    offers: tuple[str, ...] = _f(_strs, default=(), repr=False)
    maximum_output_storage_period: int | None = _f(_int, repr=False)
    maximum_file_downloads: int | None = _f(_int, repr=False)


@dataclass(frozen=True, eq=False)
class Credit(_Entity):
    """Credit balances of an organisation (7.3); its ``id`` equals the organisation id."""

    api_name: ClassVar[str] = "Credit"

    organisation_id: str | None = _f(_str)
    any_credits: Decimal | None = _f(_decimal)
    cloud_storage_credits: Decimal | None = _f(_decimal, repr=False)
    registry_storage_credits: Decimal | None = _f(_decimal, repr=False)
    runtime_any_credits: Decimal | None = _f(_decimal, repr=False)
    runtime_ssds: tuple[FrozenDict, ...] = _f(_dicts, default=(), repr=False)
    spend: tuple[FrozenDict, ...] = _f(_dicts, default=(), repr=False)

    @property
    def name(self) -> str:
        return f"credit {self.organisation_id or self.id}"


# --------------------------------------------------------------------------------------------------
# Data and files


@dataclass(frozen=True, eq=False)
class Data(_Entity):
    """A data item (7.4): an upload or an output; holds one or more files."""

    api_name: ClassVar[str] = "Data"

    name: str | None = _f(_str)
    organisation_id: str | None = _f(_str)
    bounds: tuple[float, ...] | None = _f(_floats)
    unlinked: bool = _f(_flag, default=False, repr=False)
    unfulfilled: bool | None = _f(_bool, repr=False)
    file_with_preview: str | None = _f(_str, repr=False)
    uploaded_organisation_id: str | None = _f(_str, repr=False)
    deletable: bool = _f(_flag, default=False, repr=False)

    @property
    def uploaded(self) -> bool:
        """True for data uploaded by a user rather than generated by a process."""
        return self.uploaded_organisation_id is not None


@dataclass(frozen=True, eq=False)
class Selector(Model):
    """Per band/field metadata of a file (``selectors[]``); also readable as a mapping."""

    selector: str | None = _f(_str)
    category: str | None = _f(_str)
    data_type: str | None = _f(_str)
    unit: str | None = _f(_str, repr=False)
    validation: str | None = _f(_str, repr=False)
    area: float | None = _f(_float, repr=False)
    length: float | None = _f(_float, repr=False)
    points: int | None = _f(_int, repr=False)
    lines: int | None = _f(_int, repr=False)
    polygons: int | None = _f(_int, repr=False)
    initial_values: tuple[str, ...] = _f(_strs, default=(), repr=False)
    minimum: float | None = _f(_float, repr=False)
    maximum: float | None = _f(_float, repr=False)
    mean: float | None = _f(_float, repr=False)
    sd: float | None = _f(_float, repr=False)
    histogram_minimum: float | None = _f(_float, repr=False)
    histogram_maximum: float | None = _f(_float, repr=False)
    histogram: tuple[float, ...] | None = _f(_floats, repr=False)

    def __getitem__(self, key: str) -> Any:
        """``selector["histogram"]`` reads the raw payload, as the official SDK's dicts allow."""
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


@dataclass(frozen=True, eq=False)
class DataFile(_Entity):
    """A file of a data item (7.5). ``file_id`` (not ``id``) is what downloads are addressed by.

    Analysis state follows the platform's presence rules: ``analysed`` once ``size`` and either
    ``publishable`` or ``error`` are present; usable as a process input once ``publishable`` is.
    """

    api_name: ClassVar[str] = "DataFile"

    file_id: str | None = _f(_str)
    file_name: str | None = _f(_str)
    file_type: str | None = _f(_str)
    data_id: str | None = _f(_str)
    organisation_id: str | None = _f(_str, repr=False)
    size: int | None = _f(_int)
    crs: str | None = _f(_str, repr=False)
    bounds: tuple[float, ...] | None = _f(_floats, repr=False)
    resolution: int | None = _f(_int, repr=False)
    preview_file_id: str | None = _f(_str, repr=False)
    area: float | None = _f(_float, repr=False)
    length: float | None = _f(_float, repr=False)
    points: int | None = _f(_int, repr=False)
    lines: int | None = _f(_int, repr=False)
    polygons: int | None = _f(_int, repr=False)
    error: bool | None = _f(_bool, repr=False)
    publishable: bool | None = _f(_bool, repr=False)
    alternative: str | None = _f(_str, repr=False)
    source: str | None = _f(_str, repr=False)
    selectors: tuple[Selector, ...] = _f(
        lambda v: tuple(Selector.from_api(s) for s in v or ()), default=(), repr=False
    )
    number_of_ingesters: int | None = _f(_int, repr=False)
    ingesters: FrozenDict | None = _f(lambda v: None if v is None else FrozenDict(v), repr=False)
    downloads: int | None = _f(_int, repr=False)
    geojson: str | None = _f(_str, repr=False)
    title: str | None = _f(_str, repr=False)
    description: str | None = _f(_str, repr=False)
    stac_item: dict[str, Any] | None = _f(_dict, repr=False)
    stac_item_file: str | None = _f(_str, repr=False)

    @property
    def name(self) -> str | None:
        """The file name (files have no separate name)."""
        return self.file_name

    @property
    def analysed(self) -> bool:
        """Basic analysis finished (successfully or not)."""
        return "size" in self.raw and ("publishable" in self.raw or "error" in self.raw)

    @property
    def analysis_failed(self) -> bool:
        return bool(self.raw.get("error"))

    @property
    def usable_as_input(self) -> bool:
        """The platform accepts the file as a process input once ``publishable`` is present."""
        return "publishable" in self.raw and not self.analysis_failed

    @property
    def extended_analysis_done(self) -> bool:
        return len(self.ingesters or {}) >= (self.number_of_ingesters or 0)


# --------------------------------------------------------------------------------------------------
# Services


@dataclass(frozen=True, eq=False)
class Service(_Entity):
    """A service (7.6). Its inputs and options are only known from a process template."""

    api_name: ClassVar[str] = "Service"

    name: str | None = _f(_str)
    organisation_id: str | None = _f(_str, repr=False)
    ssd_id: str | None = _f(_str)
    version: int | None = _f(_int)
    approval_status: str | None = _f(_str, repr=False)
    featured: bool = _f(_flag, default=False, repr=False)
    show_in_latest: bool | None = _f(_bool, repr=False)
    categories: tuple[str, ...] = _f(_strs, default=(), repr=False)
    keywords: tuple[str, ...] = _f(_strs, default=(), repr=False)
    image_id: str | None = _f(_str, repr=False)
    license_id: str | None = _f(_str, repr=False)
    definition: tuple[FrozenDict, ...] = _f(_dicts, default=(), repr=False)
    group_aggregators: tuple[FrozenDict, ...] = _f(_dicts, default=(), repr=False)
    actions: tuple[FrozenDict, ...] = _f(_dicts, default=(), repr=False)
    geographic_regions: tuple[str, ...] = _f(_strs, default=(), repr=False)
    documentation_summary: str | None = _f(_str, repr=False)
    documentation_description: str | None = _f(_str, repr=False)
    documentation_assumptions: str | None = _f(_str, repr=False)
    documentation_performance: str | None = _f(_str, repr=False)
    documentation_actions: str | None = _f(_str, repr=False)
    documentation_inputs: tuple[str, ...] = _f(_strs, default=(), repr=False)
    documentation_outputs: tuple[str, ...] = _f(_strs, default=(), repr=False)
    documentation_options: tuple[str, ...] = _f(_strs, default=(), repr=False)

    @property
    def aggregator_ssd_ids(self) -> frozenset[str]:
        """SSDs that run as group aggregators after the slices of a group finish."""
        return frozenset(str(a["aggregator_ssd_id"]) for a in self.group_aggregators if a.get("aggregator_ssd_id"))


# --------------------------------------------------------------------------------------------------
# Options


_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off"}


def _parse_validation(validation: str | None) -> dict[str, str]:
    """``format=%Y;min=1;max=2`` -> ``{"format": "%Y", "min": "1", "max": "2"}`` (keys lower-cased)."""
    parts: dict[str, str] = {}
    for element in (validation or "").split(";"):
        if "=" in element:
            key, _, value = element.partition("=")
            parts[key.strip().lower()] = value
    return parts


@dataclass(frozen=True, eq=False)
class Option(Model):
    """A process option (7.7): ``value`` is the wire string; ``python_value`` its typed meaning.

    Use :meth:`encode` to turn a Python value into the wire string, validated against
    ``data_type`` and ``validation``.
    """

    name: str | None = _f(_str)
    value: str | None = _f(lambda v: None if v is None else (v if isinstance(v, str) else _encode_plain(v)))
    data_type: str | None = _f(_str)
    required: bool | None = _f(_bool, repr=False)
    ssd_id: str | None = _f(_str, repr=False)
    validation: str | None = _f(_str, repr=False)
    mutually_exclusive: str | None = _f(_str, repr=False)
    advanced: bool | None = _f(_bool, repr=False)
    title: str | None = _f(_str, repr=False)
    description: str | None = _f(_str, repr=False)

    # -- validation pieces ---------------------------------------------------------------------
    @property
    def _rules(self) -> dict[str, str]:
        return _parse_validation(self.validation)

    @property
    def format(self) -> str | None:
        """The ``strftime`` format of a datetime option (``format=`` in ``validation``)."""
        return self._rules.get("format")

    @property
    def constrained_values(self) -> tuple[str, ...]:
        raw = self._rules.get("values")
        return tuple(raw.split(",")) if raw else ()

    @property
    def constrained_names(self) -> tuple[str, ...]:
        raw = self._rules.get("names")
        return tuple(raw.split(",")) if raw else ()

    @property
    def minimum(self) -> Any:
        return self._bound("min")

    @property
    def maximum(self) -> Any:
        return self._bound("max")

    def _bound(self, key: str) -> Any:
        text = self._rules.get(key)
        if text is None or text == "":
            return None
        if self.data_type == "datetime":
            return self._parse_datetime_text(text)
        try:
            return Decimal(text)
        except InvalidOperation:
            return None

    def _parse_datetime_text(self, text: str) -> datetime | None:
        """``None`` for an empty string."""
        fmt = self.format
        if fmt:
            try:
                return parse_datetime(datetime.strptime(text, fmt))
            except ValueError:
                pass
        return parse_datetime(text)

    # -- decoding --------------------------------------------------------------------------------
    @property
    def python_value(self) -> Any:
        """The current value as Python: bool, float, Decimal, aware datetime, str or None."""
        text = self.value
        if text is None or text in {"null", "None"}:
            return None
        try:
            if self.data_type == "boolean":
                return text.strip().lower() in _TRUE
            if self.data_type == "numeric":
                return float(text)
            if self.data_type == "currency":
                return Decimal(text)
            if self.data_type == "datetime":
                return self._parse_datetime_text(text)
        except (ValueError, InvalidOperation):
            return text
        return text

    # -- encoding --------------------------------------------------------------------------------
    def _invalid(self, message: str) -> ValidationError:
        return ValidationError(f"option {self.name!r} ({self.data_type}): {message}", field=self.name)

    def encode(self, value: Any) -> str | None:
        """Validate ``value`` for this option and return its wire string (``None`` unsets it).

        Accepts native Python values and their string forms: ``True``/``"false"`` for booleans,
        numbers or numeric strings for ``numeric``/``currency``, ``datetime``/``date``/ISO strings
        for ``datetime`` (formatted with the option's ``format=``), and either a value or a display
        name for ``constrained`` options.
        """
        if value is None:
            if self.required:
                raise self._invalid("a value is required")
            return None
        kind = self.data_type
        if kind == "boolean":
            return self._encode_boolean(value)
        if kind in {"numeric", "currency"}:
            return self._encode_number(value)
        if kind == "datetime":
            return self._encode_datetime(value)
        if kind == "constrained":
            return self._encode_constrained(value)
        if not isinstance(value, str):
            raise self._invalid(f"expected a string, got {type(value).__name__} {value!r}")
        allowed = self.constrained_values
        if allowed and value not in allowed:
            raise self._invalid(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def _encode_boolean(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return "true" if value.strip().lower() in _TRUE else "false"
        raise self._invalid(f"expected true or false, got {type(value).__name__} {value!r}")

    def _encode_number(self, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
            raise self._invalid(f"expected a number, got {type(value).__name__} {value!r}")
        try:
            number = Decimal(value.strip()) if isinstance(value, str) else Decimal(str(value))
        except InvalidOperation:
            raise self._invalid(f"expected a number, got {value!r}") from None
        if not number.is_finite():
            raise self._invalid(f"expected a finite number, got {value!r}")
        self._check_range(number, value)
        if number == number.to_integral_value() and "." not in str(value) and "e" not in str(value).lower():
            return str(int(number))
        return str(number) if isinstance(value, (Decimal, str)) else repr(float(value))

    def _encode_datetime(self, value: Any) -> str:
        if isinstance(value, datetime):
            moment = parse_datetime(value)
        elif isinstance(value, date):
            moment = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
        elif isinstance(value, str):
            try:
                moment = self._parse_datetime_text(value)
            except ValueError:
                raise self._invalid(f"expected a datetime, got {value!r}") from None
        else:
            raise self._invalid(f"expected a datetime, got {type(value).__name__} {value!r}")
        if moment is None:  # an empty string
            raise self._invalid(f"expected a datetime, got {value!r}")
        moment = moment.astimezone(timezone.utc)
        self._check_range(moment, value)
        fmt = self.format
        return moment.strftime(fmt) if fmt else moment.isoformat()

    def _encode_constrained(self, value: Any) -> str:
        values, names = self.constrained_values, self.constrained_names
        text = value if isinstance(value, str) else _encode_plain(value)
        if not values:
            return text
        if text in values:
            return text
        if text in names:
            return values[names.index(text)]
        folded = text.casefold()
        for candidates in (values, names):
            hits = [i for i, c in enumerate(candidates) if c.casefold() == folded]
            if len(hits) == 1 and hits[0] < len(values):
                return values[hits[0]]
        choices = ", ".join(
            f"{v!r} ({names[i]})" if i < len(names) else repr(v) for i, v in enumerate(values)
        )
        raise self._invalid(f"{value!r} is not one of {choices}")

    def _check_range(self, number: Any, original: Any) -> None:
        low, high = self.minimum, self.maximum
        if isinstance(original, (datetime, date)):
            original = original.isoformat()
        if low is not None and number < low:
            raise self._invalid(f"{original!r} is below the minimum {self._rules['min']}")
        if high is not None and number > high:
            raise self._invalid(f"{original!r} is above the maximum {self._rules['max']}")

    def with_value(self, value: Any) -> Option:
        """A copy of this option holding ``value`` (validated and encoded)."""
        encoded = self.encode(value)
        raw = dict(self.raw)
        raw["value"] = encoded
        return Option.from_api(raw)


def _encode_plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------------------------------
# Processes


@dataclass(frozen=True, eq=False)
class Input(Model):
    """A process input slot (7.7 Input). ``id`` is the chosen Data id (``None`` until chosen)."""

    input: int | None = _f(_int)
    file_type: str | None = _f(_str)
    id: str | None = _f(_str)
    ssd_id: str | None = _f(_str, repr=False)
    resolution: int | None = _f(_int, repr=False)
    selectors: tuple[FrozenDict, ...] = _f(_dicts, default=(), repr=False)
    model: str | None = _f(_str, repr=False)
    change_trigger: bool | None = _f(_bool, repr=False)
    change_hash: str | None = _f(_str, repr=False)
    title: str | None = _f(_str)
    description: str | None = _f(_str, repr=False)
    name: str | None = _f(_str, repr=False)

    @property
    def data_id(self) -> str | None:
        return self.id

    @property
    def accepted_file_types(self) -> frozenset[str]:
        """File types the platform accepts for this input (10.2)."""
        if self.file_type is None:
            return frozenset()
        return INPUT_SUBSTITUTES.get(self.file_type, frozenset({self.file_type}))


@dataclass(frozen=True, eq=False)
class Dispatcher(Model):
    """An output dispatcher (e.g. ``AWS S3``) available to or added to a process."""

    name: str | None = _f(_str)
    ssd_id: str | None = _f(_str)
    dispatch_intermediate: bool | None = _f(_bool, repr=False)
    documentation_summary: str | None = _f(_str, repr=False)
    documentation_description: str | None = _f(_str, repr=False)
    options: tuple[Option, ...] = _f(lambda v: tuple(Option.from_api(o) for o in v or ()), default=(), repr=False)


@dataclass(frozen=True, eq=False)
class Chain(Model):
    """One SSD in a process chain: its service, input and output data ids, options."""

    ssd_id: str | None = _f(_str)
    service_id: str | None = _f(_str)
    inputs: tuple[Any, ...] = _f(
        lambda v: tuple(_opt_strs(i) if isinstance(i, list) else _str(i) for i in v or ()), default=(), repr=False
    )
    outputs: tuple[str, ...] = _f(_strs, default=(), repr=False)
    options: tuple[Option, ...] = _f(lambda v: tuple(Option.from_api(o) for o in v or ()), default=(), repr=False)
    intermediate: bool | None = _f(_bool, repr=False)


@dataclass(frozen=True, eq=False)
class ExecutionStatus(Model):
    """A line of a process's ``executions`` summary (7.7 ExecutionStatus)."""

    process_execution_id: str | None = _f(_str)
    group_id: str | None = _f(_str)
    group_index: int | None = _f(_int)
    group_count: int | None = _f(_int)
    job_status: str | None = _f(_str)
    started_at: datetime | None = _f(parse_datetime)
    ended_at: datetime | None = _f(parse_datetime, repr=False)
    abort_reason: str | None = _f(_str, repr=False)
    exit_type: str | None = _f(_str, repr=False)
    delete_warning_status: str | None = _f(_str, repr=False)
    delete_expiry: datetime | None = _f(parse_datetime, repr=False)
    notified: bool | None = _f(_bool, repr=False)

    @property
    def id(self) -> str | None:
        return self.process_execution_id


@dataclass(frozen=True, eq=False)
class Process(_Entity):
    """A process (7.7): a service bound to inputs and options, run once or on a schedule."""

    api_name: ClassVar[str] = "Process"

    name: str | None = _f(_str)
    organisation_id: str | None = _f(_str, repr=False)
    service_id: str | None = _f(_str, repr=False)
    ssd_id: str | None = _f(_str, repr=False)
    process_status: str | None = _f(_str)
    process_status_at: datetime | None = _f(parse_datetime, repr=False)
    process_status_changed_by: str | None = _f(_str, repr=False)
    run_type: str | None = _f(_str, repr=False)
    repeat_count: int | None = _f(_int, repr=False)
    repeat_start: datetime | None = _f(parse_datetime, repr=False)
    repeat_end: datetime | None = _f(parse_datetime, repr=False)
    repeat_gap: str | None = _f(_str, repr=False)
    repeat_offset: str | None = _f(_str, repr=False)
    output_storage_period: int | None = _f(_int, repr=False)
    test_run: bool | None = _f(_bool, repr=False)
    price: Decimal | None = _f(_decimal)
    deletable: bool = _f(_flag, default=False, repr=False)
    has_executions: bool = _f(_flag, default=False, repr=False)
    non_aggregator_count: int | None = _f(_int, repr=False)
    aggregator_count: int | None = _f(_int, repr=False)
    inputs: tuple[Input, ...] = _f(lambda v: tuple(Input.from_api(i) for i in v or ()), default=(), repr=False)
    options: tuple[Option, ...] = _f(lambda v: tuple(Option.from_api(o) for o in v or ()), default=(), repr=False)
    chains: tuple[Chain, ...] = _f(lambda v: tuple(Chain.from_api(c) for c in v or ()), default=(), repr=False)
    dispatchers: tuple[Dispatcher, ...] = _f(
        lambda v: tuple(Dispatcher.from_api(d) for d in v or ()), default=(), repr=False
    )
    available_dispatchers: tuple[Dispatcher, ...] = _f(
        lambda v: tuple(Dispatcher.from_api(d) for d in v or ()), default=(), repr=False
    )
    executions: tuple[ExecutionStatus, ...] = _f(
        lambda v: tuple(ExecutionStatus.from_api(e) for e in v or ()), default=(), repr=False
    )

    def option(self, name: str) -> Option:
        """The option called ``name``; :class:`ValidationError` listing the known names if none."""
        for option in self.options:
            if option.name == name:
                return option
        known = ", ".join(repr(o.name) for o in self.options) or "none"
        raise ValidationError(f"process {self.name!r} has no option {name!r} (options: {known})", field=name)

    def input(self, number: int) -> Input:
        """Input ``number`` (1-based, in template order)."""
        if not 1 <= number <= len(self.inputs):
            raise ValidationError(
                f"process {self.name!r} has no input number {number} (it has {len(self.inputs)})",
                field=f"input {number}",
            )
        return self.inputs[number - 1]

    @property
    def chain_service_ids(self) -> frozenset[str]:
        return frozenset(c.service_id for c in self.chains if c.service_id)

    def latest_executions(self) -> tuple[ExecutionStatus, ...]:
        """Summary lines of the most recent run: the group of the latest-started execution."""
        if not self.executions:
            return ()
        far_past = datetime.min.replace(tzinfo=timezone.utc)
        latest = max(self.executions, key=lambda e: e.started_at or far_past)
        if latest.group_id is None:
            return (latest,)
        return tuple(e for e in self.executions if e.group_id == latest.group_id)


@dataclass(frozen=True, eq=False)
class ProcessExecution(_Entity):
    """One execution of a process (7.8); a slice or an aggregator when grouped.

    ``is_aggregator`` applies the index rule (``group_index > group_count``: aggregators are
    numbered after the slices). The client refines it with components where that is not enough.
    """

    api_name: ClassVar[str] = "ProcessExecution"

    organisation_id: str | None = _f(_str, repr=False)
    process_id: str | None = _f(_str, repr=False)
    group_id: str | None = _f(_str)
    group_index: int | None = _f(_int)
    group_count: int | None = _f(_int)
    started_at: datetime | None = _f(parse_datetime, repr=False)
    ended_at: datetime | None = _f(parse_datetime, repr=False)
    progress: int | None = _f(_int)
    success: bool | None = _f(_bool)
    stopped: bool | None = _f(_bool, repr=False)
    abort: bool | None = _f(_bool, repr=False)
    abort_reason: str | None = _f(_str, repr=False)
    exit_type: str | None = _f(_str, repr=False)
    delete_expiry: datetime | None = _f(parse_datetime, repr=False)
    delete_warning_status: str | None = _f(_str, repr=False)
    deletable: bool = _f(_flag, default=False, repr=False)
    delete_protection: bool | None = _f(_bool, repr=False)
    options: tuple[Option, ...] = _f(lambda v: tuple(Option.from_api(o) for o in v or ()), default=(), repr=False)
    chains: tuple[Chain, ...] = _f(lambda v: tuple(Chain.from_api(c) for c in v or ()), default=(), repr=False)

    @property
    def name(self) -> str:
        """A short human label: ``slice 3/16``, ``aggregator 17/16`` or ``execution <id>``."""
        if self.group_index is not None and self.group_count is not None:
            kind = "aggregator" if self.is_aggregator else "slice"
            return f"{kind} {self.group_index}/{self.group_count}"
        return f"execution {self.id}"

    @property
    def is_grouped(self) -> bool:
        return self.group_id is not None

    @property
    def is_aggregator(self) -> bool:
        """Aggregators are numbered after the slices; a group member without an index is one too."""
        if self.group_id is None:
            return False
        if self.group_index is None:
            return True
        return self.group_count is not None and self.group_index > self.group_count

    @property
    def is_complete(self) -> bool:
        return (self.progress or 0) >= 100

    @property
    def failed(self) -> bool:
        return self.is_complete and not self.success


@dataclass(frozen=True, eq=False)
class ProcessServiceExecution(_Entity):
    """A component of an execution (7.9): one service run, with input and output Data ids."""

    api_name: ClassVar[str] = "ProcessServiceExecution"

    name: str | None = _f(_str)
    organisation_id: str | None = _f(_str, repr=False)
    process_execution_id: str | None = _f(_str, repr=False)
    process_id: str | None = _f(_str, repr=False)
    service_id: str | None = _f(_str, repr=False)
    image_id: str | None = _f(_str, repr=False)
    chain_index: int | None = _f(_int, repr=False)
    started_at: datetime | None = _f(parse_datetime, repr=False)
    ended_at: datetime | None = _f(parse_datetime, repr=False)
    runtime: int | None = _f(_int, repr=False)
    architecture: str | None = _f(_str, repr=False)
    cpu: Decimal | None = _f(_decimal, repr=False)
    gpu: Decimal | None = _f(_decimal, repr=False)
    memory: Decimal | None = _f(_decimal, repr=False)
    storage: Decimal | None = _f(_decimal, repr=False)
    instance_type: str | None = _f(_str, repr=False)
    inputs: tuple[str, ...] = _f(_strs, default=())
    outputs: tuple[str, ...] = _f(_strs, default=())
    intermediate: bool | None = _f(_bool, repr=False)
    success: bool | None = _f(_bool, repr=False)
    actions: tuple[FrozenDict, ...] = _f(_dicts, default=(), repr=False)
    options: tuple[Option, ...] = _f(lambda v: tuple(Option.from_api(o) for o in v or ()), default=(), repr=False)
    metrics: tuple[FrozenDict, ...] = _f(_dicts, default=(), repr=False)

    @property
    def input_ids(self) -> tuple[str, ...]:
        return self.inputs

    @property
    def output_ids(self) -> tuple[str, ...]:
        return self.outputs


@dataclass(frozen=True, eq=False)
class ProcessServiceExecutionLog(_Entity):
    """A log line of a component (7.10)."""

    api_name: ClassVar[str] = "ProcessServiceExecutionLog"

    process_service_execution_id: str | None = _f(_str, repr=False)
    logged_at: datetime | None = _f(parse_datetime)
    message: str | None = _f(_str)

    @property
    def name(self) -> str:
        return f"log {self.id}"


# --------------------------------------------------------------------------------------------------
# Signed URLs

DEFAULT_URL_LIFETIME = timedelta(hours=1)


def _expiry_from_url(url: str) -> datetime | None:
    """Expiry encoded in a pre-signed URL (AWS SigV4/SigV2, Google V4/V2, generic ``expires``)."""
    query = {k.lower(): v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
    try:
        for date_key, ttl_key in (("x-amz-date", "x-amz-expires"), ("x-goog-date", "x-goog-expires")):
            if date_key in query and ttl_key in query:
                issued = datetime.strptime(query[date_key], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
                return issued + timedelta(seconds=int(query[ttl_key]))
        for key in ("expires", "se", "exp"):
            if key in query:
                text = query[key]
                if re.fullmatch(r"\d+(\.\d+)?", text):
                    return datetime.fromtimestamp(float(text), tz=timezone.utc)
                return parse_datetime(text)
    except (ValueError, OverflowError):
        return None
    return None


@dataclass(frozen=True)
class SignedURL:
    """A pre-signed download URL and when it stops working. Its repr hides the signature.

    ``expires_at`` comes from the URL when it says (AWS/Google signatures, ``Expires=``), else from
    the API, else one hour after issue as the platform documents.
    """

    url: str = field(repr=False)
    expires_at: datetime

    @classmethod
    def issued(cls, url: str, *, issued_at: datetime | None = None, expires_at: datetime | None = None,
               lifetime: timedelta = DEFAULT_URL_LIFETIME) -> SignedURL:
        """Build from a freshly issued URL."""
        expiry = _expiry_from_url(url) or expires_at
        if expiry is None:
            expiry = (issued_at or datetime.now(timezone.utc)) + lifetime
        return cls(url=url, expires_at=expiry)

    def expires_in(self, now: datetime | None = None) -> timedelta:
        return self.expires_at - (now or datetime.now(timezone.utc))

    def is_expired(self, margin: timedelta = timedelta(seconds=30), now: datetime | None = None) -> bool:
        """True once fewer than ``margin`` remain (so a read started now can still finish)."""
        return self.expires_in(now) <= margin

    def __repr__(self) -> str:
        return f"SignedURL(url={redact_url(self.url)!r}, expires_at={self.expires_at.isoformat()!r})"

    __str__ = __repr__
