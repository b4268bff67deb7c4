"""Fixtures for the client tests: an in-process emulator, logged-in clients, regions and a finished run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fusion_stac.client import FusionClient
from fusion_stac.models import Data, Process, ProcessExecution

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
OTHER_EMAIL = "other@example.com"
OTHER_PASSWORD = "OtherPassword123!"
CLASSIFICATION = "Demo: Sentinel-2 Cloud Classification"


def start_emulator(**settings: Any) -> Any:
    """A separate emulator (use as a context manager) for tests that change its settings."""
    from fusion_stac.emulator import Emulator

    return Emulator(**settings)


@pytest.fixture(scope="session")
def client_emu(emulator: Any) -> Any:
    """The session's shared emulator (tests/conftest.py): instant executions, no faults."""
    return emulator


def new_client(emu: Any, **kwargs: Any) -> FusionClient:
    kwargs.setdefault("email", EMAIL)
    kwargs.setdefault("password", PASSWORD)
    kwargs.setdefault("poll_interval", 0.05)
    return FusionClient(emu.url, **kwargs)


@pytest.fixture
def client(client_emu: Any) -> Iterator[FusionClient]:
    with new_client(client_emu) as c:
        yield c


@pytest.fixture
def org_id(client: FusionClient) -> str:
    return client.organisation().id


def rectangle_geojson(path: Path, *, lon: float = -4.3, lat: float = 55.85, width_km: float = 10.0,
                      height_km: float = 10.0, name: str = "region") -> Path:
    """A one-polygon GeoJSON rectangle of about ``width_km`` x ``height_km`` (CRS84)."""
    import math

    dlon = width_km / (111.32 * math.cos(math.radians(lat)))
    dlat = height_km / 110.57
    ring = [[lon, lat], [lon + dlon, lat], [lon + dlon, lat + dlat], [lon, lat + dlat], [lon, lat]]
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": name}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    ]}
    path.write_text(json.dumps(doc))
    return path


@dataclass(frozen=True)
class FinishedRun:
    """A process run to completion on a grouped region (slices plus an aggregator)."""

    org_id: str
    region: Data
    process: Process
    group_id: str
    executions: list[ProcessExecution]


@pytest.fixture(scope="module")
def finished_run(client_emu: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FinishedRun]:
    """Upload a ~45 km square, run the classification on it (a grouped run), leave it for the tests."""
    client = new_client(client_emu)
    org = client.organisation().id
    region_file = rectangle_geojson(tmp_path_factory.mktemp("region") / "square.geojson",
                                    width_km=45, height_km=45, name="square")
    region = client.create_data(org, "Client test square", [region_file])
    draft = (client.new_process(org, CLASSIFICATION, "Client test run")
             .with_input(1, region)
             .with_options(latest_date=False, start_date="2021-03-27T00:00:00", end_date=None))
    process = draft.create()
    client.execute(org, process.id, wait=True)
    latest = client.latest_execution(org, process.id)
    assert latest.group_id is not None
    executions = list(client.iter_executions(org, process.id, group_id=latest.group_id))
    yield FinishedRun(org, region, client.get_process(org, process.id), latest.group_id, executions)
    client.delete_process(org, process.id)  # the shared emulator is left as we found it
    client.delete_data(org, region.id)
    client.close()
