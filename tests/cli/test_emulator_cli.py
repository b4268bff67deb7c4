"""``fusion-stac emulator serve`` as a separate process, used by the other commands, then stopped."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

from .conftest import EMAIL, PASSWORD, clean_env, console_script, run_cli


def test_serve_then_use_it_from_the_cli(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "home")
    data = tmp_path / "emulator-data"
    proc = subprocess.Popen(
        [console_script(), "emulator", "serve", "--port", "0", "--data-dir", str(data), "--execution-duration", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            found = re.search(r"emulator on (http://\S+)", line)
            url = found.group(1) if found else None
        assert url, "the emulator announced no URL"
        user = {**env, "FUSION_PLATFORM_API_URL": url}
        login = run_cli(["login", "--email", EMAIL, "--password-stdin"], env=user, input=PASSWORD + "\n")
        assert login.code == 0, login.err
        upload = run_cli(["upload", str(Path(__file__).parents[2] / "fusion_stac/emulator/regions/glasgow.geojson"),
                          "--name", "Served"], env=user)
        assert upload.code == 0, upload.err
        listed = run_cli(["ls", "fusion://Example Organisation/uploads", "--depth", "2"], env=user)
        assert listed.code == 0 and "Served/" in listed.out and "glasgow.geojson" in listed.out
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    assert proc.returncode == 0, "a clean stop on Ctrl-C"
    assert (data / "emulator.sqlite3").is_file(), "the state persists in --data-dir"
    assert any((data / "storage").rglob("*")), "and so do the uploaded files"


def test_serve_bad_arguments(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "home")
    result = run_cli(["emulator", "serve", "--data-dir", str(tmp_path), "--api-faults", "flood=0.5"], env=env)
    assert result.code == 2
    assert "flood" in result.err and "Traceback" not in result.err
