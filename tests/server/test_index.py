"""The index keeps up incrementally, persists across restarts; the server's security rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import Served, World, new_client, write_geotiff


def test_refresh_walks_only_what_is_new_and_survives_a_restart(fresh_emulator: Any, tmp_path: Path) -> None:
    from fusion_stac.server import Index, Indexer

    emu = fresh_emulator
    client = new_client(emu)
    org = client.organisation()
    first = client.create_data(org.id, "First", [write_geotiff(tmp_path / "a.tif")])
    client.user  # noqa: B018 -- logged in before counting
    index = Index(tmp_path / "index.sqlite")
    indexer = Indexer(client, index)
    report = indexer.refresh()
    assert report.collections == 1 and report.items == 1 and not report.errors
    assert index.collection(first.id) is not None

    emu.reset_stats()
    report = indexer.refresh()  # nothing changed: listings only, no walk
    assert report.collections == 0 and report.skipped == 1
    stats = emu.stats()
    listings = int(stats["api_requests"])
    assert listings == 2  # the uploads and the processes of the one organisation; nothing walked
    assert not any("files" in str(route) for route in stats["routes"]), stats["routes"]

    second = client.create_data(org.id, "Second", [write_geotiff(tmp_path / "b.tif")])
    emu.reset_stats()
    report = indexer.refresh()
    assert report.collections == 1 and report.skipped == 1  # only the new upload was walked
    assert int(emu.stats()["api_requests"]) == listings + 1  # + its one file listing
    assert index.collection(second.id) is not None
    index.close()

    # a restart: a new index over the same file answers at once, and its first refresh walks nothing
    again = Index(tmp_path / "index.sqlite")
    assert {c["id"] for c in again.collections()} == {first.id, second.id}
    assert again.count() == 2
    report = Indexer(client, again).refresh()
    assert report.collections == 0 and report.skipped == 2

    client.delete_data(org.id, first.id)  # what disappears from the platform leaves the index
    report = Indexer(client, again).refresh()
    assert report.dropped == 1 and again.collection(first.id) is None
    again.close()
    client.close()


def test_binding_beyond_loopback_needs_an_api_key(serve: Callable[..., Served], world: World) -> None:
    from fusion_stac.cli import main

    assert main(["serve", "--api-url", world.emu.url, "--host", "0.0.0.0"]) == 2  # refused before serving
    keyed = serve("--api-key", "s3cret-key")
    assert requests.get(keyed.url + "/").status_code == 401
    assert requests.get(keyed.url + "/search", headers={"X-API-Key": "wrong"}).status_code == 401
    r = requests.get(keyed.url + "/collections", headers={"X-API-Key": "s3cret-key"})
    assert r.status_code == 200 and r.json()["collections"]
    assert requests.get(keyed.url + "/", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
    href = r.json()["collections"][0]["links"][0]["href"]
    assert "s3cret" not in r.text and "s3cret" not in href
    assert "s3cret" not in keyed.output  # nor in its log


def test_a_foreign_host_header_is_refused_without_an_api_key(served: Served) -> None:
    assert requests.get(served.url + "/", headers={"Host": "evil.example:80"}).status_code == 400
    assert requests.get(served.url + "/", headers={"Host": f"localhost:{served.port}"}).status_code == 200


def test_no_cors_unless_asked(served: Served, serve: Callable[..., Served]) -> None:
    r = requests.get(served.url + "/", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    browser = serve("--cors-origin", "https://radiantearth.github.io")
    r = requests.get(browser.url + "/", headers={"Origin": "https://radiantearth.github.io"})
    assert r.headers["access-control-allow-origin"] == "https://radiantearth.github.io"


def test_importing_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    for name in [m for m in sys.modules if m == "fusion_stac.server" or m.startswith("fusion_stac.server.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "stac_fastapi.api", None)  # as if not installed
    with pytest.raises(ImportError, match=r"'server' extra"):
        importlib.import_module("fusion_stac.server")


def test_two_indexes_on_one_file_write_at_once_without_locking_errors(tmp_path: Path) -> None:
    """Two Index objects (as two processes have: their own connections and locks) write and read one file."""
    import threading

    from fusion_stac.server import Index

    path = tmp_path / "shared" / "index.sqlite"
    indexes = [Index(path), Index(path)]
    errors: list[BaseException] = []

    def write(n: int) -> None:
        index = indexes[n]
        try:
            for i in range(40):
                cid = f"c{n}-{i}"
                items = [{"type": "Feature", "id": f"{cid}-{k}", "geometry": None, "bbox": [0, 0, 1, 1],
                          "properties": {"datetime": "2021-01-01T00:00:00Z", f"p{n}": k}, "assets": {}}
                         for k in range(20)]
                index.put_collection({"id": cid, "type": "Collection"}, items, kind="upload", source=f"upload:o/{cid}")
                assert index.count() >= (i + 1) * 20
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            index.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    again = Index(path)
    assert again.count() == 2 * 40 * 20
    assert again.property_types("c0-3") == {"datetime": "string", "p0": "integer"}  # per collection
    assert {"p0", "p1"} <= set(again.property_types())
    import stat

    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again.close()


def test_two_servers_share_one_index_and_refresh_at_once(world: World, served: Served, tmp_path: Path) -> None:
    """Two `fusion-stac serve` (two Python sessions' background servers) on one index file, started at
    once: both walk and write it concurrently, neither fails on a locked database, both answer."""
    from concurrent.futures import ThreadPoolExecutor

    index = tmp_path / "index.sqlite"
    servers = [Served(world.emu, index, log=tmp_path / f"serve-{n}.log") for n in range(2)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(Served.__enter__, servers))
    try:
        expected = {f["id"] for f in requests.get(served.url + "/search", params={"limit": 1000}).json()["features"]}
        assert expected
        for s in servers:  # each answers; once its own walk is done (or the other's), with everything
            deadline = time.monotonic() + 120
            while True:
                r = requests.get(s.url + "/search", params={"limit": 1000}, timeout=120)
                assert r.status_code == 200, r.text
                found = {f["id"] for f in r.json()["features"]}
                if found == expected or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert found == expected
        collections = [{c["id"] for c in requests.get(s.url + "/collections", timeout=60).json()["collections"]}
                       for s in servers]
        assert collections[0] == collections[1] and {world.upload_id, world.group_id} <= collections[0]
    finally:
        for s in servers:
            s.__exit__()
    for s in servers:
        assert "database is locked" not in s.output and "refresh failed" not in s.output, s.output[-3000:]


def test_an_index_of_schema_1_gains_its_per_collection_property_names(tmp_path: Path) -> None:
    from fusion_stac.server import Index

    path = tmp_path / "index.sqlite"
    index = Index(path)
    item = {"type": "Feature", "id": "i", "geometry": None, "bbox": None, "assets": {},
            "properties": {"datetime": None, "fusion:file_name": "a.tif", "proj:shape": [3, 4], "gsd": 10.5}}
    index.put_collection({"id": "c", "type": "Collection"}, [item], kind="upload", source="upload:o/c")
    con = index.connect()  # as an older fusion-stac left it: no per-collection names
    con.execute("DELETE FROM collection_properties")
    con.execute("UPDATE meta SET value='1' WHERE key='schema'")
    index.close()
    again = Index(path)
    assert again.property_types("c") == {"fusion:file_name": "string", "gsd": "number", "proj:shape": "array"}
    assert again.connect().execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == "2"
    again.close()


def test_the_first_answer_on_a_new_index_waits_for_the_whole_first_walk(fresh_emulator: Any, tmp_path: Path) -> None:
    """A search arriving while the background walk has written part of an empty index waits for all of it;
    an index kept from before answers at once."""
    from fusion_stac.server import Index, Indexer

    client = new_client(fresh_emulator)
    org = client.organisation()
    uploads = {client.create_data(org.id, f"U{i}", [write_geotiff(tmp_path / f"{i}.tif")]).id for i in range(2)}
    index = Index(tmp_path / "index.sqlite")
    indexer = Indexer(client, index)
    partial = {"type": "Feature", "id": "p", "geometry": None, "bbox": None, "assets": {}, "properties": {}}
    index.put_collection({"id": "part", "type": "Collection"}, [partial], kind="upload", source="upload:elsewhere/part")
    indexer.ensure()  # as a search does: the walk had begun, not finished
    assert indexer.last_refresh is not None and uploads <= {c["id"] for c in index.collections()}
    kept = Indexer(client, index)
    fresh_emulator.reset_stats()
    kept.ensure()
    assert kept.last_refresh is None and int(fresh_emulator.stats()["api_requests"]) == 0
    index.close()
    client.close()
