"""``run``: options checked before anything is uploaded, the price shown before executing, --wait."""

from __future__ import annotations

import time
import uuid
from itertools import pairwise
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


def test_run_without_wait(cli: Run, emulator: Any, world: World) -> None:
    started = _name("CLI started")
    result = cli("run", "Elevation", "--region", str(REGIONS / "glasgow.geojson"), "--name", started)
    assert result.code == 0, result.err
    assert "Executing. Follow it with: fusion-stac ls" in result.out
    client = client_for(emulator)
    try:
        run = client.find_process(world.org_id, started)
        assert client.latest_execution(world.org_id, run.id) is not None
    finally:
        client.close()


def _count(emulator: Any, org_id: str, name: str) -> tuple[int, int]:
    """(processes named ``name``, uploads whose name contains it)."""
    client = client_for(emulator)
    try:
        processes = [p for p in client.iter_processes(org_id, name=name) if p.name == name]
        return len(processes), len(list(client.iter_data(org_id, name=name)))
    finally:
        client.close()


def test_dry_run_changes_nothing(cli: Run, emulator: Any, world: World) -> None:
    dry = _name("CLI dry")
    args = ["run", "Elevation", "--region", str(REGIONS / "glasgow.geojson"), "--name", dry, "--option",
            "resolution=300"]
    for _ in range(2):
        result = cli(*args, "--dry-run")
        assert result.code == 0, result.err
        out = result.out
        assert "nothing uploaded, created or executed" in out
        assert "Would upload glasgow.geojson" in out and f"Would create process '{dry}'" in out
        assert "option resolution = 300" in out and "--create-only" in out
    assert _count(emulator, world.org_id, dry) == (0, 0), "no upload, no process"
    bad = cli(*args[:-1], "resolution=fine", "--dry-run")
    bad.assert_one_line_error(2, "resolution", "fine")


def test_create_only_prices_then_run_executes_that_process(cli: Run, emulator: Any, world: World) -> None:
    name = _name("CLI priced")
    args = ["run", "Elevation", "--region", str(REGIONS / "glasgow.geojson"), "--name", name]
    created = cli(*args, "--create-only")
    assert created.code == 0, created.err
    assert "price per run:" in created.out and "Not executed (--create-only)" in created.out
    assert _count(emulator, world.org_id, name) == (1, 1)
    dry = cli(*args, "--dry-run")
    assert dry.code == 0 and "created earlier and never run" in dry.out and "price per run:" in dry.out
    ran = cli(*args, "--wait", "--poll", "0.05")
    assert ran.code == 0, ran.err
    assert "created earlier and never run: executing it" in ran.out and "Finished in" in ran.out
    assert _count(emulator, world.org_id, name) == (1, 1), "the priced process was run, not a new one"
    again = cli(*args, "--dry-run")  # it has run now: a new run would create another process
    assert again.code == 0 and "Would create process" in again.out


def test_poll_delays_back_off_from_half_a_second() -> None:
    from itertools import islice

    from fusion_stac._cli.processes import poll_delays

    assert list(islice(poll_delays(), 7)) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert list(islice(poll_delays(fixed=0.2), 3)) == [0.2, 0.2, 0.2]


def test_wait_checks_soon_then_less_often(make_emulator: Any) -> None:
    """A run of a second: --wait looks after 0.5 s, then 1 s, ... (not every 5 s)."""
    import argparse

    from fusion_stac._cli._common import Context
    from fusion_stac._cli.processes import follow_run, poll_delays

    emu = make_emulator(execution_duration=1)
    client = client_for(emu)
    slept: list[float] = []
    fractions: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    try:
        org = client.organisation()
        region = client.create_data(org.id, "Glasgow", [REGIONS / "glasgow.geojson"], poll_interval=0.05)
        process = client.new_process(org.id, "Elevation", "Backoff").with_input(1, region).create()
        client.execute(org.id, process.id)
        ctx = Context(argparse.Namespace(api_url=emu.url), client=client)
        follow_run(ctx, org, process, delays=poll_delays(), timeout=None, progress=fractions.append, sleep=sleep)
        assert client.latest_execution(org.id, process.id).success is True
    finally:
        client.close()
    assert slept and slept[0] == 0.5, slept
    assert all(later == min(5.0, 2 * earlier) for earlier, later in pairwise(slept)), slept
    assert fractions and fractions[-1] == 1.0


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
