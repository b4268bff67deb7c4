"""The STAC view against the emulator: lazy browsing, hrefs, states, bad input, search, request counts."""

from __future__ import annotations

from typing import Any

import pystac
import pytest

from fusion_stac import _urls
from fusion_stac.errors import FusionError, NotFoundError, ValidationError
from fusion_stac.models import DataFile
from fusion_stac.stac import io as sio
from fusion_stac.stac.catalog import open_catalog, resolve_href, search

from .conftest import World, write_square


def group_collection(world: World, client: Any, **kwargs: Any) -> pystac.Collection:
    coll = open_catalog(client, f"fusion://{world.org_id}/processes/{world.group_process.id}/latest", **kwargs)
    assert isinstance(coll, pystac.Collection)
    return coll


# --------------------------------------------------------------------------------------------------
# Browsing with pystac, unmodified


def test_root_lists_organisations_and_sections(world: World, client: Any) -> None:
    root = open_catalog(client)
    assert root.get_self_href() is not None
    orgs = list(root.get_children())
    assert [o.id for o in orgs] == [world.org_id]
    assert orgs[0].title == world.org_name
    sections = {c.id: c for c in orgs[0].get_children()}
    assert set(sections) == {"uploads", "processes"}
    uploads = {c.title: c for c in sections["uploads"].get_children()}
    assert {"Demo upload", "Small square", "Thames"} <= set(uploads)
    assert all(isinstance(c, pystac.Collection) for c in uploads.values())
    procs = {c.title: c for c in sections["processes"].get_children()}
    assert set(procs) == {"Small elevation", "Thames classification"}
    # a group is one child collection, not one per slice
    (group,) = procs["Thames classification"].get_children()
    assert group.id == world.group_id
    # the global StacIO is untouched: our I/O hangs off this root only
    assert not isinstance(pystac.StacIO.default(), sio.FusionStacIO)


def test_get_items_recursive_and_get_item(world: World, client: Any) -> None:
    root = open_catalog(client)
    items = list(root.get_items(recursive=True))
    by_collection: dict[str, list[pystac.Item]] = {}
    for it in items:
        by_collection.setdefault(it.collection_id or "", []).append(it)
    assert len(by_collection[world.upload.id]) == 1
    assert len(by_collection[world.single_execution.id]) >= 1
    members = list(client.iter_executions(world.org_id, world.group_process.id, group_id=world.group_id))
    slices = [e for e in members if not e.is_aggregator]
    group_items = by_collection[world.group_id]
    assert len([i for i in group_items if i.properties.get("fusion:file_type") == "GeoTIFF"]) == len(slices)
    # get_item through the tree, and back up to the collection
    target = group_items[0]
    found = next(root.get_items(target.id, recursive=True))
    assert found.id == target.id
    with pytest.deprecated_call():  # pystac deprecates get_item in favour of get_items(id)
        assert root.get_item(target.id, recursive=True).id == target.id  # type: ignore[union-attr]
    coll = found.get_collection()
    assert coll is not None and coll.id == world.group_id
    # ids are unique across the whole tree
    assert len({i.id for i in items}) == len(items)


def test_lazy_opening_costs_few_requests(world: World) -> None:
    client = world.client()
    client.user  # log in first: not the catalog's doing  # noqa: B018
    before = client.stats.snapshot()["requests"]
    root = open_catalog(client, world.org_name)
    assert client.stats.snapshot()["requests"] - before == 1  # the name lookup; its catalog reuses the answer
    mid = client.stats.snapshot()["requests"]
    uploads = next(c for c in root.get_children() if c.id == "uploads")
    demo = next(c for c in uploads.get_children() if c.id == world.upload.id)
    list(demo.get_items())
    after = client.stats.snapshot()["requests"]
    # the uploads listing, then one file listing per opened collection (the grid comes from the API)
    assert after - mid == 2
    list(demo.get_items())  # cached
    assert client.stats.snapshot()["requests"] == after
    client.close()


def test_open_by_names_and_ids(world: World, client: Any) -> None:
    by_name = open_catalog(client, f"fusion://{world.org_name}/uploads/Demo upload")
    by_id = open_catalog(client, f"fusion://{world.org_id}/uploads/{world.upload.id}")
    assert isinstance(by_name, pystac.Collection) and by_name.id == by_id.id == world.upload.id
    proc = open_catalog(client, f"fusion://{world.org_name}/processes/Small elevation")
    assert proc.id == world.single_process.id and not isinstance(proc, pystac.Collection)
    latest = open_catalog(client, f"fusion://{world.org_name}/processes/Small elevation/latest")
    assert latest.id == world.single_execution.id
    # any member execution of a group opens the group
    member = next(client.iter_executions(world.org_id, world.group_process.id, group_id=world.group_id))
    assert open_catalog(client, f"fusion://{world.org_id}/processes/{world.group_process.id}/{member.id}").id == world.group_id
    assert open_catalog(client, f"fusion://{world.org_id}/processes/{world.group_process.id}/{world.group_id}").id == world.group_id


# --------------------------------------------------------------------------------------------------
# Hrefs


def test_stac_hrefs_never_collide_with_file_paths(world: World, client: Any) -> None:
    coll = group_collection(world, client)
    hrefs = [coll.get_self_href(), *(i.get_self_href() for i in coll.get_items())]
    for href in hrefs:
        assert href is not None
        parsed = sio.parse_stac_href(href)
        assert "?stac=" in href
        # dropping the query gives a valid fs path of the same node; the fs grammar never yields a '?'
        fs_path = _urls.parse(href)
        assert "?" not in fs_path.url
        assert parsed.path == fs_path
    item = next(iter(coll.get_items()))
    p = item.properties
    assert item.assets["data"].href == _urls.file_url(p["fusion:organisation_id"], p["fusion:data_id"], p["fusion:file_id"])
    with pytest.raises(_urls.FusionURLError, match="not a STAC href"):
        sio.parse_stac_href(item.assets["data"].href)
    # a file literally named like a STAC document still formats without a query
    assert "?" not in _urls.upload_url(world.org_id, world.upload.id, "x?stac=item")


def test_catalog_is_read_only(world: World, client: Any) -> None:
    root = open_catalog(client)
    with pytest.raises(FusionError, match="read-only"):
        root.save(catalog_type=pystac.CatalogType.ABSOLUTE_PUBLISHED)


# --------------------------------------------------------------------------------------------------
# Content


def test_group_collection_spans_two_utm_zones(world: World, client: Any) -> None:
    coll = group_collection(world, client)
    assert coll.extra_fields["fusion:state"] == "succeeded"
    assert coll.extra_fields["fusion:group_id"] == world.group_id
    items = list(coll.get_items())
    rasters = [i for i in items if i.properties.get("fusion:file_type") == "GeoTIFF"]
    codes = {i.properties["proj:code"] for i in rasters}
    assert codes == {"EPSG:32630", "EPSG:32631"}
    assert coll.summaries.lists["proj:code"] == sorted(codes)
    union = coll.extent.spatial.bboxes[0]
    assert union[0] < 0 < union[2]
    for it in rasters:
        w, s, e, n = it.bbox
        assert union[0] <= w and union[1] <= s and e <= union[2] and n <= union[3]
    # one nominal time for every slice, so loaders mosaic them; group index/count per slice
    assert len({i.datetime for i in items}) == 1
    count = {i.properties["fusion:group_count"] for i in rasters}
    assert len(count) == 1
    assert sorted(i.properties["fusion:group_index"] for i in rasters) == list(range(1, count.pop() + 1))
    # the aggregator's output belongs to the group collection
    aggregated = [i for i in items if i.properties.get("fusion:aggregator")]
    assert aggregated and all(i.properties["fusion:group_id"] == world.group_id for i in aggregated)
    # everything a loader needs, without opening a file
    for it in rasters:
        asset = it.assets["data"].to_dict()
        assert asset["proj:shape"] and asset["proj:transform"] and asset["raster:bands"][0]["data_type"] == "uint8"
        assert asset["file:size"] > 0 and asset["file:checksum"].startswith("1220")
        assert it.assets["thumbnail"].roles == ["thumbnail", "overview"]


def test_upload_item_matches_the_file(world: World, client: Any) -> None:
    import rasterio

    coll = open_catalog(client, f"fusion://{world.org_id}/uploads/{world.upload.id}")
    (item,) = coll.get_items()
    asset = item.assets["data"].to_dict()
    with rasterio.open(world.upload_tif) as src:
        assert asset["proj:shape"] == [src.height, src.width]
        assert asset["proj:transform"] == pytest.approx(list(src.transform)[:6])
        assert item.properties["proj:code"] == f"EPSG:{src.crs.to_epsg()}"
        assert asset["raster:bands"][0]["nodata"] == src.nodata
        assert asset["raster:bands"][0]["data_type"] == src.dtypes[0]
    assert asset["file:size"] == world.upload_tif.stat().st_size
    assert item.datetime is not None


class _NoGridClient:
    """A client whose file listings lack the analysis (as the real platform may): forces header reads."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.listed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def list_files(self, org_id: str, data_id: str) -> list[DataFile]:
        self.listed += 1
        drop = {"ingesters", "stac_item", "number_of_ingesters"}
        return [DataFile.from_api({k: v for k, v in f.raw.items() if k not in drop})
                for f in self._inner.list_files(org_id, data_id)]


def test_header_read_when_the_api_lacks_the_grid(world: World, client: Any) -> None:
    import rasterio

    from fusion_stac.stac import _header

    _header.cache_clear()
    wrapped = _NoGridClient(client)
    storage_before = world.emu.stats()["storage_requests"]
    coll = open_catalog(wrapped, f"fusion://{world.org_id}/uploads/{world.upload.id}")
    (item,) = coll.get_items()
    asset = item.assets["data"].to_dict()
    with rasterio.open(world.upload_tif) as src:
        assert asset["proj:shape"] == [src.height, src.width]
        assert asset["proj:transform"] == pytest.approx(list(src.transform)[:6])
        assert item.properties["proj:code"] == f"EPSG:{src.crs.to_epsg()}"
        assert asset["raster:bands"][0]["nodata"] == src.nodata
    assert world.emu.stats()["storage_requests"] - storage_before == 1  # one ranged GET of the header
    # cached by file id: a second build does not read it again
    again = open_catalog(wrapped, f"fusion://{world.org_id}/uploads/{world.upload.id}")
    list(again.get_items())
    assert world.emu.stats()["storage_requests"] - storage_before == 1


def test_header_read_falls_back_to_a_get_only_vsicurl_open(world: World, client: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """When the first bytes do not hold the whole header, GDAL reads the file by ranges (no HEAD)."""
    import rasterio

    from fusion_stac.stac import _header

    _header.cache_clear()
    monkeypatch.setattr(_header, "HEADER_BYTES", 64)  # far too short for any TIFF header
    coll = open_catalog(_NoGridClient(client), f"fusion://{world.org_id}/uploads/{world.upload.id}")
    (item,) = coll.get_items()
    with rasterio.open(world.upload_tif) as src:
        assert item.assets["data"].extra_fields["proj:shape"] == [src.height, src.width]
    _header.cache_clear()


def test_signed_asset_hrefs_record_expiry(world: World, client: Any) -> None:
    coll = group_collection(world, client, asset_hrefs="signed")
    item = next(i for i in coll.get_items() if i.properties.get("fusion:file_type") == "GeoTIFF")
    data = item.assets["data"]
    assert data.href.startswith("http://127.0.0.1")
    expires = pystac.utils.str_to_datetime(data.extra_fields["fusion:href_expires"])
    assert expires > pystac.utils.now_in_utc()
    assert item.assets["thumbnail"].href.startswith("http://127.0.0.1")


def test_running_execution_is_shown_as_running(world: World, tmp_path: Any) -> None:
    client = world.client()
    org = world.org_id
    region = client.create_data(org, "Running square", [write_square(tmp_path / "r.geojson", 0.2, 51.45, 0.04)])
    proc = client.new_process(org, "Elevation", "Slow elevation").with_input(1, region).create()
    world.emu.configure(execution_duration=120)
    try:
        client.execute(org, proc.id)
        client.wait_for_next_execution(org, proc.id)
        coll = open_catalog(client, f"fusion://{org}/processes/{proc.id}/latest")
        assert coll.extra_fields["fusion:state"] == "running"
        assert coll.extra_fields["fusion:progress"] < 100
        assert list(coll.get_items()) == []  # nothing half-built
        assert coll.extent.temporal.intervals[0][1] is None  # open-ended while running
        child_titles = [lk.title for lk in open_catalog(client, f"fusion://{org}/processes/{proc.id}").get_child_links()]
        assert any("running" in (t or "") for t in child_titles)
    finally:
        world.emu.configure(execution_duration=0)
        client.stop_process(org, proc.id)
        client.close()


# --------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("No Such Org", "no organisation named 'No Such Org'"),
        ("fusion://{org}/processes/No such process", "no process named 'No such process'"),
        ("fusion://{org}/uploads/No such data", "no uploaded data named 'No such data'"),
        ("fusion://{org}/processes/Small elevation/00000000-0000-4000-8000-000000000000",
         "has no execution or group 00000000-0000-4000-8000-000000000000"),
        ("fusion://{org}/processes/Small elevation/yesterday", "give an execution id, a group id or 'latest'"),
    ],
)
def test_unknown_names_give_clear_errors(world: World, client: Any, path: str, needle: str) -> None:
    with pytest.raises(NotFoundError) as info:
        open_catalog(client, path.format(org=world.org_name))
    assert needle in str(info.value)


def test_paths_below_an_execution_or_in_the_short_form_are_refused(world: World, client: Any) -> None:
    with pytest.raises(ValidationError, match="short form"):
        resolve_href(client, f"fusion://{world.org_id}/data/{world.upload.id}")
    with pytest.raises(ValidationError, match="is a file"):
        resolve_href(client, f"fusion://{world.org_id}/uploads/{world.upload.id}/dem.tif")
    with pytest.raises(ValidationError, match="asset_hrefs"):
        open_catalog(client, asset_hrefs="presigned")  # type: ignore[arg-type]


def test_a_grouped_execution_href_points_to_its_group(world: World, client: Any) -> None:
    member = next(client.iter_executions(world.org_id, world.group_process.id, group_id=world.group_id))
    io = sio.FusionStacIO(client)
    with pytest.raises(NotFoundError, match=f"group's collection .*{world.group_id}"):
        io.document(sio.execution_href(world.org_id, world.group_process.id, member.id))


# --------------------------------------------------------------------------------------------------
# Search


def test_search_bbox_west_of_greenwich(world: World, client: Any) -> None:
    found = search(client, bbox=[-1.0, 51.0, -0.05, 52.0], filter={"fusion:group_id": world.group_id})
    assert len(found) >= 1
    for item in found:
        assert item.bbox[0] < -0.05
        assert item.properties["fusion:group_id"] == world.group_id
    # items come back browsable
    assert found.items[0].get_collection().id == world.group_id


def test_search_by_text_collections_filter_and_time(world: World, client: Any) -> None:
    by_text = search(client, text="thames classif")
    assert by_text.items and {i.collection_id for i in by_text} == {world.group_id}
    csv = search(client, collections=[world.group_id], filter={"fusion:file_type": "CSV"})
    assert csv.items and all(i.assets["data"].media_type == "text/csv" for i in csv)
    uploads = search(client, collections=[world.upload.id])
    assert [i.collection_id for i in uploads] == [world.upload.id]
    ex = world.single_execution
    at_run = search(client, datetime=(ex.started_at, ex.ended_at or ex.started_at), filter={"fusion:execution_id": ex.id})
    assert at_run.items and {i.properties["fusion:execution_id"] for i in at_run} == {ex.id}
    before = search(client, datetime="1990-01-01/1990-12-31", collections=[ex.id])
    assert before.items == []
    small = search(client, filter={"gsd": {"le": 10_000}, "fusion:file_type": {"in": ["GeoTIFF"]}}, max_items=2)
    assert 1 <= len(small) <= 2


def test_search_rejects_bad_arguments(client: Any) -> None:
    with pytest.raises(ValidationError, match="bbox"):
        search(client, bbox=[0, 52, 1, 51])
    with pytest.raises(ValidationError, match="datetime"):
        search(client, datetime="2024-05-01/2023-01-01")
    with pytest.raises(ValidationError, match="unknown operator"):
        search(client, filter={"gsd": {"approx": 3}})


# --------------------------------------------------------------------------------------------------
# Requests grow with objects, never with their square


def test_group_build_requests_are_linear(world: World) -> None:
    client = world.client()
    members = list(client.iter_executions(world.org_id, world.group_process.id, group_id=world.group_id))
    components = [c for e in members for c in client.iter_components(world.org_id, e.id)]
    outputs = {d for c in components for d in c.outputs}
    client.close()

    client = world.client()
    client.user  # noqa: B018
    world.emu.reset_stats()
    coll = group_collection(world, client)
    list(coll.get_items())
    routes = world.emu.stats()["routes"]
    api = sum(v for k, v in routes.items() if not k.startswith("/_"))
    # resolve: organisation, process and latest execution; build: the group listing, then one
    # component listing per execution and one file listing per output data item
    expected = 3 + 1 + len(members) + len(outputs)
    assert api <= expected, routes
    assert world.emu.stats()["storage_requests"] == 0  # the grid came from the API: no header reads
    client.close()


def test_another_user_sees_neither_our_organisation_nor_our_outputs(world: World) -> None:
    from fusion_stac.client import FusionClient
    from fusion_stac.errors import APIError

    other = FusionClient(world.emu.url, email="other@example.com", password="OtherPassword123!")
    try:
        root = open_catalog(other)
        assert world.org_id not in {c.id for c in root.get_children()}
        with pytest.raises(APIError) as info:
            open_catalog(other, f"fusion://{world.org_id}/uploads/{world.upload.id}")
        assert info.value.status in (403, 404)
        assert search(other, collections=[world.group_id, world.upload.id]).items == []
    finally:
        other.close()
