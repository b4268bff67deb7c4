"""A user never reads or changes another organisation's anything, and cannot tell whether it exists."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from fusion_stac.emulator import services

from ._helpers import ORG, OTHER_ORG, Api, rectangle

BODIES = {
    "post": {"Data": {"name": "x.geojson", "file_type": "GeoJSON"}, "User": {"old_password": "a", "new_password": "b"},
             "ProcessExecution": {"delete_expiry": "2030-01-01T00:00:00+00:00"}, "Data[name]": "x",
             "Process[name]": "x"},
    "patch": {"Data[name]": "hijacked", "Process[name]": "hijacked", "Organisation[name]": "hijacked",
              "Service[name]": "hijacked",
              "ProcessExecution[delete_expiry]": "2030-01-01T00:00:00+00:00"},
}


@pytest.fixture(scope="module")
def victim(emulator: Any) -> dict[str, str]:
    """Objects of the example organisation: data, file, process, execution, component."""
    api = Api(emulator.url)
    data_id, file_ids = api.create_data(ORG, "Victim region", [("region.geojson", "GeoJSON", rectangle())])
    process = api.create_process(ORG, "Elevation", data_id, name="Victim process")
    api.ok("POST", f"/organisations/{ORG}/processes/{process['id']}/execute")
    execution = api.ok("GET", f"/organisations/{ORG}/processes/{process['id']}/executions")["list"][0]
    component = api.ok("GET", f"/organisations/{ORG}/process_executions/{execution['id']}/"
                               "process_service_executions")["list"][0]
    return {"data_id": data_id, "file_id": file_ids[0], "process_id": process["id"],
            "execution_id": execution["id"], "component_id": component["id"], "credit_id": ORG,
            "service_id": services.ELEVATION_SERVICE_ID, "user_id": services.EXAMPLE_USER_ID}


def operations(emulator: Any) -> list[tuple[str, str]]:
    schema = requests.get(f"{emulator.url}/openapi.json").json()
    return [(method, path) for path, ops in schema["paths"].items() for method in ops
            if path.startswith("/organisations/{organisation_id}")]


def fill(path: str, organisation_id: str, ids: dict[str, str]) -> str:
    path = path.replace("{organisation_id}", organisation_id)
    for name, value in ids.items():
        path = path.replace("{" + name + "}", value)
    return path


def test_the_victims_organisation_is_forbidden_on_every_endpoint(emulator: Any, victim: dict[str, str],
                                                                 other_api: Api, api: Api) -> None:
    checked = 0
    for method, template in operations(emulator):
        path = fill(template, ORG, victim)
        response = other_api.request(method.upper(), path, json=BODIES.get(method, {}),
                                     params={"service_id": victim["service_id"]})
        assert response.status_code == 403, (method, path, response.text)
        # The same answer for an organisation that does not exist: nothing leaks.
        ghost = other_api.request(method.upper(), fill(template, str(uuid.uuid4()), victim),
                                  json=BODIES.get(method, {}), params={"service_id": victim["service_id"]})
        assert ghost.status_code == 403
        checked += 1
    assert checked >= 25
    # Nothing was changed.
    assert api.ok("GET", f"/organisations/{ORG}/data/{victim['data_id']}")["model"]["name"] == "Victim region"
    assert api.ok("GET", f"/organisations/{ORG}")["model"]["name"] == "Example Organisation"


def test_the_victims_objects_are_not_found_through_ones_own_organisation(emulator: Any, victim: dict[str, str],
                                                                          other_api: Api, api: Api) -> None:
    checked = 0
    for method, template in operations(emulator):
        if "{" not in template.replace("{organisation_id}", "") or "/services/" in template:
            continue
        if template.endswith("/credits/{credit_id}"):
            continue  # the credit id is the organisation id (checked below)
        path = fill(template, OTHER_ORG, victim)
        response = other_api.request(method.upper(), path, json=BODIES.get(method, {}))
        assert response.status_code == 404, (method, path, response.text)
        random_ids = {name: str(uuid.uuid4()) for name in victim}
        ghost = other_api.request(method.upper(), fill(template, OTHER_ORG, random_ids), json=BODIES.get(method, {}))
        assert ghost.status_code == 404
        # Same wording apart from the id itself.
        assert response.json()["error_message"].split(" ")[0] == ghost.json()["error_message"].split(" ")[0]
        checked += 1
    assert checked >= 15
    assert other_api.get(f"/organisations/{OTHER_ORG}/credits/{ORG}").status_code == 404
    assert api.ok("GET", f"/organisations/{ORG}/processes/{victim['process_id']}")["model"]["name"] == "Victim process"
    assert api.get(f"/organisations/{ORG}/process_executions/{victim['execution_id']}").status_code == 200


def test_lists_only_show_ones_own_organisation(victim: dict[str, str], other_api: Api) -> None:
    data = other_api.ok("GET", f"/organisations/{OTHER_ORG}/data/uploaded")["list"]
    assert victim["data_id"] not in {item["id"] for item in data}
    processes = other_api.ok("GET", f"/organisations/{OTHER_ORG}/processes")["list"]
    assert victim["process_id"] not in {item["id"] for item in processes}
    searched = other_api.ok("GET", f"/organisations/{OTHER_ORG}/data/uploaded", params={"search": "victim"})["list"]
    assert searched == []


def test_catalogue_services_are_readable_but_not_writable(other_api: Api) -> None:
    path = f"/organisations/{services.PLATFORM_ORGANISATION_ID}/services/{services.ELEVATION_SERVICE_ID}"
    model = other_api.ok("GET", path)["model"]
    assert model["name"] == "Elevation"
    assert other_api.patch(path, json={"Service[name]": "x"}).status_code == 403
    assert other_api.delete(path).status_code == 403
    # A service addressed through the wrong owner is not found.
    wrong = f"/organisations/{OTHER_ORG}/services/{services.ELEVATION_SERVICE_ID}"
    assert other_api.get(wrong).status_code == 404


def test_one_cannot_create_into_another_organisation_through_the_body(other_api: Api, victim: dict[str, str]) -> None:
    response = other_api.post(f"/organisations/{OTHER_ORG}/data",
                              json={"Data[organisation_id]": ORG, "Data[name]": "sneaky"})
    assert response.status_code == 400
    # A process in one's own organisation cannot use another organisation's data as input.
    template = other_api.ok("GET", f"/organisations/{OTHER_ORG}/processes/new",
                            params={"service_id": services.ELEVATION_SERVICE_ID})["model"]
    template["inputs"][0]["id"] = victim["data_id"]
    body = {f"Process[{k}]": v for k, v in template.items()}
    body["Process[name]"] = "sneaky"
    response = other_api.post(f"/organisations/{OTHER_ORG}/processes", json=body)
    assert response.status_code == 422
    assert "not found" in response.json()["error_message"]
