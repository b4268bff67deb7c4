"""``fs.get`` names local files as the platform names them (not as their URLs spell them), maps only what the
local file system forbids, and keeps a local name the caller chose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import EMAIL, PASSWORD, World, make_fs


def _upload(world: World, tmp_path: Path, name: str, data_name: str) -> bytes:
    from fusion_stac.client import FusionClient

    local = tmp_path / "src" / name
    local.parent.mkdir(exist_ok=True)
    local.write_text("a,b\n1,2\n")
    with FusionClient(world.url, email=EMAIL, password=PASSWORD, poll_interval=0.02) as client:
        client.create_data(world.org_id, data_name, [local])
    return local.read_bytes()


def test_get_keeps_non_ascii_and_colon_names_as_the_platform_gives_them(world: World, tmp_path: Path) -> None:
    # before: fsspec derived local names from percent-encoded paths (é -> %C3%A9)
    body = _upload(world, tmp_path, "é:x.csv", "local names é")
    fs: Any = make_fs(world.url)
    dest = tmp_path / "dest"
    fs.get(f"{world.org_name}/uploads/local names é/", str(dest) + "/", recursive=True)
    files = sorted(p.name for p in dest.rglob("*") if p.is_file())
    assert files == ["é:x.csv"]
    assert (next(dest.rglob("é:x.csv"))).read_bytes() == body


def test_get_keeps_a_local_name_the_caller_chose(world: World, tmp_path: Path) -> None:
    body = _upload(world, tmp_path, "chosen.csv", "local names chosen")
    fs: Any = make_fs(world.url)
    target = tmp_path / "mine.bin"
    fs.get(f"{world.org_name}/uploads/local names chosen/chosen.csv", str(target))
    assert target.read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.bin", "src"]
