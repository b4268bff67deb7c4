"""The data-plane defects seen through an independent fault-injecting proxy, one test each.

Each test puts ``benchmarks/_faultproxy.FaultProxy`` (a reverse proxy of its own, not the emulator's
fault injector) in front of the emulator with only the fault kind under test enabled, on storage or
API traffic, and asserts what a user is owed: the exact bytes, or a typed error naming the file --
never a truncated file at the final path.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusion_stac.client import FusionClient
from fusion_stac.errors import FusionError
from fusion_stac.models import DataFile

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _faultproxy import FaultProxy

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
GLASGOW = Path(__file__).parents[2] / "fusion_stac" / "emulator" / "regions" / "glasgow.geojson"
STORAGE_FAULTS = ["truncate", "length_short", "length_long", "close_mid_body", "full_200", "reset"]


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    from fusion_stac.emulator import Emulator

    with Emulator(execution_duration=0) as server:
        yield server


def _client(url: str, **kwargs: Any) -> FusionClient:
    """A client with patient retries: the proxy faults half the requests of a class (a range fails
    only after 12 faults in a row; the proxy's RNG is seeded and these tests are sequential)."""
    from fusion_stac.storage import RetryPolicy

    kwargs.setdefault("poll_interval", 0.02)
    kwargs.setdefault("sleep", lambda s: None)
    kwargs.setdefault("retry", RetryPolicy(attempts=12, backoff=0.001, max_backoff=0.001))
    kwargs.setdefault("storage_retry", RetryPolicy(attempts=12, backoff=0.001, max_backoff=0.001))
    return FusionClient(url, email=EMAIL, password=PASSWORD, **kwargs)


@pytest.fixture(scope="module")
def stored(emu: Any) -> tuple[str, str, DataFile, bytes]:
    """An uploaded file (organisation, data id, its DataFile) and its exact bytes."""
    with _client(emu.url) as client:
        org = client.organisation().id
        data = client.create_data(org, "data plane defects", [GLASGOW])
        (model,) = client.list_files(org, data.id)
    return org, data.id, model, GLASGOW.read_bytes()


@pytest.fixture()
def proxy(emu: Any) -> Iterator[FaultProxy]:
    with FaultProxy(emu.url, rate=0.0, seed=7, max_lifetime=120, storage_upstream=emu.storage_url) as p:
        emu.route_storage(p.url, p.url)  # storage through the proxy too
        try:
            yield p
        finally:
            emu.route_storage(p.url, None)


def _leftovers(directory: Path, final: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p != final)


@pytest.mark.parametrize("fault", STORAGE_FAULTS)
@pytest.mark.parametrize("form", ["id", "model"])
def test_download_file_gives_the_whole_file_whatever_storage_does(
    proxy: FaultProxy, stored: tuple[str, str, DataFile, bytes], tmp_path: Path, fault: str, form: str,
) -> None:
    """``download_file`` given a file id string returned a truncated file without error (195 of
    1914 bytes) when a storage body was cut short or its Content-Length was wrong."""
    org, data_id, model, expected = stored
    proxy.classes = frozenset({"storage"})
    proxy.configure(rate=0.5, kinds={fault: 1.0})
    with _client(proxy.url) as client:
        for attempt in range(4):
            target = tmp_path / f"{form}-{attempt}" / "out.geojson"
            target.parent.mkdir()
            file: DataFile | str = model if form == "model" else model.file_id
            path = client.download_file(org, data_id, file, target)
            assert path == target
            assert hashlib.md5(target.read_bytes()).hexdigest() == hashlib.md5(expected).hexdigest()
            assert _leftovers(target.parent, target) == []
    assert proxy.counts()[fault]["storage"] >= 1, "the fault under test never happened"


def test_a_too_large_content_length_does_not_poison_later_attempts(
    proxy: FaultProxy, stored: tuple[str, str, DataFile, bytes], tmp_path: Path,
) -> None:
    """One answer with a too-large Content-Length made every later attempt of a download of unknown
    size (a preview: its size is not in the metadata) fail with "range not satisfiable"."""
    from fusion_stac.storage import FileKey, download

    org, data_id, model, expected = stored
    proxy.classes = frozenset({"storage"})
    proxy.configure(rate=0.5, kinds={"length_long": 1.0})
    with _client(proxy.url) as client:
        key = FileKey(org, data_id, model.file_id)
        for attempt in range(4):
            result = download(client.storage, key, tmp_path / f"unknown-size-{attempt}.geojson", size=None)
            assert result.path is not None and result.path.read_bytes() == expected
            assert result.size == len(expected)
    assert proxy.counts()["length_long"]["storage"] >= 1


@pytest.mark.parametrize("fault", ["truncate", "length_long", "close_mid_body"])
def test_a_cut_api_answer_of_a_get_is_retried(proxy: FaultProxy, stored: tuple[str, str, DataFile, bytes],
                                              fault: str) -> None:
    """A JSON body cut short was not retried (``APIError: expected a JSON answer, got
    application/json``), even for a GET."""
    org, data_id, model, _ = stored
    with _client(proxy.url) as client:
        client.login()
        proxy.classes = frozenset({"api"})
        proxy.configure(rate=0.5, kinds={fault: 1.0})
        for _ in range(6):
            files = client.list_files(org, data_id)
            assert [f.file_id for f in files] == [model.file_id]
        assert client.stats.retries >= 1
    assert proxy.counts()[fault]["api"] >= 1


def test_every_failure_is_typed_and_names_the_file(proxy: FaultProxy, stored: tuple[str, str, DataFile, bytes],
                                                   tmp_path: Path) -> None:
    """When storage never gives the bytes, the error is typed, names the file, and nothing is left at
    the final path (the resumable partial stays beside it)."""
    from fusion_stac.storage import RetryPolicy

    org, data_id, model, _ = stored
    with _client(proxy.url, storage_retry=RetryPolicy(attempts=2, backoff=0.001, max_backoff=0.001)) as client:
        client.login()
        proxy.classes = frozenset({"storage"})
        proxy.configure(rate=1.0, kinds={"reset": 1.0})  # no byte ever arrives
        target = tmp_path / "never.geojson"
        with pytest.raises((FusionError, OSError)) as caught:
            client.download_file(org, data_id, model.file_id, target)
    assert model.file_id in str(caught.value) or (model.file_name or "?") in str(caught.value)
    assert not target.exists()
