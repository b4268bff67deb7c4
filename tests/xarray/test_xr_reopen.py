"""Reopening a time series in a new process costs the executions listing, plus only what is new."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"

_OPEN = textwrap.dedent("""
    import hashlib, json, sys, warnings
    warnings.simplefilter("ignore")
    from fusion_stac.client import FusionClient
    from fusion_stac.xarray import open_mosaic, open_timeseries
    url, org, pid, what = sys.argv[1:5]
    client = FusionClient(url, email="me@org.com", password="MyPassword123!")
    process = client.get_process(org, pid)
    client.stats.reset()
    if what == "timeseries":
        da = open_timeseries(client, process)
    else:
        da = open_mosaic(client, process=process)
    requests = client.stats.requests - client.stats.signed_requests
    values = da.values
    steps = [hashlib.md5(v.tobytes()).hexdigest() for v in (values if what == "timeseries" else [values])]
    print(json.dumps({"requests": requests, "steps": steps, "times": [str(t) for t in da.coords.get("time", [])]}))
""")


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from fusion_stac.emulator import Emulator

    with Emulator(execution_duration=0, resolution_m=2000.0) as emulator:
        yield emulator


def _open(tmp: Path, emu: Any, org: str, process: str, cache: Path, what: str = "timeseries") -> dict[str, Any]:
    script = tmp / "open.py"
    script.write_text(_OPEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUSION_PLATFORM_")}
    env.update({"FUSION_STAC_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT),
                "FUSION_STAC_TOKEN_FILE": str(tmp / "tokens.json"), "NETRC": str(tmp / "no-netrc")})
    out = subprocess.run([sys.executable, str(script), emu.url, org, process, what], env=env, capture_output=True,
                         text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_reopening_costs_the_listing_plus_new_runs(emu: Any, tmp_path: Path) -> None:
    import sys as _sys

    _sys.path.insert(0, str(ROOT / "benchmarks"))
    from traversal import square_region  # type: ignore[import-not-found]

    from fusion_stac.client import FusionClient

    client = FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.02)
    org = client.organisation().id
    region = client.create_data(org, "Reopen square", [square_region(tmp_path / "square.geojson")])
    process = client.new_process(org, "Elevation", "Reopen DEM").with_input(1, region).create()
    for _ in range(2):
        client.execute(org, process.id, wait=True)
    slices, _ = client.group_executions(org, process.id, client.latest_execution(org, process.id).group_id or "")
    assert len(slices) == 16
    cache = tmp_path / "cache"

    cold = _open(tmp_path, emu, org, process.id, cache)
    again = _open(tmp_path, emu, org, process.id, cache)
    listing = 1  # 2 runs x 17 executions fit one page
    assert again["requests"] == listing, (cold, again)
    assert again["steps"] == cold["steps"] and again["times"] == cold["times"]
    per_run = (cold["requests"] - listing) // 2
    assert cold["requests"] == listing + 2 * per_run and per_run > 1

    client.execute(org, process.id, wait=True)  # a new run
    grown = _open(tmp_path, emu, org, process.id, cache)
    assert grown["requests"] == listing + per_run, (cold, grown)
    assert grown["steps"][:2] == cold["steps"] and grown["times"][:2] == cold["times"]
    fresh = _open(tmp_path, emu, org, process.id, tmp_path / "other-cache")
    assert fresh["steps"] == grown["steps"] and fresh["times"] == grown["times"]

    # The latest run as a mosaic: its one-execution listing, nothing else (the run is known).
    mosaic = _open(tmp_path, emu, org, process.id, cache, what="mosaic")
    assert mosaic["requests"] == 1 and mosaic["steps"] == grown["steps"][-1:]
    client.close()


def test_a_changed_execution_is_walked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from fusion_stac.xarray import _platform

    monkeypatch.setenv("FUSION_STAC_CACHE_DIR", str(tmp_path))
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    members = [SimpleNamespace(id=f"e{i}", updated_at=t0, progress=100, success=True) for i in range(3)]
    item = {"type": "Feature", "id": "i1", "properties": {"datetime": "2026-01-01T00:00:00Z"},
            "assets": {"data": {"href": "fusion://o/d/f", "type": "image/tiff", "raster:bands": [{}]}}}
    item_obj = SimpleNamespace(to_dict=lambda **_: item)
    _platform._store_run("k", members, 100, None, [item_obj])
    assert _platform._cached_run("k", members, True) is not None
    assert _platform._cached_run("k", members[:1], False) is not None  # one member known: it matches
    assert _platform._cached_run("k", members[:2], True) is None  # a member went
    changed = [*members[:2], SimpleNamespace(id="e2", updated_at=t0.replace(hour=1), progress=100, success=True)]
    assert _platform._cached_run("k", changed, True) is None  # modified since
    running = [*members[:2], SimpleNamespace(id="e2", updated_at=t0, progress=50, success=None)]
    _platform._store_run("r", running, 50, None, [item_obj])
    assert _platform._cached_run("r", running, True) is None  # a running run is never kept
    cached = _platform.CachedItem.from_dict(item)
    assert cached.assets["data"].extra_fields == {"raster:bands": [{}]} and cached.datetime == t0
