"""``download``: names on disk as the platform gives them, every failure named, local errors naming the
destination, files already present compared by content; ``upload``: a refused upload URL."""

from __future__ import annotations

import hashlib
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from .conftest import EMAIL, PASSWORD, REGIONS, Run, World, clean_env, client_for, run_cli

LONG = "n" * 246 + ".bin"  # 250 bytes: the partial file's suffix would not fit beside it


def _upload(emulator: Any, org_id: str, tmp_path: Path, files: dict[str, bytes]) -> Any:
    """A data item of ``files`` (name -> bytes) uploaded through the client."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for name, content in files.items():
        (src / name).write_bytes(content)
    client = client_for(emulator)
    try:
        return client.create_data(org_id, f"names {uuid.uuid4().hex[:8]}", [src / n for n in files],
                                  poll_interval=0.05)
    finally:
        client.close()


def _upload_raw(emulator: Any, org_id: str, files: list[tuple[str, bytes]]) -> str:
    """A data item whose files have names no local file could have (too long for Linux, repeated),
    made through the API as another platform client would; returns its name."""
    import requests

    client = client_for(emulator)
    name = f"raw names {uuid.uuid4().hex[:8]}"
    data_id = str(uuid.uuid4())
    try:
        client.request("POST", f"/organisations/{org_id}/data",
                       body={"Data": {"id": data_id, "name": name, "organisation_id": org_id}})
        for file_name, content in files:
            added = client.request("POST", f"/organisations/{org_id}/data/{data_id}/add_file",
                                   body={"Data": {"name": file_name, "file_type": "Other"}})
            put = requests.put(added["extras"]["url"], data=content, timeout=30)
            assert put.status_code == 200, put.text
        client.wait_for_analysis(org_id, data_id, poll_interval=0.05, timeout=60)
    finally:
        client.close()
    return name


def test_names_are_kept_or_mapped_and_said(cli: Run, emulator: Any, world: World, tmp_path: Path) -> None:
    """``a:x.geojson`` and ``b:y.geojson`` once went to one file called ``download`` (exit 0, "2 files").
    Names stay byte for byte where Linux allows them (``:``, ``é``, 250 bytes); a name it does not
    allow (264 bytes of UTF-8: the platform counts 134 characters) and a second file of the same
    name get a stable suffix, and the output says why."""
    region = (REGIONS / "thames.geojson").read_bytes()
    too_long = "é" * 130 + ".bin"
    files = [("a:x.geojson", region), ("b:y.geojson", region.replace(b"{", b"{ ", 1)), ("é.bin", b"accent"),
             (LONG, b"long" * 1000), (too_long, b"too long"), ("dup.bin", b"first"), ("dup.bin", b"second")]
    name = _upload_raw(emulator, world.org_id, files)
    dest = tmp_path / "out"
    url = f"fusion://{world.org_name}/uploads/{name}"
    result = cli("download", url, str(dest))
    assert result.code == 0, result.err
    assert f"Downloaded {len(files)} file(s)" in result.out
    on_disk = {p.name: p.read_bytes() for p in dest.iterdir()}
    for kept, content in files[:4]:
        assert on_disk.get(kept) == content, f"{kept!r} not kept as it is: {sorted(on_disk)}"
    assert "%C3%A9" not in result.out and "é.bin" in result.out
    (mapped,) = [n for n in on_disk if n.startswith("é" * 10)]
    assert re.fullmatch(r"(é)+~[0-9a-f]{8}\.bin", mapped) and len(mapped.encode()) <= 255
    assert on_disk[mapped] == b"too long"
    dups = sorted(n for n in on_disk if n.startswith("dup"))
    assert len(dups) == 2 and dups[0] == "dup.bin" and re.fullmatch(r"dup~[0-9a-f]{8}\.bin", dups[1])
    assert sorted(on_disk[n] for n in dups) == [b"first", b"second"]
    assert len(on_disk) == len(files) and not [n for n in on_disk if ".part" in n]
    said = [line for line in result.out.splitlines() if " saved as " in line]
    assert len(said) == 2, result.out
    assert any(str(dest / mapped) in line and "because: longer than 255 bytes" in line for line in said)
    assert any(str(dest / dups[1]) in line and "because: another file has this name" in line for line in said)
    # the mapping is stable: a second run finds every file present
    again = cli("download", url, str(dest))
    assert again.code == 0 and f"{len(files)} already present" in again.out
    assert sorted(p.name for p in dest.iterdir()) == sorted(on_disk)


def test_a_single_file_into_a_directory_keeps_a_long_name(cli: Run, emulator: Any, world: World,
                                                          tmp_path: Path) -> None:
    data = _upload(emulator, world.org_id, tmp_path, {LONG: b"x" * 5000})
    result = cli("download", f"fusion://{world.org_name}/uploads/{data.name}/{LONG}", str(tmp_path / "one") + "/")
    assert result.code == 0, result.err
    assert [p.name for p in (tmp_path / "one").iterdir()] == [LONG]


def _corrupt(emulator: Any, file_id: str) -> None:
    """Change the stored bytes (same size) behind storage's back: its ETag (MD5) no longer matches."""
    blob = emulator.platform.blobs.path(file_id)
    content = bytearray(blob.read_bytes())
    content[len(content) // 2] ^= 0xFF
    blob.write_bytes(bytes(content))


def test_every_failed_file_is_named(cli: Run, emulator: Any, world: World, tmp_path: Path) -> None:
    """Two bad files and one good one: both failures named by their fusion:// names (one line each),
    exit 1, the good file downloaded, and nothing at the bad files' final paths."""
    files = {"good.bin": b"good" * 5000, "bad1.bin": b"bad1" * 5000, "bad2.bin": b"bad2" * 5000}
    data = _upload(emulator, world.org_id, tmp_path, files)
    client = client_for(emulator)
    try:
        listed = {f.file_name: f.file_id for f in client.list_files(world.org_id, data.id)}
    finally:
        client.close()
    _corrupt(emulator, listed["bad1.bin"])
    _corrupt(emulator, listed["bad2.bin"])
    dest = tmp_path / "out"
    url = f"fusion://{world.org_name}/uploads/{data.name}"
    result = cli("download", url, str(dest))
    assert result.code == 1, result.err
    errors = [line for line in result.err_lines if line.startswith("fusion-stac: error:")]
    for name in ("bad1.bin", "bad2.bin"):
        (line,) = [e for e in errors if f"{url}/{name}:" in e]
        assert "MD5" in line and "signature" not in line
    assert "2 of 3 file(s) failed" in result.err and "Traceback" not in result.err
    assert (dest / "good.bin").read_bytes() == files["good.bin"]
    assert sorted(p.name for p in dest.iterdir()) == ["good.bin"]  # no partial, nothing truncated
    assert "Downloaded 1 of 3 file(s)" in result.out


def test_a_local_error_names_the_destination(cli: Run, emulator: Any, world: World, tmp_path: Path) -> None:
    """A local failure (here: a directory where the partial file goes) names the file the user asked
    for, not the internal ``*.part`` file."""
    from fusion_stac.storage import partial_path

    data = _upload(emulator, world.org_id, tmp_path, {"blocked.bin": b"b" * 100})
    client = client_for(emulator)
    try:
        (f,) = client.list_files(world.org_id, data.id)
    finally:
        client.close()
    target = tmp_path / "out" / "blocked.bin"
    partial_path(target, f.file_id).mkdir(parents=True)
    url = f"fusion://{world.org_name}/uploads/{data.name}/blocked.bin"
    result = cli("download", url, str(target))
    assert result.code == 1
    (line,) = [e for e in result.err_lines if f"{url}:" in e]
    assert f"cannot write {target}:" in line and ".part" not in line, line
    assert not target.exists()


def test_a_present_file_with_other_bytes_is_downloaded_again(cli: Run, emulator: Any, world: World,
                                                              tmp_path: Path) -> None:
    """The size alone once decided "already present": a local file of the same size with other bytes
    was kept. Now storage's MD5 decides."""
    content = bytes(range(256)) * 40
    data = _upload(emulator, world.org_id, tmp_path, {"same-size.bin": content})
    dest = tmp_path / "out"
    url = f"fusion://{world.org_name}/uploads/{data.name}"
    assert cli("download", url, str(dest)).code == 0
    local = dest / "same-size.bin"
    local.write_bytes(content[::-1])  # same size, other bytes
    result = cli("download", url, str(dest))
    assert result.code == 0, result.err
    assert "different from the platform's, downloaded again" in result.out
    assert "already present" not in result.out
    assert hashlib.md5(local.read_bytes()).hexdigest() == hashlib.md5(content).hexdigest()
    same = cli("download", url, str(dest))
    assert same.code == 0 and "Downloaded 0 file(s)" in same.out and "1 already present" in same.out


# -- upload --------------------------------------------------------------------------------------------
def test_upload_url_expiring_mid_upload(make_emulator: Any, tmp_path: Path) -> None:
    """Upload URLs live 1-2 s and every storage request waits 2.5 s: each upload URL has expired when
    storage reads it. The upload is started over (a fresh data item) and, once storage is quick
    again, completes; while storage stays slow it fails in one line naming the local file, exit 1,
    leaving no data item behind."""
    import threading
    import time

    emu = make_emulator(url_lifetime=1.0, storage_latency=2.5)
    env = clean_env(tmp_path / "home", FUSION_PLATFORM_API_URL=emu.url, FUSION_PLATFORM_EMAIL=EMAIL,
                    FUSION_PLATFORM_PASSWORD=PASSWORD)
    region = tmp_path / "glasgow.geojson"
    shutil.copy(REGIONS / "glasgow.geojson", region)

    failed = run_cli(["upload", str(region), "--name", "slow upload", "--poll", "0.05"], env=env)
    failed.assert_one_line_error(1, f"cannot upload {region}", "refused the upload URL")
    statuses = emu.stats()["statuses"]
    assert statuses.get("403", 0) >= 3  # every round was refused
    client = client_for(emu)
    try:
        org = client.organisation()
        assert not [d for d in client.iter_data(org.id) if d.name == "slow upload"]
    finally:
        client.close()

    # Storage gets quick again as soon as the first URL has been refused: the next round completes.
    emu.reset_stats()
    stop = threading.Event()

    def heal() -> None:
        while not stop.is_set():
            if emu.stats()["statuses"].get("403", 0):
                emu.configure(storage_latency=0.0)
                return
            time.sleep(0.01)

    healer = threading.Thread(target=heal)
    healer.start()
    try:
        done = run_cli(["upload", str(region), "--name", "slow upload", "--poll", "0.05"], env=env)
    finally:
        stop.set()
        healer.join()
    assert done.code == 0, done.err
    assert emu.stats()["statuses"].get("403", 0) >= 1  # it was refused first
    assert "glasgow.geojson  GeoJSON" in done.out

