"""Processes and executions: templates, validation, prices, runs, groups, schedules, stop, copy, cascades."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import rasterio
import requests

from fusion_stac.emulator import services

from ._helpers import ORG, Api, rectangle

CLASSIFICATION = services.CLASSIFICATION_NAME


def executions(api: Api, process_id: str, **params: Any) -> list[dict[str, Any]]:
    return api.ok("GET", f"/organisations/{ORG}/processes/{process_id}/executions", params=params)["list"]


def components(api: Api, execution_id: str) -> list[dict[str, Any]]:
    return api.ok("GET", f"/organisations/{ORG}/process_executions/{execution_id}/process_service_executions")["list"]


def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_template(api: Api) -> None:
    response = api.ok("GET", f"/organisations/{ORG}/processes/new",
                      params={"service_id": services.CLASSIFICATION_SERVICE_ID})
    template = response["model"]
    assert template["service_id"] == services.CLASSIFICATION_SERVICE_ID
    assert template["ssd_id"] == services.CLASSIFICATION_SSD_ID
    assert template["run_type"] == "run_once" and template["repeat_count"] == 1
    (region_input,) = template["inputs"]
    assert "id" not in region_input
    assert region_input["file_type"] == "GeoJSON" and region_input["model"] == "Data"
    options = {o["name"]: o for o in template["options"]}
    assert options["latest_date"]["value"] == "true" and options["latest_date"]["data_type"] == "boolean"
    assert options["start_date"]["validation"] == services.DATETIME_VALIDATION
    assert options["platform"]["data_type"] == "constrained"
    assert {d["name"] for d in response["extras"]["dispatchers"]} == {"AWS S3", "Email"}
    assert api.get(f"/organisations/{ORG}/processes/new").status_code == 400
    assert api.get(f"/organisations/{ORG}/processes/new", params={"service_id": "nope"}).status_code == 400
    assert api.get(f"/organisations/{ORG}/processes/new",
                   params={"service_id": services.AGGREGATOR_SERVICE_ID}).status_code == 422


def test_create_echoing_read_only_fields_and_price(api: Api, region: str) -> None:
    body = api.new_process(ORG, "Elevation", region)
    body.update({"Process[price]": 0, "Process[process_status]": "execute", "Process[executions]": [],
                 "Process[has_executions]": "yes", "Process[available_dispatchers]": [],
                 "Process[repeat_gap]": "relativedelta(days=+1)", "Process[repeat_offset]": "1 day, 0:00:00"})
    model = api.ok("POST", f"/organisations/{ORG}/processes", json=body)["model"]
    assert model["process_status"] == "draft"
    assert model["has_executions"] == "" and model["executions"] == []
    assert model["has_executions_organisation_id"] == ORG
    assert model["price"] > 1
    assert model["test_run"] is False
    assert model["repeat_gap"] == '{"days": 1}'
    assert all(item["id"] == region for item in model["inputs"])
    # A bigger region costs more.
    big, _ = api.create_data(ORG, "Big", [("big.geojson", "GeoJSON", rectangle(width_km=25, height_km=20))])
    assert api.create_process(ORG, "Elevation", big)["price"] > model["price"]


@pytest.mark.parametrize(("option", "value", "status"), [
    ("resolution", "10", 422),          # below min=30
    ("resolution", "abc", 422),
    ("resolution", 100, 400),           # values travel as strings
    ("vertical_datum", "NAVD88", 422),  # constrained
    ("unknown_option", "1", 422),
])
def test_invalid_elevation_options(api: Api, region: str, option: str, value: Any, status: int) -> None:
    body = api.new_process(ORG, "Elevation", region)
    options = body["Process[options]"]
    if option == "unknown_option":
        options.append({"name": option, "value": value})
    for item in options:
        if item["name"] == option:
            item["value"] = value
    response = api.post(f"/organisations/{ORG}/processes", json=body)
    assert response.status_code == status, response.text
    assert option in response.json()["error_message"]


@pytest.mark.parametrize(("values", "fragment"), [
    ({"latest_date": "maybe"}, "latest_date"),
    ({"latest_date": "false"}, "start date is required"),
    ({"latest_date": "false", "start_date": "2016-12-31T00:00:00"}, "on or after"),
    ({"latest_date": "false", "start_date": "27/03/2021"}, "start_date"),
    ({"latest_date": "false", "start_date": "2021-03-27T00:00:00", "end_date": "2021-03-01T00:00:00"}, "not be after"),
    ({"maximum_cloud": "101"}, "at most 100"),
    ({"platform": "C"}, "one of A, B, *"),
])
def test_invalid_classification_options(api: Api, region: str, values: dict[str, str], fragment: str) -> None:
    body = api.new_process(ORG, CLASSIFICATION, region)
    for item in body["Process[options]"]:
        if item["name"] in values:
            item["value"] = values[item["name"]]
    response = api.post(f"/organisations/{ORG}/processes", json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error_message"]


def test_invalid_inputs(api: Api, region: str) -> None:
    body = api.new_process(ORG, "Elevation", region)
    body["Process[inputs]"][0].pop("id")
    assert api.post(f"/organisations/{ORG}/processes", json=body).status_code == 422
    csv_id, _ = api.create_data(ORG, "Table", [("t.csv", "CSV", b"a,b\n1,2\n")])
    response = api.post(f"/organisations/{ORG}/processes", json=api.new_process(ORG, "Elevation", csv_id))
    assert response.status_code == 422 and "expects GeoJSON" in response.json()["error_message"]
    pending = api.ok("POST", f"/organisations/{ORG}/data", json={"Data[name]": "Pending"})["model"]["id"]
    api.ok("POST", f"/organisations/{ORG}/data/{pending}/add_file",
           json={"Data": {"name": "p.geojson", "file_type": "GeoJSON"}})
    response = api.post(f"/organisations/{ORG}/processes", json=api.new_process(ORG, "Elevation", pending))
    assert response.status_code == 422 and "not been uploaded" in response.json()["error_message"]
    for key, value in (("Process[run_type]", "sometimes"), ("Process[repeat_count]", "three"),
                       ("Process[repeat_start]", "tomorrow"), ("Process[name]", ""), ("Process[name]", 5),
                       ("Process[repeat_gap]", "every day"), ("Process[inputs]", "region")):
        body = api.new_process(ORG, "Elevation", region)
        body[key] = value
        assert api.post(f"/organisations/{ORG}/processes", json=body).status_code == 400, key


def test_run_once_execution_with_outputs_components_and_logs(api: Api, region: str) -> None:
    process = api.create_process(ORG, "Elevation", region, name="Single")
    credits_before = api.ok("GET", f"/organisations/{ORG}/credits/{ORG}")["model"]["any_credits"]
    response = api.ok("POST", f"/organisations/{ORG}/processes/{process['id']}/execute")["model"]
    assert response["process_status"] == "execute"
    assert response["has_executions"] == "executions"
    after = api.ok("GET", f"/organisations/{ORG}/processes/{process['id']}")["model"]
    assert after["process_status"] == "stop"
    assert after["non_aggregator_count"] == 1 and after["aggregator_count"] == 0
    (summary,) = after["executions"]
    assert summary["job_status"] == "success"
    assert datetime.fromisoformat(summary["started_at"]) >= datetime.fromisoformat(after["repeat_start"])
    (execution,) = executions(api, process["id"])
    assert execution["progress"] == 100 and execution["success"] is True
    assert execution["stopped"] is False and execution["abort"] is False
    assert "group_id" not in execution
    (component,) = components(api, execution["id"])
    assert component["name"] == "Elevation"
    for key in ("image_id", "service_id", "cpu", "memory", "started_at", "ended_at"):
        assert key in component
    assert component["success"] is True and component["intermediate"] is False
    assert component["inputs"] == [region]
    (output,) = component["outputs"]
    (record,) = api.files(ORG, output)
    assert record["file_name"] == "elevation.tif" and record["publishable"] is True
    url = api.ok("GET", f"/organisations/{ORG}/data/{output}/download_file/{record['file_id']}")["extras"]["url"]
    # Pre-signed GET URLs refuse HEAD (like cloud storage), so GDAL must be told not to use it.
    with rasterio.Env(CPL_VSIL_CURL_USE_HEAD="NO", GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"), \
            rasterio.open(url) as src:
        assert src.dtypes[0] == "float32" and src.res == (200.0, 200.0)
    logs = api.ok("GET", f"/organisations/{ORG}/process_service_executions/{component['id']}/logs",
                  params={"reverse": "True"})["list"]
    assert logs and logs[0]["message"].endswith("completed successfully")
    assert api.ok("GET", f"/organisations/{ORG}/process_service_executions/{component['id']}")["model"]["name"] == (
        "Elevation")
    credits_after = api.ok("GET", f"/organisations/{ORG}/credits/{ORG}")["model"]
    assert credits_after["any_credits"] == pytest.approx(credits_before - process["price"])
    assert credits_after["spend"]


def test_resolution_option_changes_the_output(api: Api, region: str) -> None:
    body = api.new_process(ORG, "Elevation", region)
    for item in body["Process[options]"]:
        if item["name"] == "resolution":
            item["value"] = "500"
    process = api.ok("POST", f"/organisations/{ORG}/processes", json=body)["model"]
    api.ok("POST", f"/organisations/{ORG}/processes/{process['id']}/execute")
    (execution,) = executions(api, process["id"])
    output = components(api, execution["id"])[0]["outputs"][0]
    assert api.files(ORG, output)[0]["resolution"] == 500


def test_large_region_runs_as_a_group_with_an_aggregator(api: Api) -> None:
    # 70 km wide across the UTM zone boundary at 6 degrees west: slices in zones 29 and 30.
    data_id, _ = api.create_data(ORG, "Wide", [("w.geojson", "GeoJSON", rectangle(lon=-6.0, lat=54.6,
                                                                                  width_km=70, height_km=25))])
    process = api.create_process(ORG, CLASSIFICATION, data_id)
    api.ok("POST", f"/organisations/{ORG}/processes/{process['id']}/execute")
    model = api.ok("GET", f"/organisations/{ORG}/processes/{process['id']}")["model"]
    runs = executions(api, process["id"])
    slices = [e for e in runs if e["group_index"] <= e["group_count"]]
    aggregators = [e for e in runs if e["group_index"] > e["group_count"]]
    count = len(slices)
    assert count > 1 and model["non_aggregator_count"] == count and model["aggregator_count"] == 1
    assert len({e["group_id"] for e in runs}) == 1
    assert sorted(e["group_index"] for e in slices) == list(range(1, count + 1))
    assert {e["group_count"] for e in runs} == {count}
    (aggregator,) = aggregators
    assert aggregator["group_index"] == count + 1
    assert all(e["success"] for e in runs)
    assert len({e["started_at"] for e in runs}) == 1
    (stats_component,) = components(api, aggregator["id"])
    assert stats_component["name"] == "Statistics Aggregator"
    stats_file = api.files(ORG, stats_component["outputs"][0])[0]
    assert stats_file["file_name"] == "statistics.csv" and stats_file["file_type"] == "CSV"
    epsg = set()
    for execution in slices:
        (component,) = components(api, execution["id"])
        assert component["name"] == services.CLASSIFICATION_COMPONENT
        record = api.files(ORG, component["outputs"][0])[0]
        assert record["file_name"] == "classification.tif"
        assert len(record["selectors"][0]["histogram"]) >= 10
        epsg.add(record["crs"])
    assert epsg == {"EPSG:32629", "EPSG:32630"}
    # The group filter the SDK sends.
    group = executions(api, process["id"], **{"filter[group_id__eq]": aggregator["group_id"], "limit": 1})
    assert len(group) == 1
    csv_url = api.ok("GET", f"/organisations/{ORG}/data/{stats_component['outputs'][0]}/download_file/"
                            f"{stats_file['file_id']}")["extras"]["url"]
    assert len(requests.get(csv_url).text.strip().splitlines()) == count + 1
    # change_delete_expiry applies to the whole group.
    expiry = (datetime.now(timezone.utc) + timedelta(days=3)).isoformat()
    api.ok("POST", f"/organisations/{ORG}/process_executions/{slices[0]['id']}/change_delete_expiry",
           json={"ProcessExecution": {"delete_expiry": expiry}})
    assert {datetime.fromisoformat(e["delete_expiry"]) for e in executions(api, process["id"])} == {
        datetime.fromisoformat(expiry)}
    past = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    assert api.post(f"/organisations/{ORG}/process_executions/{slices[0]['id']}/change_delete_expiry",
                    json={"ProcessExecution": {"delete_expiry": past}}).status_code == 422


def test_three_executions_quickly(api: Api, region: str) -> None:
    process = api.create_process(ORG, "Elevation", region)
    for _ in range(3):
        api.ok("POST", f"/organisations/{ORG}/processes/{process['id']}/execute")
    runs = executions(api, process["id"], reverse="True")
    assert len(runs) == 3
    assert [r["created_at"] for r in runs] == sorted((r["created_at"] for r in runs), reverse=True)
    model = api.ok("GET", f"/organisations/{ORG}/processes/{process['id']}")["model"]
    assert len(model["executions"]) == 3


def test_schedule_repeats(api: Api, region: str) -> None:
    process = api.create_process(ORG, "Elevation", region, run_type="run_schedule", repeat_count=3,
                                 repeat_gap='{"seconds": 0.3}')
    api.ok("POST", f"/organisations/{ORG}/processes/{process['id']}/execute")

    def done() -> bool:
        model = api.ok("GET", f"/organisations/{ORG}/processes/{process['id']}")["model"]
        return model["process_status"] == "stop" and len(model["executions"]) == 3

    wait_until(done)
    runs = executions(api, process["id"])
    assert len(runs) == 3 and all(r["success"] for r in runs)
    starts = sorted(datetime.fromisoformat(r["started_at"]) for r in runs)
    assert all(later > earlier for earlier, later in itertools.pairwise(starts))
    model = api.ok("GET", f"/organisations/{ORG}/processes/{process['id']}")["model"]
    assert model["repeat_count"] == 0
    assert api.post(f"/organisations/{ORG}/processes/{process['id']}/execute").status_code == 422
    bad = api.new_process(ORG, "Elevation", region, run_type="run_schedule", repeat_count=2)
    assert api.post(f"/organisations/{ORG}/processes", json=bad).status_code == 422  # no gap


def test_schedule_starting_later_runs_when_due(api: Api, region: str) -> None:
    """A schedule whose first run lies in the future is left to the scheduler, which starts it on time."""
    start = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    process = api.create_process(ORG, "Elevation", region, run_type="run_schedule", repeat_count=2,
                                 repeat_start=start.isoformat(), repeat_gap='{"seconds": 0.3}')
    model = api.ok("POST", f"/organisations/{ORG}/processes/{process['id']}/execute")["model"]
    assert model["process_status"] == "execute"
    assert executions(api, process["id"]) == []  # nothing before its time

    def done() -> bool:
        return len(executions(api, process["id"])) == 2

    wait_until(done)
    runs = executions(api, process["id"])
    assert all(datetime.fromisoformat(r["started_at"]) >= start for r in runs)


def test_background_execution_can_be_stopped(make_emulator: Any) -> None:
    emu = make_emulator(execution_duration=30)
    api = Api(emu.url)
    data_id, _ = api.create_data(ORG, "Region", [("r.geojson", "GeoJSON", rectangle())])
    process = api.create_process(ORG, "Elevation", data_id)
    path = f"/organisations/{ORG}/processes/{process['id']}"
    assert api.ok("POST", f"{path}/execute")["model"]["process_status"] == "execute"
    (running,) = executions(api, process["id"])
    assert running["progress"] < 100
    assert api.patch(path, json={"Process[name]": "renamed"}).status_code == 409
    assert api.post(f"{path}/execute").status_code == 409
    assert api.delete(f"/organisations/{ORG}/process_executions/{running['id']}").status_code == 409
    assert api.delete(f"/organisations/{ORG}/data/{data_id}").status_code == 409
    stopped = api.ok("POST", f"{path}/stop")["model"]
    assert stopped["process_status"] == "stop"
    (execution,) = executions(api, process["id"])
    assert execution["stopped"] is True and execution["success"] is False and execution["progress"] == 100
    assert execution["abort_reason"] == "Stopped by the user"
    assert api.ok("GET", path)["model"]["executions"][0]["job_status"] == "stopped"


def test_progress_advances_in_the_background(make_emulator: Any) -> None:
    emu = make_emulator(execution_duration=1.0)
    api = Api(emu.url)
    data_id, _ = api.create_data(ORG, "Region", [("r.geojson", "GeoJSON", rectangle(width_km=5, height_km=5))])
    process = api.create_process(ORG, "Elevation", data_id)
    api.ok("POST", f"/organisations/{ORG}/processes/{process['id']}/execute")
    seen = set()

    def finished() -> bool:
        (execution,) = executions(api, process["id"])
        seen.add(execution["progress"])
        return bool(execution["progress"] >= 100)

    wait_until(finished)
    assert min(seen) < 100
    assert executions(api, process["id"])[0]["success"] is True
    wait_until(lambda: api.ok("GET", f"/organisations/{ORG}/processes/{process['id']}")["model"][
        "process_status"] == "stop")


def test_update_copy_and_delete_cascade(api: Api, region: str) -> None:
    process = api.create_process(ORG, "Elevation", region, name="Original")
    path = f"/organisations/{ORG}/processes/{process['id']}"
    # PATCH with the whole model echoed (as the SDK does) changes only writable fields.
    body = {f"Process[{k}]": v for k, v in process.items()}
    body.update({"Process[name]": "Renamed", "Process[price]": 0, "Process[id]": region})
    updated = api.ok("PATCH", path, json=body)["model"]
    assert updated["name"] == "Renamed" and updated["price"] == process["price"] and updated["id"] == process["id"]
    for item in body["Process[options]"]:
        if item["name"] == "resolution":
            item["value"] = "1"
    assert api.patch(path, json=body).status_code == 422
    count = len(api.ok("GET", f"/organisations/{ORG}/processes", params={"limit": 1000})["list"])
    copied = api.ok("GET", f"{path}/copy")
    assert copied["model"]["inputs"][0]["id"] == region and "id" not in copied["model"]
    assert "dispatchers" in copied["extras"]
    assert len(api.ok("GET", f"/organisations/{ORG}/processes", params={"limit": 1000})["list"]) == count
    api.ok("POST", f"{path}/execute")
    (execution,) = executions(api, process["id"])
    (component,) = components(api, execution["id"])
    output = component["outputs"][0]
    record = api.files(ORG, output)[0]
    url = api.ok("GET", f"/organisations/{ORG}/data/{output}/download_file/{record['file_id']}")["extras"]["url"]
    assert api.delete(f"/organisations/{ORG}/data/{region}").status_code == 409
    assert api.delete(f"/organisations/{ORG}/data/{output}").status_code == 409
    assert api.delete(path).status_code == 200
    for gone in (path, f"/organisations/{ORG}/process_executions/{execution['id']}",
                 f"/organisations/{ORG}/process_service_executions/{component['id']}",
                 f"/organisations/{ORG}/process_service_executions/{component['id']}/logs",
                 f"/organisations/{ORG}/data/{output}"):
        assert api.get(gone).status_code == 404, gone
    assert requests.get(url).status_code == 200  # download URLs outlive the deletion
    assert api.delete(f"/organisations/{ORG}/data/{region}").status_code == 200


def test_delete_one_execution(api: Api, region: str) -> None:
    process = api.create_process(ORG, "Elevation", region)
    api.ok("POST", f"/organisations/{ORG}/processes/{process['id']}/execute")
    (execution,) = executions(api, process["id"])
    output = components(api, execution["id"])[0]["outputs"][0]
    patched = api.ok("PATCH", f"/organisations/{ORG}/process_executions/{execution['id']}",
                     json={"ProcessExecution[delete_expiry]": (datetime.now(timezone.utc) + timedelta(days=9)).isoformat(),
                           "ProcessExecution[progress]": 5})["model"]
    assert patched["progress"] == 100
    assert api.delete(f"/organisations/{ORG}/process_executions/{execution['id']}").status_code == 200
    assert executions(api, process["id"]) == []
    assert api.get(f"/organisations/{ORG}/data/{output}").status_code == 404
    model = api.ok("GET", f"/organisations/{ORG}/processes/{process['id']}")["model"]
    assert model["has_executions"] == ""


def test_dispatchers(api: Api, region: str) -> None:
    template = api.ok("GET", f"/organisations/{ORG}/processes/new",
                      params={"service_id": services.ELEVATION_SERVICE_ID})
    s3 = next(d for d in template["extras"]["dispatchers"] if d["name"] == "AWS S3")
    process = api.create_process(ORG, "Elevation", region, dispatchers=[s3])
    path = f"/organisations/{ORG}/processes/{process['id']}"
    response = api.post(f"{path}/execute")
    assert response.status_code == 422 and "bucket" in response.json()["error_message"]
    for option in s3["options"]:
        if option["name"] == "bucket":
            option["value"] = "my-bucket"
    api.ok("PATCH", path, json={"Process[dispatchers]": [s3]})
    api.ok("POST", f"{path}/execute")
    (execution,) = executions(api, process["id"])
    component = components(api, execution["id"])[0]
    messages = [log["message"] for log in api.ok(
        "GET", f"/organisations/{ORG}/process_service_executions/{component['id']}/logs")["list"]]
    assert any("s3://my-bucket/" in message for message in messages)
    bogus = dict(s3, ssd_id=services.ELEVATION_SSD_ID)
    assert api.patch(path, json={"Process[dispatchers]": [bogus]}).status_code == 422
