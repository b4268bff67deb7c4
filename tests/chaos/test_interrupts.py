"""Downloads and exports killed mid-way: nothing incomplete at the final path, and the next run resumes.

Each test starts the transfer in a subprocess while storage is slow and truncates every body (so a
partial file exists on disk and the transfer is still going), kills it with SIGKILL or SIGTERM as
soon as the partial file appears, checks that nothing incomplete is at the final path, then runs
the same transfer again with storage healthy and checks, from the emulator's byte counters, that it
fetched only what was missing. The file is 20 MB: readers keep whole chunks (1 MiB for the client,
8 MiB for ``fusion://``) of a body that breaks off, so a partial file needs a body longer than that.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fusion_stac.emulator import FaultConfig

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    from fusion_stac.emulator import Emulator

    with Emulator(execution_duration=0) as server:
        yield server


@pytest.fixture(scope="module")
def stored(emu: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 20 MB upload (an opaque file: no analysis to speak of)."""
    import numpy as np

    from fusion_stac.client import FusionClient

    local = tmp_path_factory.mktemp("stored")
    big = local / "big.bin"
    big.write_bytes(np.random.default_rng(8).integers(0, 256, 20 * 2**20, dtype=np.uint8).tobytes())
    with FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.02) as client:
        org = client.organisation().id
        data = client.create_data(org, "interrupt big file", [big])
        (file,) = client.list_files(org, data.id)
    return {"org": org, "data": data.id, "file": file.file_id, "name": file.file_name, "size": big.stat().st_size,
            "bytes": big.read_bytes()}


@pytest.fixture
def slow_truncating_storage(emu: Any) -> Iterator[Any]:
    """Every storage answer comes after 0.4 s and stops half-way: transfers crawl, partial files pile up."""
    emu.configure(storage_faults=FaultConfig(truncate=1.0), storage_latency=0.4)
    yield emu
    emu.configure(storage_faults=None, storage_latency=0.0)


def _env(emu: Any, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"FUSION_PLATFORM_API_URL": emu.url, "FUSION_PLATFORM_EMAIL": EMAIL,
                "FUSION_PLATFORM_PASSWORD": PASSWORD, "FUSION_STAC_TOKEN_FILE": str(tmp_path / "tokens.json")})
    return env


def _start(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool], sig: int, timeout: float = 60.0) -> None:
    """Send ``sig`` as soon as ``ready()`` holds; fail if the process ends or nothing happens first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the transfer ended before it could be interrupted (exit {proc.returncode}): {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no partial file appeared")
        time.sleep(0.01)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode == -sig


def _partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".part") and p.stat().st_size > 0]


def _served(emu: Any) -> int:
    return int(emu.stats()["storage_bytes_served"])


def _settled(emu: Any, quiet: float = 1.0) -> int:
    """Bytes served once the killed process's last requests are over (the server may still be
    answering one to a dead socket): the counter has not moved for ``quiet`` seconds."""
    last, since = _served(emu), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.05)
        now = _served(emu)
        if now != last:
            last, since = now, time.monotonic()
    return last


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_client_download_killed_then_resumed(emu: Any, stored: dict[str, Any], slow_truncating_storage: Any,
                                             tmp_path: Path, sig: int) -> None:
    dest = tmp_path / "out" / "big.bin"
    code = f"""
        from fusion_stac.client import FusionClient, RetryPolicy
        client = FusionClient.from_env(storage_retry=RetryPolicy(attempts=50, backoff=0.01))
        client.download_file({stored['org']!r}, {stored['data']!r}, {stored['file']!r}, {str(dest)!r})
    """
    proc = _start(code, _env(emu, tmp_path))
    _kill_when(proc, lambda: bool(_partials(dest.parent)), sig)
    assert not dest.exists()  # nothing at the final path: only the partial file
    (partial,) = _partials(dest.parent)
    have = partial.stat().st_size
    assert 0 < have < stored["size"]
    assert stored["bytes"].startswith(partial.read_bytes())

    emu.configure(storage_faults=None, storage_latency=0.0)
    from fusion_stac.client import FusionClient

    before = _settled(emu)
    with FusionClient(emu.url, email=EMAIL, password=PASSWORD) as client:
        out = client.download_file(stored["org"], stored["data"], stored["file"], dest)
    assert out == dest and dest.read_bytes() == stored["bytes"]
    assert _served(emu) - before == stored["size"] - have  # resumed: only the missing bytes were sent
    assert _partials(tmp_path) == [] and sorted(p.name for p in dest.parent.iterdir()) == ["big.bin"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_cli_download_killed_then_resumed(emu: Any, stored: dict[str, Any], slow_truncating_storage: Any,
                                          tmp_path: Path, sig: int) -> None:
    dest = tmp_path / "out"
    url = f"fusion://{stored['org']}/uploads/{stored['data']}/big.bin"
    env = _env(emu, tmp_path)
    cli = [sys.executable, "-c", "import sys; from fusion_stac.cli import main; sys.exit(main(sys.argv[1:]))"]
    proc = subprocess.Popen([*cli, "download", url, str(dest) + "/"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_when(proc, lambda: bool(_partials(dest)) if dest.exists() else False, sig)
    assert not (dest / "big.bin").exists()
    (partial,) = _partials(dest)
    have = partial.stat().st_size
    assert 0 < have < stored["size"]

    emu.configure(storage_faults=None, storage_latency=0.0)
    before = _settled(emu)
    done = subprocess.run([*cli, "download", url, str(dest) + "/"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (dest / "big.bin").read_bytes() == stored["bytes"]
    assert _served(emu) - before == stored["size"] - have  # resumed from the partial file
    assert [p.name for p in dest.iterdir()] == ["big.bin"]


def test_cli_download_first_ctrl_c_stops_and_the_same_command_resumes(
        emu: Any, stored: dict[str, Any], slow_truncating_storage: Any, tmp_path: Path) -> None:
    """The first Ctrl-C once did nothing until every file in flight had finished (minutes on a slow
    link), then exited 130 even when they had all completed. Now it stops the transfer at once,
    keeps the partial file beside the target, says what is unfinished and how to resume, and exits
    130; the same command again finishes the file, byte for byte, fetching only what was missing."""
    dest = tmp_path / "out"
    url = f"fusion://{stored['org']}/uploads/{stored['data']}/big.bin"
    env = _env(emu, tmp_path)
    cli = [sys.executable, "-c", "import sys; from fusion_stac.cli import main; sys.exit(main(sys.argv[1:]))"]
    # SIGINT as in an interactive shell: a suite started in the background would pass on an ignored one
    proc = subprocess.Popen([*cli, "download", url, str(dest) + "/"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not (dest.exists() and _partials(dest)):
        assert proc.poll() is None, f"the download ended before it could be interrupted: {proc.communicate()}"
        assert time.monotonic() < deadline, "no partial file appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not (dest / "big.bin").exists()
    (partial,) = _partials(dest)
    assert partial.parent == dest and partial.name.startswith("big.bin.")  # beside the target
    have = partial.stat().st_size
    assert 0 < have < stored["size"]  # stopped mid-way: the file had not completed
    assert stored["bytes"].startswith(partial.read_bytes())
    assert "Traceback" not in err
    assert "interrupted: 0 of 1 file(s) complete, 1 unfinished" in err
    assert f"{url}: " in err and f"kept in {partial} (resumes)" in err
    again = shlex.join(["fusion-stac", "download", url, f"{dest}/"])
    assert f"Run the same command again to resume: {again}" in err
    assert "Downloaded 0 of 1 file(s)" in out

    emu.configure(storage_faults=None, storage_latency=0.0)
    before = _settled(emu)
    done = subprocess.run([*cli, "download", url, str(dest) + "/"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (dest / "big.bin").read_bytes() == stored["bytes"]
    assert _served(emu) - before == stored["size"] - have  # resumed from the partial file
    assert [p.name for p in dest.iterdir()] == ["big.bin"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_fs_get_killed_then_resumed(emu: Any, stored: dict[str, Any], slow_truncating_storage: Any,
                                    tmp_path: Path, sig: int) -> None:
    dest = tmp_path / "out" / "big.bin"
    remote = f"fusion://{stored['org']}/data/{stored['data']}/{stored['file']}"
    code = f"""
        from fusion_stac.fs import FusionFileSystem
        fs = FusionFileSystem(retries={{"attempts": 50, "backoff": 0.01}}, skip_instance_cache=True)
        fs.get({remote!r}, {str(dest)!r})
    """
    proc = _start(code, _env(emu, tmp_path))
    _kill_when(proc, lambda: bool(_partials(dest.parent)) if dest.parent.exists() else False, sig)
    assert not dest.exists()
    (partial,) = _partials(dest.parent)
    have = partial.stat().st_size
    assert 0 < have < stored["size"]

    emu.configure(storage_faults=None, storage_latency=0.0)
    from fusion_stac.fs import FusionFileSystem

    before = _settled(emu)
    fs = FusionFileSystem(api_url=emu.url, email=EMAIL, password=PASSWORD, skip_instance_cache=True,
                          token_cache=False)
    fs.get(remote, str(dest))
    assert dest.read_bytes() == stored["bytes"]
    assert _served(emu) - before < stored["size"]  # resumed, not started over
    assert [p.name for p in dest.parent.iterdir()] == ["big.bin"]  # and nothing temporary is left


@pytest.fixture(scope="module")
def other_stored(emu: Any, stored: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Another 20 MB file, with different bytes, of the same size (a size check cannot tell them apart)."""
    import numpy as np

    from fusion_stac.client import FusionClient

    big = tmp_path_factory.mktemp("other") / "big.bin"
    big.write_bytes(np.random.default_rng(9).integers(0, 256, stored["size"], dtype=np.uint8).tobytes())
    with FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.02) as client:
        data = client.create_data(stored["org"], "interrupt other file", [big])
        (file,) = client.list_files(stored["org"], data.id)
    return {"org": stored["org"], "data": data.id, "file": file.file_id, "bytes": big.read_bytes()}


@pytest.mark.parametrize("how", ["client", "fs"])
def test_a_partial_of_another_file_is_never_resumed(emu: Any, stored: dict[str, Any], other_stored: dict[str, Any],
                                                    slow_truncating_storage: Any, tmp_path: Path, how: str) -> None:
    """Yesterday's run of a pipeline died downloading file A to ``latest.bin``; today's downloads file
    B to the same path. Resuming A's partial bytes with B's tail would give a file of the right size
    and the wrong content: today's download must not use yesterday's partial."""
    dest = tmp_path / "out" / "latest.bin"
    if how == "client":
        code = f"""
            from fusion_stac.client import FusionClient, RetryPolicy
            client = FusionClient.from_env(storage_retry=RetryPolicy(attempts=50, backoff=0.01))
            client.download_file({stored['org']!r}, {stored['data']!r}, {stored['file']!r}, {str(dest)!r})
        """
    else:
        code = f"""
            from fusion_stac.fs import FusionFileSystem
            fs = FusionFileSystem(retries={{"attempts": 50, "backoff": 0.01}}, skip_instance_cache=True)
            fs.get("{stored['org']}/data/{stored['data']}/{stored['file']}", {str(dest)!r})
        """
    proc = _start(code, _env(emu, tmp_path))
    _kill_when(proc, lambda: bool(_partials(dest.parent)) if dest.parent.exists() else False, signal.SIGKILL)
    emu.configure(storage_faults=None, storage_latency=0.0)
    _settled(emu)
    if how == "client":
        from fusion_stac.client import FusionClient

        with FusionClient(emu.url, email=EMAIL, password=PASSWORD) as client:
            client.download_file(other_stored["org"], other_stored["data"], other_stored["file"], dest)
    else:
        from fusion_stac.fs import FusionFileSystem

        fs = FusionFileSystem(api_url=emu.url, email=EMAIL, password=PASSWORD, skip_instance_cache=True,
                              token_cache=False)
        fs.get(f"{other_stored['org']}/data/{other_stored['data']}/{other_stored['file']}", str(dest))
    assert dest.read_bytes() == other_stored["bytes"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_export_killed_then_resumed(emu: Any, stored: dict[str, Any], slow_truncating_storage: Any,
                                    tmp_path: Path, sig: int) -> None:
    dest = tmp_path / "exports" / "run"
    code = f"""
        import fusion_stac
        from fusion_stac.client import FusionClient, RetryPolicy
        client = FusionClient.from_env(retry=RetryPolicy(attempts=50, backoff=0.01))
        cat = fusion_stac.open_catalog(client, "fusion://{stored['org']}/uploads/{stored['data']}",
                                       read_headers=False)
        fusion_stac.export_catalog(cat, {str(dest)!r}, assets="download")
    """
    proc = _start(code, _env(emu, tmp_path))
    _kill_when(proc, lambda: bool(_partials(dest.parent)) if dest.parent.exists() else False, sig)
    assert not dest.exists()  # the catalog appears only when complete

    emu.configure(storage_faults=None, storage_latency=0.0)
    import fusion_stac
    from fusion_stac.client import FusionClient

    with FusionClient(emu.url, email=EMAIL, password=PASSWORD) as client:
        catalog = fusion_stac.open_catalog(client, f"fusion://{stored['org']}/uploads/{stored['data']}",
                                           read_headers=False)
        before = _settled(emu)
        root = fusion_stac.export_catalog(catalog, dest, assets="download")
        served = _served(emu) - before
    assert root.exists()
    (copy,) = [p for p in dest.rglob("big.bin")]
    assert copy.read_bytes() == stored["bytes"]
    assert served < stored["size"]  # what the killed run had fetched was not fetched again
    assert [p.name for p in dest.parent.iterdir()] == ["run"]  # no partial directory left beside it
    json.loads(root.read_text())


def test_export_failure_keeps_its_error_type(emu: Any, stored: dict[str, Any], tmp_path: Path) -> None:
    """A download that keeps failing ends the export with the client's typed error (here a
    TransportError naming the file), not a TypeError from re-wrapping it, and leaves nothing behind."""
    import fusion_stac
    from fusion_stac.client import FusionClient, RetryPolicy
    from fusion_stac.errors import TransportError

    dest = tmp_path / "exports" / "failed"
    with FusionClient(emu.url, email=EMAIL, password=PASSWORD, retry=RetryPolicy(attempts=2),
                      sleep=lambda s: None) as client:
        catalog = fusion_stac.open_catalog(client, f"fusion://{stored['org']}/uploads/{stored['data']}",
                                           read_headers=False)
        emu.configure(storage_faults=FaultConfig(reset=1.0))
        try:
            with pytest.raises(TransportError) as info:
                fusion_stac.export_catalog(catalog, dest, assets="download")
        finally:
            emu.configure(storage_faults=None)
    assert "export: download of 'big.bin'" in str(info.value)
    assert isinstance(info.value.__cause__, TransportError)
    assert list(dest.parent.iterdir()) == []


def test_concurrent_exports_to_one_place_are_refused(emu: Any, stored: dict[str, Any], slow_truncating_storage: Any,
                                                     tmp_path: Path) -> None:
    """The resumable work directory is shared by exports to the same destination: a second export
    while one runs must be refused, not mix its files with the first one's."""
    import fusion_stac
    from fusion_stac.client import FusionClient

    dest = tmp_path / "exports" / "run"
    href = f"fusion://{stored['org']}/uploads/{stored['data']}"
    code = f"""
        import fusion_stac
        from fusion_stac.client import FusionClient, RetryPolicy
        client = FusionClient.from_env(retry=RetryPolicy(attempts=50, backoff=0.01))
        cat = fusion_stac.open_catalog(client, {href!r}, read_headers=False)
        fusion_stac.export_catalog(cat, {str(dest)!r}, assets="download")
    """
    proc = _start(code, _env(emu, tmp_path))
    try:
        deadline = time.monotonic() + 60
        while not _partials(dest.parent) if dest.parent.exists() else True:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        with FusionClient(emu.url, email=EMAIL, password=PASSWORD) as client:
            catalog = fusion_stac.open_catalog(client, href, read_headers=False)
            with pytest.raises(FileExistsError, match="in progress"):
                fusion_stac.export_catalog(catalog, dest, assets="download")
        assert proc.poll() is None  # the first export was not disturbed
    finally:
        proc.kill()
        proc.wait(timeout=30)
