"""The STAC API read by pystac-client and plain HTTP: collections, search, filter, sort, fields, paging."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from .conftest import Served, World

pystac_client = pytest.importorskip("pystac_client")


def _all_items(served: Served) -> list[dict[str, Any]]:
    return list(pystac_client.Client.open(served.url).search(limit=100).items_as_dicts())


def test_landing_page_claims_the_conformance_classes_and_links(served: Served) -> None:
    landing = requests.get(served.url + "/").json()
    claims = set(landing["conformsTo"])
    for cc in ("https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/collections",
               "https://api.stacspec.org/v1.0.0/ogcapi-features", "https://api.stacspec.org/v1.0.0/item-search",
               "https://api.stacspec.org/v1.0.0/item-search#fields", "https://api.stacspec.org/v1.1.0/item-search#sort",
               "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
               "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json"):
        assert cc in claims
    assert not any("collection-search" in c for c in claims)  # not implemented, not claimed
    rels = {link["rel"] for link in landing["links"]}
    assert {"self", "root", "data", "conformance", "search", "service-desc"} <= rels


def test_collections_one_per_upload_and_one_per_run_with_right_extents(served: Served, world: World) -> None:
    client = pystac_client.Client.open(served.url)
    ids = {c.id for c in client.get_collections()}
    assert world.upload_id in ids and world.group_id in ids
    assert world.other_data_id not in ids  # another organisation's upload is not visible
    group = client.get_collection(world.group_id)
    items = list(group.get_items())
    assert len(items) >= 4  # the slices' outputs and the aggregator's
    assert {i.properties["fusion:group_id"] for i in items} == {world.group_id}
    assert any(i.properties.get("fusion:aggregator") for i in items)
    boxes = [i.bbox for i in items if i.bbox]  # files without a footprint (tables, reports) have none
    assert boxes
    west = min(b[0] for b in boxes)
    south = min(b[1] for b in boxes)
    east = max(b[2] for b in boxes)
    north = max(b[3] for b in boxes)
    assert group.extent.spatial.bboxes[0] == pytest.approx([west, south, east, north])
    start = min(i.common_metadata.start_datetime or i.datetime for i in items)
    assert group.extent.temporal.intervals[0][0] == start
    upload = client.get_collection(world.upload_id)
    (item,) = upload.get_items()
    assert item.properties["fusion:data_id"] == world.upload_id


def test_search_bbox_datetime_filter_sort_fields_through_pystac_client(served: Served, world: World) -> None:
    every = _all_items(served)
    group_items = [i for i in every if i["collection"] == world.group_id]
    target = next(i for i in group_items if i.get("bbox"))
    w, s = target["bbox"][:2]
    search = pystac_client.Client.open(served.url).search(
        bbox=[w + 1e-4, s + 1e-4, w + 2e-4, s + 2e-4],
        datetime="2000-01-01T00:00:00Z/..",
        filter={"op": "=", "args": [{"property": "fusion:group_id"}, world.group_id]},
        sortby=[{"field": "properties.fusion:file_name", "direction": "desc"}],
        fields={"include": ["properties.fusion:file_name"], "exclude": ["properties.title"]},
        limit=2,
    )
    found = list(search.items_as_dicts())
    assert target["id"] in {i["id"] for i in found}
    assert all(i["collection"] == world.group_id for i in found)
    names = [i["properties"]["fusion:file_name"] for i in found]
    assert names == sorted(names, reverse=True)
    assert all(set(i["properties"]) == {"fusion:file_name"} for i in found)  # only what was included
    assert all("geometry" not in i for i in found)
    # a datetime interval before the run finds nothing; CQL2 text works as JSON does
    assert not list(pystac_client.Client.open(served.url).search(datetime="2000-01-01/2000-12-31").items())
    text = pystac_client.Client.open(served.url).search(
        filter=f"\"fusion:group_id\" = '{world.group_id}' AND \"fusion:file_type\" = 'GeoTIFF'", filter_lang="cql2-text",
        method="GET", limit=100)
    geotiffs = {i["id"] for i in group_items if i["properties"].get("fusion:file_type") == "GeoTIFF"}
    assert {i.id for i in text.items()} == geotiffs


def test_paging_follows_next_links_get_and_post(served: Served) -> None:
    total = len(_all_items(served))
    assert total >= 5
    for method in ("GET", "POST"):
        search = pystac_client.Client.open(served.url).search(limit=2, method=method)
        pages = list(search.pages_as_dicts())
        assert len(pages) == -(-total // 2)
        ids = [f["id"] for p in pages for f in p["features"]]
        assert len(ids) == len(set(ids)) == total


def test_ids_collections_intersects_and_an_antimeridian_bbox(served: Served, world: World) -> None:
    every = _all_items(served)
    one = next(i for i in every if i.get("bbox"))
    r = requests.get(served.url + "/search", params={"ids": one["id"], "collections": one["collection"]}).json()
    assert [f["id"] for f in r["features"]] == [one["id"]]
    body = {"intersects": one["geometry"], "collections": [one["collection"]], "limit": 100}
    r = requests.post(served.url + "/search", json=body).json()
    assert one["id"] in {f["id"] for f in r["features"]}
    # west > east: the bbox crosses the antimeridian; [170, -90, -170, 90] misses London, [-1, ...] wraps round it
    far = requests.get(served.url + "/search", params={"bbox": "170,-90,-170,90"})
    assert far.status_code == 200 and far.json()["features"] == []
    wrap = requests.get(served.url + "/search", params={"bbox": "-1,-90,-179,90", "limit": 100})
    assert wrap.status_code == 200 and len(wrap.json()["features"]) == len([i for i in every if i.get("bbox")])


def test_queryables_list_the_fusion_proj_processing_and_datetime_fields(served: Served) -> None:
    _all_items(served)
    r = requests.get(served.url + "/queryables")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/schema+json")
    q = r.json()
    props = q["properties"]
    assert q["$id"] == served.url + "/queryables" and q["type"] == "object"
    for name in ("datetime", "start_datetime", "end_datetime", "fusion:group_id", "fusion:file_type", "proj:code",
                 "processing:facility"):
        assert name in props, name


def test_bad_input_answers_400_naming_the_problem_and_unknown_ids_404(served: Served, world: World) -> None:
    r = requests.get(served.url + "/search", params={"filter": "fusion:file_type ===", "filter-lang": "cql2-text"})
    assert r.status_code == 400 and "CQL2" in r.json()["description"]
    r = requests.post(served.url + "/search", json={"filter": {"op": "casei", "args": ["a"]}})
    assert r.status_code == 400
    r = requests.get(served.url + "/search", params={"sortby": "+datetime", "token": "not-a-token"})
    assert r.status_code == 400 and "token" in r.json()["description"]
    assert requests.get(served.url + f"/collections/{world.other_data_id}").status_code == 404
    assert requests.get(served.url + f"/collections/{world.group_id}/items/nope").status_code == 404


def test_no_document_carries_a_signed_url_or_a_secret(served: Served, world: World) -> None:
    texts = [requests.get(served.url + path).text for path in (
        "/", "/collections", f"/collections/{world.group_id}", f"/collections/{world.group_id}/items?limit=100",
        "/search?limit=100", "/queryables")]
    texts.append(requests.get(served.url + "/search", params={"filter": "nonsense ((("}).text)
    for text in texts:
        for secret in ("signature", "X-Amz", "_storage", "token=", "Bearer", "MyPassword"):
            assert secret not in text
    hrefs = [a["href"] for f in json.loads(texts[4])["features"] for a in f["assets"].values()]
    assert hrefs and all(h.startswith(served.url + "/assets/") for h in hrefs)


SORTABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/sortables"
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"


def test_sortables_list_what_sortby_orders_by_and_each_of_them_sorts(served: Served, world: World) -> None:
    every = _all_items(served)
    landing = requests.get(served.url + "/").json()
    assert {"rel": SORTABLES_REL, "href": served.url + "/sortables"}.items() <= next(
        link for link in landing["links"] if link["rel"] == SORTABLES_REL).items()
    claims = set(landing["conformsTo"])
    assert "https://api.stacspec.org/v1.1.0/item-search#sortables" in claims
    assert "https://api.stacspec.org/v1.1.0/collection-search#sortables" not in claims  # not served
    assert requests.get(served.url + "/collections-sortables").status_code == 404
    r = requests.get(served.url + "/sortables")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/schema+json")
    schema = r.json()
    assert schema["$id"] == served.url + "/sortables" and schema["type"] == "object"
    props = schema["properties"]
    for name in ("id", "collection", "datetime", "start_datetime", "end_datetime", "fusion:file_name",
                 "fusion:group_id"):
        assert name in props, name
    assert props["datetime"]["format"] == "date-time"
    assert "geometry" not in props  # not something an ORDER BY can use
    arrays = {k for i in every for k, v in i["properties"].items() if isinstance(v, (list, dict))}
    assert arrays and not arrays & set(props)  # proj:bbox, proj:shape...: would sort by their JSON text
    assert {p["type"] for p in props.values()} <= {"string", "number", "integer", "boolean"}
    for name in props:  # every sortable sorts, both ways
        for sign, reverse in (("+", False), ("-", True)):
            r = requests.get(served.url + "/search", params={"sortby": sign + name, "limit": 100})
            assert r.status_code == 200, (name, r.text)
            features = r.json()["features"]
            values = [f["id"] if name == "id" else f["collection"] if name == "collection"
                      else f["properties"].get(name) for f in features]
            present = [v for v in values if v is not None]
            if name not in ("datetime", "start_datetime", "end_datetime"):  # stored in canonical form
                assert present == sorted(present, reverse=reverse), name


def test_collection_sortables_and_queryables_list_that_collections_properties(served: Served, world: World) -> None:
    _all_items(served)
    whole_q = requests.get(served.url + "/queryables").json()["properties"]
    for kind, base in (("sortables", {"id", "collection", "datetime", "start_datetime", "end_datetime"}),
                       ("queryables", {"id", "collection", "geometry", "datetime", "start_datetime",
                                       "end_datetime"})):
        upload = requests.get(f"{served.url}/collections/{world.upload_id}/{kind}")
        group = requests.get(f"{served.url}/collections/{world.group_id}/{kind}")
        assert upload.status_code == group.status_code == 200
        assert upload.headers["content-type"].startswith("application/schema+json")
        assert upload.json()["$id"] == f"{served.url}/collections/{world.upload_id}/{kind}"
        in_upload, in_group = set(upload.json()["properties"]), set(group.json()["properties"])
        assert base <= in_upload and base <= in_group
        # a grouped run's items have group ids, an upload's have none
        assert "fusion:group_id" in in_group and "fusion:group_id" not in in_upload
        assert "fusion:data_id" in in_upload
        unknown = requests.get(f"{served.url}/collections/{world.other_data_id}/{kind}")
        assert unknown.status_code == 404 and world.other_data_id in unknown.json()["description"]
    assert "fusion:group_id" in whole_q  # the whole API's lists everything
    collection = requests.get(f"{served.url}/collections/{world.upload_id}").json()
    links = {link["rel"]: link["href"] for link in collection["links"]}
    assert links[SORTABLES_REL] == f"{served.url}/collections/{world.upload_id}/sortables"
    assert links[QUERYABLES_REL] == f"{served.url}/collections/{world.upload_id}/queryables"
