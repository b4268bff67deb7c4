"""The README documents only what works: its Python blocks and its command-line tour are run here."""

from __future__ import annotations

import contextlib
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

from .conftest import clean_env

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


WALKTHROUGH = "# Walkthrough, part "


def walkthrough() -> list[tuple[str, str]]:
    """The walkthrough's blocks, (language, body), in the README's order."""
    return [(lang, body) for lang, body in BLOCKS if body.startswith(WALKTHROUGH)]


def test_the_walkthrough_is_three_parts_in_order() -> None:
    parts = walkthrough()
    assert [lang for lang, _ in parts] == ["bash", "python", "bash"]
    assert [body.splitlines()[0][len(WALKTHROUGH):].split(":")[0] for _, body in parts] == \
        ["1 of 3", "2 of 3", "3 of 3"]
    first = parts[0][1]
    assert "source .venv/bin/activate" in first, "fusion-stac is put on the PATH before it is used"
    assert first.index("source .venv/bin/activate") < first.index("fusion-stac ")
    made = re.findall(r'(?:--data-dir|download "[^"]+"|catalog export|mosaic "[^"]+") (\S+)', first)
    assert len(made) == 4 and all(path.startswith("walkthrough/") for path in made), made


def test_python_blocks_run(make_emulator: Callable[..., Any], tmp_path: Path) -> None:
    """The Python blocks outside the walkthrough (which runs in :func:`test_walkthrough_runs_as_printed`)."""
    emu = make_emulator()
    env = clean_env(tmp_path / "home", FUSION_PLATFORM_API_URL=emu.url)
    # the odc-stac / stackstac block needs a grouped run: tests/server/test_gateway_python.py runs it
    gateway_section = README.split("## With odc-stac, stackstac, GDAL and QGIS", 1)[1].split("\n## ", 1)[0]
    python = [body for lang, body in BLOCKS
              if lang == "python" and not body.startswith(WALKTHROUGH) and body not in gateway_section]
    assert len(python) == 1
    for number, code in enumerate(python, 1):
        script = tmp_path / f"readme_{number}.py"
        script.write_text(code)
        proc = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"README python block {number} failed:\n{code}\n{proc.stdout}\n{proc.stderr}"
        assert proc.stdout.strip(), f"README python block {number} printed nothing"


def _git(checkout: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", "-C", str(checkout), *args], env=env, check=True, capture_output=True,
                          text=True).stdout


def _fresh_checkout(where: Path) -> Path:
    """A clone as the walkthrough sees it: the README, .gitignore and the package, committed, and the
    ``.venv`` that ``scripts/demo.sh`` makes (its ``bin`` is the test environment's)."""
    checkout = where / "fusion-stac"
    checkout.mkdir()
    for name in ("README.md", ".gitignore"):
        (checkout / name).write_bytes((ROOT / name).read_bytes())
    (checkout / "fusion_stac").symlink_to(ROOT / "fusion_stac")
    (checkout / ".venv").mkdir()
    (checkout / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    _git(checkout, "init", "-q")
    _git(checkout, "add", "README.md", ".gitignore", "fusion_stac")
    _git(checkout, "commit", "-q", "-m", "clone")
    return checkout


def _path_without_fusion_stac() -> str:
    """The PATH of a newcomer: no directory with a ``fusion-stac`` in it (the walkthrough must add it)."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "fusion-stac").exists()]
    return os.pathsep.join(dirs or ["/usr/bin", "/bin"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_walkthrough_runs_as_printed(tmp_path: Path) -> None:
    """Parts 1 to 3, exactly as printed (the port aside), in order, in one shell of a fresh clone, with no
    credentials but the session ``fusion-stac login`` keeps; then nothing is left untracked."""
    port = _free_port()
    # Scaffolding, not the README's: trace each step, and stop the emulator if a step fails before part 3.
    script = ["trap 'kill $(jobs -p) 2>/dev/null || true' EXIT", "set -x"]
    for lang, body in walkthrough():
        body = body.replace("8000", str(port))
        script.append(body if lang == "bash" else f"python - <<'README_PYTHON'\n{body}README_PYTHON")
    checkout = _fresh_checkout(tmp_path)
    env = clean_env(tmp_path / "home", PATH=_path_without_fusion_stac())
    assert not any(k.startswith("FUSION_PLATFORM_") for k in env) and "VIRTUAL_ENV" not in env
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", "\n".join(script)], env=env, cwd=checkout, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):  # anything the shell left running (its own group)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == 0, f"the README's walkthrough failed (the last '+' line is the step):\n{out}\n{err}"
    assert "Traceback" not in err and "Warning" not in err, err
    assert "Logged in to" in out and "price per run:" in out and "Forgot 2 cached session entries" in out
    assert "Elevation thames/  process" in out
    assert "Example Organisation/processes/Elevation thames'" in out, "the Python part listed the walkthrough's run"
    made = checkout / "walkthrough"
    assert (made / "stac" / "collection.json").is_file()
    assert len(list((made / "thames").rglob("*.tif"))) == 5
    assert (made / "thames.tif").is_file() and (made / "thames.png").is_file()
    import rasterio

    with rasterio.open(made / "thames.tif") as src:
        assert src.crs.to_epsg() == 27700 and src.res == (200.0, 200.0)
    with socket.socket() as sock:  # `kill %1` stopped the emulator
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    left = _git(checkout, "status", "--porcelain", "--untracked-files=all")
    assert left == "", f"the walkthrough left files git does not ignore:\n{left}"
