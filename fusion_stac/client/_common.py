"""Constants, type variables and small pure helpers shared by the client's modules."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any, TypeVar

# The account settings are read in one place: fusion_stac._credentials.resolve_credentials.
from fusion_stac._credentials import DEFAULT_API_URL, ENV_API_URL, ENV_EMAIL, ENV_PASSWORD, ENV_USER_ID  # noqa: F401
from fusion_stac.errors import ValidationError
from fusion_stac.models import Model
from fusion_stac.storage import partial_path as storage_partial_path

logger = logging.getLogger("fusion_stac")

DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)
DEFAULT_MAX_WORKERS = 16
DEFAULT_PAGE_SIZE = 100
#: Page size of name lookups: one request sees enough candidates to prefer an exact match.
LOOKUP_LIMIT = 24

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_REQUEST_ID_HEADERS = ("X-Request-Id", "X-Amzn-RequestId", "X-Amz-Request-Id", "X-Correlation-Id")
#: Sessions renewed for one call before its 401 is reported (a renewed one can expire during retries).
MAX_RELOGINS = 3
#: How far the platform's clock may lag ours when recognising a process we created (see ``create_process``).
CLOCK_SKEW = timedelta(minutes=10)
#: 5xx statuses after which a POST may or may not have been handled (others are definite refusals).
_UNCERTAIN_STATUSES = frozenset({500, 502, 503, 504})
_WRITABLE_PROCESS_FIELDS = frozenset({
    "name", "run_type", "repeat_count", "repeat_start", "repeat_end", "repeat_gap", "repeat_offset",
    "output_storage_period",
})

M = TypeVar("M", bound=Model)
T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[float], None]


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")



def safe_file_name(name: str | None, fallback: str | None = None) -> str:
    """A file name from the server made safe to create inside a local directory.

    The last component after any ``/`` or ``\\`` is kept; a name that is then empty, ``.``, ``..``,
    has control characters (NUL, newline...) or a drive (``C:``) is replaced by ``fallback``
    (checked the same way), else by ``"download"``. A hostile or broken server can therefore never
    make a download land outside its destination.
    """
    for candidate in (name, fallback):
        base = re.split(r"[/\\]", candidate or "")[-1]
        if base.strip() and base not in (".", "..") and not _CONTROL_RE.search(base) \
                and not PurePath(base).drive and not PureWindowsPath(base).drive:
            return base
    return "download"


def partial_path(target: Path, file_id: str, *, preview: bool = False) -> Path:
    """Where a download of ``file_id`` (or of its preview) to ``target`` keeps its bytes until complete:
    :func:`fusion_stac.storage.partial_path`, whose name carries a tag of the file id, so an interrupted
    download resumes only into the file it was of."""
    return storage_partial_path(target, file_id + ("#preview" if preview else ""))


def is_uuid(value: Any) -> bool:
    """True if ``value`` is a string in UUID syntax (every platform id is one)."""
    return isinstance(value, str) and bool(_UUID_RE.match(value.strip()))


def _id_of(value: Any) -> str:
    """An id from a model or a string."""
    if isinstance(value, str):
        return value
    ident = getattr(value, "id", None)
    if ident is None:
        raise ValidationError(f"expected an id or a model with an id, got {type(value).__name__}")
    return str(ident)


def _jsonable(value: Any) -> Any:
    """Turn Python values into what the API expects in a JSON body."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, timedelta):
        return json.dumps({"days": value.days, "seconds": value.seconds, "microseconds": value.microseconds})
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Model):
        return _jsonable(dict(value.raw))
    return value


def _flat(model: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name": x}`` -> ``{"Model[name]": x}`` (the create/update body style, API doc 5.1)."""
    return {f"{model}[{k}]": _jsonable(v) for k, v in fields.items() if v is not None}


def _bool_param(value: bool) -> str:
    return "True" if value else "False"
