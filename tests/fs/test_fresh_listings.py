"""``latest`` and a process's runs are never answered from a stale listing: listings belong to the file
system instance, and those of things that change expire after ``listings_ttl`` (10 s by default), while
those below a finished execution are kept."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fusion_stac.fs._cache import DEFAULT_LISTINGS_TTL, ListingCache

from .conftest import EMAIL, PASSWORD, World, make_fs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_listing_cache_ages_what_changes_and_keeps_what_is_final() -> None:
    clock = Clock()
    cache = ListingCache(clock=clock)
    assert cache.ttl == DEFAULT_LISTINGS_TTL == 10.0 and cache.final_ttl is None
    cache["org/processes/p"] = ["run 1"]
    cache.mark_final("org/processes/p/e1")
    cache["org/processes/p/e1"] = ["component"]
    cache["org/processes/p/e1/c/o"] = ["file"]
    clock.now += 9.9
    assert cache["org/processes/p"] == ["run 1"]
    clock.now += 0.2
    assert "org/processes/p" not in cache
    clock.now += 10_000
    assert cache["org/processes/p/e1"] == ["component"] and "org/processes/p/e1/c/o" in cache
    assert not cache.is_final("org/processes/p/e10")  # a prefix is a path, not a string prefix
    off = ListingCache(enabled=False)
    off["x"] = 1
    assert "x" not in off
    zero = ListingCache(ttl=0)
    zero["x"] = 1
    assert "x" not in zero


@pytest.fixture
def own_process(world: World) -> Iterator[tuple[Any, str, str]]:
    """A process of its own (so running it again changes nobody else's ``latest``), run once."""
    from fusion_stac.client import FusionClient

    client = FusionClient(world.url, email=EMAIL, password=PASSWORD, poll_interval=0.02)
    region = client.find_data(world.org_id, "fs region")
    process = (client.new_process(world.org_id, "Elevation", "fs freshness").with_input(1, region)
               .with_option("resolution", 100).create())
    client.execute(world.org_id, process.id, wait=True)
    yield client, world.org_id, process.id
    client.close()


def test_a_new_instance_lists_afresh(world: World, own_process: tuple[Any, str, str]) -> None:
    client, org_id, process_id = own_process
    base = f"{org_id}/processes/{process_id}"
    first = make_fs(world.url)
    before = first.find(base)
    runs_before = first.ls(base, detail=False)
    client.execute(org_id, process_id, wait=True)
    second = make_fs(world.url)  # same settings: same login, but its own listings
    assert second.dircache is not first.dircache
    second.reset_stats()
    after = second.find(base)
    assert second.stats["api_requests"] > 0
    assert len(second.ls(base, detail=False)) > len(runs_before) and len(after) > len(before)
    latest = second.info(f"{base}/latest")
    # an unsliced run: `latest` is its one execution, also named `latest/execution`
    assert latest["group_id"] is None and len(latest["execution_ids"]) == 1
    assert second.info(f"{base}/latest/execution")["id"] == latest["execution_ids"][0]
    with pytest.raises(FileNotFoundError, match="slice-N"):
        second.info(f"{base}/latest/not-a-member")
    assert not set(latest["execution_ids"]) & {p.split("/")[3] for p in before}  # the new run, not the old


def test_runs_and_latest_expire_but_finished_outputs_stay(world: World, own_process: tuple[Any, str, str]) -> None:
    client, org_id, process_id = own_process
    base = f"{org_id}/processes/{process_id}"
    fs = make_fs(world.url)
    clock = Clock()
    fs.dircache._clock = fs._nodes._clock = clock
    runs = fs.ls(base, detail=False)
    old_latest = fs.info(f"{base}/latest")
    finished = f"{base}/{old_latest['execution_ids'][0]}"
    finished_files = fs.find(finished)
    client.execute(org_id, process_id, wait=True)
    fs.reset_stats()
    assert fs.ls(base, detail=False) == runs and fs.info(f"{base}/latest") == old_latest  # within 10 s: cached
    assert fs.stats["api_requests"] == 0
    clock.now += DEFAULT_LISTINGS_TTL + 0.5
    assert fs.find(finished) == finished_files and fs.stats["api_requests"] == 0  # never changes: kept
    new_latest = fs.info(f"{base}/latest")
    assert new_latest["execution_ids"] != old_latest["execution_ids"]
    assert len(fs.ls(base, detail=False)) > len(runs) and fs.stats["api_requests"] > 0
    newest = fs.find(f"{base}/latest")
    assert newest
    assert {fs.info(f.rsplit("/", 3)[0])["id"] for f in newest} == set(new_latest["execution_ids"])
