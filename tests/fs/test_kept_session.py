"""After ``fusion-stac login``, every entry point finds the kept session the way the CLI does: the Python
API, ``fusion://``, the xarray backend, a dask worker process; and an expired one says so everywhere."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import EMAIL, PASSWORD, World

CLI_ENV_DROP = ("FUSION_PLATFORM_", "FUSION_STAC_")


def _cli(args: list[str], env: dict[str, str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "fusion-stac"
    return subprocess.run([str(script), *args], env=env, input=input, capture_output=True, text=True, timeout=120,
                          stdin=None if input is not None else subprocess.DEVNULL)


@pytest.fixture
def kept(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """``fusion-stac login`` done in a subprocess; this process then has only the API URL and the cache."""
    token_file = tmp_path / "tokens.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLI_ENV_DROP)}
    env.update(FUSION_PLATFORM_API_URL=world.url, FUSION_STAC_TOKEN_FILE=str(token_file),
               NETRC=str(tmp_path / "absent-netrc"))
    done = _cli(["login", "--email", EMAIL, "--password-stdin"], env, input=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in token_file.read_text()
    for name in ("FUSION_PLATFORM_EMAIL", "FUSION_PLATFORM_USER_ID", "FUSION_PLATFORM_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FUSION_PLATFORM_API_URL", world.url)
    monkeypatch.setenv("FUSION_STAC_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("NETRC", str(tmp_path / "absent-netrc"))
    yield env


def _expire(token_file: Path) -> None:
    payload = json.loads(token_file.read_text())
    for entry in payload["tokens"].values():
        entry["expires_at"] = 1_000_000.0  # long ago
    token_file.write_text(json.dumps(payload))
    token_file.chmod(0o600)


def _expected(world: World) -> Any:
    import rasterio

    with rasterio.open(world.cog) as src:
        return src.read(1)


def test_python_fsspec_xarray_and_cli_use_the_kept_session(world: World, kept: dict[str, str],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    import fsspec
    import xarray as xr

    import fusion_stac

    with caplog.at_level(logging.INFO, logger="fusion_stac"):
        client = fusion_stac.login()
    assert client.email == EMAIL and client.user.email == EMAIL
    assert "credentials: kept session of me@org.com (fusion-stac login)" in caplog.text
    assert client.stats.snapshot()["by_method"].get("POST", 0) == 0  # no login request: the kept token
    client.close()
    assert fusion_stac.FusionClient.from_env().organisation().id

    fs = fsspec.filesystem("fusion", skip_instance_cache=True)
    assert fs.cat_file(world.cog_path, 0, 4) == world.cog.read_bytes()[:4]

    ds = xr.open_dataset(f"fusion://{world.cog_path}", engine="fusion")
    assert np.array_equal(ds["band_data"].values[0], _expected(world))

    verbose = _cli(["-v", "ls"], kept)
    assert verbose.returncode == 0, verbose.stderr
    assert "credentials: kept session of me@org.com (fusion-stac login)" in verbose.stderr


def _sha_of(path: str) -> str:
    import hashlib

    import fsspec

    return hashlib.sha256(fsspec.filesystem("fusion").cat_file(path)).hexdigest() + "|" + os.environ.get(
        "FUSION_PLATFORM_PASSWORD", "no password")


def test_a_dask_worker_process_reads_with_only_the_kept_session(world: World, kept: dict[str, str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    import xarray as xr
    from distributed import Client, LocalCluster

    here = str(Path(__file__).parents[2])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
    with LocalCluster(processes=True, n_workers=1, threads_per_worker=2, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster, timeout=60) as dask_client:
        pids = dask_client.run(os.getpid)
        assert os.getpid() not in pids.values()  # a separate worker process
        got = dask_client.submit(_sha_of, world.cog_path, pure=False).result(timeout=120)
        assert got == hashlib.sha256(world.cog.read_bytes()).hexdigest() + "|no password"
        ds = xr.open_dataset(f"fusion://{world.cog_path}", engine="fusion", chunks={})
        values = ds["band_data"].data.compute()  # tasks run on the worker (the Client is the default)
        assert np.array_equal(values[0], _expected(world))


def test_an_expired_kept_session_says_so_everywhere(world: World, kept: dict[str, str]) -> None:
    import fsspec

    import fusion_stac
    from fusion_stac.errors import AuthenticationError

    _expire(Path(os.environ["FUSION_STAC_TOKEN_FILE"]))
    wanted = "session expired, log in again (`fusion-stac login`)"
    with pytest.raises(AuthenticationError) as info:
        fusion_stac.login()
    assert wanted in str(info.value) and "not logged in" not in str(info.value)
    with pytest.raises(PermissionError) as denied:
        fsspec.filesystem("fusion", skip_instance_cache=True).ls("")
    assert wanted in str(denied.value)
    result = _cli(["ls"], kept)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1 and wanted in lines[0], result.stderr


def test_a_kept_session_refused_by_the_platform_says_log_in_again(world: World, kept: dict[str, str]) -> None:
    import fusion_stac
    from fusion_stac.errors import AuthenticationError

    token_file = Path(os.environ["FUSION_STAC_TOKEN_FILE"])
    payload = json.loads(token_file.read_text())
    for entry in payload["tokens"].values():
        entry["access_token"] = "revoked-" + entry["access_token"]
    token_file.write_text(json.dumps(payload))
    token_file.chmod(0o600)
    with pytest.raises(AuthenticationError) as info:
        fusion_stac.login()
    assert info.value.status == 401 and "log in again (`fusion-stac login`)" in str(info.value)
    assert "revoked-" not in str(info.value)
