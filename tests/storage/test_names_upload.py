"""Names on disk (kept byte for byte where the OS allows, mapped without collisions where not) and
uploads to pre-signed URLs (retried, re-signed, verified)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusion_stac.storage import (
    API_RETRY,
    APITransport,
    FileKey,
    TransferError,
    TransferStats,
    Transport,
    UploadRefusedError,
    URLBroker,
    download,
    local_name,
    unique_local_names,
    upload,
)

from ._server import StorageServer

FID = "00000000-0000-4000-8000-0000000000aa"


# -- names --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a:x.geojson", "é.tif", "résumé \u2013 東京.tif", "x" * 251 + ".tif", " lead", "CON.txt",
                                  "a\\b.tif", "trailing."])
def test_names_legal_on_posix_are_kept_byte_for_byte(tmp_path: Path, name: str) -> None:
    result = local_name(name, file_id=FID, directory=tmp_path, flavour="posix")
    assert result.name == name and not result.changed and result.reasons == ()
    result.path.write_bytes(b"x")  # really legal here
    assert os.listdir(tmp_path) == [name]


@pytest.mark.parametrize(("name", "reason"), [
    ("a/b.tif", "path separators"), ("..", "empty or a directory name"), (".", "empty or a directory name"),
    ("", "empty name"), ("x\ny.tif", "control characters"), ("x\x00y.tif", "control characters"),
    ("bad\udc80.tif", "not encodable for the file system"), ("y" * 300 + ".tif", "longer than 255 bytes"),
])
def test_forbidden_names_are_mapped_deterministically(tmp_path: Path, name: str, reason: str) -> None:
    result = local_name(name, file_id=FID, directory=tmp_path, flavour="posix", limit=255)
    assert result.changed and reason in result.reasons and result.original == name
    assert result == local_name(name, file_id=FID, directory=tmp_path, flavour="posix", limit=255)
    assert "/" not in result.name and result.name not in ("", ".", "..") and len(os.fsencode(result.name)) <= 255
    assert result.name.endswith(".tif") == name.endswith(".tif")  # the extension is kept
    other = local_name(name, file_id=FID.replace("aa", "bb"), directory=tmp_path, flavour="posix", limit=255)
    assert other.name != result.name  # two files never share a mapped name
    result.path.write_bytes(b"x")
    assert result.path.read_bytes() == b"x" and result.path.parent == tmp_path


@pytest.mark.parametrize("name", ["a:x.geojson", "CON", "con.txt", "x?.tif", "dot.", 'q"uote', "a\\b"])
def test_windows_rules_apply_only_on_windows(tmp_path: Path, name: str) -> None:
    assert not local_name(name, file_id=FID, directory=tmp_path, flavour="posix").changed
    mapped = local_name(name, file_id=FID, directory=tmp_path, flavour="windows")
    assert mapped.changed and not any(c in mapped.name for c in '<>:"|?*\\/')
    assert mapped.name.split(".")[0].split("~")[0].upper() not in ("CON", "NUL") and not mapped.name.endswith(".")


def test_name_length_counts_bytes_of_the_encoded_name(tmp_path: Path) -> None:
    kept = "é" * 127 + ".t"  # 129 characters, 256 bytes
    assert len(kept.encode()) == 256
    result = local_name(kept, file_id=FID, directory=tmp_path, flavour="posix", limit=255)
    assert result.changed and len(result.name.encode()) <= 255
    result.path.write_bytes(b"")  # whole characters only: still valid UTF-8
    assert result.name.encode().decode() == result.name


def test_a_batch_gets_unique_names_ordered_by_file_id(tmp_path: Path) -> None:
    files = [("a.tif", "3"), ("a.tif", "1"), ("a.tif", "2"), ("b/c.tif", "4"), ("A.TIF", "5")]
    names = unique_local_names(files, directory=tmp_path, flavour="posix", case_insensitive=False)
    assert names["1"].name == "a.tif" and not names["1"].changed
    assert names["2"].name != names["3"].name and {names["2"].name, names["3"].name}.isdisjoint({"a.tif"})
    assert "another file has this name" in names["2"].reasons
    assert names["5"].name == "A.TIF"
    assert len({n.name for n in names.values()}) == 5
    assert names == unique_local_names(list(reversed(files)), directory=tmp_path, flavour="posix",
                                       case_insensitive=False)  # deterministic, whatever the order
    folded = unique_local_names(files, directory=tmp_path, flavour="posix", case_insensitive=True)
    assert len({n.name.casefold() for n in folded.values()}) == 5


def test_a_kept_name_wins_over_a_mapped_name_that_equals_it(tmp_path: Path) -> None:
    mapped = local_name("x/y.tif", file_id="9", directory=tmp_path, flavour="posix")
    names = unique_local_names([("x/y.tif", "9"), (mapped.name, "1")], directory=tmp_path, flavour="posix")
    assert names["1"].name == mapped.name and not names["1"].changed
    assert names["9"].name != mapped.name


def test_a_downloaded_file_keeps_its_unicode_name(tmp_path: Path) -> None:
    with StorageServer() as server:
        server.blobs["blob"] = b"payload"
        transport = Transport(URLBroker(lambda key: server.sign("blob"), stats=TransferStats()))
        target = local_name("é \u2013 a:x.geojson", file_id=FID, directory=tmp_path)
        download(transport, FileKey("o", "d", FID), target.path, size=7)
    assert os.listdir(tmp_path) == ["é \u2013 a:x.geojson"]  # never %C3%A9


# -- uploads ------------------------------------------------------------------------------------------
@pytest.fixture()
def server() -> Iterator[StorageServer]:
    with StorageServer() as srv:
        yield srv


@pytest.fixture()
def http() -> Iterator[APITransport]:
    transport = APITransport(timeout=10.0, max_workers=2, retry=API_RETRY.with_(backoff=0.001),
                             user_agent="test", sleep=lambda s: None)
    yield transport
    transport.close()


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    path = tmp_path / "upload.tif"
    path.write_bytes(os.urandom(300_000))
    return path


def test_upload_sends_the_file_and_checks_the_etag(server: StorageServer, http: APITransport, source: Path) -> None:
    url, _ = server.sign("up")
    seen: list[int] = []
    result = upload(http, source, url, path="fusion://org/uploads/d/upload.tif", progress=seen.append)
    assert server.blobs["up"] == source.read_bytes()
    assert result.md5_verified and result.md5 == hashlib.md5(source.read_bytes(), usedforsecurity=False).hexdigest()
    assert sum(seen) == result.size == 300_000 and result.resigned == 0


@pytest.mark.parametrize("fault", ["500", "reset"])
def test_upload_retries_through_the_api_transport(server: StorageServer, http: APITransport, source: Path,
                                                  fault: str) -> None:
    server.put_faults.extend([fault, fault])
    url, _ = server.sign("up")
    seen: list[int] = []
    upload(http, source, url, progress=seen.append)
    assert server.blobs["up"] == source.read_bytes() and server.methods["PUT"] == 3
    assert sum(seen) == 300_000  # a retried body is not counted twice


def test_an_expired_upload_url_is_resigned(server: StorageServer, http: APITransport, source: Path) -> None:
    server.put_faults.extend(["expired"])
    url, _ = server.sign("up")
    result = upload(http, source, url, sign=lambda: server.sign("up")[0])
    assert result.resigned == 1 and server.blobs["up"] == source.read_bytes()


def test_without_a_signer_a_refusal_is_a_typed_error(server: StorageServer, http: APITransport,
                                                      source: Path) -> None:
    server.put_faults.extend(["expired"])
    url, _ = server.sign("up")
    with pytest.raises(UploadRefusedError) as info:
        upload(http, source, url, path="fusion://org/uploads/d/upload.tif")
    assert isinstance(info.value, PermissionError) and info.value.path == "fusion://org/uploads/d/upload.tif"
    assert "sig=" not in str(info.value) and "up" not in server.blobs


def test_a_wrong_etag_is_an_error(server: StorageServer, http: APITransport, source: Path) -> None:
    server.put_faults.extend(["bad-etag"])
    url, _ = server.sign("up")
    with pytest.raises(TransferError, match="MD5"):
        upload(http, source, url, path="fusion://x")
