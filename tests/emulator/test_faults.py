"""Fault injection really injects: error statuses, throttling, resets, truncated bodies, latency; and counters."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from fusion_stac.emulator import FaultConfig

from ._helpers import ORG, Api


@pytest.fixture
def faulty(make_emulator: Any) -> Any:
    return make_emulator(seed=7)


def test_fault_config_validation() -> None:
    with pytest.raises(ValueError, match="probability"):
        FaultConfig(error_500=1.5)
    with pytest.raises(ValueError, match="sum"):
        FaultConfig(error_500=0.6, reset=0.6)
    with pytest.raises(ValueError, match="seconds"):
        FaultConfig(latency_seconds=-1)
    assert not FaultConfig().active and FaultConfig(latency=0.1).active


@pytest.mark.parametrize(("config", "status"), [
    (FaultConfig(error_500=1.0), 500),
    (FaultConfig(error_503=1.0), 503),
    (FaultConfig(throttle=1.0, retry_after=2.5), 429),
])
def test_error_statuses(faulty: Any, config: FaultConfig, status: int) -> None:
    api = Api(faulty.url)  # login is exempt by default
    faulty.configure(api_faults=config)
    response = api.get(f"/organisations/{ORG}")
    assert response.status_code == status
    assert "emulated fault" in response.json()["error_message"]
    if status == 429:
        assert response.headers["Retry-After"] == "3"
    faulty.configure(api_faults=None)
    assert api.get(f"/organisations/{ORG}").status_code == 200
    assert faulty.stats()["faults"] == {f"api.{config_kind(config)}": 1}


def config_kind(config: FaultConfig) -> str:
    return next(k for k in ("error_500", "error_503", "throttle", "reset", "truncate") if getattr(config, k))


def test_connection_reset(faulty: Any) -> None:
    api = Api(faulty.url)
    faulty.configure(api_faults=FaultConfig(reset=1.0))
    with pytest.raises(requests.ConnectionError):
        api.get(f"/organisations/{ORG}")
    faulty.configure(api_faults=None)
    assert api.get(f"/organisations/{ORG}").status_code == 200


def test_truncated_body(faulty: Any) -> None:
    api = Api(faulty.url)
    data_id, file_ids = api.create_data(ORG, "Blob", [("b.bin", "Other", bytes(range(256)) * 400)])
    url = api.ok("GET", f"/organisations/{ORG}/data/{data_id}/download_file/{file_ids[0]}")["extras"]["url"]
    faulty.configure(storage_faults=FaultConfig(truncate=1.0))
    response = requests.get(url, stream=True)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(256 * 400)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        response.content  # noqa: B018 - reading the body is the point
    faulty.configure(api_faults=FaultConfig(truncate=1.0), storage_faults=None)
    with pytest.raises(requests.exceptions.RequestException):
        api.get(f"/organisations/{ORG}/data/{data_id}")
    faulty.configure(api_faults=None)
    assert requests.get(url).content == bytes(range(256)) * 400


def test_storage_faults_use_xml(faulty: Any) -> None:
    api = Api(faulty.url)
    data_id, file_ids = api.create_data(ORG, "Blob", [("b.bin", "Other", b"abc")])
    url = api.ok("GET", f"/organisations/{ORG}/data/{data_id}/download_file/{file_ids[0]}")["extras"]["url"]
    faulty.configure(storage_faults=FaultConfig(error_503=1.0))
    response = requests.get(url)
    assert response.status_code == 503 and b"<Code>ServiceUnavailable</Code>" in response.content
    # API calls are not affected by storage faults.
    assert api.get(f"/organisations/{ORG}").status_code == 200


def test_login_is_exempt_unless_asked(faulty: Any) -> None:
    faulty.configure(api_faults=FaultConfig(error_500=1.0))
    Api(faulty.url)  # still logs in
    faulty.configure(api_faults=FaultConfig(error_500=1.0, include_login=True))
    response = requests.post(f"{faulty.url}/users/login",
                             json={"User": {"email": "me@org.com", "password": "MyPassword123!"}})
    assert response.status_code == 500


def test_faults_are_reproducible_with_a_seed(faulty: Any) -> None:
    api = Api(faulty.url)

    def pattern() -> list[int]:
        faulty.configure(api_faults=FaultConfig(error_503=0.5), seed=11)
        return [api.get(f"/organisations/{ORG}").status_code for _ in range(30)]

    first, second = pattern(), pattern()
    assert first == second
    assert 200 in first and 503 in first


def test_latency_is_counted_and_configurable(faulty: Any) -> None:
    api = Api(faulty.url)
    faulty.configure(api_faults=FaultConfig(latency=1.0, latency_seconds=0.01), api_latency=0.01)
    faulty.reset_stats()
    assert api.get(f"/organisations/{ORG}").status_code == 200
    assert faulty.stats()["faults"] == {"api.latency": 1}


def test_stats_count_requests_routes_and_bytes(faulty: Any) -> None:
    api = Api(faulty.url)
    data_id, file_ids = api.create_data(ORG, "Blob", [("b.bin", "Other", b"x" * 1000)])
    url = api.ok("GET", f"/organisations/{ORG}/data/{data_id}/download_file/{file_ids[0]}")["extras"]["url"]
    faulty.reset_stats()
    assert faulty.stats()["api_requests"] == 0
    requests.get(url)
    requests.get(url, headers={"Range": "bytes=0-99"})
    api.get(f"/organisations/{ORG}/data/{data_id}")
    stats = faulty.stats()
    assert stats["storage_requests"] == 2 and stats["api_requests"] == 1
    assert stats["storage_bytes_served"] == 1100
    assert stats["routes"]["GET /_storage/download/{file_id}"] == 2
    assert stats["routes"]["GET /organisations/{organisation_id}/data/{data_id}"] == 1
    assert stats["statuses"] == {"200": 2, "206": 1}
