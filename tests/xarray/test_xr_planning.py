"""Planning a read: our arithmetic for pasted slices agrees with odc-geo's general computation."""

from __future__ import annotations

import pytest
from affine import Affine
from hypothesis import example, given, settings
from hypothesis import strategies as st
from odc.geo.geobox import GeoBox
from odc.geo.overlap import compute_reproject_roi

from fusion_stac.xarray._reader import _paste_info

RES = 30.0
X0, Y0 = 300000.0, 5790000.0


def _grid(shape: tuple[int, int], res: float, col: float, row: float, crs: str = "EPSG:32630") -> GeoBox:
    return GeoBox(shape, Affine(res, 0, X0 + col * RES, 0, -res, Y0 - row * RES), crs)


def _same(src: GeoBox, dst: GeoBox, ttol: float) -> None:
    ours = _paste_info(src, dst, ttol)
    theirs = compute_reproject_roi(src, dst, ttol=ttol)
    if ours is None:
        # we leave to odc-geo whatever is not a paste
        return
    assert theirs.paste_ok
    assert (ours.roi_src, ours.roi_dst, ours.read_shrink) == (theirs.roi_src, theirs.roi_dst, theirs.read_shrink)
    assert ours.scale == pytest.approx(theirs.scale, rel=1e-9)
    assert tuple(ours.scale2.xy) == pytest.approx(tuple(theirs.scale2.xy), rel=1e-9)


@settings(max_examples=400, deadline=None)
@given(
    src_shape=st.tuples(st.integers(1, 300), st.integers(1, 300)),
    dst_shape=st.tuples(st.integers(1, 300), st.integers(1, 300)),
    zoom=st.sampled_from([1, 1, 2, 3, 4, 8, 16, 1.5, 0.5, 2.0000001, 2.9999]),
    col=st.integers(-400, 400),
    row=st.integers(-400, 400),
    shift=st.sampled_from([0.0, 0.0, 0.01, 0.3, 0.5, 0.95, -0.02]),
    ttol=st.sampled_from([0.9, 0.05]),
)
@example(src_shape=(256, 256), dst_shape=(512, 512), zoom=8, col=0, row=0, shift=0.0, ttol=0.9)
@example(src_shape=(2048, 2048), dst_shape=(1024, 1024), zoom=1, col=1536, row=1536, shift=0.0, ttol=0.9)
def test_paste_windows_match_odc_geo(src_shape: tuple[int, int], dst_shape: tuple[int, int], zoom: float,
                                     col: int, row: int, shift: float, ttol: float) -> None:
    src = _grid(src_shape, RES, 0, 0)
    dst = _grid(dst_shape, RES * zoom, col + shift, row - shift)
    _same(src, dst, ttol)


def test_the_usual_cases_take_the_fast_path() -> None:
    """A slice in its own mosaic, a window across it, and its 1/8 overview are all pastes."""
    src = _grid((2048, 2048), RES, 2048, 2048)
    for dst in (_grid((8192, 8192), RES, 0, 0), _grid((1024, 1024), RES, 3584, 3584), _grid((1024, 1024), RES * 8, 0, 0)):
        info = _paste_info(src, dst, 0.9)
        assert info is not None and info.paste_ok
        _same(src, dst, 0.9)
    assert _paste_info(src, _grid((1024, 1024), RES * 8, 0, 0), 0.9).read_shrink == 8  # type: ignore[union-attr]


def test_anything_else_is_left_to_odc_geo() -> None:
    src = _grid((512, 512), RES, 0, 0)
    assert _paste_info(src, _grid((512, 512), RES, 0, 0, crs="EPSG:32631"), 0.9) is None  # another CRS
    assert _paste_info(src, _grid((512, 512), RES * 1.5, 0, 0), 0.9) is None  # non-integer scale
    assert _paste_info(src, _grid((512, 512), RES, 0.5, 0), 0.05) is None  # half-pixel shift, tight tolerance
    rotated = GeoBox((512, 512), Affine(RES, 0.1, X0, 0, -RES, Y0), "EPSG:32630")
    assert _paste_info(src, rotated, 0.9) is None
    flipped = GeoBox((512, 512), Affine(RES, 0, X0, 0, RES, Y0 - 512 * RES), "EPSG:32630")
    assert _paste_info(src, flipped, 0.9) is None
