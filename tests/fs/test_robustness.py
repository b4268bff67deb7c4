"""Reads that cross URL expiry, meet refused URLs, resets and truncated bodies still return every byte."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fusion_stac.emulator import FaultConfig

from .conftest import World, make_fs


@pytest.fixture
def short_urls(emu: Any) -> Iterator[Any]:
    """Download URLs that live one second (restored afterwards)."""
    emu.configure(url_lifetime=1.0)
    yield emu
    emu.configure(url_lifetime=3600.0)


@pytest.fixture
def faulty_storage(emu: Any) -> Iterator[Any]:
    emu.configure(storage_faults=FaultConfig(reset=0.1, truncate=0.1, error_503=0.05), seed=7)
    yield emu
    emu.configure(storage_faults=None)


def slow_random_read(f: Any, size: int, seconds: float, seed: int) -> dict[int, bytes]:
    """Small reads at random places, spread over ``seconds``: many requests, each a new lease."""
    rng = random.Random(seed)
    out: dict[int, bytes] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        offset = rng.randrange(size)
        f.seek(offset)
        out[offset] = f.read(rng.choice([10, 3000, 70_000]))
        time.sleep(0.05)
    return out


def test_slow_reader_crosses_url_expiry(world: World, short_urls: Any) -> None:
    fs = make_fs(world.url, listings_expiry_time=3600)  # its own connection, fresh URL cache
    local = world.cog.read_bytes()
    with fs.open(world.cog_path, block_size=32 * 1024) as f:
        for offset, data in slow_random_read(f, len(local), 3.2, seed=1).items():
            assert data == local[offset:offset + len(data)]
        f.seek(0)
        assert f.read() == local  # and a whole pass after all that
    stats = fs.stats
    # URLs live 1-2 s (the emulator rounds expiry up to a whole second): the read outlived at least one
    assert stats["urls_signed"] >= 2 and stats["url_refreshes"] >= 1, stats


def test_refused_urls_are_resigned_and_the_range_retried(world: World, short_urls: Any) -> None:
    """This machine's clock runs 30 s slow: the broker believes URLs live longer than they do, so
    storage refuses them as expired (403); the read re-signs and gets every byte."""
    fs = make_fs(world.url, listings_expiry_time=3601, url_margin=0.0)
    broker = fs._conn.broker
    broker._wall = lambda: time.time() - 30.0
    local = world.cog.read_bytes()
    with fs.open(world.cog_path, block_size=32 * 1024) as f:
        for offset, data in slow_random_read(f, len(local), 3.2, seed=2).items():
            assert data == local[offset:offset + len(data)]
    time.sleep(2.1)  # whatever URL is cached has now expired (they live 1-2 s)
    assert fs.cat_ranges([world.cog_path] * 3, [0, 1000, 50_000], [10, 2000, 60_000]) == [
        local[0:10], local[1000:2000], local[50_000:60_000]]
    stats = fs.stats
    assert stats["url_refreshes"] >= 2, stats
    statuses = short_urls.stats()["statuses"]
    assert statuses.get("403", 0) >= 2


def test_resets_truncations_and_503s_never_corrupt_data(world: World, faulty_storage: Any, tmp_path: Any) -> None:
    fs = make_fs(world.url, listings_expiry_time=3602, retries={"attempts": 12, "backoff": 0.005})
    local = world.cog.read_bytes()
    with fs.open(world.cog_path, block_size=16 * 1024) as f:
        pos, chunks = 0, []
        while pos < len(local):
            chunks.append(f.read(5000))
            pos += 5000
        assert b"".join(chunks) == local
    starts = list(range(0, len(local), 9000))
    ends = [s + 700 for s in starts]
    assert fs.cat_ranges([world.cog_path] * len(starts), starts, ends) == [local[s:e] for s, e in zip(starts, ends, strict=True)]
    fs.get_file(world.cog_path, str(tmp_path / "copy.tif"))
    assert hashlib.sha256((tmp_path / "copy.tif").read_bytes()).digest() == hashlib.sha256(local).digest()
    faults = faulty_storage.stats()["faults"]
    assert fs.stats["retries"] > 0 and sum(faults.values()) > 0, (fs.stats, faults)
