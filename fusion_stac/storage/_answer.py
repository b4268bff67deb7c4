"""What one ``200``/``206`` storage answer may be used for, judged from its headers alone (pure).

:class:`~fusion_stac.storage._transport.RangeReader` asks for bytes ``[pos, end)`` and gets an answer;
:func:`inspect_answer` says which body bytes are the ones asked for, where to stop reading, and what
the answer claims about the file's size. It never trusts ``Content-Length`` for *where* the bytes
are (a proxy may have rewritten it): the body is read up to the range asked at most, and a body that
ends early is resumed by the reader. The reader, which knows the file's size and version, decides
whether a size claim means "the file changed" or "a faulty answer" (see ``RangeReader``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Verdict", "inspect_answer", "parse_content_range"]

_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """How to use one answer to a request for bytes ``[pos, end)``.

    ``fault``: why the answer cannot be used at all (``None`` when it can): it is retried like a
    reset connection. ``skip``: body bytes to discard before byte ``pos`` (a whole-file ``200``).
    ``stop``: the offset after the last byte this answer may deliver (never past ``end``). ``claim``:
    the file size the answer states (``Content-Range`` total, or a whole-file ``200``'s length),
    ``None`` if it states none. ``consistent``: its length headers agree, so ``claim`` may be learned
    once the body has arrived in full (for ``whole``, to its very end). ``whole``: a ``200`` without ``Content-Range`` (its length
    is the claim, so it must match a known size before bytes past ``0`` are taken from it).
    """

    fault: str | None = None
    skip: int = 0
    stop: int = 0
    claim: int | None = None
    consistent: bool = False
    whole: bool = False


def _length(headers: Mapping[str, str]) -> int | None:
    value = (headers.get("Content-Length") or "").strip()
    return int(value) if value.isdigit() else None


def parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``bytes first-last/total`` as ``(first, last, total or None for *)``; ``None`` if malformed."""
    match = _CONTENT_RANGE_RE.match(value or "")
    if match is None:
        return None
    return int(match[1]), int(match[2]), None if match[3] == "*" else int(match[3])


def unsatisfied_total(value: str | None) -> int | None:
    """The size a ``416`` answer states (``Content-Range: bytes */N``), if any."""
    match = _UNSATISFIED_RE.match(value or "")
    return int(match[1]) if match else None


def inspect_answer(status: int, headers: Mapping[str, str], pos: int, end: int) -> Verdict:
    """Judge a ``200``/``206`` answer to ``Range: bytes=pos-(end-1)`` from its headers.

    * ``Content-Range`` present (a ``206``, or a ``200`` that a proxy relabelled): it must start at
      ``pos`` and be well formed; the answer serves ``[pos, min(last + 1, end))``. A
      ``Content-Length`` that disagrees with it makes the answer *inconsistent* (bytes are still
      read, bounded by the range; a short body is resumed), never an error.
    * ``206`` without a valid ``Content-Range``: a fault.
    * ``200`` without ``Content-Range``: the whole file (the server ignored ``Range``); ``pos`` bytes
      are skipped. Past byte 0, one whose length equals the range asked is a fault: it may be a
      partial answer that lost its status and headers, and skipping would return the wrong bytes.
    """
    length = _length(headers)
    content_range = headers.get("Content-Range")
    if content_range is not None or status == 206:
        parsed = parse_content_range(content_range)
        if parsed is None:
            return Verdict(fault="a partial answer without a valid Content-Range header")
        first, last, total = parsed
        if first != pos or last < first or (total is not None and last >= total):
            shown = f"{first}-{last}/{'*' if total is None else total}"
            return Verdict(fault=f"asked for bytes {pos}-{end - 1}, storage sent {shown}")
        consistent = length is None or length == last - first + 1
        return Verdict(stop=min(last + 1, end), claim=total, consistent=consistent)
    if pos > 0 and length == end - pos:
        return Verdict(fault=f"a 200 answer of exactly the {end - pos} bytes asked for, without Content-Range: "
                             "cannot tell a whole file from a relabelled partial answer")
    # At byte 0 a relabelled partial answer has the same first bytes as the whole file: readable, but a
    # length equal to the range asked is no evidence of the file's size.
    claim = None if length == end - pos else length
    return Verdict(skip=pos, stop=end, claim=claim, consistent=True, whole=True)
