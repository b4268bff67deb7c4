"""A pre-signed-URL object server on loopback with scripted faults, for testing the data plane without
the emulator (``tests/fs/test_storage_transport.py`` and the ``tests/storage`` tests).

It behaves like cloud storage behind signed URLs: ``GET`` with ``Range`` (206 + ``Content-Range``),
``ETag`` (the MD5, as S3 gives for single-part uploads; ``etag_override`` replaces it), URLs that expire,
``HEAD`` refused with 403, and ``PUT`` to a signed URL (stores ``blobs[name]``). Setting
``ignore_range`` answers every GET as ``whole`` does.

Faults are consumed one entry per request: ``faults`` for GET, ``put_faults`` for PUT. An entry may join
several faults with ``+`` (``"whole+short"``, ``"whole+cl-large"``); unknown names (``"none"``) are no
fault. GET faults:

* ``reset`` -- connection reset (RST) before any byte; ``500`` -- an empty 500;
* ``403`` -- refused (``SignatureDoesNotMatch``); ``expired`` -- refused (``Request has expired``);
* ``truncate`` -- half the body, then a clean close (FIN); ``close-mid`` -- half the body, then a reset;
* ``cut:N`` -- only the first N body bytes, then a clean close;
* ``short`` -- ``Content-Length`` half the body's length, the whole body sent (connection kept);
* ``long`` -- ``Content-Length`` 100 more than the body, 100 junk bytes after it (connection kept);
* ``cl-small`` / ``cl-large`` -- ``Content-Length`` 100 bytes too small / large, the body cut at the
  smaller of the two, then a clean close (for a 206 it then disagrees with ``Content-Range``);
* ``200`` -- status 200 instead of 206 for a partial body, ``Content-Range`` kept (a proxy relabelling
  the answer);
* ``200-bare`` -- status 200 and no ``Content-Range`` for a partial body;
* ``whole`` -- ``Range`` ignored for this GET (200 and the whole object, no ``Content-Range``); with
  ``cl-small`` / ``cl-large`` a whole-object answer with a wrong ``Content-Length``;
* ``total`` -- a ``Content-Range`` total 1000 bytes too large;
* ``corrupt`` -- the body's first byte flipped (same length);
* ``swap`` -- the blob is replaced by ``next_blobs[name]`` (a new version, new ETag) before answering;
* ``stall`` -- headers and the first half of the body, then silence for ``stall_seconds``;
* ``slow`` -- the body in 16 KiB pieces, ``slow_delay`` seconds apart.

PUT faults: ``reset``, ``500``, ``403``, ``expired`` (as for GET; the body is read first) and
``bad-etag`` (stored, but answered with an ETag that is not the body's MD5).
"""

from __future__ import annotations

import hashlib
import re
import socket
import struct
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PIECE = 16384  # the ``slow`` fault's piece size


class StorageServer:
    """Serves ``blobs[name]`` at ``/o/<name>?expires=<t>&sig=<s>``; use as a context manager."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.next_blobs: dict[str, bytes] = {}  # the new version a ``swap`` fault installs
        self.faults: deque[str] = deque()  # consumed one per GET
        self.put_faults: deque[str] = deque()  # consumed one per PUT
        self.ignore_range = False
        self.etag_override: str | None = None
        self.stall_seconds = 60.0
        self.slow_delay = 0.05
        self.answer_delay = 0.0  # seconds before every GET's status line (a distant server)
        self.methods: Counter[str] = Counter()
        self.ranges: list[tuple[str, str | None]] = []  # (name, Range header) of each GET and PUT
        self.bytes_sent = 0
        self.connections: set[int] = set()  # client ports seen by GETs: one per TCP connection
        self.agents: list[str | None] = []  # User-Agent of each GET
        self.signed = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _refuse(self, code: int, message: str) -> None:
                body = f"<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>".encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _reset(self) -> None:
                sock = self.connection
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                self.close_connection = True

            def _close(self) -> None:
                """A clean close (FIN) after what was written."""
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

            def _send(self, data: bytes) -> None:
                self.wfile.write(data)
                with server._lock:
                    server.bytes_sent += len(data)

            def _request(self, method: str, queue: deque[str]) -> tuple[str, dict[str, str], set[str]]:
                parts = urlsplit(self.path)
                name = parts.path.removeprefix("/o/")
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                with server._lock:
                    server.methods[method] += 1
                    server.ranges.append((name, self.headers.get("Range")))
                    if method == "GET":
                        server.connections.add(self.client_address[1])
                        server.agents.append(self.headers.get("User-Agent"))
                    fault = queue.popleft() if queue else None
                return name, query, set((fault or "").split("+"))

            def _failed_early(self, faults: set[str]) -> bool:
                """``reset`` and ``500``: before any authorisation."""
                if "reset" in faults:
                    self._reset()
                    return True
                if "500" in faults:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return True
                return False

            def _authorised(self, name: str, query: dict[str, str], faults: set[str]) -> bool:
                if "expired" in faults:
                    self._refuse(403, "Request has expired")
                    return False
                if "403" in faults or query.get("sig") != server.signature(name, query.get("expires", "")):
                    self._refuse(403, "SignatureDoesNotMatch")
                    return False
                if float(query.get("expires", "0")) < time.time():
                    self._refuse(403, "Request has expired")
                    return False
                return True

            def do_HEAD(self) -> None:
                with server._lock:
                    server.methods["HEAD"] += 1
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_PUT(self) -> None:
                name, query, faults = self._request("PUT", server.put_faults)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self._failed_early(faults) or not self._authorised(name, query, faults):
                    return
                etag = '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'
                if "bad-etag" in faults:
                    etag = '"' + "0" * 32 + '"'
                with server._lock:
                    server.blobs[name] = body
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                if server.answer_delay:
                    time.sleep(server.answer_delay)
                name, query, faults = self._request("GET", server.faults)
                if self._failed_early(faults) or not self._authorised(name, query, faults):
                    return
                with server._lock:
                    if "swap" in faults:
                        server.blobs[name] = server.next_blobs.pop(name)
                    data = server.blobs.get(name)
                if data is None:
                    self._refuse(404, "NoSuchKey")
                    return
                etag = server.etag_override or '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
                match = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range") or "")
                if match and not server.ignore_range and "whole" not in faults:
                    start = int(match[1])
                    end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
                    if start >= len(data):
                        self._refuse(416, "InvalidRange")
                        return
                    body = data[start:end + 1]
                    total = len(data) + (1000 if "total" in faults else 0)
                    self.send_response(200 if faults & {"200", "200-bare"} else 206)
                    if "200-bare" not in faults:
                        self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
                else:
                    body = data
                    self.send_response(200)
                declared = len(body)
                if "short" in faults:
                    declared = len(body) // 2
                elif "long" in faults:
                    declared = len(body) + 100
                if "cl-small" in faults:
                    declared = max(len(body) - 100, 0)
                elif "cl-large" in faults:
                    declared = len(body) + 100
                self.send_header("Content-Length", str(declared))
                self.send_header("ETag", etag)
                self.end_headers()
                if "corrupt" in faults and body:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                payload = body + bytes(range(100)) if "long" in faults else body
                cut = next((int(f[4:]) for f in faults if f.startswith("cut:")), None)
                if faults & {"truncate", "close-mid"}:
                    cut = len(body) // 2
                if cut is not None:
                    self._send(payload[:cut])
                    if "close-mid" in faults:
                        self.wfile.flush()
                        self._reset()
                    else:
                        self._close()
                    return
                if "stall" in faults:
                    self._send(payload[: len(body) // 2])
                    self.wfile.flush()
                    server._stop.wait(server.stall_seconds)
                    self.close_connection = True
                    return
                if "slow" in faults:
                    for i in range(0, len(payload), PIECE):
                        if server._stop.is_set():
                            break
                        try:
                            self._send(payload[i:i + PIECE])
                            self.wfile.flush()
                        except OSError:
                            break
                        time.sleep(server.slow_delay)
                    self.close_connection = True
                    return
                if faults & {"cl-small", "cl-large"}:
                    self._send(payload[:declared])
                    self._close()
                    return
                self._send(payload)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @staticmethod
    def signature(name: str, expires: str) -> str:
        return hashlib.sha256(f"secret:{name}:{expires}".encode()).hexdigest()[:32]

    def sign(self, name: str, lifetime: float = 3600.0) -> tuple[str, float]:
        """A signed URL for ``name`` and its expiry (unix seconds)."""
        expires = time.time() + lifetime
        text = f"{expires:.3f}"
        with self._lock:
            self.signed += 1
        return f"{self.url}/o/{name}?expires={text}&sig={self.signature(name, text)}", expires

    def __enter__(self) -> StorageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
