"""Every script in examples/ runs as users run it (a subprocess, its own emulator) and does its job."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import clean_env

EXAMPLES = Path(__file__).parents[2] / "examples"


def run_example(name: str, tmp_path: Path, *args: str) -> str:
    env = clean_env(tmp_path / "home")  # no FUSION_PLATFORM_API_URL: the example starts its own emulator
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "home").rglob("tokens.json")), "the emulator's sessions stay out of the token cache"
    return proc.stdout


def test_every_example_is_tested() -> None:
    scripts = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py"))
    tested = sorted(name for name in globals() if name.startswith("test_0"))
    assert len(scripts) == 6
    assert [s[:2] for s in scripts] == [t[5:7] for t in tested]


def test_01_quick_start(tmp_path: Path) -> None:
    out = run_example("01_quick_start.py", tmp_path)
    assert "Logged in as me@org.com" in out
    assert re.search(r"Uploaded 'Glasgow': GeoJSON, EPSG:4326, bounds \(-4\.3", out)
    assert re.search(r"costs \d+(\.\d+)? credits per run", out)
    size = re.search(r"(\d+) x (\d+) pixels of 100 m in EPSG:326", out)
    assert size and int(size.group(1)) > 50 and int(size.group(2)) > 50
    heights = re.search(r"elevation (-?\d+) to (\d+) m, mean (\d+) m", out)
    assert heights and -100 < int(heights.group(1)) < int(heights.group(3)) < int(heights.group(2)) < 2000


def test_02_browse_stac(tmp_path: Path) -> None:
    out = run_example("02_browse_stac.py", tmp_path)
    assert "group of 5 slices" in out
    rows = re.findall(r"^  [0-9a-f]{8}  +(EPSG:\d+)  elevation\.tif +highest point (\d+) m$", out, re.M)
    assert len(rows) == 5 and {zone for zone, _ in rows} == {"EPSG:32630", "EPSG:32631"}
    found = re.search(r"(\d+) item\(s\) intersect", out)
    assert found and int(found.group(1)) >= 1
    assert "6 items valid against the STAC schemas" in out


def test_03_stream_window(tmp_path: Path) -> None:
    out = run_example("03_stream_window.py", tmp_path)
    assert re.search(r"^9 slices; the first is fusion://", out, re.M)
    assert re.search(r"window 128 x 128 at \(\d+, \d+\) of \d+ x \d+: -?\d+ to \d+ m", out)
    read = re.search(r"read (\d+) KiB in (\d+) range request\(s\) \((\d+)% of the file\), 1 URL\(s\) signed", out)
    assert read, out
    assert int(read.group(2)) >= 1 and int(read.group(3)) < 50, "only the window's tiles travel"
    assert "header: b'II*\\x00'" in out


def test_04_mosaic_plot(tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "mosaic.png"
    out = run_example("04_mosaic_plot.py", tmp_path, str(png))
    assert re.search(r"mosaic of 5 slices: \d+ x \d+ pixels, float32, EPSG:3263[01]", out)
    estuary = re.search(r"estuary: (\d+) x (\d+) pixels, mean (\d+) m", out)
    assert estuary and int(estuary.group(1)) > 100 and 0 < int(estuary.group(3)) < 1000
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width >= 800 and image.height >= 500


def test_05_timeseries(tmp_path: Path) -> None:
    out = run_example("05_timeseries.py", tmp_path)
    assert re.search(r"^3 time steps of \d+ x \d+ pixels, uint8$", out, re.M)
    steps = re.findall(r"^  (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)  cloud cover +(\d+\.\d)%$", out, re.M)
    assert len(steps) == 3
    times = [t for t, _ in steps]
    assert times == sorted(times) and len(set(times)) == 3
    assert all(0 <= float(c) <= 100 for _, c in steps)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_06_upload_geotiff(tmp_path: Path) -> None:
    out = run_example("06_upload_geotiff.py", tmp_path)
    assert "uploaded ndvi.tif to fusion://" in out
    assert "proj:code EPSG:32630, proj:shape [200, 250]" in out
    assert "proj:transform [20.0, 0.0, 480000.0, 0.0, -20.0, 6200000.0]" in out
    assert re.search(r"raster: float32, nodata -9999(\.0)?, min -1\.000, max 1\.000", out)
    assert "identical pixels" in out
