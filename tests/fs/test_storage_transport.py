"""The data plane on its own: URL broker, verified/resumed range reads, the adaptive stream cache.

Runs against ``tests/storage/_server.StorageServer`` (a signed-URL object server with scripted faults), so
every retry path is exercised deterministically and independently of the emulator.
"""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from fusion_stac.errors import FusionError, TransportError
from fusion_stac.fs._file import AdaptiveStreamCache
from fusion_stac.storage._broker import FileChangedError, FileKey, URLBroker, VersionPin
from fusion_stac.storage._route import plain_route
from fusion_stac.storage._stats import TransferStats
from fusion_stac.storage._transport import RetryPolicy, TransferError, Transport
from tests.storage._server import StorageServer

KEY = FileKey("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002",
              "00000000-0000-4000-8000-000000000003")
FAST = RetryPolicy(backoff=0.001, max_backoff=0.01)


@pytest.fixture()
def server():
    with StorageServer() as srv:
        srv.blobs["blob"] = os.urandom(3 * 1024 * 1024 + 17)
        yield srv


def make_transport(server: StorageServer, lifetime: float = 3600.0, name: str = "blob",
                   policy: RetryPolicy = FAST) -> Transport:
    broker = URLBroker(lambda key: server.sign(name, lifetime), stats=TransferStats())
    return Transport(broker, policy=policy)


# -- broker ------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_broker_signs_once_and_refreshes_before_expiry() -> None:
    clock = FakeClock()
    calls: list[FileKey] = []

    def sign(key: FileKey) -> tuple[str, float]:
        calls.append(key)
        return f"https://storage/x?sig={len(calls)}", time.time() + 100.0

    broker = URLBroker(sign, margin=30.0, clock=clock)
    first = broker.lease(KEY)
    assert broker.lease(KEY).url == first.url and len(calls) == 1
    clock.now += 69.0  # 31 s left: still outside the 30 s margin (capped at 20 % of 100 s = 20 s)
    assert broker.lease(KEY).url == first.url
    clock.now += 12.0  # 19 s left: inside the margin -> re-signed
    second = broker.lease(KEY)
    assert second.url != first.url and len(calls) == 2
    stats = broker.stats.snapshot()
    assert stats["urls_signed"] == 2 and stats["url_refreshes"] == 1


def test_broker_invalidate_drops_only_the_refused_generation() -> None:
    n = iter(range(100))
    broker = URLBroker(lambda key: (f"https://s/{next(n)}", time.time() + 3600))
    stale = broker.lease(KEY)
    broker.invalidate(stale)
    fresh = broker.lease(KEY)
    assert fresh.url != stale.url
    broker.invalidate(stale)  # a second thread reporting the same old URL must not drop the new one
    assert broker.lease(KEY).url == fresh.url


def test_broker_concurrent_leases_sign_once() -> None:
    count = 0
    lock = threading.Lock()

    def slow_sign(key: FileKey) -> tuple[str, float]:
        nonlocal count
        with lock:
            count += 1
        time.sleep(0.05)
        return "https://s/one", time.time() + 3600

    broker = URLBroker(slow_sign)
    threads = [threading.Thread(target=broker.lease, args=(KEY,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count == 1


def test_version_pin_etag_change_is_an_error_naming_the_file() -> None:
    pin = VersionPin()
    pin.check(KEY, '"abc"')
    pin.check(KEY, 'W/"abc"')
    pin.check(KEY, None)  # answers without an ETag are not evidence of change
    with pytest.raises(FileChangedError) as info:
        pin.check(KEY, '"def"')
    assert KEY.url in str(info.value) and isinstance(info.value, OSError)
    VersionPin().check(KEY, '"def"')  # a new read operation accepts the new version


def test_signed_url_objects_are_accepted() -> None:
    from datetime import datetime, timedelta, timezone

    from fusion_stac.models import SignedURL

    signed = SignedURL("https://s/x?signature=secret", datetime.now(timezone.utc) + timedelta(hours=1))
    lease = URLBroker(lambda key: signed).lease(KEY)
    assert lease.url == signed.url and "secret" not in repr(lease)


# -- range reads -------------------------------------------------------------------------------

def test_connections_are_reused_after_complete_reads(server: StorageServer) -> None:
    t = make_transport(server)
    data = server.blobs["blob"]
    for start in (0, 1000, 2_000_000):
        assert t.read_range(KEY, start, start + 70_000, path="fusion://x", size=len(data)) == \
            data[start:start + 70_000]
    buffer = bytearray(1 << 20)
    with t.open_range(KEY, 0, len(data), path="fusion://x", size=len(data)) as reader:
        pieces = []
        while reader.remaining:
            n = reader.readinto(buffer)
            pieces.append(bytes(buffer[:n]))
    assert b"".join(pieces) == data
    assert len(server.connections) == 1 and server.methods["GET"] == 4


def test_readinto_resumes_after_faults(server: StorageServer) -> None:
    import io

    t = make_transport(server)
    data = server.blobs["blob"]
    server.faults.extend(["truncate", "reset", "truncate"])
    buffer = bytearray(100_000)
    out = io.BytesIO()
    with t.open_range(KEY, 0, len(data), path="fusion://x", size=len(data)) as reader:
        while reader.remaining:
            n = reader.readinto(buffer)
            out.write(buffer[:n])
    assert out.getvalue() == data and t.stats.snapshot()["retries"] == 3


def test_plain_gets_go_straight_to_the_pool_with_the_session_headers(server: StorageServer) -> None:
    t = make_transport(server)
    t.session.headers["User-Agent"] = "fusion-test/1"
    data = server.blobs["blob"]
    assert t.read_range(KEY, 10, 5000, path="fusion://x", size=len(data)) == data[10:5000]
    assert None not in t._routes.values(), "a plain GET skips requests' per-call work"
    assert server.agents == ["fusion-test/1"]
    assert t.read_range(KEY, 0, 100, path="fusion://x", size=len(data)) == data[:100]
    assert len(server.connections) == 1


@pytest.mark.parametrize("change", ["hook", "auth", "adapter"])
def test_requests_sends_what_it_would_change(server: StorageServer, change: str) -> None:
    import requests
    from requests.adapters import HTTPAdapter

    t = make_transport(server)
    seen: list[int] = []
    if change == "hook":
        t.session.hooks["response"].append(lambda r, *a, **k: seen.append(r.status_code))
    elif change == "auth":
        t.session.auth = lambda r: (seen.append(1), r)[1]  # type: ignore[assignment]
    else:
        class Counting(HTTPAdapter):
            def send(self, request: requests.PreparedRequest, **kw: object) -> requests.Response:
                seen.append(1)
                return super().send(request, **kw)  # type: ignore[arg-type]

        t.session.mount("http://", Counting(max_retries=0))
    data = server.blobs["blob"]
    assert t.read_range(KEY, 10, 5000, path="fusion://x", size=len(data)) == data[10:5000]
    assert list(t._routes.values()) == [None] and len(seen) == 1


def test_a_proxied_host_goes_through_requests(server: StorageServer, monkeypatch: pytest.MonkeyPatch) -> None:
    t = make_transport(server)
    url, _ = server.sign("blob", 3600)
    assert plain_route(t.session, url) is not None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert plain_route(t.session, url) is None


def test_read_range_exact_bytes_and_no_head(server: StorageServer) -> None:
    t = make_transport(server)
    data = server.blobs["blob"]
    assert t.read_range(KEY, 10, 100_000, path="fusion://x", size=len(data)) == data[10:100_000]
    assert t.read_range(KEY, len(data) - 5, len(data), path="fusion://x", size=len(data)) == data[-5:]
    assert server.methods["HEAD"] == 0
    assert t.stats.snapshot()["requests"] == 2


@pytest.mark.parametrize("fault", ["truncate", "reset", "500"])
def test_faults_are_retried_and_bytes_identical(server: StorageServer, fault: str) -> None:
    t = make_transport(server)
    data = server.blobs["blob"]
    server.faults.extend([fault, fault])
    assert t.read_range(KEY, 0, len(data), path="fusion://x", size=len(data)) == data
    stats = t.stats.snapshot()
    assert stats["retries"] == 2 and stats["requests"] == 3


def test_truncated_body_is_resumed_not_refetched(server: StorageServer) -> None:
    t = make_transport(server)
    data = server.blobs["blob"]
    server.faults.append("truncate")
    assert t.read_range(KEY, 1000, len(data), path="fusion://x", size=len(data)) == data[1000:]
    # The second request starts where the first body stopped.
    (_, first), (_, second) = server.ranges
    resumed_at = int(second.split("=")[1].split("-")[0])
    assert first == f"bytes=1000-{len(data) - 1}" and resumed_at == 1000 + (len(data) - 1000) // 2


def test_persistent_failure_raises_transfer_error(server: StorageServer) -> None:
    t = make_transport(server, policy=RetryPolicy(attempts=3, backoff=0.001, max_backoff=0.001))
    server.faults.extend(["reset"] * 5)
    with pytest.raises(TransferError) as info:
        t.read_range(KEY, 0, 10, path="fusion://org/data/x/y", size=len(server.blobs["blob"]))
    err = info.value
    assert isinstance(err, OSError) and isinstance(err, TransportError) and isinstance(err, FusionError)
    assert "fusion://org/data/x/y" in str(err) and "sig=" not in str(err)


def test_expired_url_is_refreshed_and_the_same_range_retried(server: StorageServer) -> None:
    data = server.blobs["blob"]
    urls = iter([server.sign("blob", -10.0)[0], server.sign("blob", 3600)[0]])
    # The broker believes the first URL is valid for an hour; storage says it has expired.
    broker = URLBroker(lambda key: (next(urls), time.time() + 3600))
    t = Transport(broker, policy=FAST)
    assert t.read_range(KEY, 5, 50, path="fusion://x", size=len(data)) == data[5:50]
    stats = t.stats.snapshot()
    assert stats["url_refreshes"] == 1 and stats["urls_signed"] == 2 and stats["requests"] == 2
    assert [r for _, r in server.ranges] == ["bytes=5-49", "bytes=5-49"]


def test_permanently_refused_url_is_permission_error(server: StorageServer) -> None:
    broker = URLBroker(lambda key: (server.url + "/o/blob?expires=9999999999&sig=bad", None))
    t = Transport(broker, policy=FAST)
    with pytest.raises(PermissionError) as info:
        t.read_range(KEY, 0, 10, path="fusion://org/f", size=10)
    assert "fusion://org/f" in str(info.value) and "bad" not in str(info.value)


def test_missing_object_is_file_not_found(server: StorageServer) -> None:
    t = make_transport(server, name="nothing")
    with pytest.raises(FileNotFoundError) as info:
        t.read_range(KEY, 0, 10, path="fusion://org/f", size=10)
    assert "fusion://org/f" in str(info.value)


def test_etag_change_within_one_read_fails_loudly(server: StorageServer) -> None:
    t = make_transport(server, lifetime=0.3)
    data = server.blobs["blob"]
    pin = VersionPin()
    t.read_range(KEY, 0, 10, path="fusion://x", size=len(data), pin=pin)
    server.blobs["blob"] = bytes(reversed(data))
    time.sleep(0.35)  # the URL expires: the next request re-signs and meets the new version
    with pytest.raises(FileChangedError, match="changed"):
        t.read_range(KEY, 10, 20, path="fusion://x", size=len(data), pin=pin)
    assert t.stats.snapshot()["url_refreshes"] >= 1
    assert t.read_range(KEY, 10, 20, path="fusion://x", size=len(data)) == data[::-1][10:20]


def test_size_different_from_metadata_fails_loudly(server: StorageServer) -> None:
    t = make_transport(server)
    with pytest.raises(FileChangedError, match="metadata"):
        t.read_range(KEY, 0, 10, path="fusion://x", size=123)


def test_server_ignoring_range_still_gives_exact_bytes(server: StorageServer) -> None:
    server.ignore_range = True
    data = server.blobs["blob"]
    t = make_transport(server)
    assert t.read_range(KEY, 4096, 9000, path="fusion://x", size=len(data)) == data[4096:9000]


def test_read_ranges_merges_adjacent_and_overlapping(server: StorageServer) -> None:
    t = make_transport(server)
    data = server.blobs["blob"]
    ranges = [(0, 100), (100, 200), (150, 180), (1_000_000, 1_000_010), (10, 20), (5, 5)]
    out = t.read_ranges(KEY, ranges, path="fusion://x", size=len(data))
    assert out == [data[s:e] for s, e in ranges]
    assert t.stats.snapshot()["requests"] == 2  # [0, 200) and [1_000_000, 1_000_010)


# -- the adaptive stream cache -----------------------------------------------------------------

def make_cache(t: Transport, size: int, **kw: int) -> AdaptiveStreamCache:
    def open_stream(start: int, end: int):
        return t.open_range(KEY, start, end, path="fusion://x", size=size)

    def fetch(start: int, end: int) -> bytes:
        return t.read_range(KEY, start, end, path="fusion://x", size=size)

    return AdaptiveStreamCache(8 << 20, fetch, size, open_stream=open_stream,
                               maximum=kw.pop("maximum", 8 << 20), **kw)


def test_sequential_reads_stream_over_few_requests(server: StorageServer) -> None:
    data = server.blobs["blob"]
    t = make_transport(server)
    cache = make_cache(t, len(data))
    pos, out = 0, []
    while pos < len(data):
        out.append(cache._fetch(pos, pos + 10_000))
        pos += 10_000
    assert b"".join(out) == data
    stats = t.stats.snapshot()
    # 64 KiB, then doubling: 64K+128K+...+2M covers 3 MiB in ~7 requests, never one per read.
    assert stats["requests"] <= 8, stats
    assert stats["bytes"] == len(data)


def test_small_random_reads_fetch_small_blocks(server: StorageServer) -> None:
    data = server.blobs["blob"]
    t = make_transport(server)
    cache = make_cache(t, len(data))
    for offset in (2_000_000, 100, 1_500_000, 3_000_000):
        assert cache._fetch(offset, offset + 500) == data[offset:offset + 500]
    stats = t.stats.snapshot()
    assert stats["requests"] == 4
    assert stats["bytes"] <= 4 * 64 * 1024  # at most the initial block each, not the 8 MiB maximum


def test_header_rereads_are_served_from_memory(server: StorageServer) -> None:
    data = server.blobs["blob"]
    t = make_transport(server)
    cache = make_cache(t, len(data))
    assert cache._fetch(0, 16) == data[:16]
    assert cache._fetch(3_000_000, 3_000_100) == data[3_000_000:3_000_100]
    for start, end in ((8, 200), (0, 16), (1000, 4000), (60_000, 65_000)):
        assert cache._fetch(start, end) == data[start:end]
    assert t.stats.snapshot()["requests"] == 2


def test_random_access_pattern_is_byte_identical_under_faults(server: StorageServer) -> None:
    data = server.blobs["blob"]
    t = make_transport(server)
    cache = make_cache(t, len(data), maximum=1 << 20)
    rng = random.Random(5)
    for _ in range(20):  # a fault on every other request
        server.faults.extend([rng.choice(["truncate", "reset", "500"]), "none"])
    pos = 0
    for _ in range(60):
        if rng.random() < 0.3:
            pos = rng.randrange(len(data))
        n = rng.choice([1, 100, 5000, 70_000, 300_000])
        assert cache._fetch(pos, pos + n) == data[pos:pos + n]
        pos = min(pos + n, len(data) - 1)
    cache.close()
    assert t.stats.snapshot()["retries"] > 0


def test_size_probe_for_files_without_metadata(server: StorageServer) -> None:
    data = server.blobs["blob"]
    server.blobs["empty"] = b""
    t = make_transport(server)
    reader = t.open_range(KEY, 0, 1, path="fusion://x", size=None)
    assert reader.read() == data[:1] and reader.total == len(data)
    empty = make_transport(server, name="empty").open_range(KEY, 0, 1, path="fusion://x", size=None)
    assert empty.read() == b"" and empty.total == 0


def test_no_credentials_are_sent_to_storage(server: StorageServer, tmp_path, monkeypatch) -> None:
    """A netrc entry for the storage host must not add an Authorization header to signed URLs."""
    import http.server

    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    seen: list[str | None] = []
    original = http.server.BaseHTTPRequestHandler.end_headers

    def spy(handler: http.server.BaseHTTPRequestHandler) -> None:
        seen.append(handler.headers.get("Authorization"))
        original(handler)

    monkeypatch.setattr(http.server.BaseHTTPRequestHandler, "end_headers", spy)
    t = make_transport(server)
    assert t.read_range(KEY, 0, 10, path="fusion://x", size=len(server.blobs["blob"])) == server.blobs["blob"][:10]
    assert seen and all(value is None for value in seen)


# -- faulty answers: verified, resumed, never trusted unverified ---------------------------------

@pytest.mark.parametrize("start", [0, 1000])
@pytest.mark.parametrize("fault", ["short", "long", "200+short", "200+long", "200", "whole+short", "whole+long",
                                   "cut:0", "cut:1", "whole+cut:500", "whole+cut:5000", "200-bare", "total"])
def test_faulty_answers_are_resumed_or_retried_to_the_exact_bytes(server: StorageServer, fault: str,
                                                                    start: int) -> None:
    t = make_transport(server)
    data = server.blobs["blob"]
    server.faults.append(fault)
    assert t.read_range(KEY, start, start + 70_000, path="fusion://x", size=len(data)) == \
        data[start:start + 70_000]
    # the connection an answer with a wrong Content-Length came on is never reused (junk would follow)
    assert t.read_range(KEY, 5, 50, path="fusion://x", size=len(data)) == data[5:50]
    stats = t.stats.snapshot()
    assert stats["retries"] == (0 if fault in ("long", "200+long", "200") or (fault == "200-bare" and start == 0)
                                else 1), stats


def test_a_short_content_length_is_resumed_from_the_first_missing_byte(server: StorageServer) -> None:
    t = make_transport(server)
    data = server.blobs["blob"]
    server.faults.append("short")
    assert t.read_range(KEY, 1000, 81_000, path="fusion://x", size=len(data)) == data[1000:81_000]
    assert [r for _, r in server.ranges] == ["bytes=1000-80999", "bytes=41000-80999"]
    stats = t.stats.snapshot()
    assert stats["retries"] == 1 and stats["resumes"] == 1 and stats["bytes"] == 80_000


def test_a_too_long_content_length_is_never_read_past_the_range(server: StorageServer) -> None:
    t = make_transport(server)
    data = server.blobs["blob"]
    server.faults.append("long")
    with t.open_range(KEY, 10, 1010, path="fusion://x", size=len(data)) as reader:
        assert reader.read() == data[10:1010] and reader.remaining == 0
    assert t.stats.snapshot()["bytes"] == 1000


@pytest.mark.parametrize("via_requests", [False, True])
@pytest.mark.parametrize("fault", ["truncate", "cut:0", "cut:7", "whole+cut:100", "whole+cut:150000"])
def test_a_cleanly_truncated_body_is_resumed_in_every_path(server: StorageServer, fault: str,
                                                           via_requests: bool) -> None:
    t = make_transport(server)
    if via_requests:
        t.session.hooks["response"].append(lambda r, *a, **k: None)
    data = server.blobs["blob"]
    server.faults.append(fault)
    with t.open_range(KEY, 200, 300_000, path="fusion://x", size=len(data)) as reader:
        assert reader.read(10) == data[200:210]
        assert reader.drain() + reader.read() == data[210:300_000]
    assert list(t._routes.values()) == [None if via_requests else t._routes[next(iter(t._routes))]]
    assert t.stats.snapshot()["retries"] == 1


def test_a_faulty_size_is_never_learned(server: StorageServer) -> None:
    t = make_transport(server)
    data = server.blobs["blob"]
    for fault in ("total+cut:3", "long", "whole+long", "whole+short"):
        server.faults.append(fault)
        reader = t.open_range(KEY, 0, 10, path="fusion://x", size=None)
        assert reader.read() == data[:10]
        assert reader.total in (None, len(data)), (fault, reader.total)
        reader.close()
    reader = t.open_range(KEY, 0, 1, path="fusion://x", size=None)
    assert reader.read() == data[:1] and reader.total == len(data)


def test_a_size_contradicted_once_is_a_faulty_answer(server: StorageServer) -> None:
    t = make_transport(server)
    data = server.blobs["blob"]
    server.faults.extend(["total", "none", "total"])
    assert t.read_range(KEY, 0, 100, path="fusion://x", size=len(data)) == data[:100]
    assert t.read_range(KEY, 0, 100, path="fusion://x", size=len(data)) == data[:100]
    assert t.stats.snapshot()["retries"] == 2 and server.methods["GET"] == 4


def test_a_size_contradicted_twice_in_a_row_is_a_changed_file(server: StorageServer) -> None:
    t = make_transport(server)
    data = server.blobs["blob"]
    server.faults.extend(["total", "total"])
    with pytest.raises(FileChangedError, match="twice in a row") as info:
        t.read_range(KEY, 0, 100, path="fusion://org/f", size=len(data))
    assert "fusion://org/f" in str(info.value) and server.methods["GET"] == 2


def test_a_size_contradiction_with_a_new_etag_is_a_changed_file_at_once(server: StorageServer) -> None:
    t = make_transport(server, lifetime=0.2)
    data = server.blobs["blob"]
    pin = VersionPin()
    assert t.read_range(KEY, 0, 10, path="fusion://x", size=len(data), pin=pin) == data[:10]
    server.blobs["blob"] = data + b"more"
    time.sleep(0.25)
    with pytest.raises(FileChangedError, match="ETag"):
        t.read_range(KEY, 10, 20, path="fusion://x", size=len(data), pin=pin)
    assert server.methods["GET"] == 2


def test_faulty_answers_do_not_pin_their_etag(server: StorageServer) -> None:
    t = make_transport(server)
    data = server.blobs["blob"]
    pin = VersionPin()
    server.faults.extend(["total", "500"])
    assert t.read_range(KEY, 0, 10, path="fusion://x", size=len(data), pin=pin) == data[:10]
    assert pin.etag is not None and t.stats.snapshot()["retries"] == 2


@pytest.mark.filterwarnings("ignore:`get_connection` has been deprecated:DeprecationWarning")
def test_old_requests_without_pool_key_api_send_through_the_session(server: StorageServer,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from requests.adapters import HTTPAdapter

    def get_connection_with_tls_context(self: HTTPAdapter, request: object, verify: object,
                                        proxies: object = None, cert: object = None) -> object:
        return self.get_connection(request.url, proxies)  # type: ignore[attr-defined]  # what 2.31 did

    monkeypatch.delattr(HTTPAdapter, "build_connection_pool_key_attributes")
    monkeypatch.setattr(HTTPAdapter, "get_connection_with_tls_context", get_connection_with_tls_context)
    t = make_transport(server)
    data = server.blobs["blob"]
    server.faults.append("truncate")
    assert t.read_range(KEY, 10, 90_000, path="fusion://x", size=len(data)) == data[10:90_000]
    assert list(t._routes.values()) == [None]
    assert t.stats.snapshot()["resumes"] == 1
