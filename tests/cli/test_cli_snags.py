"""Small things a new user trips over: negative --bbox numbers, messages in the user's units, options
after sub-commands, the mosaic's progress bar, and ``emulator serve``'s errors and help."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import rasterio

from .conftest import Run, World, clean_env, on_a_terminal, run_cli


def test_mosaic_shows_a_bar_of_the_chunks_read(env: dict[str, str], world: World, tmp_path: Path) -> None:
    out = tmp_path / "m.tif"
    code, text, _ = on_a_terminal(["mosaic", world.process_name, str(out), "--resolution", "50"], env, tmp_path)
    assert code == 0, text
    states = [(int(done), int(total)) for done, total in re.findall(r"mosaic m\.tif:.*?(\d+)/(\d+)", text)]
    assert states, f"no progress bar on the terminal:\n{text}"
    total = states[-1][1]
    assert total > 1, "several chunks to read"
    assert states[0][0] == 0 and states[-1][0] == total, f"the bar goes from 0 to {total}: {states}\n{text!r}"
    assert "NotGeoreferencedWarning" not in text and "Traceback" not in text
    with rasterio.open(out) as src:
        assert src.res == (50.0, 50.0)


def test_mosaic_without_a_terminal_has_no_bar(cli: Run, world: World, tmp_path: Path) -> None:
    result = cli("mosaic", world.process_name, str(tmp_path / "m.tif"))
    assert result.code == 0, result.err
    assert "chunk" not in result.err and "Warning" not in result.err


def test_bbox_may_start_with_a_negative_number(cli: Run, world: World, tmp_path: Path) -> None:
    # The slices are over the Thames estuary (about 0.2..0.9 E): a box from 0.1 W crosses them.
    result = cli("mosaic", world.process_name, str(tmp_path / "m.tif"), "--bbox", "-0.1,51.3,0.5,51.6")
    assert result.code == 0, result.err
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.width > 0 and src.height > 0


def test_bbox_outside_the_slices_is_reported_in_lon_lat(cli: Run, world: World, tmp_path: Path) -> None:
    result = cli("mosaic", world.process_name, str(tmp_path / "m.tif"), "--bbox", "-4.4,55.8,-4.1,56")
    line = result.assert_one_line_error(2, "--bbox -4.4,55.8,-4.1,56", "lon/lat", "does not overlap")
    west, south, east, north = (float(v) for v in re.search(r"cover ([-\d.,]+) \(W,S,E,N", line).group(1).split(","))
    assert -1 < west < east < 2 and 51 < south < north < 52, line  # degrees, not UTM metres
    assert not (tmp_path / "m.tif").exists()


def test_global_options_after_a_nested_sub_command(cli: Run, emulator: Any, world: World, tmp_path: Path) -> None:
    dest = tmp_path / "stac"
    result = cli("catalog", "export", str(dest), world.process_url("latest"), "--api-url", emulator.url,
                 "--no-progress", extra_env={"FUSION_PLATFORM_API_URL": "http://127.0.0.1:9"})
    assert result.code == 0, result.err  # the --api-url given after the sub-command was used
    assert (dest / "collection.json").is_file()


def test_emulator_serve_on_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(["emulator", "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
                         env=clean_env(tmp_path / "home"))
    line = result.assert_one_line_error(1, f"port {port}", "already in use", "--port")
    assert "Errno" not in line


def test_emulator_serve_unknown_fault(tmp_path: Path) -> None:
    result = run_cli(["emulator", "serve", "--data-dir", str(tmp_path), "--storage-faults", "error_503=0.1,flood=1"],
                     env=clean_env(tmp_path / "home"))
    line = result.assert_one_line_error(2, "--storage-faults", "unknown fault 'flood'", "error_503", "throttle")
    assert "TypeError" not in line and "__init__" not in line
    bad = run_cli(["emulator", "serve", "--data-dir", str(tmp_path), "--api-faults", "throttle=lots"],
                  env=clean_env(tmp_path / "home"))
    bad.assert_one_line_error(2, "--api-faults", "'lots' is not a number")


def test_emulator_serve_help(tmp_path: Path) -> None:
    result = run_cli(["emulator", "serve", "--help"], env=clean_env(tmp_path / "home"))
    assert result.code == 0
    assert result.out.startswith("usage: fusion-stac emulator serve"), result.out
    assert "python -m" not in result.out
    options = re.findall(r"^  (--[a-z-]+)(.*(?:\n {10,}.*)*)", result.out, re.M)
    assert len(options) >= 14
    undescribed = [name for name, rest in options if not re.search(r"\s{2,}\S", rest)]
    assert not undescribed, f"options without a description: {undescribed}"


def test_an_expired_session_asks_to_log_in_again(emulator: Any, tmp_path: Path) -> None:
    import json

    from .conftest import EMAIL, PASSWORD

    env = clean_env(tmp_path / "home", FUSION_PLATFORM_API_URL=emulator.url)
    assert run_cli(["login", "--email", EMAIL, "--password-stdin"], env=env, input=PASSWORD + "\n").code == 0
    token_file = Path(env["FUSION_STAC_TOKEN_FILE"])
    payload = json.loads(token_file.read_text())
    for entry in payload["tokens"].values():
        entry["expires_at"] = 1.0  # long ago
    token_file.write_text(json.dumps(payload))
    token_file.chmod(0o600)
    run_cli(["ls"], env=env).assert_one_line_error(1, "expired", "log in again", "fusion-stac login")
    nobody = clean_env(tmp_path / "other", FUSION_PLATFORM_API_URL=emulator.url)
    run_cli(["ls"], env=nobody).assert_one_line_error(1, "not logged in")


def test_ls_shows_name_and_id_of_uploads_sharing_a_name(cli: Run, emulator: Any, world: World) -> None:
    import uuid

    from .conftest import REGIONS, client_for

    name = f"Twin {uuid.uuid4().hex[:6]}"
    client = client_for(emulator)
    try:
        ids = [client.create_data(world.org_id, name, [REGIONS / "glasgow.geojson"], poll_interval=0.05).id
               for _ in range(2)]
    finally:
        client.close()
    result = cli("ls", f"fusion://{world.org_name}/uploads")
    assert result.code == 0, result.err
    for data_id in ids:
        line = next(line for line in result.out.splitlines() if data_id in line)
        assert f"── {name}/  upload  {data_id}" in line and "name shared" in line, line
