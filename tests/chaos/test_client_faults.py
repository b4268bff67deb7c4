"""The client under faults: idempotent calls retried, non-idempotent ones taking effect exactly once.

A POST that failed may or may not have been handled by the server. These tests lose chosen POSTs
before the server sees them and after it handled them (the client then sees a reset or a 500), and
check that every step of the workflow still happens exactly once: one data item with its files,
one process, one run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusion_stac.client import FusionClient, RetryPolicy
from fusion_stac.emulator import FaultConfig

from ._flaky import FlakySession, Rule

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
GLASGOW = Path(__file__).parents[2] / "fusion_stac" / "emulator" / "regions" / "glasgow.geojson"
UUID = r"[0-9a-f-]{36}"


def new_client(emu: Any, **kwargs: Any) -> FusionClient:
    kwargs.setdefault("poll_interval", 0.02)
    kwargs.setdefault("sleep", lambda s: None)
    return FusionClient(emu.url, email=EMAIL, password=PASSWORD, **kwargs)


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    from fusion_stac.emulator import Emulator

    with Emulator(execution_duration=0) as server:
        yield server


@pytest.fixture(scope="module")
def org_id(emu: Any) -> str:
    with new_client(emu) as client:
        return client.organisation().id


@pytest.fixture(scope="module")
def region_id(emu: Any, org_id: str) -> str:
    """An analysed region (input of the processes below)."""
    with new_client(emu) as client:
        return client.create_data(org_id, "fault tests region", [GLASGOW]).id


def _unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def test_500_on_idempotent_requests_is_retried(emu: Any, org_id: str) -> None:
    emu.configure(api_faults=FaultConfig(error_500=0.5), seed=5)
    try:
        client = new_client(emu, retry=RetryPolicy(attempts=20))
        client.login()
        for _ in range(10):
            assert client.get_organisation(org_id).id == org_id
        assert emu.stats()["faults"].get("api.error_500", 0) > 0
        assert client.stats.retries > 0
        assert client.stats.snapshot()["by_status"].get(500, 0) == client.stats.retries
    finally:
        emu.configure(api_faults=None)


@pytest.mark.parametrize("when", ["before", "after", "500-after"])
def test_create_data_takes_effect_once(emu: Any, org_id: str, when: str) -> None:
    session = FlakySession(Rule("POST", rf"/organisations/{UUID}/data$", when))
    name = _unique("create data")
    with new_client(emu, session=session) as client:
        data = client.create_data(org_id, name, [GLASGOW])
        assert session.fired == 1
        same_name = [d for d in client.iter_data(org_id, name=name) if d.name == name]
        assert [d.id for d in same_name] == [data.id]
        (file,) = client.list_files(org_id, data.id)
        assert file.analysed and file.file_name == "glasgow.geojson"


@pytest.mark.parametrize("when", ["before", "after", "500-after"])
def test_add_file_takes_effect_once(emu: Any, org_id: str, when: str) -> None:
    """A file registered by a lost ``add_file`` would never be uploaded (and never analysed): the
    client must not leave it behind, nor register the file twice."""
    session = FlakySession(Rule("POST", r"/add_file$", when))
    name = _unique("add file")
    with new_client(emu, session=session) as client:
        data = client.create_data(org_id, name, [GLASGOW], timeout=30)
        assert session.fired == 1
        same_name = [d for d in client.iter_data(org_id, name=name) if d.name == name]
        assert [d.id for d in same_name] == [data.id]
        files = client.list_files(org_id, data.id)
        assert [f.file_name for f in files] == ["glasgow.geojson"] and files[0].analysed


@pytest.mark.parametrize("when", ["before", "after", "500-after"])
def test_create_process_takes_effect_once(emu: Any, org_id: str, region_id: str, when: str) -> None:
    session = FlakySession(Rule("POST", rf"/organisations/{UUID}/processes$", when))
    name = _unique("create process")
    with new_client(emu, session=session) as client:
        process = client.new_process(org_id, "Elevation", name).with_input(1, region_id).create()
        assert session.fired == 1
        same_name = [p for p in client.iter_processes(org_id, name=name) if p.name == name]
        assert [p.id for p in same_name] == [process.id]


@pytest.mark.parametrize("when", ["before", "after", "500-after"])
def test_execute_takes_effect_once(emu: Any, org_id: str, region_id: str, when: str) -> None:
    session = FlakySession(Rule("POST", r"/execute$", when))
    name = _unique("execute")
    with new_client(emu, session=session) as client:
        process = client.new_process(org_id, "Elevation", name).with_input(1, region_id).create()
        client.execute(org_id, process.id, wait=True, timeout=60)
        assert session.fired == 1
        runs = list(client.iter_executions(org_id, process.id))
        assert len(runs) == 1, [(r.id, r.started_at) for r in runs]
        assert runs[0].success


def test_non_idempotent_failure_that_persists_is_reported(emu: Any, org_id: str) -> None:
    """Reconciliation is bounded: a POST that keeps failing ends in the typed error."""
    from fusion_stac.errors import TransportError

    session = FlakySession(Rule("POST", rf"/organisations/{UUID}/processes$", "before", times=100))
    name = _unique("never")
    with new_client(emu, session=session, retry=RetryPolicy(attempts=3)) as client:
        draft = client.new_process(org_id, "Elevation", name).with_input(1, client.find_data(
            org_id, "fault tests region"))
        with pytest.raises(TransportError, match=r"POST /organisations/.*/processes failed after 1 attempt"):
            draft.create()
        assert session.fired == 3  # three attempts, each after checking it had not taken effect
        assert not [p for p in client.iter_processes(org_id, name=name) if p.name == name]


def test_session_ending_again_during_retries_logs_in_again(emu: Any, org_id: str) -> None:
    """Short sessions and long retry waits: the token got after one 401 can expire before the repeated
    request gets through. The client logs in again (a bounded number of times) instead of failing."""
    session = FlakySession(Rule("GET", rf"/organisations/{UUID}$", "401", times=2))
    with new_client(emu, session=session) as client:
        client.login()
        assert client.get_organisation(org_id).id == org_id
        assert session.fired == 2 and client.stats.relogins == 2


def test_a_server_refusing_every_session_is_not_retried_forever(emu: Any, org_id: str) -> None:
    from fusion_stac.errors import AuthenticationError

    session = FlakySession(Rule("GET", rf"/organisations/{UUID}$", "401", times=100))
    with new_client(emu, session=session) as client:
        client.login()
        with pytest.raises(AuthenticationError):
            client.get_organisation(org_id)
        assert client.stats.relogins == 3 and session.fired == 4
