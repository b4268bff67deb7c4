"""Property tests of the ``fusion://`` grammar and of the names files get on disk, beyond the
round-trips of ``tests/unit/test_urls.py``: any text either parses or fails with the typed error;
what parses is a fixed point of format/parse and never holds a relative or control segment; listed
labels are unique and one segment each; local names derived from server names stay inside their
directory, however hostile the name.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from fusion_stac._urls import PREFIX, FusionPath, FusionURLError, parse, quote_segment
from fusion_stac.client import safe_file_name
from fusion_stac.fs._listing import _label_children

# Text biased towards what breaks path handling.
pieces = st.sampled_from([*"ab/.%?#\\:~ \x00\n\t\x7fé", "%2F", "%2e", "..", "%00", "%"])
nasty = st.lists(pieces, max_size=15).map("".join)
anything = st.one_of(st.text(max_size=40), nasty, nasty.map(lambda s: PREFIX + s), st.text().map(lambda s: "s3://" + s))


@given(text=anything)
def test_any_text_parses_or_fails_with_the_typed_error(text: str) -> None:
    try:
        parsed = parse(text)
    except FusionURLError as exc:
        assert isinstance(exc, ValueError) and str(exc)
        return
    for segment in parsed.segments:
        assert segment not in ("", ".", "..")
        assert not any(ord(c) < 32 for c in segment)
    # a fixed point: formatting and parsing again gives the same path, and formatting is stable
    again = parse(parsed.url)
    assert again == parsed and again.url == parsed.url and parse(parsed.path) == parsed


@given(segment=st.text(max_size=30))
def test_a_quoted_segment_never_splits_or_escapes(segment: str) -> None:
    quoted = quote_segment(segment)
    assert not set(quoted) & set("/?#") and not any(ord(c) < 32 or ord(c) == 127 for c in quoted)


@given(names=st.lists(st.tuples(st.uuids().map(str), st.one_of(st.none(), nasty, st.text(max_size=10))),
                      max_size=12, unique_by=lambda t: t[0]))
def test_listed_labels_are_unique_single_segments(names: list[tuple[str, str | None]]) -> None:
    labels = _label_children(names)
    assert len(set(labels)) == len(labels)
    parent = FusionPath(organisation="org", section="uploads")
    for (item_id, name), label in zip(names, labels, strict=True):
        child = parse(f"{parent.path}/{label}")
        assert child.kind == "data" and child.parent == parent
        assert child.data in (item_id, name)  # the label is the name where it can be, else the id


@given(name=st.one_of(nasty, st.text(max_size=30), st.none()), fallback=st.one_of(nasty, st.uuids().map(str)))
def test_local_names_from_the_server_stay_inside_the_destination(name: str | None, fallback: str) -> None:
    local = safe_file_name(name, fallback)
    assert local and local not in (".", "..")
    assert "/" not in local and "\\" not in local and os.sep not in local
    assert not any(ord(c) < 32 or ord(c) == 127 for c in local)
    dest = Path("/dest/dir")
    target = dest / local
    assert target.parent == dest and os.path.normpath(target) == str(target)
    if name is not None and name == local:
        assert local == name.rsplit("/", 1)[-1]  # a harmless name is kept as it is
