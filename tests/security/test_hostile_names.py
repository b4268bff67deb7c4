"""A server that names files ``../../x``, ``/abs/x``, ``a\\b``, with NUL or newlines cannot make a
download or an export write outside its destination.

The emulator refuses such names on upload, so the test plays a compromised server by rewriting a
stored file's name directly in the emulator's SQLite store. Every way fusion-stac writes files is
tried: ``FusionClient.download_file`` into a directory, ``fusion://`` ``get`` (one file, and a
whole data item recursively), ``fusion-stac download`` (file and tree) and ``export_catalog`` with
downloaded assets. Each works in a sandbox ``root/dest``; afterwards nothing may exist in ``root``
outside ``dest``, every file in ``dest`` must be a complete copy, and a refusal must be a typed error.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import EMAIL, GLASGOW, PASSWORD

HOSTILE = [
    "../../escaped.geojson",
    "../escaped.geojson",
    "{root}/absolute-escape.geojson",  # an absolute path (in the sandbox, outside the destination)
    "..\\..\\escaped.geojson",
    "C:\\Windows\\escaped.geojson",
    "sub/../../escaped.geojson",
    "nul\x00byte.geojson",
    "new\nline.geojson",
    "..",
    ".",
    "",
    "~/escaped.geojson",
    "%2e%2e%2fescaped.geojson",
]


@pytest.fixture(scope="module")
def hostile(emu: Any) -> Iterator[Callable[[str], tuple[str, str, str]]]:
    """``rename(name)``: gives the stored file of a fresh data item the hostile ``name``;
    returns (organisation id, data id, file id)."""
    from fusion_stac.client import FusionClient

    client = FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.02)
    org = client.organisation().id
    store = emu.platform.store

    def rename(name: str, root: Path) -> tuple[str, str, str]:
        name = name.replace("{root}", str(root))
        data = client.create_data(org, f"hostile {len(name)} {hashlib.md5(name.encode()).hexdigest()[:6]}", [GLASGOW])
        (doc,) = store.docs("files", data_id=data.id)
        doc["file_name"] = name
        store.put("files", doc)
        return org, data.id, doc["file_id"]

    yield rename
    client.close()


def _check_sandbox(root: Path, dest: Path) -> list[Path]:
    """Nothing outside ``dest`` (and no temporary file anywhere); returns the files written in ``dest``."""
    outside = [p for p in root.rglob("*") if p != dest and dest not in p.parents and p not in dest.parents]
    assert outside == [], outside
    files = [p for p in dest.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".part")], files
    expected = GLASGOW.read_bytes()
    for path in files:
        if path.suffix != ".json" or path.name.endswith(".geojson"):
            assert path.read_bytes() == expected, path
        assert "\x00" not in path.name and "\n" not in path.name
        # a backslash is an ordinary character of a POSIX name (kept, as the platform gave it, by
        # fusion_stac.storage.local_name); elsewhere it would be a separator and is mapped
        assert os.name == "posix" or "\\" not in path.name
        assert ".." not in path.relative_to(dest).parts
    return files


def _sandbox(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    dest = root / "a" / "b" / "dest"  # deep enough that ../../ lands inside root, where we can see it
    dest.mkdir(parents=True)
    return root, dest


@pytest.mark.parametrize("name", HOSTILE)
def test_client_download_file_stays_inside(emu: Any, hostile: Any, tmp_path: Path, name: str) -> None:
    from fusion_stac.client import FusionClient
    from fusion_stac.errors import FusionError

    root, dest = _sandbox(tmp_path)
    org, data_id, _ = hostile(name, root)
    with FusionClient(emu.url, email=EMAIL, password=PASSWORD) as client:
        (file,) = client.list_files(org, data_id)
        assert file.file_name == name.replace("{root}", str(root))  # the server did send the hostile name
        try:
            out = client.download_file(org, data_id, file, dest)
        except FusionError:
            out = None
    files = _check_sandbox(root, dest)
    if out is not None:
        assert out.parent == dest and files == [out]


@pytest.mark.parametrize("name", HOSTILE)
def test_fs_get_stays_inside(emu: Any, hostile: Any, tmp_path: Path, name: str) -> None:
    from fusion_stac.fs import FusionFileSystem

    root, dest = _sandbox(tmp_path)
    org, data_id, _ = hostile(name, root)
    fs = FusionFileSystem(api_url=emu.url, email=EMAIL, password=PASSWORD, skip_instance_cache=True,
                          token_cache=False)
    item = f"{org}/data/{data_id}"
    (entry,) = fs.ls(item)
    fs.get(entry["name"], str(dest) + "/")  # one file into a directory
    fs.get(item, str(dest / "tree"), recursive=True)  # the whole data item
    files = _check_sandbox(root, dest)
    assert len(files) == 2


@pytest.mark.parametrize("name", HOSTILE)
def test_cli_download_stays_inside(emu: Any, hostile: Any, tmp_path: Path, name: str,
                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from fusion_stac.cli import main

    root, dest = _sandbox(tmp_path)
    org, data_id, file_id = hostile(name, root)
    monkeypatch.setenv("FUSION_PLATFORM_API_URL", emu.url)
    monkeypatch.setenv("FUSION_PLATFORM_EMAIL", EMAIL)
    monkeypatch.setenv("FUSION_PLATFORM_PASSWORD", PASSWORD)
    codes = [
        main(["download", f"fusion://{org}/data/{data_id}/{file_id}", str(dest) + "/"]),
        main(["download", f"fusion://{org}/data/{data_id}", str(dest / "tree")]),
    ]
    captured = capsys.readouterr()
    assert all(code in (0, 1, 2) for code in codes), captured.err
    assert "Traceback" not in captured.err
    files = _check_sandbox(root, dest)
    assert len(files) == codes.count(0), (codes, captured.err)


@pytest.mark.parametrize("name", HOSTILE)
def test_export_stays_inside(emu: Any, hostile: Any, tmp_path: Path, name: str) -> None:
    import fusion_stac
    from fusion_stac.client import FusionClient

    root, dest = _sandbox(tmp_path)
    org, data_id, _ = hostile(name, root)
    target = dest / "catalog"
    with FusionClient(emu.url, email=EMAIL, password=PASSWORD) as client:
        catalog = fusion_stac.open_catalog(client, f"fusion://{org}/uploads/{data_id}")
        fusion_stac.export_catalog(catalog, target, assets="download")
    files = _check_sandbox(root, dest)
    assert len([p for p in files if p.suffix != ".json" and not p.name.endswith(".png")]) == 1
