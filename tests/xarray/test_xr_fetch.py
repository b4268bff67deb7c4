"""What GDAL's reads cost in requests: the first request's size, ranges across the header's end, the header cache."""

from __future__ import annotations

from typing import Any

import pytest

from fusion_stac.storage._broker import FileKey
from fusion_stac.xarray import FetchSettings
from fusion_stac.xarray._headers import Header, _HeaderCache
from fusion_stac.xarray._http import RemoteFile, coarse_first_request

KEY = FileKey("org", "data", "file")
DATA = bytes(range(256)) * 64  # 16 KiB


class FakeTransport:
    """Serves DATA and records every range asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int]] = []

    def read_range(self, key: FileKey, start: int, end: int, **_: Any) -> bytes:
        self.asked.append((start, end))
        return DATA[start:end]

    def read_ranges(self, key: FileKey, ranges: list[tuple[int, int]], **_: Any) -> list[bytes]:
        self.asked.extend(ranges)
        return [DATA[s:e] for s, e in ranges]


def _file(header: int, **settings: int) -> tuple[RemoteFile, FakeTransport]:
    transport = FakeTransport()
    remote = RemoteFile(transport, KEY, "test file", FetchSettings(**settings),  # type: ignore[arg-type]
                        Header(len(DATA), DATA[:header], None, True), [])
    return remote, transport


@pytest.mark.parametrize(("size", "shrink", "overviews", "expected"), [
    (None, 8, (), 1000),  # size unknown: no guess
    (64_000, 1, (), 1000), (64_000, 2, (), 1000), (64_000, 3, (2, 4), 1000),  # full size, or 1/2: header only
    # unknown levels: a full pyramid from the largest power of two not above the shrink
    (64_000, 4, (), 1000 + int(1.5 * 64_000 * 4 / 3 / 16)),
    (64_000, 7, (), 1000 + int(1.5 * 64_000 * 4 / 3 / 16)),
    (64_000, 8, (), 1000 + int(1.5 * 64_000 * 4 / 3 / 64)),
    # known levels: the one used (the coarsest not above the shrink) and every coarser one
    (64_000, 8, (2, 4), 1000 + int(1.5 * 64_000 / 16)),
    (64_000, 5, (2, 4, 8), 1000 + int(1.5 * 64_000 * (1 / 16 + 1 / 64))),
    (64_000, 16, (2,), 1000),  # the level used is 1/2
    (10_000_000, 4, (), 1000),  # more than coarse_bytes: header only
])
def test_first_request_size(size: int | None, shrink: int, overviews: tuple[int, ...], expected: int) -> None:
    settings = FetchSettings(header_bytes=1000, coarse_bytes=1_000_000)
    assert coarse_first_request(settings, size, shrink, overviews) == expected


def test_a_read_across_the_header_end_fetches_only_the_rest() -> None:
    remote, transport = _file(1000, readahead=0)
    remote.seek(900)
    assert remote.read(300) == DATA[900:1200]
    assert transport.asked == [(1000, 1200)]
    assert remote.read(10) == DATA[1200:1210] and transport.asked[-1] == (1200, 1210)


def test_ranges_across_the_header_end_fetch_only_the_rest() -> None:
    remote, transport = _file(1000, merge_gap=0)
    got = remote.get_byte_ranges([10, 990, 3000], [20, 500, 100])
    assert got == [DATA[10:30], DATA[990:1490], DATA[3000:3100]]
    assert transport.asked == [(1000, 1490), (3000, 3100)]


def test_header_cache_is_bounded_in_bytes() -> None:
    cache = _HeaderCache(capacity=10, max_bytes=100)
    keys = [FileKey("org", "data", str(i)) for i in range(4)]
    for key in keys[:3]:
        cache.put(key, Header(1000, b"x" * 40, None, True))
    assert cache.get(keys[0]) is None, "the oldest goes when 120 bytes exceed 100"
    assert cache.get(keys[1]) is not None and cache.get(keys[2]) is not None
    cache.put(keys[3], Header(1000, b"y" * 500, None, True))  # alone over the budget: kept, the others go
    assert cache.get(keys[3]) == Header(1000, b"y" * 500, None, True)
    assert cache.get(keys[1]) is None and cache.get(keys[2]) is None
    cache.put(keys[3], Header(1000, b"z" * 10, None, True))  # replacing an entry releases its bytes
    cache.put(keys[1], Header(1000, b"w" * 80, None, True))
    assert cache.get(keys[3]) == Header(1000, b"z" * 10, None, True) and cache.get(keys[1]) is not None
