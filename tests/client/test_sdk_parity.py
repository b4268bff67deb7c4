"""Our client and the official SDK, against one emulator, see the same process, group and outputs."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from fusion_stac.client import FusionClient

from .conftest import CLASSIFICATION, EMAIL, PASSWORD, rectangle_geojson

pytestmark = pytest.mark.sdk


def _sdk_login(emu: Any) -> Any:
    import fusion_platform

    logging.getLogger("fusion_platform").setLevel(logging.WARNING)
    return fusion_platform.login(email=EMAIL, password=PASSWORD, api_url=emu.url,
                                 session_options={"api_update_wait_period": 0.05})


def _sdk_walk(process: Any, group_id: str) -> dict[str, Any]:
    """Everything the SDK sees of one group, keyed by execution id (plain strings and numbers)."""
    _, executions = process.find_executions(group_id=group_id)
    seen: dict[str, Any] = {}
    for execution in executions:
        components = []
        for component in execution.components:
            outputs = []
            for output in component.outputs:
                files = sorted((str(f.file_id), f.file_name, f.file_type, f.size) for f in output.files)
                outputs.append((str(output.id), output.name, files))
            components.append((str(component.id), component.name, outputs))
        seen[str(execution.id)] = (str(execution.group_id), execution.group_index, execution.group_count,
                                   components)
    return seen


def _our_walk(client: FusionClient, org: str, process_id: str, group_id: str) -> dict[str, Any]:
    tree = client.group_tree(org, client.get_process(org, process_id), group_id)
    seen: dict[str, Any] = {}
    for node in tree.executions:
        components = []
        for comp in node.components:
            outputs = [(o.data.id, o.data.name, sorted((f.file_id, f.file_name, f.file_type, f.size) for f in o.files))
                       for o in comp.outputs]
            components.append((comp.component.id, comp.component.name, outputs))
        e = node.execution
        seen[e.id] = (e.group_id, e.group_index, e.group_count, components)
    return seen


def test_sdk_and_client_agree_on_an_sdk_made_run(client_emu: Any, tmp_path: Path) -> None:
    """The SDK runs the detailed example's steps; our client reads the result; both walk the group."""
    user = _sdk_login(client_emu)
    organisation = next(user.organisations)
    region_file = rectangle_geojson(tmp_path / "sdk.geojson", width_km=45, height_km=45)
    import fusion_platform

    region = organisation.create_data(name="SDK parity square", file_type=fusion_platform.FILE_TYPE_GEOJSON,
                                      files=[str(region_file)], wait=True)
    service, _ = organisation.find_services(name=CLASSIFICATION)
    process = organisation.new_process(name="SDK parity", service=service)
    process.update(input_number=1, data=region)
    process.update(option_name="latest_date", value=False)
    process.update(option_name="start_date", value=datetime(2021, 3, 27, tzinfo=timezone.utc))
    process.create()
    process.execute(wait=True)
    execution = next(process.executions)
    group_id = str(execution.group_id)

    org = str(organisation.id)
    client = FusionClient(client_emu.url, email=EMAIL, password=PASSWORD)
    try:
        ours_process = client.get_process(org, str(process.id))
        assert ours_process.name == process.name == "SDK parity"
        assert ours_process.price == process.price
        assert [o.name for o in ours_process.options] == [o.name for o in process.options]
        assert client.latest_execution(org, ours_process.id).group_id == group_id

        sdk_seen = _sdk_walk(process, group_id)
        our_seen = _our_walk(client, org, ours_process.id, group_id)
        assert our_seen == sdk_seen
        assert len(our_seen) >= 3  # slices plus an aggregator
        names = {c[1] for v in our_seen.values() for c in v[3]}
        assert {"Sentinel-2 Cloud Classification", "Statistics Aggregator"} <= names

        slices, aggregators = client.group_executions(org, ours_process.id, group_id)
        assert {e.id for e in slices + aggregators} == set(sdk_seen)
        # same files, same bytes through either client's download URL
        first_exec = slices[0].id
        _, _, _, comps = our_seen[first_exec]
        data_id, _, files = comps[0][2][0]
        ours_path = client.download_file(org, data_id, files[0][0], tmp_path / "ours.tif")
        sdk_data = next(o for c in next(e for e in process.find_executions(group_id=group_id)[1]
                                        if str(e.id) == first_exec).components
                        for o in c.outputs if str(o.id) == data_id)
        sdk_files = list(sdk_data.files)
        # download(wait=False) already clears a finished thread, after which download_complete() raises: wait here
        sdk_files[0].download(path=str(tmp_path / "sdk.tif"), wait=True)
        assert ours_path.read_bytes() == (tmp_path / "sdk.tif").read_bytes()
    finally:
        client.close()
        process.delete()
        region.delete()


def test_sdk_reads_a_client_made_run(client_emu: Any, finished_run: Any) -> None:
    """The reverse: a run made by our client, walked by the SDK, looks the same."""
    user = _sdk_login(client_emu)
    organisation = next(o for o in user.organisations if str(o.id) == finished_run.org_id)
    process, _ = organisation.find_processes(id=finished_run.process.id)
    assert str(process.id) == finished_run.process.id and process.name == finished_run.process.name
    client = FusionClient(client_emu.url, email=EMAIL, password=PASSWORD)
    try:
        assert _our_walk(client, finished_run.org_id, finished_run.process.id, finished_run.group_id) == \
            _sdk_walk(process, finished_run.group_id)
    finally:
        client.close()
