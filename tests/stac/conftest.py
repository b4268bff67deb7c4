"""A populated emulator for the STAC tests: an upload, a single execution and a grouped one over two UTM zones."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
CLASSIFICATION = "Demo: Sentinel-2 Cloud Classification"
THAMES = Path(__file__).parents[2] / "fusion_stac" / "emulator" / "regions" / "thames.geojson"


def new_client(emu: Any, **kwargs: Any) -> Any:
    from fusion_stac.client import FusionClient

    return FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.05, **kwargs)


def write_geotiff(path: Path, *, epsg: int = 32630, x0: float = 690000.0, y0: float = 5720000.0,
                  width: int = 40, height: int = 30, res: float = 30.0) -> Path:
    """A tiny tiled uint16 GeoTIFF with overviews and a nodata value."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    data = (np.arange(width * height, dtype="uint32").reshape(height, width) % 997 + 1).astype("uint16")
    data[0, 0] = 0
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint16",
                       crs=f"EPSG:{epsg}", transform=from_origin(x0, y0, res, res), nodata=0, tiled=True,
                       blockxsize=16, blockysize=16) as dst:
        dst.write(data, 1)
        dst.build_overviews([2])
    return path


def write_square(path: Path, lon: float, lat: float, size: float) -> Path:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "square"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    return path


@dataclass(frozen=True)
class World:
    emu: Any
    org_id: str
    org_name: str
    upload: Any  # Data
    upload_tif: Path
    single_process: Any  # Process
    single_execution: Any  # ProcessExecution
    group_process: Any  # Process
    group_id: str

    def client(self, **kwargs: Any) -> Any:
        return new_client(self.emu, **kwargs)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from fusion_stac.emulator import Emulator

    tmp = tmp_path_factory.mktemp("stac-world")
    with Emulator(execution_duration=0) as emu:
        client = new_client(emu)
        org = client.organisation()
        tif = write_geotiff(tmp / "demo.tif")
        upload = client.create_data(org.id, "Demo upload", [tif])
        small = client.create_data(org.id, "Small square", [write_square(tmp / "small.geojson", -0.1, 51.5, 0.05)])
        thames = client.create_data(org.id, "Thames", [THAMES])
        single = client.new_process(org.id, "Elevation", "Small elevation").with_input(1, small).create()
        client.execute(org.id, single.id, wait=True)
        single_ex = client.latest_execution(org.id, single.id)
        grouped = (client.new_process(org.id, CLASSIFICATION, "Thames classification").with_input(1, thames)
                   .with_options(latest_date=False, start_date="2021-03-27T00:00:00", end_date=None).create())
        client.execute(org.id, grouped.id, wait=True)
        latest = client.latest_execution(org.id, grouped.id)
        assert single_ex.group_id is None, "the small square should run as one execution"
        assert latest.group_id is not None, "the Thames region should be sliced into a group"
        client.close()
        yield World(emu, org.id, org.name or "", upload, tif, single, single_ex, grouped, latest.group_id)


@pytest.fixture
def client(world: World) -> Iterator[Any]:
    c = world.client()
    yield c
    c.close()
