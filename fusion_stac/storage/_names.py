"""Names on disk: the platform's file names, kept byte for byte where the local file system allows.

A downloaded file should carry the name the platform gave it: ``é`` stays ``é`` (fsspec's ``get``
percent-encoded it), ``a:x.geojson`` stays as it is on Linux (a legal name there; only Windows reads
``a:`` as a drive). Only what the *current* operating system forbids is changed:

* everywhere: path separators (``/``; on Windows also ``\\``), the names ``""``, ``.`` and ``..``,
  control characters (NUL cannot be stored; the others reach terminals and scripts as commands),
  names that cannot be encoded for the file system (lone surrogates, which JSON allows), and names
  longer than the file system's limit (``PC_NAME_MAX``, usually 255 bytes);
* on Windows also ``<>:"|?*``, the reserved device names (``CON``, ``NUL``, ``COM1``... with or without
  an extension) and trailing dots or spaces (which Windows silently drops).

A changed name gets a short stable suffix, ``~`` and 8 hex digits of SHA-256 over the original name
and the file id, before its extension (kept when it is itself clean): the mapping is deterministic
(the same remote file always lands on the same local name, so an interrupted download resumes) and
two different remote files never map to one local name. :class:`LocalName` says whether the name
was changed and why, for the CLI to print.

:func:`unique_local_names` does the same for a batch going to one directory: two different files
with the same name (or names equal once mapped, or equal but for case on a case-insensitive file
system) are ordered by file id; the first keeps its name and the others get the suffix.

Names of up to ``PC_NAME_MAX`` bytes are kept: the downloader's partial files take care of their
own length (see :mod:`fusion_stac.storage._download`).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["LocalName", "local_name", "name_max", "unique_local_names"]

Flavour = Literal["posix", "windows"]

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_WINDOWS_FORBIDDEN_RE = re.compile(r'[<>:"|?*\\/]')
_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{p}{n}" for p in ("COM", "LPT") for n in ("1", "2", "3", "4", "5", "6", "7", "8", "9", "¹", "²", "³")]
)
_EXT_RE = re.compile(r"(\.[A-Za-z0-9_-]{1,15}){1,2}$")  # ".tif", ".tar.gz": extensions worth keeping
_DEFAULT_NAME_MAX = 255
_TAG_LEN = 8


@dataclass(frozen=True)
class LocalName:
    """Where one remote file goes on disk.

    ``name`` is the single path component to use; ``original`` the platform's name; ``changed`` is
    true when they differ and ``reasons`` says why (e.g. ``("control characters",)``);
    ``path`` is ``directory / name``.
    """

    name: str
    original: str
    file_id: str
    path: Path
    changed: bool
    reasons: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.name


def name_max(directory: str | os.PathLike[str] | None) -> int:
    """The longest file name (in bytes) the file system of ``directory`` takes; 255 when unknown."""
    if directory is not None and hasattr(os, "pathconf"):
        probe = Path(directory)
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent  # the directory may not exist yet: ask its nearest ancestor
        try:
            value = os.pathconf(probe, "PC_NAME_MAX")
        except (OSError, ValueError):
            value = -1
        if value and value > 0:
            return int(value)
    return _DEFAULT_NAME_MAX


def name_length(name: str, flavour: Flavour | None = None) -> int:
    """The length the file system counts: bytes on POSIX, UTF-16 code units on Windows."""
    if (flavour or _current_flavour()) == "windows":
        return len(name.encode("utf-16-le", "surrogatepass")) // 2
    return len(os.fsencode(name))


def _current_flavour() -> Flavour:
    return "windows" if sys.platform == "win32" else "posix"


def _tag(name: str, file_id: str, extra: str = "") -> str:
    digest = hashlib.sha256(f"{file_id}\0{name}\0{extra}".encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:_TAG_LEN]


def _encodable(name: str) -> bool:
    try:
        name.encode("utf-8")
        os.fsencode(name)
    except UnicodeError:
        return False
    return True


def _problems(name: str, flavour: Flavour, limit: int) -> list[str]:
    """Why ``name`` cannot be used as it is (empty when it can)."""
    reasons: list[str] = []
    if name in ("", ".", ".."):
        reasons.append("empty or a directory name" if name else "empty name")
        return reasons
    if not _encodable(name):
        reasons.append("not encodable for the file system")
    if "/" in name or (flavour == "windows" and "\\" in name):
        reasons.append("path separators")
    if _CONTROL_RE.search(name):
        reasons.append("control characters")
    if flavour == "windows":
        if re.search(r'[<>:"|?*]', name):
            reasons.append("characters Windows forbids")
        if name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_RESERVED:
            reasons.append("a reserved Windows device name")
        if name.endswith((".", " ")):
            reasons.append("trailing dot or space")
    if _encodable(name) and name_length(name, flavour) > limit:
        reasons.append(f"longer than {limit} bytes")
    return reasons


def _clean(text: str, flavour: Flavour) -> str:
    """``text`` with every forbidden character replaced by ``_``."""
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")  # lone surrogates -> U+FFFD
    text = _CONTROL_RE.sub("_", text)
    text = (_WINDOWS_FORBIDDEN_RE if flavour == "windows" else re.compile("/")).sub("_", text)
    if flavour == "windows":
        text = text.rstrip(". ")
    return text


def _truncate(text: str, budget: int, flavour: Flavour) -> str:
    """The longest prefix of ``text`` within ``budget`` (bytes or UTF-16 units), whole characters only."""
    while text and name_length(text, flavour) > budget:
        over = name_length(text, flavour) - budget
        text = text[: max(len(text) - max(over // 4, 1), 0)]
    return text


def _mapped(original: str, file_id: str, flavour: Flavour, limit: int, extra: str = "") -> str:
    """The deterministic replacement name: cleaned stem, ``~tag``, extension."""
    tag = "~" + _tag(original, file_id, extra)
    cleaned = _clean(original, flavour)
    match = _EXT_RE.search(cleaned)
    ext = match[0] if match and match.start() > 0 else ""
    stem = cleaned[: len(cleaned) - len(ext)] if ext else cleaned
    if stem in ("", ".", "..") or set(stem) <= {"."}:
        stem = "file"
    if flavour == "windows" and stem.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_RESERVED:
        stem = "_" + stem
    budget = limit - name_length(tag + ext, flavour)
    if budget < 1:  # an absurd extension: drop it
        ext, budget = "", limit - name_length(tag, flavour)
    return _truncate(stem, budget, flavour) + tag + ext


def local_name(
    name: str | None,
    *,
    file_id: str,
    directory: str | os.PathLike[str],
    flavour: Flavour | None = None,
    limit: int | None = None,
) -> LocalName:
    """Where the remote file ``name`` (of ``file_id``) goes in ``directory``.

    The name is kept exactly unless the local file system forbids it (see the module docstring);
    a changed name carries a stable hash of the original name and the file id. ``flavour`` and
    ``limit`` (bytes) default to the current OS and the directory's file system (for tests).
    """
    original = "" if name is None else str(name)
    flavour = flavour or _current_flavour()
    limit = limit if limit is not None else name_max(directory)
    reasons = _problems(original, flavour, limit)
    final = original if not reasons else _mapped(original, file_id, flavour, limit)
    return LocalName(final, original, file_id, Path(directory) / final, bool(reasons), tuple(reasons))


def unique_local_names(
    files: Iterable[tuple[str | None, str]],
    *,
    directory: str | os.PathLike[str],
    flavour: Flavour | None = None,
    limit: int | None = None,
    case_insensitive: bool | None = None,
) -> dict[str, LocalName]:
    """Local names for a batch of ``(name, file_id)`` going to one directory, unique within it.

    Returns ``{file_id: LocalName}``. Files are taken in file-id order; the first to claim a name keeps
    it, the others get a suffixed name (reason ``"another file has this name"``). The same file id
    twice is one file. ``case_insensitive`` (default: on Windows and macOS) compares names casefolded.
    """
    flavour = flavour or _current_flavour()
    limit = limit if limit is not None else name_max(directory)
    if case_insensitive is None:
        case_insensitive = sys.platform in ("win32", "darwin")

    def key(text: str) -> str:
        return text.casefold() if case_insensitive else text

    by_id: dict[str, str] = {}
    for name, file_id in files:
        by_id.setdefault(str(file_id), "" if name is None else str(name))
    first = {fid: local_name(n, file_id=fid, directory=directory, flavour=flavour, limit=limit)
             for fid, n in by_id.items()}
    # Names kept as they are take precedence over mapped ones (a mapped name never displaces a real one).
    order = sorted(first, key=lambda fid: (first[fid].changed, fid))
    taken: set[str] = set()
    out: dict[str, LocalName] = {}
    for fid in order:
        chosen = first[fid]
        salt = 0
        while key(chosen.name) in taken:
            salt += 1
            extra = "" if salt == 1 else str(salt)
            name = _mapped(chosen.original, fid, flavour, limit, extra)
            reasons = tuple(dict.fromkeys((*first[fid].reasons, "another file has this name")))
            chosen = LocalName(name, chosen.original, fid, Path(directory) / name, True, reasons)
        taken.add(key(chosen.name))
        out[fid] = chosen
    return {fid: out[fid] for fid in by_id}
