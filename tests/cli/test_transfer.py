"""``upload`` and ``download``: file types, analysis errors, trees, skipping and resuming, verification."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from .conftest import REGIONS, Run, World, client_for


def _unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def test_upload_a_region(cli: Run, emulator: Any, world: World) -> None:
    name = _unique("CLI Glasgow")
    result = cli("upload", str(REGIONS / "glasgow.geojson"), "--name", name)
    assert result.code == 0, result.err
    assert f"fusion://{world.org_name}/uploads/{name}" in result.out
    assert "glasgow.geojson  GeoJSON" in result.out and "EPSG:4326" in result.out and "bounds -4.3780" in result.out
    listed = cli("ls", f"fusion://{world.org_name}/uploads/{name}")
    assert listed.code == 0 and "glasgow.geojson" in listed.out
    # the same name again is refused (names are how paths find things)
    cli("upload", str(REGIONS / "glasgow.geojson"), "--name", name).assert_one_line_error(2, "already exists", name)


def test_upload_a_geotiff(cli: Run, world: World, tmp_path: Path) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    tif = tmp_path / "small.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=20, height=10, count=1, dtype="uint8", crs="EPSG:32630",
                       transform=from_origin(400000, 6200000, 30, 30)) as dst:
        dst.write(np.arange(200, dtype="uint8").reshape(1, 10, 20))
    name = _unique("CLI raster")
    result = cli("upload", str(tif), "--name", name)
    assert result.code == 0, result.err
    assert "small.tif  GeoTIFF" in result.out and "EPSG:32630" in result.out


def test_upload_a_file_that_is_not_geospatial(cli: Run, emulator: Any, world: World, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.geojson"
    bogus.write_text("these are my notes, not a GeoJSON document\n")
    name = _unique("CLI bogus")
    result = cli("upload", str(bogus), "--name", name, "--poll", "0.05")
    result.assert_one_line_error(2, "could not analyse", "notes.geojson", "deleted")
    client = client_for(emulator)
    try:
        assert not [d for d in client.iter_data(world.org_id, name=name) if d.name == name], "nothing left behind"
    finally:
        client.close()


def test_upload_bad_local_files(cli: Run, tmp_path: Path) -> None:
    cli("upload", str(tmp_path / "missing.geojson"), "--name", "x").assert_one_line_error(2, "no such file")
    cli("upload", str(tmp_path), "--name", "x").assert_one_line_error(2, "not a file")
    odd = tmp_path / "region.xyz"
    odd.write_text("?")
    cli("upload", str(odd), "--name", "x").assert_one_line_error(2, "file type", ".geojson", "--file-type")


def _files(cli: Run, url: str) -> list[dict[str, Any]]:
    result = cli("ls", url, "--depth", "4", "--json")
    assert result.code == 0, result.err
    return [e for e in json.loads(result.out) if e["kind"] == "file"]


def test_download_a_tree(cli: Run, world: World, tmp_path: Path) -> None:
    remote = _files(cli, world.process_url())
    dest = tmp_path / "run"
    result = cli("download", world.process_url(), str(dest))
    assert result.code == 0, result.err
    assert f"Downloaded {len(remote)} file(s)" in result.out
    local = sorted(p for p in dest.rglob("*") if p.is_file())
    assert len(local) == len(remote)
    assert sorted(p.stat().st_size for p in local) == sorted(f["size"] for f in remote)
    assert not list(dest.rglob("*.part"))
    tif = next(p for p in local if p.suffix == ".tif")
    import rasterio

    with rasterio.open(tif) as src:  # a real, readable GeoTIFF
        assert src.crs is not None and src.read(1).size > 0
    # the layout mirrors the platform: {execution id}/{component}/{output}/{file}
    execution, component, output, name = tif.relative_to(dest).parts
    assert len(execution) == 36 and component == "Elevation" and output.startswith("Elevation ")
    assert name == "elevation.tif"

    again = cli("download", world.process_url(), str(dest))
    assert again.code == 0
    assert f"Downloaded 0 file(s), 0 B, to {dest}" in again.out and f"{len(remote)} already present" in again.out


def test_download_resumes_a_partial_file(cli: Run, world: World, tmp_path: Path) -> None:
    tif = next(f for f in _files(cli, world.process_url()) if f["item_name"] == "elevation.tif")
    whole = tmp_path / "whole.tif"
    assert cli("download", tif["url"], str(whole)).code == 0
    content = whole.read_bytes()
    assert len(content) == tif["size"]
    target = tmp_path / "resumed" / "elevation.tif"
    target.parent.mkdir()
    from fusion_stac.client import partial_path

    partial = partial_path(target, tif["file_id"])  # named after the file id
    partial.write_bytes(content[: len(content) // 3])  # an interrupted earlier download
    result = cli("download", tif["url"], str(target.parent))  # a directory: the file keeps its name
    assert result.code == 0, result.err
    assert target.read_bytes() == content
    assert not partial.exists()


def test_download_errors(cli: Run, world: World, tmp_path: Path) -> None:
    cli("download", f"fusion://{world.org_name}/uploads/Nothing here", str(tmp_path / "x")).assert_one_line_error(
        2, "no data with id or name")
    cli("download", world.process_url(), str(tmp_path), "--jobs", "0").assert_one_line_error(2, "--jobs")
