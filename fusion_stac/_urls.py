"""The ``fusion://`` path grammar: parse and format, nothing else (pure, property-tested).

Every level can be named by its id (always works, stable) or by its name (readable; an ambiguous
name is an error raised by whoever resolves it, naming the candidates)::

    fusion://                                                     the user's organisations
    fusion://{organisation}                                       sections: uploads, processes, data
    fusion://{organisation}/uploads/{data}/{file}                 uploaded data and its files
    fusion://{organisation}/processes/{process}/{execution}/{component}/{output}/{file}
    fusion://{organisation}/processes/{process}/latest                          the latest run, whole
    fusion://{organisation}/processes/{process}/latest/{member}/{component}/{output}/{file}
    fusion://{organisation}/data/{data_id}/{file_id}              short stable form (any data item, by ids)

``{execution}`` is an execution id. **``latest`` is the whole latest run** of a process, everywhere
(``ls``, ``info``, ``find``, downloads, ``catalog export``, the STAC view): the latest execution when
the run was not sliced; for a large region processed in slices (a *group*), every slice *and* the
aggregator(s). One execution of it is ``latest/{member}``: its execution id, or its name in the run,
``slice-{i}`` (the i-th slice, 1-based) or ``aggregator-{i}`` (numbered after the slices, as the platform
numbers them; plain ``aggregator`` when there is one); an unsliced run's one execution is named by its
id (or ``execution``). So a file of an unsliced run is ``latest/{execution id}/{component}/{output}/{file}``
(or ``latest/execution/...``), and a slice's is ``latest/slice-2/{component}/{output}/{file}``.
``latest`` changes when a new run starts: for a reference that never changes use ids (the
``{execution}`` form, or the short form below). The short form is what caches and STAC assets key on:
it names a file by ids only, which never change, and resolving it costs one API request.

Segments are percent-decoded on parse; on format, ``/`` and ``%`` (and control characters) are
percent-encoded so that any name round-trips. Paths are accepted with or without the protocol, the
way fsspec hands them to a filesystem.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import quote, unquote

PROTOCOL = "fusion"
PREFIX = f"{PROTOCOL}://"

Section = Literal["uploads", "processes", "data"]
SECTIONS: tuple[str, ...] = ("uploads", "processes", "data")
LATEST = "latest"

Kind = Literal[
    "root", "organisation", "section", "data", "process", "run", "execution", "component", "output", "file"
]
#: The name of an unsliced run's one execution under ``latest``.
SINGLE_MEMBER = "execution"
_MEMBER_RE = re.compile(r"^(slice|aggregator)(?:-([1-9][0-9]*))?$")

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Characters kept verbatim when formatting a segment: everything printable except '/', '%', '?', '#'.
_SAFE = " !$&'()*+,;=:@[]~^{}|`\"<>"

# Levels below each section, in order ("run" only when the segment after the process is ``latest``).
_LEVELS: dict[str, tuple[Kind, ...]] = {
    "uploads": ("data", "file"),
    "data": ("data", "file"),
    "processes": ("process", "execution", "component", "output", "file"),
}
_RUN_LEVELS: tuple[Kind, ...] = ("process", "run", "execution", "component", "output", "file")


def _levels(section: str, run: str | None) -> tuple[Kind, ...]:
    return _RUN_LEVELS if section == "processes" and run is not None else _LEVELS[section]


def member_name(group_index: int | None, group_count: int | None) -> str | None:
    """The name of an execution within its run: ``slice-3``, ``aggregator-5``; ``None`` if not grouped."""
    if group_index is None or group_count is None:
        return None
    return f"{'aggregator' if group_index > group_count else 'slice'}-{group_index}"


def parse_member(segment: str) -> tuple[str, int | None] | None:
    """``slice-3`` -> ``("slice", 3)``, ``aggregator`` -> ``("aggregator", None)``; ``None`` if no name."""
    found = _MEMBER_RE.match(segment)
    if found is None:
        return None
    if found.group(1) == "slice" and found.group(2) is None:
        return None
    return found.group(1), int(found.group(2)) if found.group(2) else None


class FusionURLError(ValueError):
    """A string that is not a valid ``fusion://`` path; the message names the offending part."""


def is_uuid(value: str | None) -> bool:
    """True for a canonical UUID string (the form every Fusion Platform id takes)."""
    return bool(value) and bool(_UUID_RE.match(value or ""))


def normalise_uuid(value: str) -> str:
    """Lower-case canonical form of a UUID string (ids compare equal whatever their case)."""
    return str(uuid.UUID(value))


def quote_segment(segment: str) -> str:
    """Percent-encode one path segment so that it cannot split or escape the path."""
    return quote(segment, safe=_SAFE)


def _decode(segment: str, url: str) -> str:
    value = unquote(segment)
    if value in (".", ".."):
        raise FusionURLError(f"{url!r}: relative segment {segment!r} is not allowed")
    if any(ord(ch) < 32 for ch in value):
        raise FusionURLError(f"{url!r}: control character in segment {segment!r}")
    return value


@dataclass(frozen=True)
class FusionPath:
    """A parsed ``fusion://`` path. Fields below the deepest level given are ``None``."""

    organisation: str | None = None
    section: str | None = None
    data: str | None = None
    process: str | None = None
    run: str | None = None  # ``latest`` (the whole latest run), or None
    execution: str | None = None
    component: str | None = None
    output: str | None = None
    file: str | None = None

    @property
    def kind(self) -> Kind:
        """The deepest level named by this path."""
        if self.organisation is None:
            return "root"
        if self.section is None:
            return "organisation"
        for level in reversed(_levels(self.section, self.run)):
            if getattr(self, level) is not None:
                return level
        return "section"

    @property
    def segments(self) -> tuple[str, ...]:
        """The decoded segments, in path order."""
        if self.organisation is None:
            return ()
        out = [self.organisation]
        if self.section is None:
            return tuple(out)
        out.append(self.section)
        for level in _levels(self.section, self.run):
            value = getattr(self, level)
            if value is None:
                break
            out.append(value)
        return tuple(out)

    @property
    def path(self) -> str:
        """The path without the protocol, as fsspec passes paths around."""
        return "/".join(quote_segment(s) for s in self.segments)

    @property
    def url(self) -> str:
        return PREFIX + self.path

    def __str__(self) -> str:
        return self.url

    @property
    def is_short_form(self) -> bool:
        """True for ``fusion://{org}/data/{data_id}/{file_id}`` style paths (ids only)."""
        return self.section == "data"

    @property
    def parent(self) -> FusionPath:
        segs = self.segments
        return parse("/".join(quote_segment(s) for s in segs[:-1])) if segs else self

    def child(self, name: str) -> FusionPath:
        """The path one level down, named ``name`` (a decoded name or an id; any character allowed)."""
        if not name or name in (".", "..") or any(ord(ch) < 32 for ch in name):
            raise FusionURLError(f"invalid child name {name!r} under {self.url!r}")
        kind = self.kind
        if kind == "root":
            return replace(self, organisation=name)
        if kind == "organisation":
            if name not in SECTIONS:
                raise FusionURLError(f"{self.url}/{name}: unknown section {name!r}; expected one of {', '.join(SECTIONS)}")
            return replace(self, section=name)
        assert self.section is not None
        if kind == "process" and name == LATEST:
            return replace(self, run=LATEST)
        levels = _levels(self.section, self.run)
        index = 0 if kind == "section" else levels.index(kind) + 1
        if index >= len(levels):
            raise FusionURLError(f"{self.url!r} is a file; it has no children")
        return replace(self, **{levels[index]: name})


def parse(url: str) -> FusionPath:
    """Parse a ``fusion://`` URL or a protocol-less path into a :class:`FusionPath`.

    Raises :class:`FusionURLError` naming what is wrong: another protocol, an unknown section,
    too many segments, an empty or relative segment, or a non-UUID in the short (``data``) form.
    """
    if not isinstance(url, str):
        raise FusionURLError(f"expected a fusion:// URL string, got {type(url).__name__}")
    text = url
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme != PROTOCOL:
            raise FusionURLError(f"{url!r}: expected the {PREFIX} protocol, not {scheme}://")
    text = text.split("?", 1)[0].split("#", 1)[0].strip("/")
    if not text:
        return FusionPath()
    raw = text.split("/")
    if any(s == "" for s in raw):
        raise FusionURLError(f"{url!r}: empty path segment")
    segs = [_decode(s, url) for s in raw]
    org = segs[0]
    if len(segs) == 1:
        return FusionPath(organisation=org)
    section = segs[1]
    if section not in _LEVELS:
        raise FusionURLError(f"{url!r}: unknown section {section!r}; expected one of {', '.join(SECTIONS)}")
    rest = segs[2:]
    levels = _levels(section, LATEST if section == "processes" and len(rest) > 1 and rest[1] == LATEST else None)
    if len(rest) > len(levels):
        raise FusionURLError(
            f"{url!r}: too many segments under {section}/ (at most {len(levels)}: {'/'.join(levels)})"
        )
    values = dict(zip(levels, rest, strict=False))
    if section == "data":
        for level, value in values.items():
            if not is_uuid(value):
                raise FusionURLError(f"{url!r}: the short form fusion://{{org}}/data/{{data_id}}/{{file_id}} takes ids; "
                                     f"{level} {value!r} is not a UUID")
    return FusionPath(organisation=org, section=section, **values)


def file_url(organisation_id: str, data_id: str, file_id: str) -> str:
    """The short, stable URL of a file: ids only, valid as long as the file exists."""
    return FusionPath(organisation=organisation_id, section="data", data=data_id, file=file_id).url


def data_url(organisation_id: str, data_id: str) -> str:
    """The short, stable URL of a data item (upload or output)."""
    return FusionPath(organisation=organisation_id, section="data", data=data_id).url


def upload_url(organisation: str, data: str | None = None, file: str | None = None) -> str:
    return FusionPath(organisation=organisation, section="uploads", data=data, file=file if data else None).url


def process_url(
    organisation: str,
    process: str | None = None,
    execution: str | None = None,
    component: str | None = None,
    output: str | None = None,
    file: str | None = None,
) -> str:
    """URL of a process-tree node; pass the levels down to the one wanted, leave the rest ``None``.

    ``execution=LATEST`` names the whole latest run; below it use :func:`run_url`.
    """
    if execution == LATEST:
        if component is not None:
            raise FusionURLError("process_url: below 'latest' name the execution first: use run_url(...)")
        return run_url(organisation, process or "")
    values = {"process": process, "execution": execution, "component": component, "output": output, "file": file}
    seen_none = False
    for level, value in values.items():
        if value is None:
            seen_none = True
        elif seen_none:
            raise FusionURLError(f"process_url: {level!r} given without the levels above it")
    return FusionPath(organisation=organisation, section="processes", **values).url


def run_url(
    organisation: str,
    process: str,
    member: str | None = None,
    component: str | None = None,
    output: str | None = None,
    file: str | None = None,
) -> str:
    """URL of the latest run of a process, or of a node below one of its executions (``member``:
    execution id, ``slice-{i}``, ``aggregator-{i}``)."""
    if not process:
        raise FusionURLError("run_url: the process is required")
    values = {"execution": member, "component": component, "output": output, "file": file}
    seen_none = False
    for level, value in values.items():
        if value is None:
            seen_none = True
        elif seen_none:
            raise FusionURLError(f"run_url: {level!r} given without the levels above it")
    return FusionPath(organisation=organisation, section="processes", process=process, run=LATEST,
                      **values).url


__all__ = [
    "LATEST",
    "PREFIX",
    "PROTOCOL",
    "SECTIONS",
    "SINGLE_MEMBER",
    "FusionPath",
    "FusionURLError",
    "data_url",
    "file_url",
    "is_uuid",
    "member_name",
    "normalise_uuid",
    "parse",
    "parse_member",
    "process_url",
    "quote_segment",
    "run_url",
    "upload_url",
]

