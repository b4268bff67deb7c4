"""The emulator is no looser than the platform: names, membership, id oracles and region coordinates."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import requests

from fusion_stac.emulator import geodata, services

from ._helpers import ORG, OTHER_ORG, Api, rectangle

# -- file names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["new\nline.geojson", "nul\x00.geojson", "tab\t.geojson", "cr\r.csv",
                                  "esc\x1b.csv", "unit\x1f.csv", "del\x7f.csv"])
def test_add_file_refuses_control_characters(api: Api, name: str) -> None:
    data = api.ok("POST", f"/organisations/{ORG}/data", json={"Data[name]": "Control characters"})["model"]
    response = api.post(f"/organisations/{ORG}/data/{data['id']}/add_file",
                        json={"Data": {"name": name, "file_type": "GeoJSON"}})
    assert response.status_code == 400, response.text
    message = response.json()["error_message"]
    assert "Data.name" in message
    # NUL is refused by the rule for every string field; the others by the file-name rule.
    assert ("NUL" if "\x00" in name else "control characters (U+0000-U+001F, U+007F)") in message
    assert api.files(ORG, data["id"]) == []  # nothing was added


def test_add_file_still_accepts_unusual_printable_names(api: Api) -> None:
    data = api.ok("POST", f"/organisations/{ORG}/data", json={"Data[name]": "Printable"})["model"]
    for name in ("ümlaut région.geojson", "a b,c;d'e.csv", "\u2028separator.csv", "\x80c1.csv"):
        response = api.post(f"/organisations/{ORG}/data/{data['id']}/add_file",
                            json={"Data": {"name": name, "file_type": "CSV"}})
        assert response.status_code == 200, (name, response.text)
    assert len(api.files(ORG, data["id"])) == 4


# -- services: membership -----------------------------------------------------------------------------


def _answer(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error_message"]


def test_services_of_an_organisation_need_membership(other_api: Api) -> None:
    non_member = _answer(other_api.get(f"/organisations/{ORG}/data/{uuid.uuid4()}"))
    assert non_member == (403, f"You are not a member of organisation {ORG}")
    for service_id in (str(uuid.uuid4()), services.ELEVATION_SERVICE_ID):
        assert _answer(other_api.get(f"/organisations/{ORG}/services/{service_id}")) == non_member
    ghost = str(uuid.uuid4())
    assert _answer(other_api.get(f"/organisations/{ghost}/services/{uuid.uuid4()}")) == (
        403, f"You are not a member of organisation {ghost}")


def test_the_catalogue_is_readable_through_its_publisher_and_nothing_else_is(other_api: Api, api: Api) -> None:
    platform = services.PLATFORM_ORGANISATION_ID
    assert other_api.ok("GET", f"/organisations/{platform}/services/{services.ELEVATION_SERVICE_ID}")["model"][
        "name"] == "Elevation"
    non_member = (403, f"You are not a member of organisation {platform}")
    # Not offered to the caller's organisation (not in services/latest), or unknown: the non-member answer.
    latest = {s["id"] for s in other_api.ok("GET", f"/organisations/{OTHER_ORG}/services/latest",
                                             params={"limit": 100})["list"]}
    assert services.AGGREGATOR_SERVICE_ID not in latest
    assert _answer(other_api.get(f"/organisations/{platform}/services/{services.AGGREGATOR_SERVICE_ID}")) == non_member
    assert _answer(other_api.get(f"/organisations/{platform}/services/{uuid.uuid4()}")) == non_member
    # A member still gets 404 for an unknown service or one owned by someone else.
    assert api.get(f"/organisations/{ORG}/services/{uuid.uuid4()}").status_code == 404
    assert api.get(f"/organisations/{ORG}/services/{services.ELEVATION_SERVICE_ID}").status_code == 404


# -- client-chosen data ids: no existence oracle ------------------------------------------------------


def _refusal(response: requests.Response, chosen: str) -> tuple[int, str, str, str]:
    body = response.json()
    text = json.dumps(body, sort_keys=True).replace(chosen, "<id>")
    headers = {k.lower(): v for k, v in response.headers.items() if k.lower() not in ("date", "content-length")}
    return response.status_code, text, json.dumps(headers, sort_keys=True), body["error_message"].replace(chosen, "<id>")


def test_a_chosen_id_taken_elsewhere_answers_like_any_refused_id(api: Api, other_api: Api) -> None:
    theirs = str(uuid.uuid4())
    assert api.post(f"/organisations/{ORG}/data", json={"Data[name]": "theirs", "Data[id]": theirs}).ok
    mine = str(uuid.uuid4())
    assert other_api.post(f"/organisations/{OTHER_ORG}/data", json={"Data[name]": "mine", "Data[id]": mine}).ok

    def create(chosen: str) -> tuple[int, str, str, str]:
        response = other_api.post(f"/organisations/{OTHER_ORG}/data", json={"Data[name]": "x", "Data[id]": chosen})
        return _refusal(response, chosen)

    taken_elsewhere = create(theirs)
    taken_here = create(mine)
    reserved = create("00000000-0000-0000-0000-000000000000")  # exists nowhere, refused all the same
    assert taken_elsewhere == taken_here == reserved
    status, _, _, message = taken_elsewhere
    assert status == 409
    assert "exist" not in message.lower() and ORG not in message
    # The refused creations created nothing, and the other organisation's data is untouched.
    assert api.ok("GET", f"/organisations/{ORG}/data/{theirs}")["model"]["name"] == "theirs"
    assert other_api.get(f"/organisations/{OTHER_ORG}/data/00000000-0000-0000-0000-000000000000").status_code == 404


# -- regions beyond the antimeridian ------------------------------------------------------------------


def _polygon(west: float, south: float, east: float, north: float) -> bytes:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    return json.dumps({"type": "FeatureCollection", "features": [feature]}).encode()


@pytest.mark.parametrize("bounds", [(179.6, -16.9, 180.4, -16.5), (-180.4, -16.9, -179.6, -16.5),
                                    (10.0, 89.5, 11.0, 90.5)])
def test_analysis_refuses_coordinates_outside_lonlat(tmp_path: Path, bounds: tuple[float, ...]) -> None:
    path = tmp_path / "fiji.geojson"
    path.write_bytes(_polygon(*bounds))
    analysis = geodata.analyse_file(path, "GeoJSON", path.name)
    assert analysis.fields["error"] is True
    description = analysis.fields["description"]
    assert "fiji.geojson" in description and "longitude/latitude" in description and "-180..180" in description
    assert "bounds" not in analysis.fields and analysis.geometry_wkb is None


def test_an_antimeridian_region_fails_at_upload_not_at_execute(api: Api) -> None:
    data_id, _ = api.create_data(ORG, "Fiji", [("fiji.geojson", "GeoJSON", _polygon(179.6, -16.9, 180.4, -16.5))])
    (record,) = api.files(ORG, data_id)
    assert record["error"] is True
    assert "longitude/latitude" in record["description"] and "antimeridian" in record["description"]
    assert record.get("bounds") is None
    assert api.ok("GET", f"/organisations/{ORG}/data/{data_id}")["model"].get("bounds") is None
    # Just inside the range is fine.
    inside_id, _ = api.create_data(ORG, "Fiji west", [("w.geojson", "GeoJSON", _polygon(179.6, -16.9, 180.0, -16.5))])
    (inside,) = api.files(ORG, inside_id)
    assert not inside.get("error") and inside["bounds"][2] == pytest.approx(180.0)


def test_ordinary_regions_are_still_accepted(api: Api) -> None:
    data_id, _ = api.create_data(ORG, "Glasgow", [("g.geojson", "GeoJSON", rectangle())])
    (record,) = api.files(ORG, data_id)
    assert not record.get("error")
