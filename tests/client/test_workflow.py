"""The full workflow against the in-process emulator: data, services, processes, executions, outputs."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fusion_stac.client import FusionClient, GroupTree, ProcessDraft, partial_path
from fusion_stac.errors import (
    AmbiguousNameError,
    APIError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from fusion_stac.models import Data, DataFile, Organisation, Process, Service, SignedURL, User

from .conftest import CLASSIFICATION, EMAIL, FinishedRun, rectangle_geojson

# -- user and organisations -----------------------------------------------------------------------------


def test_user_and_organisations(client: FusionClient) -> None:
    user = client.user
    assert isinstance(user, User) and user.email == EMAIL and user.id == client.user_id
    orgs = list(client.organisations())
    assert orgs and all(isinstance(o, Organisation) for o in orgs)
    assert [o.id for o in orgs] == list(user.organisation_ids)
    first = orgs[0]
    assert client.organisation(first.id) == first
    assert client.organisation(first.name).id == first.id
    assert client.organisation(first.name.upper()).id == first.id  # names compare case-insensitively
    with pytest.raises(NotFoundError, match="no organisation named 'No Such Org'"):
        client.organisation("No Such Org")
    credit = client.credit(first.id)
    assert credit.organisation_id == first.id and credit.any_credits is not None


# -- data -------------------------------------------------------------------------------------------------


def test_upload_with_progress_and_files(client: FusionClient, org_id: str, tmp_path: Path) -> None:
    a = rectangle_geojson(tmp_path / "a.geojson", width_km=3, height_km=3)
    b = rectangle_geojson(tmp_path / "b.json", lon=-4.0, width_km=2, height_km=2)
    seen: list[float] = []
    data = client.create_data(org_id, "Two small squares", [a, b], progress=seen.append)
    assert isinstance(data, Data) and data.name == "Two small squares" and data.organisation_id == org_id
    assert seen and seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    files = client.list_files(org_id, data.id)
    assert sorted(f.file_name for f in files) == ["a.geojson", "b.json"]
    assert all(isinstance(f, DataFile) and f.analysed and f.usable_as_input for f in files)
    assert {f.file_type for f in files} == {"GeoJSON"}
    assert {f.size for f in files} == {a.stat().st_size, b.stat().st_size}
    assert all(f.data_id == data.id and f.organisation_id == org_id for f in files)
    assert client.get_data(org_id, data.id).id == data.id
    client.delete_data(org_id, data.id)
    with pytest.raises(NotFoundError):
        client.get_data(org_id, data.id)


def test_copy_rename_find_and_ambiguity(client: FusionClient, org_id: str, tmp_path: Path) -> None:
    region = rectangle_geojson(tmp_path / "r.geojson", width_km=2, height_km=2)
    original = client.create_data(org_id, "Lookup Lake", [region])
    twin = client.copy_data(org_id, original.id, "Lookup Lake 2")
    try:
        assert twin.id != original.id and twin.name == "Lookup Lake 2"
        assert [f.file_name for f in client.list_files(org_id, twin.id)] == ["r.geojson"]
        before = client.stats.requests
        assert client.find_data(org_id, "Lookup Lake").id == original.id  # exact beats the prefix match
        assert client.stats.requests - before == 1  # one request, not two
        assert client.find_data(org_id, "Lookup Lake 2").id == twin.id
        assert client.find_data(org_id, original.id).id == original.id
        with pytest.raises(AmbiguousNameError) as info:
            client.find_data(org_id, "Lookup La")
        assert {c[0] for c in info.value.candidates} >= {original.id, twin.id}
        assert "Lookup Lake 2" in str(info.value)
        with pytest.raises(NotFoundError, match="no data named 'Nothing Like This'"):
            client.find_data(org_id, "Nothing Like This")
        renamed = client.rename_data(org_id, twin.id, "Lookup Tarn")
        assert renamed.name == "Lookup Tarn" and client.find_data(org_id, "Lookup La").id == original.id
        assert [d.id for d in client.iter_data(org_id, name="Lookup Tarn")] == [twin.id]
        assert twin.id in {d.id for d in client.iter_data(org_id, search="lookup tarn")}
    finally:
        client.delete_data(org_id, twin.id)
        client.delete_data(org_id, original.id)


def test_paging_is_lazy_and_complete(client_emu: Any, org_id: str, tmp_path: Path) -> None:
    region = rectangle_geojson(tmp_path / "p.geojson", width_km=1, height_km=1)
    with FusionClient(client_emu.url, email=EMAIL, password="MyPassword123!", page_size=2) as small:
        made = [small.create_data(org_id, f"Paging {i}", [region]) for i in range(5)]
        try:
            before = small.stats.requests
            iterator = small.iter_data(org_id, name="Paging ")
            assert small.stats.requests == before  # nothing fetched until iterated
            first = next(iterator)
            assert small.stats.requests == before + 1 and first.name == "Paging 0"
            rest = list(iterator)
            assert [d.name for d in [first, *rest]] == [f"Paging {i}" for i in range(5)]
            assert small.stats.requests == before + 3  # 5 items at 2 per page
        finally:
            small.map(lambda d: small.delete_data(org_id, d.id), made)


def test_download_url_and_file(client: FusionClient, org_id: str, tmp_path: Path) -> None:
    region = rectangle_geojson(tmp_path / "d.geojson", width_km=4, height_km=4)
    data = client.create_data(org_id, "Download me", [region])
    try:
        (file,) = client.list_files(org_id, data.id)
        url = client.download_url(org_id, data.id, file.file_id)
        assert isinstance(url, SignedURL)
        assert url.expires_at > datetime.now(timezone.utc) and not url.is_expired()
        assert "signature" not in repr(url).lower() or "?…" in repr(url)
        fractions: list[float] = []
        out = client.download_file(org_id, data.id, file, tmp_path / "out", progress=fractions.append)
        assert out == tmp_path / "out"
        assert out.read_bytes() == region.read_bytes()
        assert fractions and fractions[-1] == pytest.approx(1.0) and fractions == sorted(fractions)
        (tmp_path / "dir").mkdir()
        into_dir = client.download_file(org_id, data.id, file, tmp_path / "dir")
        assert into_dir == tmp_path / "dir" / "d.geojson" and into_dir.read_bytes() == region.read_bytes()
        assert not list(out.parent.glob("*.part"))

        # a partial download is resumed with Range, not restarted
        target = tmp_path / "resumed.geojson"
        part = partial_path(target, file.file_id or "")  # named after the file id
        part.write_bytes(region.read_bytes()[:100])
        got = client.download_file(org_id, data.id, file, target)
        assert got.read_bytes() == region.read_bytes() and not part.exists()

        # a partial longer than the file is discarded
        part.write_bytes(region.read_bytes() + b"garbage")
        got = client.download_file(org_id, data.id, file, target)
        assert hashlib.md5(got.read_bytes()).digest() == hashlib.md5(region.read_bytes()).digest()
    finally:
        client.delete_data(org_id, data.id)


# -- services and process definition ----------------------------------------------------------------------


def test_services(client: FusionClient, org_id: str) -> None:
    by_name = client.find_service(org_id, CLASSIFICATION)
    assert isinstance(by_name, Service) and by_name.name == CLASSIFICATION
    assert client.find_service(org_id, by_name.id).id == by_name.id
    assert client.find_service(org_id, keyword="Elevation").name == "Elevation"
    assert client.find_service(org_id, "Elevation").name == "Elevation"
    assert client.find_service(org_id, "Demo: Sentinel").id == by_name.id  # unique prefix
    assert client.find_service(org_id, "Terrain").name == "Elevation"  # falls back to keywords
    with pytest.raises(NotFoundError, match="no service with id, name or keyword 'Teleportation'"):
        client.find_service(org_id, "Teleportation")
    names = {s.name for s in client.iter_services(org_id)}
    assert {"Elevation", CLASSIFICATION} <= names
    assert [s.name for s in client.iter_services(org_id, keyword="Cloud")] == [CLASSIFICATION]
    assert {d.name for d in client.iter_dispatchers(org_id)} >= {"AWS S3"}


def test_draft_options_are_validated(client: FusionClient, org_id: str) -> None:
    draft = client.new_process(org_id, CLASSIFICATION, "Validation")
    assert isinstance(draft, ProcessDraft)
    changed = draft.with_options(latest_date=False, start_date=datetime(2021, 3, 27, tzinfo=timezone.utc),
                                 maximum_cloud=30, platform="Sentinel-2B")
    assert draft.option("latest_date").value == "true"  # drafts are immutable
    assert changed.option("latest_date").value == "false"
    assert changed.option("start_date").value == "2021-03-27T00:00:00"
    assert changed.option("maximum_cloud").value == "30"
    assert changed.option("platform").value == "B"
    with pytest.raises(ValidationError, match=r"no option 'cloudiness'.*'maximum_cloud'"):
        draft.with_option("cloudiness", 3)
    with pytest.raises(ValidationError, match=r"'maximum_cloud'.*above the maximum 100"):
        draft.with_option("maximum_cloud", 150)
    with pytest.raises(ValidationError, match=r"'latest_date'.*expected true or false"):
        draft.with_option("latest_date", "sometimes")
    with pytest.raises(ValidationError, match=r"'start_date'.*expected a datetime"):
        draft.with_option("start_date", 2021)
    with pytest.raises(ValidationError, match=r"'platform'.*'Sentinel-3' is not one of"):
        draft.with_option("platform", "Sentinel-3")
    with pytest.raises(ValidationError, match="unset inputs: input 1"):
        changed.create()
    with pytest.raises(ValidationError, match="cannot set process field"):
        draft.with_fields(price=0)
    with pytest.raises(ValidationError, match=r"no dispatcher 'Pigeon'.*'AWS S3'"):
        draft.with_dispatcher("Pigeon")
    with_s3 = draft.with_dispatcher("AWS S3", bucket="my-bucket", condition="Always")
    s3 = with_s3.process.dispatchers[0]
    assert s3.name == "AWS S3" and {o.name: o.value for o in s3.options}["condition"] == "*"


def test_inputs_are_checked(client: FusionClient, org_id: str, tmp_path: Path) -> None:
    draft = client.new_process(org_id, "Elevation", "Inputs")
    csv = tmp_path / "table.csv"
    csv.write_text("a,b\n1,2\n")
    table = client.create_data(org_id, "A table", [csv])
    region = rectangle_geojson(tmp_path / "late.geojson", width_km=2, height_km=2)
    late = client.create_data(org_id, "Late region", [region])
    # a data item whose file was registered but never uploaded: not analysed
    unsent = client._model(Data, "POST", f"/organisations/{org_id}/data",
                           body={"Data[organisation_id]": org_id, "Data[name]": "Never uploaded"})
    client.request("POST", f"/organisations/{org_id}/data/{unsent.id}/add_file",
                   body={"Data": {"name": "ghost.geojson", "file_type": "GeoJSON"}})
    try:
        with pytest.raises(ValidationError, match=r"input 1 \(Region\) takes GeoJSON.*'A table'.*holds CSV"):
            draft.with_input(1, table)
        with pytest.raises(ValidationError, match=r"'Never uploaded'.*not analysed yet.*'ghost.geojson'"):
            draft.with_input(1, unsent)
        with pytest.raises(ValidationError, match="no input number 2"):
            draft.with_input(2, late)
        ok = draft.with_input(1, late)
        assert ok.inputs[0].id == late.id and draft.inputs[0].id is None
    finally:
        for d in (table, late, unsent):
            client.delete_data(org_id, d.id)


def test_process_lifecycle(client: FusionClient, org_id: str, tmp_path: Path) -> None:
    region = client.create_data(org_id, "Small region", [rectangle_geojson(tmp_path / "s.geojson")])
    draft = client.new_process(org_id, "Elevation", "Lifecycle").with_input(1, region) \
        .with_option("resolution", 100)
    process = draft.create()
    try:
        assert isinstance(process, Process) and process.name == "Lifecycle"
        assert process.price is not None and process.price > Decimal(0)
        assert client.price(org_id, process.id) == process.price
        assert client.find_process(org_id, "Lifecycle").id == process.id
        assert client.find_process(org_id, process.id).id == process.id
        assert process.id in {p.id for p in client.iter_processes(org_id, name="Lifecycl")}
        with pytest.raises(ConflictError, match="used by process") as conflict:
            client.delete_data(org_id, region.id)  # the platform refuses while a process uses it
        assert conflict.value.status == 409 and conflict.value.method == "DELETE"
        renamed = client.update_process(org_id, process.id, name="Lifecycle renamed")
        assert renamed.name == "Lifecycle renamed"
        fractions: list[float] = []
        executed = client.execute(org_id, process.id, wait=True, progress=fractions.append)
        assert executed.id == process.id and fractions[-1] == pytest.approx(1.0)
        latest = client.latest_execution(org_id, process.id)
        assert latest.is_complete and latest.success
        done = client.wait_for_completion(org_id, process.id)
        assert {e.id for e in done} >= {latest.id}
        # a second run: the next execution is found, not the previous one
        client.execute(org_id, process.id, wait=True)
        runs = list(client.iter_executions(org_id, process.id))
        assert len(runs) >= 2 * len(done)
        assert runs[0].started_at >= runs[-1].started_at  # most recent first
        copy = client.copy_process(org_id, process.id, "Lifecycle copy")
        assert copy.inputs[0].id == region.id and copy.option("resolution").value == "100"
        created_copy = copy.create()
        assert created_copy.id != process.id and created_copy.name == "Lifecycle copy"
        stopped = client.stop_process(org_id, created_copy.id)
        assert stopped.process_status == "stop"
        client.delete_process(org_id, created_copy.id)
        with pytest.raises(NotFoundError):
            client.get_process(org_id, created_copy.id)
        with pytest.raises(NotFoundError):
            client.find_process(org_id, "Lifecycle copy")
    finally:
        client.delete_process(org_id, process.id)
        client.delete_data(org_id, region.id)


# -- executions, groups, components -----------------------------------------------------------------------


def test_group_executions(client: FusionClient, finished_run: FinishedRun) -> None:
    run = finished_run
    slices, aggregators = client.group_executions(run.org_id, run.process.id, run.group_id)
    assert len(slices) >= 2 and len(aggregators) >= 1
    assert [e.group_index for e in slices] == list(range(1, len(slices) + 1))
    assert all(e.group_count == len(slices) and not e.is_aggregator for e in slices)
    assert all(e.is_aggregator and e.group_id == run.group_id for e in aggregators)
    assert all(e.is_complete and e.success for e in slices + aggregators)
    assert {e.id for e in slices + aggregators} == {e.id for e in run.executions}
    one = client.get_execution(run.org_id, slices[0].id)
    assert one == slices[0] or one.id == slices[0].id
    assert one.started_at is not None and one.ended_at is not None and one.progress == 100


def test_components_outputs_logs(client: FusionClient, finished_run: FinishedRun) -> None:
    run = finished_run
    slices, aggregators = client.group_executions(run.org_id, run.process.id, run.group_id)
    comps = list(client.iter_components(run.org_id, slices[0].id))
    names = [c.name for c in comps]
    assert "Sentinel-2 Cloud Classification" in names
    comp = comps[names.index("Sentinel-2 Cloud Classification")]
    assert client.get_component(run.org_id, comp.id).id == comp.id
    outputs = client.component_outputs(run.org_id, comp)
    assert [o.id for o in outputs] == list(comp.outputs)
    files = client.list_files(run.org_id, outputs[0].id)
    assert files[0].file_type == "GeoTIFF" and files[0].crs and files[0].selectors
    assert len(files[0].selectors[0].histogram or ()) >= 10
    inputs = client.component_inputs(run.org_id, comp)
    assert run.region.id in {d.id for d in inputs} or inputs  # the region (or its slice) feeds the component
    agg_comps = list(client.iter_components(run.org_id, aggregators[0].id))
    assert any(c.name == "Statistics Aggregator" for c in agg_comps)
    logs = list(client.iter_logs(run.org_id, comp.id))
    assert logs and all(log.message for log in logs)
    assert logs == sorted(logs, key=lambda log: log.logged_at)


def test_group_tree_walks_everything_concurrently(client: FusionClient, finished_run: FinishedRun) -> None:
    run = finished_run
    tree = client.group_tree(run.org_id, run.process, run.group_id, urls=True)
    assert isinstance(tree, GroupTree) and tree.group_id == run.group_id
    slices, aggregators = client.group_executions(run.org_id, run.process.id, run.group_id)
    assert [n.execution.id for n in tree.slices] == [e.id for e in slices]
    assert [n.execution.id for n in tree.aggregators] == [e.id for e in aggregators]
    # compare with a sequential walk
    for node in tree.executions:
        comps = list(client.iter_components(run.org_id, node.execution.id))
        assert [c.component.id for c in node.components] == [c.id for c in comps]
        for cnode, comp in zip(node.components, comps, strict=True):
            assert [o.data.id for o in cnode.outputs] == list(comp.outputs)
            for out in cnode.outputs:
                assert [f.file_id for f in out.files] == [f.file_id for f in client.list_files(run.org_id, out.data.id)]
                assert set(out.urls) == {f.file_id for f in out.files}
    files = list(tree.iter_files())
    assert files and all(isinstance(f, DataFile) for *_, f in files)
    # default group: the most recent one
    assert client.group_tree(run.org_id, run.process.id).group_id == run.group_id
    node = client.walk_execution(run.org_id, tree.slices[0].execution.id)
    assert [c.component.id for c in node.components] == [c.component.id for c in tree.slices[0].components]


def test_change_delete_expiry(client: FusionClient, finished_run: FinishedRun) -> None:
    run = finished_run
    when = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=20)
    client.change_delete_expiry(run.org_id, run.executions[0].id, when)
    after = client.get_execution(run.org_id, run.executions[0].id)
    assert after.delete_expiry == when
    others = list(client.iter_executions(run.org_id, run.process.id, group_id=run.group_id))
    assert {e.delete_expiry for e in others} == {when}  # the whole group moves
    with pytest.raises(ValidationError, match="must be a datetime"):
        client.change_delete_expiry(run.org_id, run.executions[0].id, "tomorrow")  # type: ignore[arg-type]


def test_server_validation_errors_are_typed(client: FusionClient, org_id: str) -> None:
    with pytest.raises(APIError) as info:
        client.request("GET", f"/organisations/{org_id}/data/uploaded", params={"filter[colour__eq]": "red"})
    assert info.value.status == 400 and isinstance(info.value, ValidationError)
    assert "colour" in str(info.value) and info.value.path == f"/organisations/{org_id}/data/uploaded"
    with pytest.raises(NotFoundError) as nf:
        client.get_execution(org_id, "00000000-0000-4000-8000-000000000000")
    assert nf.value.status == 404 and "GET" in str(nf.value)
