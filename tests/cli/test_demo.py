"""``fusion-stac demo``: through the console script, and through the README's one-liner in a fresh venv."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pystac
import pytest
import rasterio

from .conftest import Result, clean_env, run_cli

ROOT = Path(__file__).parents[2]
STEPS = ["start the emulator", "log in", "upload regions", "run Elevation over the large region",
         "export the STAC catalog", "mosaic the slices"]


def check_demo(result: Result, out: Path, home: Path) -> None:
    """Everything the demo promises, checked on its output directory and its summary."""
    from PIL import Image

    from fusion_stac.stac.validation import validate_tree

    assert result.code == 0, f"stdout:\n{result.out}\nstderr:\n{result.err}"
    assert "Traceback" not in result.err
    summary = result.out
    assert re.search(r"^fusion-stac demo: done in \d+\.\d s$", summary, re.M)
    for step in STEPS:
        assert re.search(rf"^  {re.escape(step)} +\d+\.\d s  \S", summary, re.M), step
    slices = int(re.search(r"(\d+) slices \+ 1 aggregator", summary).group(1))  # type: ignore[union-attr]
    assert slices >= 4
    requests = re.search(r"Requests: (\d+) to the API and (\d+) to storage", summary)
    assert requests and int(requests.group(1)) > 0 and int(requests.group(2)) >= slices

    # The STAC catalog: valid offline, every slice's GeoTIFF downloaded beside its item, two UTM zones.
    root = out / "catalog" / "collection.json"
    catalog = pystac.read_file(str(root))
    assert isinstance(catalog, pystac.Catalog)
    assert validate_tree(catalog) == slices + 1  # the slices and the aggregator's statistics
    items = list(catalog.get_items(recursive=True))
    zones = {i.properties.get("proj:code") for i in items} - {None}
    assert zones == {"EPSG:32630", "EPSG:32631"}, "the Thames crosses two UTM zones"
    tifs = [a for i in items for a in i.assets.values() if a.media_type and "geotiff" in a.media_type]
    assert len(tifs) == slices
    assert all(Path(a.get_absolute_href() or "").is_file() for a in tifs)

    # The mosaic: a COG (tiled, with overviews) of plausible terrain heights in one UTM zone.
    with rasterio.open(out / "mosaic.tif") as src:
        assert src.profile["tiled"] and src.overviews(1)
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.crs.to_epsg() in (32630, 32631)
        assert src.dtypes[0] == "float32" and src.nodata is not None
        band = src.read(1, masked=True)
        values = band.compressed()
        assert values.size > 0.7 * band.size, "the slices cover most of the mosaic"
        assert np.isfinite(values).all()
        assert -100 < values.min() < 50 and 100 < values.max() < 2000  # sea level to hills, in metres
        assert values.std() > 10
    # ...and its quicklook PNG.
    with Image.open(out / "mosaic.png") as png:
        assert png.format == "PNG"
        assert png.width >= 600 and png.height >= 200
        colours = png.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 100, "a plot, not a blank image"
    assert 20_000 < (out / "mosaic.png").stat().st_size < 3_000_000

    # Nothing left behind: the emulator's port is closed and its temporary data is gone.
    url = re.search(r"the emulator at (http://\S+) is stopped", summary).group(1)  # type: ignore[union-attr]
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(2)
        assert sock.connect_ex((parts.hostname, parts.port)) != 0, "the emulator still listens"
    data_dir = re.search(r"data in (\S+) \(temporary\)", summary).group(1)  # type: ignore[union-attr]
    assert not Path(data_dir).exists()
    assert "temporary data is removed" in summary
    # The demo account's session never lands in the user's token cache.
    assert not (home / "tokens.json").exists()
    assert not list(home.rglob("tokens.json"))


def test_demo_through_the_console_script(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = tmp_path / "demo"
    result = run_cli(["demo", "--out", str(out)], env=clean_env(home), cwd=tmp_path, timeout=300)
    check_demo(result, out, home)


def test_demo_keep_leaves_the_data_to_browse(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = tmp_path / "demo"
    result = run_cli(["demo", "--out", str(out), "--keep", "--region", "central_belt", "--execution-seconds", "0"],
                     env=clean_env(home), cwd=tmp_path, timeout=300)
    assert result.code == 0, result.err
    data = out / "emulator-data"
    assert (data / "emulator.sqlite3").is_file()
    assert f"its data is kept in {data}" in result.out
    assert "fusion-stac emulator serve --port 8000 --data-dir" in result.out
    with rasterio.open(out / "mosaic.tif") as src:
        assert src.crs.to_epsg() == 32630  # the Central Belt lies in one zone


def test_demo_bad_input(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "home")
    run_cli(["demo", "--execution-seconds", "-1"], env=env, cwd=tmp_path).assert_one_line_error(2, "--execution-seconds")
    (tmp_path / "file").write_text("x")
    run_cli(["demo", "--out", str(tmp_path / "file")], env=env, cwd=tmp_path).assert_one_line_error(2, "not a directory")
    run_cli(["demo", "--region", "atlantis"], env=env, cwd=tmp_path).assert_one_line_error(2, "--region")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a fresh install of .[all]: minutes on a busy machine
def test_readme_demo_command_in_a_fresh_virtual_environment(tmp_path: Path) -> None:
    """`bash scripts/demo.sh` exactly as the README says, in a new venv (installs `.[all]` from the index)."""
    home = tmp_path / "home"
    out = tmp_path / "demo"
    env = clean_env(home, FUSION_STAC_VENV=str(tmp_path / "venv"), PYTHON=sys.executable)
    # the venv must not inherit this one's packages
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(Path(sys.executable).parent)))
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), "--out", str(out)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=1500, stdin=subprocess.DEVNULL)
    assert (tmp_path / "venv" / "bin" / "fusion-stac").is_file()
    check_demo(Result(proc.returncode, proc.stdout, proc.stderr), out, home)
