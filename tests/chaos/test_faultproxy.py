"""The benchmark's fault proxy: each fault kind really happens on the wire.

An upstream stand-in (stdlib ``http.server`` on loopback) serves a 1000-byte object under
``/_storage/blob`` (byte ranges honoured) and a JSON document under ``/api``; every test sends
requests through a :class:`FaultProxy` with one fault kind enabled at rate 1 and checks the raw answer.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _faultproxy import KINDS, FaultProxy

BLOB = bytes(range(250)) * 4  # 1000 bytes
DOC = json.dumps({"list": [{"id": n, "name": f"item {n}"} for n in range(20)]}).encode()


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, str | None]] = []  # (method, path, Host)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, body: bytes) -> None:
        Upstream.seen.append((self.command, self.path, self.headers.get("Host")))
        if self.path.startswith("/_storage/"):
            wanted = self.headers.get("Range")
            if wanted:
                start_text, _, end_text = wanted.removeprefix("bytes=").partition("-")
                start, end = int(start_text), int(end_text) if end_text else len(BLOB) - 1
                part = BLOB[start:end + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(BLOB)}")
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                self.wfile.write(part)
                return
            body = BLOB
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if self.path.startswith("/api") else "image/tiff")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Seen-Host", self.headers.get("Host") or "")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(DOC)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._answer(self.rfile.read(length))


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def proxy_with(upstream: str, kind: str, **options: object) -> FaultProxy:
    return FaultProxy(upstream, rate=1.0, seed=7, kinds=[kind], timeout=10.0, max_lifetime=120.0,
                      **options)  # type: ignore[arg-type]


def get(proxy: FaultProxy, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    return conn.getresponse()


def raw(proxy: FaultProxy, path: str, extra: str = "") -> tuple[bytes, bytes]:
    """(head, body) of the bytes received until the proxy closed the connection."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n{extra}\r\n".encode())
        data = b""
        for _ in range(10_000):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError(f"no Content-Length in {head!r}")


def test_no_fault_passes_through_and_keeps_host(upstream: str) -> None:
    with FaultProxy(upstream, rate=0.0, seed=1) as proxy:
        answer = get(proxy, "/api/doc")
        assert answer.status == 200 and answer.read() == DOC
        assert answer.getheader("X-Seen-Host") == f"127.0.0.1:{proxy.port}"  # Host forwarded unchanged
        ranged = get(proxy, "/_storage/blob", {"Range": "bytes=10-19"})
        assert ranged.status == 206 and ranged.read() == BLOB[10:20]
        assert proxy.total_faults() == 0
        assert proxy.requests() == {"api": 1, "storage": 1}


@pytest.mark.parametrize("kind,status", [("error_500", 500), ("error_502", 502)])
def test_5xx_after_the_upstream_handled_it(upstream: str, kind: str, status: int) -> None:
    before = len(Upstream.seen)
    with proxy_with(upstream, kind) as proxy:
        answer = get(proxy, "/api/x")
        assert answer.status == status
        assert b"injected" in answer.read()
        assert proxy.counts()[kind] == {"api": 1, "storage": 0}
    assert len(Upstream.seen) == before + 1


@pytest.mark.parametrize("kind,status", [("error_503", 503), ("throttle", 429)])
def test_refusals_before_the_upstream(upstream: str, kind: str, status: int) -> None:
    before = len(Upstream.seen)
    with proxy_with(upstream, kind, retry_after=2.0) as proxy:
        answer = get(proxy, "/_storage/blob")
        answer.read()
        assert answer.status == status
        assert (answer.getheader("Retry-After") == "2") == (kind == "throttle")
        assert proxy.counts()[kind] == {"api": 0, "storage": 1}
    assert len(Upstream.seen) == before


def test_reset_before_any_byte(upstream: str) -> None:
    with proxy_with(upstream, "reset") as proxy:
        for _ in range(4):  # forwarded first or not: both reset
            try:
                head, body = raw(proxy, "/api/x")
            except ConnectionResetError:
                head, body = b"", b""
            assert head == b"" and body == b""
        assert proxy.counts()["reset"]["api"] == 4


def test_close_mid_body(upstream: str) -> None:
    with proxy_with(upstream, "close_mid_body") as proxy:
        answer = get(proxy, "/_storage/blob")
        assert answer.status == 200 and answer.getheader("Content-Length") == str(len(BLOB))
        with pytest.raises(http.client.IncompleteRead) as caught:
            answer.read()
        assert 0 < len(caught.value.partial) < len(BLOB)
        assert caught.value.partial == BLOB[:len(caught.value.partial)]


def test_clean_truncation_keeps_content_range(upstream: str) -> None:
    with proxy_with(upstream, "truncate") as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        conn.request("GET", "/_storage/blob", headers={"Range": "bytes=100-899"})
        answer = conn.getresponse()
        body = answer.read()  # no error: the length matches the short body
        assert answer.status == 206
        assert answer.getheader("Content-Range") == "bytes 100-899/1000"  # still the full range
        assert int(answer.getheader("Content-Length") or -1) == len(body) < 800
        assert body == BLOB[100:100 + len(body)]
        conn.request("GET", "/api/doc")  # the connection stays usable
        again = conn.getresponse()
        short = again.read()
        assert again.status == 200 and 0 < len(short) < len(DOC) and DOC.startswith(short)
        conn.close()
        assert proxy.counts()["truncate"] == {"api": 1, "storage": 1}


def test_stall_delays_a_correct_answer(upstream: str) -> None:
    with proxy_with(upstream, "stall", stall=(0.3, 0.4)) as proxy:
        began = time.monotonic()
        answer = get(proxy, "/api/doc")
        assert answer.read() == DOC
        assert time.monotonic() - began >= 0.3  # a lower bound only: the proxy slept
        assert proxy.counts()["stall"]["api"] == 1


def test_content_length_too_small(upstream: str) -> None:
    with proxy_with(upstream, "length_short") as proxy:
        head, body = raw(proxy, "/_storage/blob")
        assert head.startswith(b"HTTP/1.1 200")
        assert body == BLOB  # unchanged
        assert content_length(head) < len(BLOB)


def test_content_length_too_large(upstream: str) -> None:
    with proxy_with(upstream, "length_long") as proxy:
        head, body = raw(proxy, "/api/doc")
        assert head.startswith(b"HTTP/1.1 200")
        assert body == DOC  # unchanged, then the connection closes
        assert content_length(head) > len(DOC)


def test_whole_object_for_a_range_request(upstream: str) -> None:
    with proxy_with(upstream, "full_200") as proxy:
        answer = get(proxy, "/_storage/blob", {"Range": "bytes=0-99"})
        assert answer.status == 200 and answer.getheader("Content-Range") is None
        assert answer.read() == BLOB
        plain = get(proxy, "/_storage/blob")  # without Range the fault does not apply
        assert plain.status == 200 and plain.read() == BLOB
        assert proxy.counts()["full_200"] == {"api": 0, "storage": 1}


def test_post_bodies_are_forwarded(upstream: str) -> None:
    with FaultProxy(upstream, rate=0.0) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        conn.request("POST", "/api/echo", body=b'{"a": 1}', headers={"Content-Type": "application/json"})
        assert conn.getresponse().read() == b'{"a": 1}'
        conn.close()


def test_seeded_and_counted_by_class(upstream: str) -> None:
    def pattern(seed: int) -> list[str]:
        with FaultProxy(upstream, rate=0.5, seed=seed, kinds=["error_503", "throttle"]) as proxy:
            statuses = []
            for n in range(20):
                answer = get(proxy, "/api/x" if n % 2 else "/_storage/blob")
                answer.read()
                statuses.append(str(answer.status))
            counts = proxy.counts()
            assert sum(sum(c.values()) for c in counts.values()) == sum(s != "200" for s in statuses)
            return statuses

    assert pattern(3) == pattern(3)
    assert {"200", "503", "429"} <= set(pattern(3) + pattern(4))
    assert set(KINDS) >= {"error_503", "throttle"}


def test_emulator_signs_urls_through_the_proxy() -> None:
    """Routed to the proxy (``emu.route_storage``), the emulator signs storage URLs for the proxy's host:
    storage traffic comes back through the proxy, which forwards it to the emulator's storage port."""
    from fusion_stac.client import FusionClient
    from fusion_stac.emulator import Emulator

    region = Path(__file__).resolve().parents[2] / "fusion_stac" / "emulator" / "regions" / "thames.geojson"
    with Emulator(execution_duration=0) as emu, FaultProxy(emu.url, rate=0.0,
                                                           storage_upstream=emu.storage_url) as proxy:
        emu.route_storage(proxy.url, proxy.url)
        client = FusionClient(proxy.url, email="me@org.com", password="MyPassword123!")
        try:
            org = client.organisation().id
            data = client.create_data(org, "through the proxy", [region])
            file = client.list_files(org, data.id)[0]
            signed = client.download_url(org, data.id, file.file_id)
            assert signed.url.startswith(proxy.url + "/_storage/")
        finally:
            client.close()
        assert proxy.requests()["storage"] >= 1  # the upload went through the proxy
