"""The README documents only what works: its Python blocks and its command-line tour are run here."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import EMAIL, PASSWORD, REGIONS, clean_env, client_for

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```$", README, re.M | re.S)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCKS if lang == language]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_two_commands_exist() -> None:
    first = blocks("bash")[0]
    assert "bash scripts/demo.sh" in first and "bash scripts/test.sh" in first
    for script in ("demo.sh", "test.sh"):
        assert (ROOT / "scripts" / script).is_file()
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text(), "CI runs the README's test command"
    assert 'fusion-stac" demo "$@"' in (ROOT / "scripts" / "demo.sh").read_text()


def test_the_demo_summary_shown_is_the_demos() -> None:
    from .test_demo import STEPS

    summary = next(b for b in blocks("text") if b.startswith("fusion-stac demo: done"))
    for step in STEPS:
        assert re.search(rf"^  {re.escape(step)} +\d+\.\d s  ", summary, re.M), step


def test_the_examples_table_lists_every_example() -> None:
    for script in sorted((ROOT / "examples").glob("[0-9][0-9]_*.py")):
        assert f"[{script.name}](examples/{script.name})" in README


def test_python_blocks_run(make_emulator: Callable[..., Any], tmp_path: Path) -> None:
    emu = make_emulator()
    client = client_for(emu)
    try:  # what the tour expects to find: a run over the Thames called "Thames elevation"
        org = client.organisation()
        thames = client.create_data(org.id, "Thames", [REGIONS / "thames.geojson"], poll_interval=0.05)
        process = client.new_process(org.id, "Elevation", "Thames elevation").with_input(1, thames).create()
        client.execute(org.id, process.id, wait=True, poll_interval=0.05)
    finally:
        client.close()
    env = clean_env(tmp_path / "home", FUSION_PLATFORM_API_URL=emu.url, FUSION_PLATFORM_EMAIL=EMAIL,
                    FUSION_PLATFORM_PASSWORD=PASSWORD)
    python = blocks("python")
    assert len(python) == 2
    for number, code in enumerate(python, 1):
        script = tmp_path / f"readme_{number}.py"
        script.write_text(code)
        proc = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"README python block {number} failed:\n{code}\n{proc.stdout}\n{proc.stderr}"
        assert proc.stdout.strip(), f"README python block {number} printed nothing"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cli_tour_runs(tmp_path: Path) -> None:
    tour = next(b for b in blocks("bash") if b.startswith("# Try it"))
    port = _free_port()
    script = tour.replace("8000", str(port))
    (tmp_path / "fusion_stac").symlink_to(ROOT / "fusion_stac")  # the README runs from a checkout
    bin_dir = str(Path(sys.executable).parent)
    env = clean_env(tmp_path / "home", PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]))
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], env=env, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    assert proc.returncode == 0, f"the README's CLI tour failed:\n{out}\n{err}"
    assert "Traceback" not in err
    assert "Logged in to" in out and "price per run:" in out and "Forgot 2 cached session entries" in out
    assert "Elevation thames/  process" in out
    assert (tmp_path / "stac" / "collection.json").is_file()
    assert len(list((tmp_path / "thames").rglob("*.tif"))) == 5
    assert (tmp_path / "thames.tif").is_file() and (tmp_path / "thames.png").is_file()
    import rasterio

    with rasterio.open(tmp_path / "thames.tif") as src:
        assert src.crs.to_epsg() == 27700 and src.res == (200.0, 200.0)
    with socket.socket() as sock:  # `kill %1` stopped the emulator
        assert sock.connect_ex(("127.0.0.1", port)) != 0
