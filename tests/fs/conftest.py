"""Fixtures for ``fusion://``: an emulator with uploads and a finished process run, and file systems on it."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
ENV_NAMES = ("FUSION_PLATFORM_API_URL", "FUSION_PLATFORM_EMAIL", "FUSION_PLATFORM_USER_ID",
             "FUSION_PLATFORM_PASSWORD", "FUSION_STAC_TOKEN_FILE", "NETRC")


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No credentials from the developer's environment; a private token cache file."""
    saved = {k: os.environ.get(k) for k in ENV_NAMES}
    for name in ENV_NAMES:
        os.environ.pop(name, None)
    token_file = tmp_path_factory.mktemp("tokens") / "tokens.json"
    os.environ["FUSION_STAC_TOKEN_FILE"] = str(token_file)
    os.environ["NETRC"] = str(tmp_path_factory.mktemp("netrc") / "absent-netrc")
    yield token_file
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def write_cog(path: Path, size: int = 512, block: int = 128, seed: int = 0) -> Path:
    """A small tiled, compressed float32 COG with overviews (deterministic content)."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype("float32")
    data = (np.sin(x / 17.0) * np.cos(y / 23.0) * 100 + rng.normal(0, 1, (size, size))).astype("float32")
    profile = {
        "driver": "COG", "width": size, "height": size, "count": 1, "dtype": "float32",
        "crs": "EPSG:32630", "transform": from_origin(400000, 6200000, 10, 10),
        "compress": "deflate", "blocksize": block,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def rectangle_geojson(path: Path, *, lon: float = -4.3, lat: float = 55.85, km: float = 8.0) -> Path:
    dlon = km / (111.32 * math.cos(math.radians(lat)))
    dlat = km / 110.57
    ring = [[lon, lat], [lon + dlon, lat], [lon + dlon, lat + dlat], [lon, lat + dlat], [lon, lat]]
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "r"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}
    path.write_text(json.dumps(doc))
    return path


@dataclass(frozen=True)
class World:
    """What the session emulator holds for the fs tests."""

    url: str
    org_name: str
    org_id: str
    cog: Path  # local copy of the uploaded COG
    cog_path: str  # fusion path of the uploaded COG (by names)
    cog_info: dict[str, Any]
    csv: Path
    twin_ids: tuple[str, str]  # two uploads both named "twin"
    process_name: str
    process_id: str


@pytest.fixture(scope="session")
def emu() -> Iterator[Any]:
    from fusion_stac.emulator import Emulator

    with Emulator(execution_duration=0) as server:
        yield server


def make_fs(url: str, **options: Any) -> Any:
    from fusion_stac.fs import FusionFileSystem

    options.setdefault("email", EMAIL)
    options.setdefault("password", PASSWORD)
    return FusionFileSystem(api_url=url, skip_instance_cache=True, **options)


@pytest.fixture(scope="session")
def world(emu: Any, tmp_path_factory: pytest.TempPathFactory) -> World:
    from fusion_stac.client import FusionClient

    local = tmp_path_factory.mktemp("world")
    cog = write_cog(local / "dem.tif")
    csv = local / "table.csv"
    csv.write_text("a,b\n1,2\n3,4\n")
    client = FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.02)
    org = client.organisation()
    client.create_data(org.id, "Elevation model", [cog])
    client.create_data(org.id, "tables", [csv])
    twin_a = client.create_data(org.id, "twin", [csv])
    twin_b = client.create_data(org.id, "twin", [csv])
    region = client.create_data(org.id, "fs region", [rectangle_geojson(local / "region.geojson")])
    process = (client.new_process(org.id, "Elevation", "fs elevation").with_input(1, region)
               .with_option("resolution", 100).create())
    client.execute(org.id, process.id, wait=True)
    fs = make_fs(emu.url)
    cog_path = f"{org.name}/uploads/Elevation model/dem.tif"
    world = World(emu.url, org.name or "", org.id, cog, cog_path, fs.info(cog_path), csv,
                  (twin_a.id, twin_b.id), "fs elevation", process.id)
    client.close()
    return world


@pytest.fixture
def fs(world: World) -> Any:
    return make_fs(world.url)
