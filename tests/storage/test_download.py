"""Whole-file downloads against the scripted-fault object server: every fault ends in a complete,
byte-identical file or a typed error naming the file -- never a truncated file at the final path."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusion_stac.errors import FusionError
from fusion_stac.storage import (
    ChecksumError,
    DownloadCancelled,
    FileChangedError,
    FileKey,
    RetryPolicy,
    TransferError,
    TransferStats,
    Transport,
    URLBroker,
    download,
    download_to,
    partial_path,
)

from ._server import StorageServer

KEY = FileKey("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002",
              "00000000-0000-4000-8000-000000000003")
PATH = "fusion://org/data/blob.tif"
FAST = RetryPolicy(backoff=0.001, max_backoff=0.01, read_timeout=2.0)
SIZE = 3 * 1024 * 1024 + 17
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def server() -> Iterator[StorageServer]:
    with StorageServer() as srv:
        srv.blobs["blob"] = os.urandom(SIZE)
        yield srv


def make_transport(server: StorageServer, lifetime: float = 3600.0, policy: RetryPolicy = FAST) -> Transport:
    return Transport(URLBroker(lambda key: server.sign("blob", lifetime), stats=TransferStats()), policy=policy)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".part", ".meta", ".lock")))


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_download_is_complete_verified_and_leaves_nothing(server: StorageServer, tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "blob.tif"
    result = download(make_transport(server), KEY, dest, path=PATH, size=SIZE)
    assert dest.read_bytes() == server.blobs["blob"]
    assert result.path == dest and result.size == SIZE and result.resumed_from == 0 and result.received == SIZE
    assert result.md5 == md5(server.blobs["blob"]) and result.md5_verified  # the ETag is the MD5
    assert leftovers(dest.parent) == []


FAULTS = ["reset", "500", "403", "expired", "truncate", "close-mid", "cl-small", "cl-large", "whole",
          "whole+cl-small", "whole+cl-large", "corrupt", "stall"]


@pytest.mark.parametrize("size_known", [True, False], ids=["size", "no-size"])
@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_gives_the_whole_file(server: StorageServer, tmp_path: Path, fault: str,
                                         size_known: bool) -> None:
    server.stall_seconds = 30.0
    policy = FAST.with_(read_timeout=0.5) if fault == "stall" else FAST
    server.faults.extend([fault])
    dest = tmp_path / "blob.tif"
    result = download(make_transport(server, policy=policy), KEY, dest, path=PATH,
                      size=SIZE if size_known else None)
    assert dest.read_bytes() == server.blobs["blob"]
    assert result.size == SIZE and result.md5_verified
    assert leftovers(tmp_path) == []
    # the fault happened and was overcome; a 200 of the right size, or a 206 whose Content-Length
    # overstates a body that arrives whole (read up to the range asked, never past it), needs no retry
    assert not server.faults
    assert server.methods["GET"] >= (1 if fault in ("whole", "cl-large") and size_known else 2)


@pytest.mark.parametrize("fault", ["cl-large", "whole+cl-large", "whole+cl-small", "cl-small"])
def test_a_wrong_content_length_does_not_poison_later_requests(server: StorageServer, tmp_path: Path,
                                                               fault: str) -> None:
    server.faults.extend([fault, "truncate", fault])
    dest = tmp_path / "blob.tif"
    download(make_transport(server), KEY, dest, path=PATH)
    assert dest.read_bytes() == server.blobs["blob"]
    assert all(r is not None for _, r in server.ranges)  # never a request without a Range


def test_a_persistent_fault_is_a_typed_error_naming_the_file(server: StorageServer, tmp_path: Path) -> None:
    server.faults.extend(["500"] * 100)
    dest = tmp_path / "blob.tif"
    with pytest.raises(TransferError) as info:
        download(make_transport(server), KEY, dest, path=PATH, size=SIZE)
    assert info.value.path == PATH and PATH in str(info.value)
    assert "sig=" not in str(info.value) and "expires=" not in str(info.value)
    assert not dest.exists()


def test_a_persistent_truncation_never_leaves_a_short_file(server: StorageServer, tmp_path: Path) -> None:
    server.faults.extend(["reset"] * 3 + ["truncate"] + ["reset"] * 100)
    dest = tmp_path / "blob.tif"
    with pytest.raises(TransferError):
        download(make_transport(server), KEY, dest, path=PATH, size=SIZE)
    assert not dest.exists()
    part = partial_path(dest, KEY.file_id)
    assert 0 < part.stat().st_size < SIZE  # kept for a resume
    server.faults.clear()
    download(make_transport(server), KEY, dest, path=PATH, size=SIZE)
    assert dest.read_bytes() == server.blobs["blob"] and leftovers(tmp_path) == []


def test_corrupt_bytes_are_refetched_once_then_a_checksum_error(server: StorageServer, tmp_path: Path) -> None:
    dest = tmp_path / "blob.tif"
    server.faults.extend(["corrupt", "corrupt"])
    with pytest.raises(ChecksumError) as info:
        download(make_transport(server), KEY, dest, path=PATH, size=SIZE)
    assert info.value.path == PATH and isinstance(info.value, OSError)
    assert not dest.exists() and leftovers(tmp_path) == []


def test_an_md5_from_metadata_is_checked(server: StorageServer, tmp_path: Path) -> None:
    dest = tmp_path / "blob.tif"
    server.etag_override = '"opaque-etag"'  # not an MD5: only the caller's checksum can verify
    result = download(make_transport(server), KEY, dest, path=PATH, size=SIZE, md5=md5(server.blobs["blob"]))
    assert result.md5_verified and dest.read_bytes() == server.blobs["blob"]
    with pytest.raises(ChecksumError):
        download(make_transport(server), KEY, tmp_path / "other.tif", path=PATH, size=SIZE, md5="0" * 32)
    assert not (tmp_path / "other.tif").exists()


def test_an_opaque_hex_etag_can_be_ignored(server: StorageServer, tmp_path: Path) -> None:
    server.etag_override = '"' + "ab" * 16 + '"'
    with pytest.raises(ChecksumError):
        download(make_transport(server), KEY, tmp_path / "a.tif", path=PATH, size=SIZE)
    result = download(make_transport(server), KEY, tmp_path / "b.tif", path=PATH, size=SIZE, trust_etag_md5=False)
    assert not result.md5_verified and (tmp_path / "b.tif").read_bytes() == server.blobs["blob"]


def test_an_expired_url_is_resigned(server: StorageServer, tmp_path: Path) -> None:
    server.faults.extend(["expired", "expired"])
    download(make_transport(server), KEY, tmp_path / "blob.tif", path=PATH, size=SIZE)
    assert server.signed >= 3 and (tmp_path / "blob.tif").read_bytes() == server.blobs["blob"]


def test_size_unknown_comes_from_content_range(server: StorageServer, tmp_path: Path) -> None:
    server.faults.extend(["whole+cl-large", "whole+cl-small"])
    result = download(make_transport(server), KEY, tmp_path / "blob.tif", path=PATH)
    assert result.size == SIZE and (tmp_path / "blob.tif").read_bytes() == server.blobs["blob"]


@pytest.mark.parametrize("size", [0, None])
def test_an_empty_file(server: StorageServer, tmp_path: Path, size: int | None) -> None:
    server.blobs["blob"] = b""
    result = download(make_transport(server), KEY, tmp_path / "empty", path=PATH, size=size)
    assert (tmp_path / "empty").read_bytes() == b"" and result.size == 0 and leftovers(tmp_path) == []


# -- resume ------------------------------------------------------------------------------------------
def interrupted(server: StorageServer, dest: Path, at: int = 1 << 20) -> DownloadCancelled:
    event = threading.Event()
    seen = [0]

    def progress(n: int) -> None:
        seen[0] += n
        if seen[0] >= at:
            event.set()

    with pytest.raises(DownloadCancelled) as info:
        download(make_transport(server), KEY, dest, path=PATH, size=SIZE, progress=progress, cancel=event)
    return info.value


def test_cancel_keeps_a_partial_that_the_next_download_resumes(server: StorageServer, tmp_path: Path) -> None:
    dest = tmp_path / "blob.tif"
    cancelled = interrupted(server, dest)
    assert not dest.exists()
    assert cancelled.partial == partial_path(dest, KEY.file_id) and cancelled.partial.exists()
    assert cancelled.received == cancelled.partial.stat().st_size > 0 and cancelled.size == SIZE
    assert str(cancelled.partial) in str(cancelled) and PATH in str(cancelled)
    server.ranges.clear()
    result = download(make_transport(server), KEY, dest, path=PATH, size=SIZE)
    assert result.resumed_from == cancelled.received and result.received == SIZE - cancelled.received
    assert server.ranges[0][1] == f"bytes={cancelled.received}-{SIZE - 1}"
    assert dest.read_bytes() == server.blobs["blob"] and result.md5_verified  # the prefix was re-hashed
    assert leftovers(tmp_path) == []


def test_a_partial_of_another_version_is_not_resumed(server: StorageServer, tmp_path: Path) -> None:
    dest = tmp_path / "blob.tif"
    cancelled = interrupted(server, dest)
    server.blobs["blob"] = os.urandom(SIZE)  # same size, new content and ETag
    result = download(make_transport(server), KEY, dest, path=PATH, size=SIZE)
    assert cancelled.received > 0 and result.resumed_from == 0
    assert dest.read_bytes() == server.blobs["blob"] and leftovers(tmp_path) == []


@pytest.mark.parametrize("meta", [None, {"file_id": "another", "etag": None, "size": SIZE},
                                  {"file_id": KEY.file_id, "etag": None, "size": 10}, "garbage"])
def test_a_partial_without_matching_sidecar_is_discarded(server: StorageServer, tmp_path: Path,
                                                          meta: object) -> None:
    dest = tmp_path / "blob.tif"
    part = partial_path(dest, KEY.file_id)
    part.write_bytes(b"\0" * 1000)
    if meta is not None:
        Path(str(part) + ".meta").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    result = download(make_transport(server), KEY, dest, path=PATH, size=SIZE)
    assert result.resumed_from == 0 and dest.read_bytes() == server.blobs["blob"] and leftovers(tmp_path) == []


def test_a_version_change_mid_download_is_a_typed_error(server: StorageServer, tmp_path: Path) -> None:
    server.next_blobs["blob"] = os.urandom(SIZE)
    server.faults.extend(["truncate", "swap"])
    dest = tmp_path / "blob.tif"
    with pytest.raises(FileChangedError) as info:
        download(make_transport(server), KEY, dest, path=PATH, size=SIZE)
    assert info.value.path == PATH and not dest.exists() and leftovers(tmp_path) == []


# -- concurrency and cancellation ---------------------------------------------------------------------
def test_concurrent_threads_give_one_good_file(server: StorageServer, tmp_path: Path) -> None:
    dest = tmp_path / "blob.tif"
    server.slow_delay = 0.001
    server.faults.extend(["slow"] * 4)
    transport = make_transport(server)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            download(transport, KEY, dest, path=PATH, size=SIZE)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert dest.read_bytes() == server.blobs["blob"] and leftovers(tmp_path) == []


CHILD = """
import sys, time
from fusion_stac.storage import FileKey, RetryPolicy, Transport, URLBroker, download
url, dest, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
key = FileKey(*sys.argv[4:7])
t = Transport(URLBroker(lambda k: (url, time.time() + 3600)), policy=RetryPolicy(backoff=0.001))
r = download(t, key, dest, path="fusion://child", size=size)
print(r.size)
"""


def test_a_concurrent_process_and_thread_give_one_good_file(server: StorageServer, tmp_path: Path) -> None:
    dest = tmp_path / "blob.tif"
    server.slow_delay = 0.002
    server.faults.extend(["slow", "slow"])
    url, _ = server.sign("blob")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, url, str(dest), str(SIZE), KEY.organisation_id, KEY.data_id, KEY.file_id],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    download(make_transport(server), KEY, dest, path=PATH, size=SIZE)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert out.strip() == str(SIZE)
    assert dest.read_bytes() == server.blobs["blob"] and leftovers(tmp_path) == []


def test_cancel_takes_effect_quickly_on_a_slow_link(server: StorageServer, tmp_path: Path) -> None:
    server.slow_delay = 0.05  # 16 KiB every 50 ms: a whole minute for the file
    server.faults.extend(["slow"])
    event = threading.Event()
    timer = threading.Timer(0.5, event.set)
    timer.start()
    started = time.monotonic()
    with pytest.raises(DownloadCancelled) as info:
        download(make_transport(server), KEY, tmp_path / "blob.tif", path=PATH, size=SIZE, cancel=event)
    assert time.monotonic() - started < 5.0
    assert 0 < info.value.received < SIZE and info.value.partial is not None and info.value.partial.exists()
    assert not (tmp_path / "blob.tif").exists()


def test_cancel_before_any_byte_leaves_nothing(server: StorageServer, tmp_path: Path) -> None:
    event = threading.Event()
    event.set()
    with pytest.raises(DownloadCancelled) as info:
        download(make_transport(server), KEY, tmp_path / "blob.tif", path=PATH, size=SIZE, cancel=event)
    assert info.value.partial is None and leftovers(tmp_path) == [] and not (tmp_path / "blob.tif").exists()


def test_download_cancelled_is_not_a_retryable_error() -> None:
    assert not issubclass(DownloadCancelled, (FusionError, OSError))
    assert issubclass(DownloadCancelled, Exception)
    copy = pickle.loads(pickle.dumps(DownloadCancelled(PATH, Path("/x.part"), 5, 10)))
    assert (copy.path, copy.partial, copy.received, copy.size) == (PATH, Path("/x.part"), 5, 10)


# -- into a file object -----------------------------------------------------------------------------
def test_download_to_a_seekable_file_refetches_corrupt_bytes(server: StorageServer) -> None:
    server.faults.extend(["corrupt", "truncate"])
    out = io.BytesIO(b"head")
    out.seek(4)
    result = download_to(make_transport(server), KEY, out, path=PATH, size=SIZE)
    assert out.getvalue() == b"head" + server.blobs["blob"] and result.path is None and result.md5_verified


class Unseekable(io.RawIOBase):
    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        view = memoryview(b)  # type: ignore[arg-type]
        self.data += view
        return len(view)


def test_download_to_an_unseekable_file_raises_on_corrupt_bytes(server: StorageServer) -> None:
    server.faults.extend(["corrupt"])
    with pytest.raises(ChecksumError) as info:
        download_to(make_transport(server), KEY, Unseekable(), path=PATH, size=SIZE)
    assert info.value.path == PATH


def test_download_to_without_size(server: StorageServer) -> None:
    server.faults.extend(["whole+cl-large", "close-mid"])
    out = io.BytesIO()
    download_to(make_transport(server), KEY, out, path=PATH)
    assert out.getvalue() == server.blobs["blob"]


# -- long names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [240, 247, 250, 255])
def test_names_up_to_name_max_download_with_a_short_enough_partial(server: StorageServer, tmp_path: Path,
                                                                   length: int) -> None:
    name = ("é" * length)[: length // 2 - 2] + ".tif"
    name = name + "x" * (length - len(name.encode()))
    assert len(name.encode()) == length
    dest = tmp_path / name
    part = partial_path(dest, KEY.file_id)
    assert len(os.fsencode(part.name + ".meta")) <= 255
    cancelled = interrupted(server, dest)
    assert cancelled.partial == part and part.exists()
    result = download(make_transport(server), KEY, dest, path=PATH, size=SIZE)
    assert result.resumed_from > 0 and os.listdir(tmp_path) == [name]
