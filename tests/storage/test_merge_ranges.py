"""``merge_ranges`` / ``slice_ranges``: every range gets exactly its bytes, whatever the nesting."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from fusion_stac.storage import merge_ranges, slice_ranges

DATA = bytes(range(256)) * 8

ranges_st = st.lists(st.tuples(st.integers(0, len(DATA)), st.integers(0, len(DATA))), max_size=12)


def test_a_range_nested_in_the_previous_one_does_not_shrink_the_block() -> None:
    # fsspec's merge_offset_ranges up to 2026.1 gives [(0, 20), (100, 180)] here
    wanted = [(0, 100), (100, 200), (150, 180), (10, 20)]
    blocks = merge_ranges(wanted)
    assert blocks == [(0, 200)]
    payloads = [DATA[s:e] for s, e in blocks]
    assert slice_ranges(wanted, blocks, payloads) == [DATA[s:e] for s, e in wanted]


@given(ranges_st, st.integers(0, 64))
def test_every_range_is_cut_exactly_from_disjoint_sorted_blocks(raw: list[tuple[int, int]], gap: int) -> None:
    wanted = [(min(a, b), max(a, b)) for a, b in raw]
    blocks = merge_ranges(wanted, max_gap=gap)
    for (_, end), (start, _) in itertools.pairwise(blocks):
        assert start > end + gap  # blocks closer than the gap would have been merged
    assert all(s < e for s, e in blocks)
    payloads = [DATA[s:e] for s, e in blocks]
    assert slice_ranges(wanted, blocks, payloads) == [DATA[s:e] if e > s else b"" for s, e in wanted]
