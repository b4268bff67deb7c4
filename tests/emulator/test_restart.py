"""A new emulator on the same data directory keeps users, data, files, processes and executions."""

from __future__ import annotations

from typing import Any

import requests

from ._helpers import ORG, Api, rectangle


def test_restart_keeps_state(make_emulator: Any, tmp_path: Any) -> None:
    first = make_emulator()
    api = Api(first.url)
    data_id, file_ids = api.create_data(ORG, "Kept", [("k.geojson", "GeoJSON", rectangle())])
    process = api.create_process(ORG, "Elevation", data_id, name="Kept process")
    api.ok("POST", f"/organisations/{ORG}/processes/{process['id']}/execute")
    execution = api.ok("GET", f"/organisations/{ORG}/processes/{process['id']}/executions")["list"][0]
    api.ok("PATCH", f"/users/{api.user_id}", json={"User[given_name]": "Persisted"})
    api.ok("POST", f"/users/{api.user_id}/change_password",
           json={"User": {"old_password": "MyPassword123!", "new_password": "Changed123"}})
    first.stop()

    second = make_emulator()  # same data directory
    again = Api(second.url, password="Changed123")
    assert again.ok("GET", f"/users/{again.user_id}")["model"]["given_name"] == "Persisted"
    assert again.ok("GET", f"/organisations/{ORG}/data/{data_id}")["model"]["name"] == "Kept"
    (record,) = again.files(ORG, data_id)
    assert record["file_id"] == file_ids[0] and record["publishable"] is True
    url = again.ok("GET", f"/organisations/{ORG}/data/{data_id}/download_file/{file_ids[0]}")["extras"]["url"]
    assert requests.get(url).content == rectangle()
    model = again.ok("GET", f"/organisations/{ORG}/processes/{process['id']}")["model"]
    assert model["name"] == "Kept process" and len(model["executions"]) == 1
    kept = again.ok("GET", f"/organisations/{ORG}/process_executions/{execution['id']}")["model"]
    assert kept["success"] is True and kept["progress"] == 100
    # Storage URLs signed by the first instance stay valid (the secret belongs to the data directory).
    assert requests.get(url).status_code == 200
    # The seeded catalogue is not duplicated.
    services_list = again.ok("GET", f"/organisations/{ORG}/services/latest", params={"limit": 100})["list"]
    assert len(services_list) == len({s["id"] for s in services_list}) == 4


def test_restart_during_an_execution_marks_it_interrupted(make_emulator: Any) -> None:
    first = make_emulator(execution_duration=60)
    api = Api(first.url)
    data_id, _ = api.create_data(ORG, "Region", [("r.geojson", "GeoJSON", rectangle())])
    process = api.create_process(ORG, "Elevation", data_id)
    api.ok("POST", f"/organisations/{ORG}/processes/{process['id']}/execute")
    first.stop()
    second = make_emulator()
    again = Api(second.url)
    (execution,) = again.ok("GET", f"/organisations/{ORG}/processes/{process['id']}/executions")["list"]
    assert execution["progress"] == 100 and execution["success"] is False
    assert "Interrupted" in execution["abort_reason"]
    model = again.ok("GET", f"/organisations/{ORG}/processes/{process['id']}")["model"]
    assert model["process_status"] == "stop"


def test_temporary_data_dir_is_removed_on_stop() -> None:
    from fusion_stac.emulator import Emulator

    with Emulator() as emu:
        directory = emu.data_dir
        assert (directory / "emulator.sqlite3").exists()
    assert not directory.exists()
