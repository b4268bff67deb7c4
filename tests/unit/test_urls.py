"""The fusion:// grammar: round-trips for any names, and precise errors for bad paths."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fusion_stac._urls import (
    FusionPath,
    FusionURLError,
    data_url,
    file_url,
    is_uuid,
    parse,
    process_url,
    upload_url,
)

# Any printable name except the relative segments; '/', '%', '?', '#' included on purpose.
names = st.text(
    alphabet=st.characters(min_codepoint=32, blacklist_categories=("Cs",)), min_size=1, max_size=30
).filter(lambda s: s not in (".", "..") and "\x7f" not in s)
ids = st.uuids().map(str)


@given(org=names, data=names, file=names)
def test_upload_paths_round_trip(org: str, data: str, file: str) -> None:
    url = upload_url(org, data, file)
    parsed = parse(url)
    assert (parsed.organisation, parsed.section, parsed.data, parsed.file) == (org, "uploads", data, file)
    assert parsed.kind == "file"
    assert parse(parsed.path) == parsed  # protocol-less form, as fsspec passes it
    assert str(parsed) == url


@given(org=names, levels=st.lists(names, min_size=0, max_size=5))
def test_process_paths_round_trip(org: str, levels: list[str]) -> None:
    url = process_url(org, *levels)
    parsed = parse(url)
    assert parsed.segments == (org, "processes", *levels)
    expected_kind = ["section", "process", "execution", "component", "output", "file"][len(levels)]
    assert parsed.kind == expected_kind
    # child/parent walk the same tree
    if levels:
        assert parsed.parent.segments == parsed.segments[:-1]
        assert parsed.parent.child(levels[-1]) == parsed


@given(org=ids, data=ids, file=ids)
def test_short_form(org: str, data: str, file: str) -> None:
    parsed = parse(file_url(org, data, file))
    assert parsed.is_short_form and parsed.kind == "file"
    assert (parsed.organisation, parsed.data, parsed.file) == (org, data, file)
    assert parse(data_url(org, data)).kind == "data"


@given(name=names)
def test_segments_never_split(name: str) -> None:
    # however strange a name, it stays one segment
    assert parse(upload_url("org", name)).data == name


def test_root_and_levels() -> None:
    assert parse("fusion://").kind == "root"
    assert parse("").kind == "root"
    assert parse("fusion://Example Organisation").kind == "organisation"
    assert parse("fusion://org/uploads/").kind == "section"
    assert parse("Example Organisation/uploads/Glasgow/glasgow.geojson").file == "glasgow.geojson"
    assert parse("fusion://org/processes/p/latest").run == "latest"
    assert parse("fusion://org/processes/p/latest").kind == "run"
    assert parse("fusion://org/uploads/a%2Fb").data == "a/b"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("s3://bucket/key", "expected the fusion:// protocol"),
        ("fusion://org/bogus/x", "unknown section 'bogus'"),
        ("fusion://org/uploads/a/b/c", "too many segments under uploads/"),
        ("fusion://org/processes/p/e/c/o/f/extra", "too many segments under processes/"),
        ("fusion://org//uploads", "empty path segment"),
        ("fusion://org/uploads/..", "relative segment"),
        ("fusion://org/data/not-a-uuid", "is not a UUID"),
        ("fusion://org/uploads/%0A", "control character"),
    ],
)
def test_bad_paths_name_the_problem(url: str, fragment: str) -> None:
    with pytest.raises(FusionURLError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as info:
        parse(url)
    assert isinstance(info.value, ValueError)


def test_bad_children_and_builders() -> None:
    with pytest.raises(FusionURLError, match="unknown section"):
        FusionPath(organisation="o").child("nope")
    with pytest.raises(FusionURLError, match="is a file"):
        parse(upload_url("o", "d", "f")).child("x")
    with pytest.raises(FusionURLError, match="without the levels above"):
        process_url("o", None, "exec")
    with pytest.raises(FusionURLError):
        parse(123)  # type: ignore[arg-type]


def test_is_uuid() -> None:
    assert is_uuid(str(uuid.uuid4()))
    assert not is_uuid("latest") and not is_uuid(None) and not is_uuid("")
