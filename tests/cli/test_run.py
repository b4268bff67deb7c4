"""``run``: options checked before anything is uploaded, the price shown before executing, --wait."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from .conftest import REGIONS, Run, World, client_for


def _name(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def test_run_and_wait(cli: Run, emulator: Any, world: World) -> None:
    name = _name("CLI run")
    result = cli("run", "Elevation", "--region", str(REGIONS / "glasgow.geojson"), "--option", "resolution=500",
                 "--name", name, "--wait", "--poll", "0.05")
    assert result.code == 0, result.err
    out = result.out
    assert f"Process '{name}' created" in out
    assert "option resolution = 500" in out
    price_at = out.index("price per run:")
    assert out.index("Finished in") > price_at, "the price is shown before the run"
    client = client_for(emulator)
    try:
        process = client.find_process(world.org_id, name)
        assert f"price per run: {process.price} credits" in out
        latest = client.latest_execution(world.org_id, process.id)
        assert latest.success is True
        assert next(o for o in process.options if o.name == "resolution").value == "500"
    finally:
        client.close()


def test_run_without_wait_and_dry_run(cli: Run, emulator: Any, world: World) -> None:
    dry = _name("CLI dry")
    result = cli("run", "Elevation", "--region", str(REGIONS / "glasgow.geojson"), "--name", dry, "--dry-run")
    assert result.code == 0, result.err
    assert "price per run:" in result.out and "Not executed (--dry-run)." in result.out
    started = _name("CLI started")
    result = cli("run", "Elevation", "--region", str(REGIONS / "glasgow.geojson"), "--name", started)
    assert result.code == 0, result.err
    assert "Executing. Follow it with: fusion-stac ls" in result.out
    client = client_for(emulator)
    try:
        assert not client.find_process(world.org_id, dry).has_executions
        run = client.find_process(world.org_id, started)
        assert client.latest_execution(world.org_id, run.id) is not None
    finally:
        client.close()


def _uploads_named(emulator: Any, org_id: str, prefix: str) -> list[Any]:
    client = client_for(emulator)
    try:
        return [d for d in client.iter_data(org_id, name=prefix)]
    finally:
        client.close()


def test_option_of_the_wrong_type_uploads_nothing(cli: Run, emulator: Any, world: World) -> None:
    name = _name("CLI bad option")
    result = cli("run", "Elevation", "--region", str(REGIONS / "glasgow.geojson"), "--name", name,
                 "--option", "resolution=fine")
    result.assert_one_line_error(2, "resolution", "expected a number", "fine")
    out_of_range = cli("run", "Elevation", "--region", str(REGIONS / "glasgow.geojson"), "--name", name,
                       "--option", "resolution=1")
    out_of_range.assert_one_line_error(2, "resolution")
    constrained = cli("run", "Elevation", "--region", str(REGIONS / "glasgow.geojson"), "--name", name,
                      "--option", "vertical_datum=NAVD88")
    constrained.assert_one_line_error(2, "vertical_datum", "NAVD88")
    unknown = cli("run", "Elevation", "--region", str(REGIONS / "glasgow.geojson"), "--name", name,
                  "--option", "colour=red")
    unknown.assert_one_line_error(2, "no option 'colour'", "resolution")
    cli("run", "Elevation", "--region", str(REGIONS / "glasgow.geojson"), "--option", "resolution").\
        assert_one_line_error(2, "NAME=VALUE")
    assert _uploads_named(emulator, world.org_id, name) == [], "nothing was uploaded"


def test_region_that_is_not_geospatial(cli: Run, emulator: Any, world: World, tmp_path: Path) -> None:
    bogus = tmp_path / "region.geojson"
    bogus.write_text('{"hello": "world"}')
    name = _name("CLI not geo")
    result = cli("run", "Elevation", "--region", str(bogus), "--name", name, "--poll", "0.05")
    result.assert_one_line_error(2, "could not analyse", "region.geojson")
    assert _uploads_named(emulator, world.org_id, name) == []
    text = tmp_path / "region.txt"
    text.write_text("x")
    cli("run", "Elevation", "--region", str(text)).assert_one_line_error(2, "file type")


def test_unknown_service_and_missing_region(cli: Run, tmp_path: Path) -> None:
    cli("run", "Teleportation", "--region", str(REGIONS / "glasgow.geojson")).assert_one_line_error(
        2, "no service", "Teleportation")
    cli("run", "Elevation", "--region", str(tmp_path / "nowhere.geojson")).assert_one_line_error(2, "no such file")
    cli("run", "Elevation", "--region", str(REGIONS / "glasgow.geojson"), "--organisation", "Nobody's").\
        assert_one_line_error(2, "no organisation")
