"""List endpoints: paging with ``last``, ``reverse``, ``search`` and every filter modifier."""

from __future__ import annotations

from typing import Any

import pytest

from fusion_stac.emulator import services

from ._helpers import Api


@pytest.fixture(scope="module")
def world(emulator: Any) -> dict[str, Any]:
    """The other organisation with five data items named Alpha..Echo (isolated from other tests' data)."""
    from ._helpers import OTHER_EMAIL, OTHER_ORG, OTHER_PASSWORD

    api = Api(emulator.url, OTHER_EMAIL, OTHER_PASSWORD)
    for item in api.ok("GET", f"/organisations/{OTHER_ORG}/data/uploaded", params={"limit": 1000})["list"]:
        api.delete(f"/organisations/{OTHER_ORG}/data/{item['id']}")
    names = ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]
    ids = [api.ok("POST", f"/organisations/{OTHER_ORG}/data", json={"Data[name]": name})["model"]["id"]
           for name in names]
    return {"api": api, "org": OTHER_ORG, "names": names, "ids": ids}


def pages(api: Api, path: str, **params: Any) -> list[dict[str, Any]]:
    """Follow ``last`` exactly as the SDK does; returns every page's body."""
    bodies = []
    last: dict[str, str] = {}
    while True:
        body = api.ok("GET", path, params={**params, **last})
        bodies.append(body)
        if not body.get("last"):
            return bodies
        last = {f"last[{key}]": value for key, value in body["last"].items()}


def names_of(world: dict[str, Any], **params: Any) -> list[str]:
    path = f"/organisations/{world['org']}/data/uploaded"
    return [item["name"] for body in pages(world["api"], path, **params) for item in body["list"]]


def test_paging_with_last(world: dict[str, Any]) -> None:
    path = f"/organisations/{world['org']}/data/uploaded"
    bodies = pages(world["api"], path, limit=2, reverse="False")
    assert [len(b["list"]) for b in bodies] == [2, 2, 1]
    assert "last" not in bodies[-1]
    assert all(set(b["last"]) == {"id", "created_at"} for b in bodies[:-1])
    assert [i["name"] for b in bodies for i in b["list"]] == world["names"]
    # Exactly divisible: no empty trailing page and no cursor on the last one.
    assert [len(b["list"]) for b in pages(world["api"], path, limit=5)] == [5]
    assert names_of(world, limit=1) == world["names"]


def test_reverse(world: dict[str, Any]) -> None:
    assert names_of(world, limit=2, reverse="True") == world["names"][::-1]
    assert names_of(world, limit=24, reverse=True) == world["names"][::-1]


def test_paging_survives_deletion_of_the_cursor_item(world: dict[str, Any], emulator: Any) -> None:
    api, org = world["api"], world["org"]
    extra = [api.ok("POST", f"/organisations/{org}/data", json={"Data[name]": f"Zulu {i}"})["model"]["id"]
             for i in range(3)]
    first = api.ok("GET", f"/organisations/{org}/data/uploaded",
                   params={"limit": 6, "filter[name__begins_with]": "Zulu"})
    assert [i["name"] for i in first["list"]] == ["Zulu 0", "Zulu 1", "Zulu 2"]
    page = api.ok("GET", f"/organisations/{org}/data/uploaded", params={"limit": 1, "filter[name__begins_with]": "Zulu"})
    api.delete(f"/organisations/{org}/data/{page['list'][0]['id']}")
    following = api.ok("GET", f"/organisations/{org}/data/uploaded",
                       params={"limit": 5, "filter[name__begins_with]": "Zulu",
                               **{f"last[{k}]": v for k, v in page["last"].items()}})
    assert [i["name"] for i in following["list"]] == ["Zulu 1", "Zulu 2"]
    for data_id in extra[1:]:
        api.delete(f"/organisations/{org}/data/{data_id}")


@pytest.mark.parametrize(("filters", "expected"), [
    ({"filter[name]": "Charlie"}, ["Charlie"]),
    ({"filter[name__eq]": "Charlie"}, ["Charlie"]),
    ({"filter[name__begins_with]": "Ch"}, ["Charlie"]),
    ({"filter[name__begins_with]": "ch"}, []),  # case-sensitive
    ({"filter[name__lt]": "Charlie"}, ["Alpha", "Bravo"]),
    ({"filter[name__le]": "Charlie"}, ["Alpha", "Bravo", "Charlie"]),
    ({"filter[name__gt]": "Charlie"}, ["Delta", "Echo"]),
    ({"filter[name__ge]": "Delta"}, ["Delta", "Echo"]),
    ({"filter[unlinked__ne]": "unlinked"}, []),
    ({"filter[unlinked__contains]": "link"}, ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]),
    ({"filter[unlinked__not_contains]": "link"}, []),
    ({"filter[bounds__null]": "true"}, ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]),
    ({"filter[bounds__not_null]": "true"}, []),
    ({"filter[bounds__null]": "false"}, []),
    ({"filter[unfulfilled__null]": ""}, ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]),
    ({"search": "rav"}, ["Bravo"]),
    ({"search": "ECHO".lower()}, ["Echo"]),
    ({"filter[name__begins_with]": "D", "filter[name__lt]": "Z"}, ["Delta"]),
])
def test_data_filters(world: dict[str, Any], filters: dict[str, str], expected: list[str]) -> None:
    assert names_of(world, limit=2, **filters) == expected


def test_filters_on_ids_and_timestamps(world: dict[str, Any]) -> None:
    api, org = world["api"], world["org"]
    items = api.ok("GET", f"/organisations/{org}/data/uploaded", params={"filter[name__begins_with]": ""})["list"]
    by_name = {i["name"]: i for i in items}
    charlie = by_name["Charlie"]
    assert names_of(world, **{"filter[id__eq]": charlie["id"].upper()}) == ["Charlie"]
    assert names_of(world, **{"filter[created_at__ge]": charlie["created_at"]}) == ["Charlie", "Delta", "Echo"]
    between = f"{by_name['Bravo']['created_at']},{by_name['Delta']['created_at']}"
    assert names_of(world, **{"filter[created_at__between]": between}) == ["Bravo", "Charlie", "Delta"]
    assert names_of(world, **{"filter[updated_at__in]": f'["{charlie["updated_at"]}"]'}) == ["Charlie"]


def test_in_and_between_encodings(world: dict[str, Any]) -> None:
    # Comma-separated, JSON list and repeated parameter are equivalent.
    path = f"/organisations/{world['org']}/data/uploaded"
    api = world["api"]
    comma = api.ok("GET", path, params={"filter[uploaded_organisation_id__in]": f"{world['org']},x"})["list"]
    assert len(comma) == 5
    repeated = api.ok("GET", f"{path}?filter[created_at__between]=2000-01-01T00:00:00%2B00:00"
                             "&filter[created_at__between]=2100-01-01T00:00:00%2B00:00")["list"]
    assert len(repeated) == 5
    assert api.get(path, params={"filter[created_at__between]": "2000-01-01T00:00:00"}).status_code == 400


def test_service_filters_the_sdk_sends(api: Api) -> None:
    from ._helpers import ORG

    def names(**params: str) -> list[str]:
        return [s["name"] for s in api.ok("GET", f"/organisations/{ORG}/services/latest", params=params)["list"]]

    assert names(limit="1", reverse="False", **{"filter[keywords__contains]": "Elevation"}) == ["Elevation"]
    assert names(**{"filter[name__begins_with]": "Demo: Sentinel-2 Cloud Classification"}) == [
        "Demo: Sentinel-2 Cloud Classification"]
    assert names(**{"filter[id__eq]": services.ELEVATION_SERVICE_ID}) == ["Elevation"]
    assert names(**{"filter[ssd_id__eq]": services.CLASSIFICATION_SSD_ID}) == ["Demo: Sentinel-2 Cloud Classification"]
    assert names(**{"filter[keywords__not_contains]": "Dispatcher", "filter[version__ge]": "1"}) == [
        "Elevation", "Demo: Sentinel-2 Cloud Classification"]
    assert names(**{"filter[version__gt]": "1"}) == []
    assert names(**{"filter[show_in_latest__eq]": "true", "search": "cloud"}) == [
        "Demo: Sentinel-2 Cloud Classification"]
    assert "Statistics Aggregator" not in names()
    dispatchers = api.ok("GET", f"/organisations/{ORG}/services/dispatchers",
                         params={"filter[name__begins_with]": "AWS"})["list"]
    assert [d["name"] for d in dispatchers] == ["AWS S3"]


@pytest.mark.parametrize("params", [
    {"limit": "0"}, {"limit": "abc"}, {"limit": "100000"}, {"reverse": "maybe"},
    {"filter[nonexistent]": "x"}, {"filter[name__fuzzy]": "x"}, {"filter[name__contains]": "x"},
    {"filter[name__ne]": "x"}, {"filter[id__in]": "x"}, {"last[id]": "not-a-uuid"},
    {"last[id]": "6b6f8f16-0000-4000-8000-000000000000"}, {"last[bogus]": "1"},
    {"last[id]": "6b6f8f16-0000-4000-8000-000000000000", "last[created_at]": "yesterday"},
    {"filter[created_at__gt]": "not a date"}, {"filter[bounds__null]": "perhaps"},
])
def test_bad_list_parameters_are_400(world: dict[str, Any], params: dict[str, str]) -> None:
    response = world["api"].get(f"/organisations/{world['org']}/data/uploaded", params=params)
    assert response.status_code == 400, params
    assert response.json()["error_message"]
