"""A populated emulator (an upload, a grouped run) served as a STAC API by uvicorn on a loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

pytest.importorskip("stac_fastapi.api", reason="the server extra is not installed")

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
OTHER_EMAIL = "other@example.com"
OTHER_PASSWORD = "OtherPassword123!"
CLASSIFICATION = "Demo: Sentinel-2 Cloud Classification"
ROOT = Path(__file__).parents[2]
THAMES = Path(__file__).parents[2] / "fusion_stac" / "emulator" / "regions" / "thames.geojson"
URL_LIFETIME = 2.0  # seconds a signed storage URL lives: reads 5 s later need fresh ones


def new_client(emu: Any, email: str = EMAIL, password: str = PASSWORD, **kwargs: Any) -> Any:
    from fusion_stac.client import FusionClient

    return FusionClient(emu.url, email=email, password=password, poll_interval=0.05, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """``fusion-stac serve`` in its own process on a free loopback port (as users run it: GDAL and the
    other readers in the test process never share a process with the server)."""

    def __init__(self, emu: Any, index: Path, *options: str, email: str = EMAIL, password: str = PASSWORD,
                 stdin: int | None = None, log: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "fusion_stac", "serve", "--api-url", emu.url, "--no-progress",
                     "--port", str(self.port), "--index", str(index), "--refresh", "3600", *options]
        self.env = {**os.environ, "FUSION_PLATFORM_EMAIL": email, "FUSION_PLATFORM_PASSWORD": password,
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.log = log or index.with_suffix(".log")
        self.stdin = stdin
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Served:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.args, env=self.env, stdin=self.stdin, stdout=log,
                                            stderr=subprocess.STDOUT)
        for _ in range(1200):
            if self.process.poll() is not None:
                raise RuntimeError(f"fusion-stac serve exited: {self.log.read_text()[-2000:]}")
            try:
                requests.get(self.url + "/_mgmt/ping", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("fusion-stac serve did not start")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass(frozen=True)
class World:
    emu: Any
    org_id: str
    upload_id: str
    upload_tif: Path
    process_id: str
    group_id: str
    other_org_id: str
    other_data_id: str
    other_file_id: str


def write_geotiff(path: Path) -> Path:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    data = (np.arange(40 * 30, dtype="uint32").reshape(30, 40) % 997 + 1).astype("uint16")
    with rasterio.open(path, "w", driver="GTiff", width=40, height=30, count=1, dtype="uint16", crs="EPSG:32630",
                       transform=from_origin(690000.0, 5720000.0, 30.0, 30.0), nodata=0, tiled=True,
                       blockxsize=16, blockysize=16) as dst:
        dst.write(data, 1)
    return path


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from fusion_stac.emulator import Emulator

    tmp = tmp_path_factory.mktemp("server-world")
    with Emulator(execution_duration=0, url_lifetime=URL_LIFETIME) as emu:
        client = new_client(emu)
        org = client.organisation()
        tif = write_geotiff(tmp / "demo.tif")
        upload = client.create_data(org.id, "Demo upload", [tif])
        thames = client.create_data(org.id, "Thames", [THAMES])
        grouped = (client.new_process(org.id, CLASSIFICATION, "Thames classification").with_input(1, thames)
                   .with_options(latest_date=False, start_date="2021-03-27T00:00:00", end_date=None).create())
        client.execute(org.id, grouped.id, wait=True)
        latest = client.latest_execution(org.id, grouped.id)
        assert latest.group_id is not None, "the Thames region should be sliced into a group"
        client.close()
        other = new_client(emu, OTHER_EMAIL, OTHER_PASSWORD)
        other_org = other.organisation()
        secret = other.create_data(other_org.id, "Not yours", [write_geotiff(tmp / "secret.tif")])
        secret_file = other.list_files(other_org.id, secret.id)[0]
        other.close()
        yield World(emu, org.id, upload.id, tif, grouped.id, latest.group_id, other_org.id, secret.id,
                    secret_file.file_id or "")


@pytest.fixture(scope="session")
def served(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The STAC API (redirect mode) over the world, its index in a temporary directory."""
    with Served(world.emu, tmp_path_factory.mktemp("index") / "index.sqlite") as s:
        yield s


@pytest.fixture(scope="session")
def streamed(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A second server, in stream mode (the bytes through the server), over the same world."""
    with Served(world.emu, tmp_path_factory.mktemp("stream-index") / "index.sqlite", "--asset-mode", "stream") as s:
        yield s


@pytest.fixture
def serve(world: World, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Factory: another server over the world, with its own command-line options."""
    started: list[Served] = []

    def factory(*options: str) -> Served:
        s = Served(world.emu, tmp_path / f"index-{len(started)}.sqlite", *options).__enter__()
        started.append(s)
        return s

    yield factory
    for s in started:
        s.__exit__()
