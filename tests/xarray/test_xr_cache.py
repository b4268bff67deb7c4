"""What is kept on disk between processes: COG headers (by file id and ETag) and finished runs' metadata.

Several tests run the reader in fresh Python processes sharing one cache directory, and count the
requests each file received there (``FILE_STATS``) and on the storage server.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import World

from fusion_stac.xarray import open_mosaic
from fusion_stac.xarray._cache import DiskCache
from fusion_stac.xarray._headers import _DISK, _disk_key, cached_header, clear_headers
from fusion_stac.xarray._reader import close_handles

ROOT = Path(__file__).resolve().parents[2]
WINDOW = (slice(100, 200), slice(450, 600))  # touches the two top slices of the 2x2 grid

_READER = textwrap.dedent("""
    import hashlib, json, pickle, sys
    sys.path.insert(0, sys.argv[2])
    from fusion_stac.xarray import SignerStorage, open_mosaic
    from fusion_stac.xarray._http import FILE_STATS
    from xr_helpers import LocalSigner
    sources, base = pickle.load(open(sys.argv[1], "rb"))
    da = open_mosaic(items=sources, storage=SignerStorage(LocalSigner(base)))
    values = da[0, 100:200, 450:600].values
    stats = {k.file_id: v for k, v in FILE_STATS.snapshot().items()}
    print(json.dumps({"stats": stats, "md5": hashlib.md5(values.tobytes()).hexdigest()}))
""")


def _in_new_process(tmp_path: Path, world: World, cache: Path) -> dict[str, Any]:
    script = tmp_path / "reader.py"
    script.write_text(_READER)
    data = tmp_path / "sources.pickle"
    data.write_bytes(pickle.dumps((world.grid, world.server.base_url)))
    env = {**os.environ, "FUSION_STAC_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"}
    out = subprocess.run([sys.executable, str(script), str(data), str(Path(__file__).parent)], env=env,
                         capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr[-4000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_a_second_process_reads_a_window_without_header_requests(world: World, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _in_new_process(tmp_path, world, cache)
    world.server.reset()
    second = _in_new_process(tmp_path, world, cache)
    touched = {s.key.file_id for s in world.grid[:2]}
    assert set(first["stats"]) == set(second["stats"]) == touched
    assert all(n == 2 for n, _ in first["stats"].values()), first  # the header, then the tiles
    assert all(n == 1 for n, _ in second["stats"].values()), second  # the tiles only
    assert sum(world.server.requests.values()) == 2  # counted by storage too
    assert sum(b for _, b in second["stats"].values()) < sum(b for _, b in first["stats"].values())
    assert first["md5"] == second["md5"]
    direct = open_mosaic(items=world.grid, storage=world.storage())[0, WINDOW[0], WINDOW[1]].values
    np.testing.assert_array_equal(direct, world.grid_expected[WINDOW])


def _warm_disk(world: World) -> Any:
    """Read the window once (headers go to disk), then forget everything this process holds."""
    expected = open_mosaic(items=world.grid, storage=world.storage())[0, WINDOW[0], WINDOW[1]].values
    close_handles()
    clear_headers(disk=False)
    world.server.reset()
    return expected


def test_a_changed_file_is_read_again_not_served_from_the_cache(world: World) -> None:
    expected = _warm_disk(world)
    changed = world.grid[0]
    path = world.root / world.name(changed)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # storage's ETag for it changes
    try:
        got = open_mosaic(items=world.grid, storage=world.storage())[0, WINDOW[0], WINDOW[1]].values
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(got, world.grid_expected[WINDOW])
        # The changed file: the tiles (refused: another ETag), then its header and tiles again.
        assert world.server.requests[world.name(changed)] == 3
        assert world.server.requests[world.name(world.grid[1])] == 1
        header = cached_header(changed.key)
        assert header is not None and header.verified and header.etag == f'"{st.st_mtime_ns + 10**9}"'
        close_handles()
        clear_headers(disk=False)
        world.server.reset()
        again = open_mosaic(items=world.grid, storage=world.storage())[0, WINDOW[0], WINDOW[1]].values
        np.testing.assert_array_equal(again, expected)
        assert world.server.requests[world.name(changed)] == 1, "the new version is on disk now"
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_damaged_entry_is_a_miss(world: World) -> None:
    expected = _warm_disk(world)
    directory = _DISK.directory()
    assert directory is not None
    entry = directory / _DISK._name(_disk_key(world.grid[0].key))
    raw = bytearray(entry.read_bytes())
    raw[-1] ^= 0xFF
    entry.write_bytes(bytes(raw))
    got = open_mosaic(items=world.grid, storage=world.storage())[0, WINDOW[0], WINDOW[1]].values
    np.testing.assert_array_equal(got, expected)
    assert world.server.requests[world.name(world.grid[0])] == 2  # header and tiles from storage
    assert world.server.requests[world.name(world.grid[1])] == 1


def test_the_cache_can_be_turned_off(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSION_STAC_CACHE", "off")
    open_mosaic(items=world.grid, storage=world.storage())[0, WINDOW[0], WINDOW[1]].values  # noqa: B018
    close_handles()
    clear_headers(disk=False)
    world.server.reset()
    open_mosaic(items=world.grid, storage=world.storage())[0, WINDOW[0], WINDOW[1]].values  # noqa: B018
    assert [world.server.requests[world.name(s)] for s in world.grid[:2]] == [2, 2]


def test_disk_cache_is_bounded_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSION_STAC_CACHE_DIR", str(tmp_path))
    cache = DiskCache("test", max_bytes=10_000)
    for i in range(40):
        cache.put(f"k{i}", bytes([i]) * 1000)
        os.utime(tmp_path / "test" / cache._name(f"k{i}"), (i, i))  # ages in order of writing
    cache.prune()
    files = list((tmp_path / "test").iterdir())
    assert sum(f.stat().st_size for f in files) <= 10_000
    assert not any(f.name.startswith(".tmp-") for f in files)
    assert cache.get("k0") is None and cache.get("k39") == bytes([39]) * 1000  # oldest went first
    monkeypatch.setenv("FUSION_STAC_CACHE", "0")
    assert cache.get("k39") is None


def test_metadata_end_is_the_first_tile(world: World) -> None:
    import rasterio

    from fusion_stac.xarray._tiff import tiff_data_start

    path = world.root / world.name(world.grid[0])
    data = path.read_bytes()
    start = tiff_data_start(data[:65536])
    with rasterio.open(path) as ds:
        offsets = [int(ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1))
                   for r in range(ds.height // 128) for c in range(ds.width // 128)]
        for level in range(len(ds.overviews(1))):
            with rasterio.open(path, overview_level=level) as ov:
                offsets.append(int(ov.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1)))
    assert start == min(offsets)
    assert tiff_data_start(data[:200]) is None  # the offset arrays are not all there
    assert tiff_data_start(b"not a tiff" * 10) is None


_OPEN_ONLY = textwrap.dedent("""
    import json, pickle, sys, threading
    sys.path.insert(0, sys.argv[2])
    from fusion_stac.xarray import SignerStorage, open_mosaic
    from xr_helpers import LocalSigner
    sources, base = pickle.load(open(sys.argv[1], "rb"))
    before = {t.name for t in threading.enumerate()}
    da = open_mosaic(items=sources, storage=SignerStorage(LocalSigner(base)))
    opened = {t.name for t in threading.enumerate()} - before
    da[0, :10, :10].values
    read = {t.name for t in threading.enumerate()} - before
    print(json.dumps({"opened": sorted(opened), "read": sorted(read)}))
""")


def test_opening_starts_no_thread(world: World, tmp_path: Path) -> None:
    """Reader threads and GDAL's warm-up start with the first read, not at open time (fresh process)."""
    script = tmp_path / "open_only.py"
    script.write_text(_OPEN_ONLY)
    data = tmp_path / "sources.pickle"
    data.write_bytes(pickle.dumps((world.grid, world.server.base_url)))
    env = {**os.environ, "FUSION_STAC_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(script), str(data), str(Path(__file__).parent)], env=env,
                         capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr[-4000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["opened"] == []
    assert any(name.startswith("fusion-read") for name in got["read"])
