"""``asset_hrefs="gateway"`` from Python: the README's odc-stac / stackstac block, run against the emulator.

No server is started by hand: the first search starts ``fusion-stac serve`` in the background (a
subprocess, as GDAL needs), and the pixels are computed through its redirects.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from .conftest import EMAIL, PASSWORD, ROOT, Served, World, new_client, write_geotiff

README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = "## With odc-stac, stackstac, GDAL and QGIS"


def readme_block() -> str:
    """The first Python block of the README's odc-stac / stackstac section."""
    section = README.split(SECTION, 1)[1].split("\n## ", 1)[0]
    found = re.search(r"^```python\n(.*?)^```$", section, re.M | re.S)
    assert found, "the section shows a python block"
    return found.group(1)


@pytest.fixture
def platform_env(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fusion_stac.login()`` finds the emulator and this test's account; the session goes to a temporary cache."""
    monkeypatch.setenv("FUSION_PLATFORM_API_URL", world.emu.url)
    monkeypatch.setenv("FUSION_PLATFORM_EMAIL", EMAIL)
    monkeypatch.setenv("FUSION_PLATFORM_PASSWORD", PASSWORD)
    monkeypatch.delenv("FUSION_PLATFORM_USER_ID", raising=False)
    monkeypatch.setenv("FUSION_STAC_TOKEN_FILE", str(tmp_path / "tokens.json"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


@pytest.fixture
def gateways() -> Any:
    from fusion_stac.stac import _gateway_process

    yield _gateway_process
    _gateway_process.stop_all()


def test_the_readme_block_computes_pixels_through_a_background_gateway(
        world: World, platform_env: None, gateways: Any) -> None:
    pytest.importorskip("odc.stac")
    pytest.importorskip("stackstac")
    namespace: dict[str, Any] = {}
    exec(compile(readme_block(), "README.md", "exec"), namespace)  # the README block, as a reader runs it

    items = namespace["items"]
    assert len(items) >= 2
    gateway = next(iter(gateways._gateways.values()))
    for item in items:
        org, data, file = (item.properties[f"fusion:{k}"] for k in ("organisation_id", "data_id", "file_id"))
        assert item.assets["data"].href == f"{gateway.url}/assets/{org}/{data}/{file}"
        if "thumbnail" in item.assets:
            assert item.assets["thumbnail"].href == f"{gateway.url}/assets/{org}/{data}/{file}/preview"
        assert "fusion:href_expires" not in item.assets["data"].extra_fields
    assert gateway.process.args[:4] == [gateway.process.args[0], "-m", "fusion_stac", "serve"]
    assert PASSWORD not in " ".join(map(str, gateway.process.args))  # secrets never on the command line

    pixels = namespace["pixels"]
    nodata = pixels.attrs.get("nodata")
    values = np.asarray(pixels.values)
    assert values.size and (values != nodata).mean() > 0.2, "odc-stac read pixels through the gateway"
    stacked = np.asarray(namespace["stacked"].values)
    assert np.isfinite(stacked).mean() > 0.2, "stackstac read pixels through the gateway"

    # the same process reuses its gateway; stopping it (as atexit does) ends the subprocess
    import fusion_stac

    client = new_client(world.emu)
    try:
        again = fusion_stac.search(client, text="Thames classification", asset_hrefs="gateway", max_items=1)
        assert next(iter(again)).assets["data"].href.startswith(gateway.url + "/assets/")
        assert len(gateways._gateways) == 1
        catalog = fusion_stac.open_catalog(client, asset_hrefs="gateway")
        item = next(catalog.get_items(recursive=True))
        assert item.assets["data"].href.startswith(gateway.url + "/assets/")
    finally:
        client.close()
    gateways.stop_all()
    assert gateway.process.poll() is not None
    with pytest.raises(requests.ConnectionError):
        requests.get(gateway.url + "/_mgmt/ping", timeout=2)


def test_gateway_url_given_is_used_as_is_and_only_with_gateway_hrefs(world: World, gateways: Any) -> None:
    import fusion_stac
    from fusion_stac.errors import ValidationError

    client = new_client(world.emu)
    try:
        items = fusion_stac.search(client, text="Thames classification", filter={"fusion:file_type": "GeoTIFF"},
                                   asset_hrefs="gateway", gateway_url="http://example.test:8080/")
        assert items and all(i.assets["data"].href.startswith("http://example.test:8080/assets/") for i in items)
        assert not gateways._gateways, "no background server when a gateway URL is given"
        with pytest.raises(ValidationError):
            fusion_stac.search(client, asset_hrefs="signed", gateway_url="http://example.test:8080")
        with pytest.raises(ValidationError):
            fusion_stac.open_catalog(client, gateway_url="http://example.test:8080")
    finally:
        client.close()


def _running(pid: int) -> bool:
    """``pid`` runs (a zombie nobody reaped yet does not: containers' init may never reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc").is_dir():  # macOS: no zombie check
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _walks(stats: dict[str, Any]) -> int:
    """File listings (what walking an upload costs) among an emulator's requests."""
    return sum(int(n) for route, n in stats["routes"].items() if route.endswith("/files"))


def _private(path: Path, mode: int) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == mode


#: A Python session that starts its background gateway, says where it is, and waits to be killed.
PARENT = r"""
import sys, time
import fusion_stac
from fusion_stac.stac import _gateway_process
client = fusion_stac.login()
_gateway_process.gateway_url(client)
(gateway,) = _gateway_process._gateways.values()
index = _gateway_process.index_path(client, gateway.directory)
with open(sys.argv[1] + ".tmp", "w") as out:
    out.write(f"{gateway.process.pid}\n{gateway.directory}\n{index}\n")
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(600)
"""


def test_a_killed_parent_takes_its_background_gateway_and_its_directory_with_it(world: World, tmp_path: Path) -> None:
    said = tmp_path / "gateway.txt"
    env = {**os.environ, "FUSION_PLATFORM_API_URL": world.emu.url, "FUSION_PLATFORM_EMAIL": EMAIL,
           "FUSION_PLATFORM_PASSWORD": PASSWORD, "FUSION_STAC_TOKEN_FILE": str(tmp_path / "tokens.json"),
           "FUSION_STAC_CACHE_DIR": str(tmp_path / "cache"), "NETRC": str(tmp_path / "no-netrc"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("FUSION_STAC_CACHE", None)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(said)], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pid = 0
    try:
        deadline = time.monotonic() + 180
        while not said.exists():
            assert parent.poll() is None, parent.communicate()[1].decode(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the background gateway did not start"
            time.sleep(0.1)
        pid_text, directory_text, index_text = said.read_text().split("\n")[:3]
        pid, directory, index = int(pid_text), Path(directory_text), Path(index_text)
        assert _running(pid) and directory.is_dir() and (directory / "tokens.json").exists()
        assert index.parent == tmp_path / "cache" / "stac-index"  # the user's shared index, not the private one

        parent.send_signal(signal.SIGKILL)  # no atexit, no finally: only the kernel closes its files
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        while (_running(pid) or directory.exists()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(pid), "the background server outlived its killed parent"
        assert not directory.exists(), "the server's private directory (token cache, log) was left behind"
        assert index.exists() and _private(index, 0o600) and _private(index.parent, 0o700)  # kept, private
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if pid and _running(pid):
            os.kill(pid, signal.SIGKILL)


def test_serve_exit_with_stdin_stops_when_its_stdin_closes(world: World, tmp_path: Path) -> None:
    from fusion_stac.cli import main

    assert main(["serve", "--api-url", world.emu.url, "--remove-on-exit", str(tmp_path)]) == 2  # only with it
    private = tmp_path / "private"
    private.mkdir()
    (private / "tokens.json").write_text("{}")
    server = Served(world.emu, tmp_path / "index.sqlite", "--exit-with-stdin", "--remove-on-exit", str(private),
                    stdin=subprocess.PIPE)
    with server:
        assert server.process is not None and server.process.stdin is not None
        assert requests.get(server.url + "/collections", timeout=60).status_code == 200
        server.process.stdin.close()
        assert server.process.wait(timeout=30) == 0  # a clean stop, not a signal
    assert "standard input closed" in server.output
    assert not private.exists()
    assert (tmp_path / "index.sqlite").exists()


def test_a_new_session_answers_from_the_persisted_index_and_walks_only_what_is_new(
        fresh_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gateways: Any) -> None:
    emu = fresh_emulator
    monkeypatch.setenv("FUSION_STAC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FUSION_STAC_CACHE", raising=False)
    client = new_client(emu)
    try:
        org = client.organisation()
        uploads = {client.create_data(org.id, f"Upload {i}", [write_geotiff(tmp_path / f"{i}.tif")]).id
                   for i in range(6)}
        emu.reset_stats()
        url = gateways.gateway_url(client)  # the first session: an empty index, walked whole
        first = requests.get(url + "/search", params={"limit": 100}, timeout=60).json()["features"]
        assert {f["collection"] for f in first} == uploads
        index = gateways.index_path(client, Path("unused"))
        gateways.stop_all()  # that session ends (what atexit does)
        first = emu.stats()
        assert _walks(first) == len(uploads), first["routes"]  # each upload's file listing
        assert index.parent == tmp_path / "cache" / "stac-index" and _private(index, 0o600)

        later = client.create_data(org.id, "Later", [write_geotiff(tmp_path / "later.tif")])
        later_file = client.list_files(org.id, later.id)[0].file_id
        emu.reset_stats()
        url = gateways.gateway_url(client)  # a new session: another server, the same index
        second = requests.get(url + "/search", params={"limit": 100}, timeout=60).json()["features"]
        assert uploads <= {f["collection"] for f in second}  # from the persisted index
        # a file newer than the index is served all the same: the miss waits for the refresh under way
        r = requests.head(f"{url}/assets/{org.id}/{later.id}/{later_file}", timeout=60)
        assert r.status_code == 200
        gateways.stop_all()
        stats = emu.stats()
        assert _walks(stats) == 1, stats["routes"]  # the new upload's file listing; none of those indexed
        assert int(stats["api_requests"]) <= int(first["api_requests"]) - (len(uploads) - 1), (first, stats)
    finally:
        client.close()


def test_with_disk_caches_off_the_background_index_is_private(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gateways: Any) -> None:
    client = new_client(world.emu)
    try:
        monkeypatch.setenv("FUSION_STAC_CACHE", "off")
        assert gateways.index_path(client, tmp_path) == tmp_path / "index.sqlite"
        monkeypatch.setenv("FUSION_STAC_CACHE", "on")
        monkeypatch.setenv("FUSION_STAC_CACHE_DIR", str(tmp_path / "cache"))
        from fusion_stac.server import default_index_path

        assert gateways.index_path(client, tmp_path) == default_index_path(client)  # what `serve` uses
        assert default_index_path(client).parent == tmp_path / "cache" / "stac-index"
    finally:
        client.close()
