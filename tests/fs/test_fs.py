"""``fusion://`` against the emulator: registration, listing, resolution, reads, writes, errors."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.callbacks import Callback

from fusion_stac.fs import AmbiguousPathError, FusionFileSystem

from .conftest import EMAIL, PASSWORD, World, make_fs, rectangle_geojson, write_cog


def storage_methods(emu: Any) -> dict[str, int]:
    """Requests to storage URLs by method (from the emulator's own counters)."""
    out: dict[str, int] = {}
    for route, n in emu.stats()["routes"].items():
        method, _, template = route.partition(" ")
        if template.startswith("/_storage/download"):
            out[method] = out.get(method, 0) + n
    return out


# -- registration and configuration -----------------------------------------------------------------

def test_registered_through_the_entry_point_without_importing_anything() -> None:
    code = ("import fsspec, sys; cls = fsspec.get_filesystem_class('fusion'); "
            "assert 'fusion_stac.fs' in sys.modules and cls.__name__ == 'FusionFileSystem'; "
            "print(cls.protocol)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "fusion"


def test_configuration_from_environment(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSION_PLATFORM_API_URL", world.url)
    monkeypatch.setenv("FUSION_PLATFORM_EMAIL", EMAIL)
    monkeypatch.setenv("FUSION_PLATFORM_PASSWORD", PASSWORD)
    fs = fsspec.filesystem("fusion", token_cache=False, skip_instance_cache=True)
    assert fs.cat_file(world.cog_info["fusion_url"], 0, 4) == world.cog.read_bytes()[:4]
    assert fs.storage_options == {"token_cache": False}


def test_in_process_client_option(world: World) -> None:
    from fusion_stac.client import FusionClient

    with FusionClient(world.url, email=EMAIL, password=PASSWORD) as client:
        fs = FusionFileSystem(client=client)
        assert fs.client is client
        assert fs.cat_file(world.cog_path, 0, 8) == world.cog.read_bytes()[:8]
        assert "client" not in fs.storage_options and fs.storage_options["email"] == EMAIL
        assert FusionFileSystem(client=client) is not fs  # live clients are never confused by repr


def test_missing_credentials_are_a_permission_error(world: World) -> None:
    fs = FusionFileSystem(api_url=world.url, email="nobody@example.com", token_cache=False,
                          skip_instance_cache=True)
    with pytest.raises(PermissionError) as info:
        fs.ls("")
    assert "credentials" in str(info.value) and info.value.__cause__ is not None


def test_wrong_password_is_a_permission_error_without_the_password(world: World) -> None:
    fs = make_fs(world.url, password="Wrong-Password-123", token_cache=False)
    with pytest.raises(PermissionError) as info:
        fs.ls("")
    assert "Wrong-Password-123" not in str(info.value) and "Wrong-Password-123" not in repr(info.value.__cause__)


# -- listing ------------------------------------------------------------------------------------

def test_listing_names_unique_children_by_name_and_others_by_id(fs: FusionFileSystem, world: World) -> None:
    assert fs.ls("", detail=False) == [world.org_name]
    assert fs.ls(world.org_name, detail=False) == [f"{world.org_name}/{s}" for s in ("processes", "uploads")]
    uploads = {e["name"].rsplit("/", 1)[1]: e for e in fs.ls(f"{world.org_name}/uploads")}
    assert {"Elevation model", "tables", world.twin_ids[0], world.twin_ids[1]} <= set(uploads)
    assert "twin" not in uploads  # ambiguous among siblings: listed by id
    twin = uploads[world.twin_ids[0]]
    assert twin["item_name"] == "twin" and twin["id"] == world.twin_ids[0] and twin["type"] == "directory"


def test_info_keys_and_short_form(fs: FusionFileSystem, world: World) -> None:
    info = fs.info(f"fusion://{world.cog_path}")
    for key in ("id", "name", "size", "type", "file_type", "data_id", "file_id", "organisation_id", "crs",
                "bounds", "fusion_url", "item_name", "kind"):
        assert key in info
    assert info["name"] == world.cog_path and info["type"] == "file" and info["kind"] == "file"
    assert info["size"] == world.cog.stat().st_size and info["file_type"] == "GeoTIFF"
    assert info["organisation_id"] == world.org_id and info["item_name"] == "dem.tif"
    assert info["fusion_url"] == f"fusion://{world.org_id}/data/{info['data_id']}/{info['file_id']}"
    short = fs.info(info["fusion_url"])
    assert short["file_id"] == info["file_id"] and short["size"] == info["size"]
    # ids work at every level, in any mix with names
    by_ids = fs.info(f"{world.org_id}/uploads/{info['data_id']}/{info['file_id']}")
    assert by_ids["file_id"] == info["file_id"]
    assert fs.info(f"{world.org_name}/uploads/{info['data_id']}/dem.tif")["file_id"] == info["file_id"]
    assert fs.isdir(f"{world.org_name}/uploads/Elevation model") and fs.isfile(world.cog_path)


def test_short_form_resolves_with_one_api_request(world: World) -> None:
    fs = make_fs(world.url)
    fs.client.login()
    fs.invalidate_cache()
    fs.reset_stats()
    info = fs.info(world.cog_info["fusion_url"])
    assert info["size"] == world.cog.stat().st_size
    assert fs.stats["api_requests"] == 1


def test_process_tree_latest_and_ids(fs: FusionFileSystem, world: World) -> None:
    base = f"{world.org_name}/processes/{world.process_name}"
    runs = fs.ls(base)
    assert runs and all(e["kind"] == "execution" and e["name"] == f"{base}/{e['id']}" for e in runs)
    latest = fs.info(f"{base}/latest")
    assert latest["kind"] == "run" and set(latest["execution_ids"]) <= {e["id"] for e in runs}
    members = fs.ls(f"{base}/latest")
    assert [m["id"] for m in members] == latest["execution_ids"]
    files = fs.find(f"{base}/latest")
    assert files and all(f.endswith(".tif") for f in files)
    info = fs.info(files[0])
    assert info["type"] == "file" and info["size"] > 0 and info["crs"]
    member = fs.info(files[0].rsplit("/", 3)[0])
    assert member["kind"] == "execution" and member["id"] in latest["execution_ids"]
    same = fs.info(f"{world.org_id}/processes/{world.process_id}/{member['id']}/"
                   + "/".join(files[0].split("/")[5:]))
    assert same["file_id"] == info["file_id"]


def test_glob_find_walk_du_across_uploads_and_outputs(fs: FusionFileSystem, world: World) -> None:
    tifs = fs.glob(f"{world.org_name}/**/*.tif")
    assert world.cog_path in tifs
    assert any("/processes/" in t for t in tifs)
    assert fs.glob(f"fusion://{world.org_name}/uploads/*/table.csv")
    found = fs.find(world.org_name, detail=True)
    assert not any("/data/" in name for name in found)  # the addressing form is not walked twice
    assert all(v["type"] == "file" for v in found.values())
    assert fs.du(world.org_name) == sum(v["size"] for v in found.values())
    walked = {root: files for root, _, files in fs.walk(f"{world.org_name}/uploads")}
    assert "dem.tif" in walked[f"{world.org_name}/uploads/Elevation model"]


# -- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [
    "uploads/no such data/x.tif",
    "uploads/Elevation model/nope.tif",
    "nosection",
    "data/not-a-uuid",
    "data/00000000-0000-4000-8000-000000000000/00000000-0000-4000-8000-000000000001",
    "processes/fs elevation/00000000-0000-4000-8000-000000000000",
    "uploads/tables/table.csv/deeper",
])
def test_bad_paths_are_file_not_found_naming_the_path(fs: FusionFileSystem, world: World, suffix: str) -> None:
    url = f"fusion://{world.org_name}/{suffix}"
    with pytest.raises(FileNotFoundError) as info:
        fs.info(url)
    assert world.org_name in str(info.value) and info.value.errno == errno.ENOENT
    if "00000000-0000-4000-8000-000000000000" in suffix:  # the API said 404: kept as the cause
        from fusion_stac.errors import NotFoundError

        cause = info.value.__cause__
        while cause is not None and not isinstance(cause, NotFoundError):
            cause = cause.__cause__
        assert isinstance(cause, NotFoundError)
    assert not fs.exists(url)
    with pytest.raises(FileNotFoundError):
        fs.open(url, "rb")


def test_unknown_organisation_is_file_not_found(fs: FusionFileSystem) -> None:
    with pytest.raises(FileNotFoundError, match="No Such Org"):
        fs.ls("fusion://No Such Org/uploads")


def test_ambiguous_name_lists_candidates(fs: FusionFileSystem, world: World) -> None:
    url = f"fusion://{world.org_name}/uploads/twin/table.csv"
    with pytest.raises(AmbiguousPathError) as info:
        fs.open(url, "rb")
    err = info.value
    assert isinstance(err, FileNotFoundError) and url in str(err)
    assert {i for i, _ in err.candidates} == set(world.twin_ids) and world.twin_ids[0] in str(err)
    assert err.__cause__ is None or "twin" in str(err.__cause__)
    assert fs.cat_file(f"{world.org_name}/uploads/{world.twin_ids[1]}/table.csv") == world.csv.read_bytes()


def test_directory_is_not_a_file(fs: FusionFileSystem, world: World) -> None:
    with pytest.raises(IsADirectoryError):
        fs.open(f"{world.org_name}/uploads/tables", "rb")


# -- reading ------------------------------------------------------------------------------------

def test_open_read_seek_and_cat_file(fs: FusionFileSystem, world: World, emu: Any) -> None:
    local = world.cog.read_bytes()
    before = storage_methods(emu)
    with fsspec.open(f"fusion://{world.cog_path}", "rb", api_url=world.url, email=EMAIL,
                     password=PASSWORD) as f:
        assert f.size == len(local)
        assert f.read(100) == local[:100]
        f.seek(-50, 2)
        assert f.read() == local[-50:]
        f.seek(1000)
        assert f.read(5000) == local[1000:6000]
    assert fs.cat_file(world.cog_path, 10, 20) == local[10:20]
    assert fs.cat_file(world.cog_path, -10) == local[-10:]
    assert fs.cat_file(world.cog_path, 5, -5) == local[5:-5]
    assert fs.cat(world.cog_path) == local
    after = storage_methods(emu)
    assert after.get("HEAD", 0) == before.get("HEAD", 0) == 0


@pytest.mark.parametrize("cache_type", ["fusion", "bytes", "readahead", "blockcache", "first", "none"])
def test_any_fsspec_cache_type_reads_the_same_bytes(fs: FusionFileSystem, world: World, cache_type: str) -> None:
    local = world.cog.read_bytes()
    with fs.open(world.cog_path, cache_type=cache_type, block_size=64 * 1024) as f:
        assert f.read(10) == local[:10]
        f.seek(200_000)
        assert f.read(100_000) == local[200_000:300_000]
        f.seek(-7, 2)
        assert f.read() == local[-7:]


def test_cat_ranges_merges_adjacent_and_overlapping(fs: FusionFileSystem, world: World) -> None:
    local = world.cog.read_bytes()
    csv = f"{world.org_name}/uploads/tables/table.csv"
    paths = [world.cog_path] * 4 + [csv, f"{world.org_name}/uploads/tables/missing.csv"]
    starts = [0, 100, 150, 20_000, 0, 0]
    ends = [100, 200, 180, 20_010, None, 10]
    fs.reset_stats()
    out = fs.cat_ranges(paths, starts, ends)
    assert out[:4] == [local[0:100], local[100:200], local[150:180], local[20_000:20_010]]
    assert out[4] == world.csv.read_bytes()
    assert isinstance(out[5], FileNotFoundError)
    assert fs.stats["requests"] == 3  # [0, 200) merged, [20000, 20010), and the csv
    with pytest.raises(FileNotFoundError):
        fs.cat_ranges(paths, starts, ends, on_error="raise")
    out = fs.cat_ranges([world.cog_path] * 2, [0, 300], [100, 400], max_gap=200)
    assert out == [local[0:100], local[300:400]]


def test_get_file_is_atomic_and_get_is_parallel_with_progress(fs: FusionFileSystem, world: World,
                                                               tmp_path: Path) -> None:
    target = tmp_path / "one" / "dem.tif"
    sizes: list[int] = []
    fs.get_file(world.cog_path, str(target), callback=Callback(hooks={"s": lambda size, value, **kw: sizes.append(value)}))
    assert target.read_bytes() == world.cog.read_bytes()
    assert sizes[-1] == world.cog.stat().st_size
    assert [p.name for p in target.parent.iterdir()] == ["dem.tif"]  # no temporary left behind

    class Counting(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.children: list[Callback] = []
            self.lock = threading.Lock()

        def branched(self, path_1: str, path_2: str, **kwargs: Any) -> Callback:
            child = Callback()
            with self.lock:
                self.children.append(child)
            return child

    cb = Counting()
    fs.get(f"{world.org_name}/uploads/", str(tmp_path / "all") + "/", recursive=True, callback=cb)
    got = sorted(p.relative_to(tmp_path / "all").as_posix() for p in (tmp_path / "all").rglob("*") if p.is_file())
    assert "Elevation model/dem.tif" in got and "tables/table.csv" in got  # the contents of uploads/
    assert cb.size == len(cb.children) and cb.value == cb.size
    assert sum(c.value for c in cb.children) == sum((tmp_path / "all" / g).stat().st_size for g in got)


def test_get_of_a_missing_file_leaves_nothing(fs: FusionFileSystem, world: World, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fs.get_file(f"{world.org_name}/uploads/tables/nope.csv", str(tmp_path / "x.csv"))
    assert list(tmp_path.iterdir()) == []


def test_stats_are_thread_safe_and_resettable(fs: FusionFileSystem, world: World) -> None:
    fs.cat_file(world.cog_path, 0, 1)
    fs.reset_stats()
    threads = [threading.Thread(target=fs.cat_file, args=(world.cog_path, i * 1000, i * 1000 + 100))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = fs.reset_stats()
    assert stats["requests"] == 8 and stats["bytes"] == 800
    assert fs.stats["requests"] == 0 and set(stats) >= {"requests", "bytes", "url_refreshes", "retries"}


# -- writing ------------------------------------------------------------------------------------

def test_put_into_uploads_creates_analysed_data(fs: FusionFileSystem, world: World, tmp_path: Path) -> None:
    a = write_cog(tmp_path / "a.tif", size=256, block=128, seed=1)
    b = rectangle_geojson(tmp_path / "b.geojson")
    fs.put([str(a), str(b)], f"fusion://{world.org_name}/uploads/pair/")
    listed = fs.ls(f"{world.org_name}/uploads/pair")
    by_name = {e["item_name"]: e for e in listed}
    assert set(by_name) == {"a.tif", "b.geojson"}
    assert by_name["a.tif"]["file_type"] == "GeoTIFF" and by_name["b.geojson"]["file_type"] == "GeoJSON"
    assert by_name["a.tif"]["size"] == a.stat().st_size
    assert fs.cat_file(f"{world.org_name}/uploads/pair/a.tif") == a.read_bytes()
    # a renamed single file, and writing through open()
    fs.put_file(str(a), f"{world.org_name}/uploads/renamed/elevation.tif")
    assert fs.info(f"{world.org_name}/uploads/renamed/elevation.tif")["file_type"] == "GeoTIFF"
    with fs.open(f"{world.org_name}/uploads/written/notes.csv", "wb") as f:
        f.write(b"x,y\n")
        f.write(b"1,2\n")
    assert fs.cat(f"{world.org_name}/uploads/written/notes.csv") == b"x,y\n1,2\n"
    with pytest.raises(FileExistsError, match="already exists"):
        fs.put(str(a), f"{world.org_name}/uploads/pair/c.tif")
    # an exception inside the block uploads nothing
    with pytest.raises(RuntimeError), fs.open(f"{world.org_name}/uploads/aborted/half.csv", "wb") as f:
        f.write(b"x,y\n")
        raise RuntimeError("the writer failed")
    fs.invalidate_cache()
    assert not fs.exists(f"{world.org_name}/uploads/aborted")


@pytest.mark.parametrize("action", ["open", "pipe", "rm", "mv", "touch", "mkdir", "put", "cp"])
def test_writes_outside_uploads_are_permission_errors(fs: FusionFileSystem, world: World, action: str,
                                                      tmp_path: Path) -> None:
    target = f"{world.org_name}/processes/{world.process_name}/x.tif"
    local = tmp_path / "x.csv"
    local.write_text("a\n")
    actions = {
        "open": lambda: fs.open(target, "wb"),
        "pipe": lambda: fs.pipe(target, b"x"),
        "rm": lambda: fs.rm(world.cog_path),
        "mv": lambda: fs.mv(world.cog_path, f"{world.org_name}/uploads/moved/dem.tif"),
        "touch": lambda: fs.touch(f"{world.org_name}/uploads/touched/t.csv"),
        "mkdir": lambda: fs.mkdir(f"{world.org_name}/processes/new"),
        "put": lambda: fs.put(str(local), f"fusion://{world.org_id}/data/"),
        "cp": lambda: fs.cp(world.cog_path, target),
    }
    with pytest.raises(PermissionError) as info:
        actions[action]()
    assert world.org_name in str(info.value) or world.org_id in str(info.value)
    assert fs.exists(world.cog_path)


# -- rasterio / GDAL -----------------------------------------------------------------------------

def test_rasterio_reads_through_file_objects_and_openers(fs: FusionFileSystem, world: World, emu: Any) -> None:
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from fusion_stac.fs import rasterio_opener

    with rasterio.open(world.cog) as src:
        expected = src.read(1, window=Window(100, 150, 200, 120))
        full = src.read(1)
    url = f"fusion://{world.cog_path}"
    before = storage_methods(emu)
    with fs.open(url) as f, rasterio.open(f) as src:
        assert np.array_equal(src.read(1), full)
    for opener in (fs, rasterio_opener(fs)):
        with rasterio.open(url, opener=opener) as src:
            assert src.crs.to_epsg() == 32630 and src.overviews(1)
            assert np.array_equal(src.read(1, window=Window(100, 150, 200, 120)), expected)
    with rasterio.open(fsspec.open(url, api_url=world.url, email=EMAIL, password=PASSWORD)) as src:
        assert np.array_equal(src.read(1, window=Window(100, 150, 200, 120)), expected)
    assert storage_methods(emu).get("HEAD", 0) == before.get("HEAD", 0) == 0


def test_gdal_multi_range_reads_are_merged(fs: FusionFileSystem, world: World) -> None:
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from fusion_stac.fs import rasterio_opener

    url = f"fusion://{world.cog_path}"
    with rasterio.open(world.cog) as src:
        expected = src.read(1, window=Window(0, 0, 512, 256))
    fs.reset_stats()
    with rasterio.open(url, opener=rasterio_opener(fs)) as src:
        assert np.array_equal(src.read(1, window=Window(0, 0, 512, 256)), expected)
    multi = fs.stats["requests"]
    fs.reset_stats()
    with fs.open(url) as f:
        payload = f.get_byte_ranges([0, 100, 5000], [100, 50, 10])
    local = world.cog.read_bytes()
    assert payload == [local[0:100], local[100:150], local[5000:5010]]
    assert fs.stats["requests"] == 2
    # 8 tiles of a 2x4 tile window in at most a handful of (merged) requests, plus the header
    assert multi <= 6


# -- caching ---------------------------------------------------------------------------------------

def test_simplecache_chaining_keys_on_the_path_not_the_url(world: World, tmp_path: Path) -> None:
    opts = {"api_url": world.url, "email": EMAIL, "password": PASSWORD}
    url = "simplecache::" + world.cog_info["fusion_url"]
    with fsspec.open(url, "rb", fusion=opts, simplecache={"cache_storage": str(tmp_path)}) as f:
        first = f.read()
    assert first == world.cog.read_bytes()
    cached = list(tmp_path.iterdir())
    assert len(cached) == 1
    fs = FusionFileSystem(**opts)
    fs._conn.broker.forget()  # every signed URL is dropped: a read now would have to re-sign
    fs.reset_stats()
    with fsspec.open(url, "rb", fusion=opts, simplecache={"cache_storage": str(tmp_path)}) as f:
        assert f.read() == first
    assert fs.stats["requests"] == 0 and fs.stats["urls_signed"] == 0
    assert list(tmp_path.iterdir()) == cached


# -- pickling ----------------------------------------------------------------------------------------

def _secrets(fs: FusionFileSystem) -> list[bytes]:
    from fusion_stac.fs._conn import _session_token

    token = _session_token(fs.client)
    signed = fs.sign(fs.find(fs.ls("", detail=False)[0] + "/uploads/tables")[0])
    signature = signed.split("X-Amz-Signature=")[1].split("&")[0]
    assert token and signature
    return [PASSWORD.encode(), token.encode(), signature.encode()]


def test_pickles_carry_no_secret_and_round_trip(fs: FusionFileSystem, world: World) -> None:
    import pickle

    fs.cat_file(world.cog_path, 0, 10)
    blob = pickle.dumps(fs)
    with fs.open(world.cog_path) as f:
        f.seek(123)
        file_blob = pickle.dumps(f)
    for secret in _secrets(fs):
        assert secret not in blob and secret not in file_blob
        assert secret not in fs.to_json().encode()
    assert "password" not in fs.storage_options
    clone = pickle.loads(blob)
    assert clone == fs and clone.cat_file(world.cog_path, 0, 10) == world.cog.read_bytes()[:10]
    reopened = pickle.loads(file_blob)
    assert reopened.tell() == 123 and reopened.read(10) == world.cog.read_bytes()[123:133]


def _worker(blob: bytes, path: str, env: dict[str, str]) -> str:
    code = ("import pickle, sys, hashlib; fs = pickle.loads(sys.stdin.buffer.read()); "
            f"print(hashlib.sha256(fs.cat_file({path!r})).hexdigest())")
    base = {k: v for k, v in os.environ.items() if not k.startswith("FUSION_")}
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, env={**base, **env},
                         timeout=120)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    return out.stdout.decode().strip()


def test_worker_rebuilds_from_environment_or_token_cache(fs: FusionFileSystem, world: World,
                                                         tmp_path: Path) -> None:
    import pickle

    expected = hashlib.sha256(world.cog.read_bytes()).hexdigest()
    blob = pickle.dumps(fs)
    # 1. a worker with its own credentials in the environment (and no token cache)
    env = {"FUSION_PLATFORM_PASSWORD": PASSWORD, "FUSION_STAC_TOKEN_FILE": str(tmp_path / "none.json")}
    assert _worker(blob, world.cog_path, env) == expected
    # 2. a worker with no password at all: it reuses the session the parent filed in the token cache
    env = {"FUSION_STAC_TOKEN_FILE": os.environ["FUSION_STAC_TOKEN_FILE"]}
    assert _worker(blob, world.cog_path, env) == expected
    # 3. neither: a clear PermissionError, not a hang or a leak
    code = ("import pickle, sys; fs = pickle.loads(sys.stdin.buffer.read())\n"
            "try:\n    fs.ls('')\nexcept PermissionError as e:\n    print('denied', e)\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith("FUSION_")}
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, timeout=120,
                         env={**base, "FUSION_STAC_TOKEN_FILE": str(tmp_path / "empty.json")})
    assert out.stdout.decode().startswith("denied") and PASSWORD not in out.stdout.decode()


def _sha_in_child(fs: FusionFileSystem, path: str) -> str:
    return hashlib.sha256(fs.cat_file(path)).hexdigest()


def test_forked_workers_start_afresh(fs: FusionFileSystem, world: World) -> None:
    import multiprocessing

    fs.cat_file(world.cog_path, 0, 10)  # the parent has a live pool and signed URLs
    with multiprocessing.get_context("fork").Pool(2) as pool:
        digests = pool.starmap(_sha_in_child, [(fs, world.cog_path)] * 2)
    assert digests == [hashlib.sha256(world.cog.read_bytes()).hexdigest()] * 2


def _read_window(fs: FusionFileSystem, path: str, row: int, col: int) -> Any:
    import rasterio
    from rasterio.windows import Window

    from fusion_stac.fs import rasterio_opener

    with rasterio.open(path, opener=rasterio_opener(fs)) as src:
        return src.read(1, window=Window(col, row, 128, 128))


def test_dask_tasks_read_windows_in_parallel(fs: FusionFileSystem, world: World) -> None:
    import dask
    import numpy as np
    import rasterio

    with rasterio.open(world.cog) as src:
        expected = src.read(1)
    url = f"fusion://{world.cog_path}"
    corners = [(r, c) for r in range(0, 512, 128) for c in range(0, 512, 128)]
    tasks = [dask.delayed(_read_window)(fs, url, r, c) for r, c in corners]
    blocks = dask.compute(*tasks, scheduler="threads", num_workers=4)
    for (r, c), block in zip(corners, blocks, strict=True):
        assert np.array_equal(block, expected[r:r + 128, c:c + 128])


def test_rioxarray_with_dask_chunks(world: World) -> None:
    """xarray/rioxarray over ``fsspec.open("fusion://...")``, computed by dask threads, in a fresh
    interpreter as a user script would (rasterio's opener registrations made in dask threads are
    finalised by the garbage collector wherever it runs; kept out of this test process)."""
    code = (
        "import sys, fsspec, numpy, rioxarray\n"
        "opened = fsspec.open(sys.argv[1])\n"
        "array = rioxarray.open_rasterio(opened, chunks={'x': 128, 'y': 128}, lock=False)\n"
        "values = array.isel(band=0).compute(scheduler='threads').values\n"
        "print(values.shape, float(numpy.asarray(values, dtype='float64').sum()))\n"
    )
    import numpy as np
    import rasterio

    with rasterio.open(world.cog) as src:
        expected = src.read(1)
    base = {k: v for k, v in os.environ.items() if not k.startswith("FUSION_PLATFORM")}
    env = {**base, "FUSION_PLATFORM_API_URL": world.url, "FUSION_PLATFORM_EMAIL": EMAIL,
           "FUSION_PLATFORM_PASSWORD": PASSWORD}
    out = subprocess.run([sys.executable, "-c", code, f"fusion://{world.cog_path}"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    shape, total = out.stdout.strip().rsplit(" ", 1)
    assert shape == str(expected.shape)
    assert float(total) == pytest.approx(float(np.asarray(expected, dtype="float64").sum()))
