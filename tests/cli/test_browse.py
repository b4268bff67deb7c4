"""``ls`` and ``info``: trees with sizes and states, JSON output, unknown paths."""

from __future__ import annotations

import json
from typing import Any

from .conftest import Run, World


def test_ls_root_lists_organisations(cli: Run, world: World) -> None:
    result = cli("ls")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("fusion://")
    assert any(f"{world.org_name}/" in line and world.org_id in line and "organisation" in line for line in lines)


def test_ls_organisation_tree(cli: Run, world: World) -> None:
    result = cli("ls", f"fusion://{world.org_name}", "--depth", "3")
    assert result.code == 0, result.err
    out = result.out
    assert "├── uploads/" in out and "└── processes/" in out
    assert f"{world.upload_name}/  upload" in out
    assert "thames.geojson" in out and "GeoJSON" in out and "EPSG:4326" in out and "KiB" in out
    assert f"{world.process_name}/  process" in out


def test_ls_groups_executions_with_states(cli: Run, world: World) -> None:
    result = cli("ls", world.process_url(), "--depth", "1")
    assert result.code == 0, result.err
    out = result.out
    assert f"group {world.group_id}" in out
    assert f"group of {world.slices} slices + 1 aggregator, {world.slices + 1}/{world.slices + 1} finished" in out
    slices = [line for line in out.splitlines() if f"/{world.slices}  succeeded" in line and "slice " in line]
    assert len(slices) == world.slices
    assert f"aggregator {world.slices + 1}/{world.slices}  succeeded" in out


def test_ls_deep_shows_files_with_sizes(cli: Run, world: World) -> None:
    result = cli("ls", world.process_url("latest"), "--depth", "4")
    assert result.code == 0, result.err
    assert "statistics.csv" in result.out and "CSV" in result.out
    # `latest` is the whole run: every slice's rasters as well as the aggregator's table
    assert f"group of {world.slices} slice(s) + 1 aggregator(s)" in result.out
    assert "slice-1/" in result.out and f"slice-{world.slices}/" in result.out and ".tif" in result.out


def test_ls_json(cli: Run, world: World) -> None:
    result = cli("ls", world.process_url(), "--depth", "4", "--json")
    assert result.code == 0, result.err
    entries = json.loads(result.out)
    executions = [e for e in entries if e["kind"] == "execution"]
    assert len(executions) == world.slices + 1
    assert {e["group_id"] for e in executions} == {world.group_id}
    files = [e for e in entries if e["kind"] == "file"]
    assert len(files) == world.slices + 1  # one GeoTIFF per slice and the aggregator's CSV
    tifs = [f for f in files if f["item_name"] == "elevation.tif"]
    assert len(tifs) == world.slices and all(f["size"] > 0 and f["file_type"] == "GeoTIFF" for f in tifs)
    assert all(e["url"].startswith("fusion://") for e in entries)


def test_ls_depth_zero_is_the_node_itself(cli: Run, world: World) -> None:
    result = cli("ls", f"fusion://{world.org_name}", "--depth", "0")
    assert result.code == 0
    assert result.out.strip().splitlines() == [f"fusion://{world.org_name}  organisation  {world.org_id}"]


def test_info_of_a_file(cli: Run, world: World) -> None:
    listing = json.loads(cli("ls", world.process_url(), "--depth", "4", "--json").out)
    tif = next(e for e in listing if e.get("item_name") == "elevation.tif")
    result = cli("info", tif["url"])
    assert result.code == 0, result.err
    rows = dict(line.split(None, 1) for line in result.out.splitlines())
    assert rows["kind"] == "file"
    assert rows["size"].startswith(f"{tif['size']} bytes")
    assert rows["file_type"] == "GeoTIFF"
    assert rows["crs"].startswith("EPSG:326")
    assert rows["fusion_url"].startswith(f"fusion://{world.org_id}/data/")
    as_json = json.loads(cli("info", rows["fusion_url"], "--json").out)  # the short stable form works too
    assert as_json["file_id"] == tif["file_id"] and as_json["size"] == tif["size"]


def test_info_of_a_process_has_price_and_options(cli: Run, world: World) -> None:
    result = cli("info", world.process_url(), "--json")
    assert result.code == 0, result.err
    info: dict[str, Any] = json.loads(result.out)
    assert info["kind"] == "process" and info["id"] == world.process_id
    assert isinstance(info["price"], (int, float)) and info["price"] > 0, "a number, not a string"
    assert info["options"]["resolution"] == "200"
    latest = info["latest_run"]
    assert isinstance(latest, dict), "an object, not a sentence"
    assert latest["group_id"] == world.group_id and latest["executions"] == world.slices + 1
    assert latest["started_at"].startswith("20") and latest["status"]
    table = cli("info", world.process_url())
    assert table.code == 0
    rows = dict(line.split(None, 1) for line in table.out.splitlines())
    assert rows["price"] == f"{info['price']:g} credits"
    assert rows["latest_run"].startswith(f"group {world.group_id} ({world.slices + 1} executions) started 20")


def test_info_of_an_execution_has_its_state(cli: Run, world: World) -> None:
    result = cli("info", world.process_url("latest"))
    assert result.code == 0, result.err
    rows = dict(line.split(None, 1) for line in result.out.splitlines())
    assert rows["kind"] == "run"
    assert rows["state"] == "succeeded"
    assert rows["group_id"] == world.group_id
    one = cli("info", world.process_url("latest", "slice-2"))
    assert one.code == 0, one.err
    rows = dict(line.split(None, 1) for line in one.out.splitlines())
    assert rows["kind"] == "execution" and rows["group_index"] == "2" and rows["state"] == "succeeded"


def test_unknown_paths_are_exit_2(cli: Run, world: World) -> None:
    cli("ls", f"fusion://{world.org_name}/uploads/No such upload").assert_one_line_error(
        2, f"fusion://{world.org_name}/uploads/No such upload", "no data with id or name")
    cli("info", "fusion://No Such Organisation").assert_one_line_error(2, "no organisation")
    cli("ls", f"fusion://{world.org_name}/drafts").assert_one_line_error(2, "unknown section 'drafts'")
    cli("ls", "s3://bucket/key").assert_one_line_error(2, "fusion://")
    cli("ls", world.process_url("not-an-execution")).assert_one_line_error(2, "executions are named by id")
    cli("ls", "--depth", "-1").assert_one_line_error(2, "--depth")
