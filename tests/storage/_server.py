"""A pre-signed-URL object server on loopback with scripted faults, for the whole-file storage tests.

Copied from ``tests/fs/storage_server.py`` and extended. ``GET`` with ``Range`` (206 +
``Content-Range``), ``ETag`` (the MD5, as S3 gives for single-part uploads), URLs that expire, and
``PUT`` to a signed URL. Faults are consumed one per request from ``faults``:

* ``reset`` -- connection reset before any byte; ``500``; ``403`` / ``expired`` -- a refusal;
* ``truncate`` -- half the body, then a clean close (FIN); ``close-mid`` -- half the body, then a reset;
* ``cl-small`` / ``cl-large`` -- ``Content-Length`` 100 bytes too small / large, then the connection
  closes (for a 206 it then disagrees with ``Content-Range``);
* ``200`` -- the Range header ignored (whole file, 200); ``200-cl-small`` / ``200-cl-large`` -- the same
  with a wrong ``Content-Length`` (the body matches the header / is cut at the real end);
* ``corrupt`` -- one byte of the body flipped (same length); ``swap`` -- the blob is replaced by
  ``next_blobs[name]`` (a new version, new ETag) before answering;
* ``stall`` -- headers and the first half of the body, then silence for ``stall_seconds``;
* ``slow`` -- the body in 16 KiB pieces, ``slow_delay`` seconds apart.
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


class StorageServer:
    """Serves ``blobs[name]`` at ``/o/<name>?expires=<t>&sig=<s>``; use as a context manager."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.next_blobs: dict[str, bytes] = {}
        self.faults: deque[str] = deque()
        self.methods: Counter[str] = Counter()
        self.ranges: list[tuple[str, str | None]] = []
        self.etag_override: str | None = None
        self.stall_seconds = 60.0
        self.slow_delay = 0.05
        self.signed = 0
        self.put_faults: deque[str] = deque()
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

            def _authorised(self, name: str, query: dict[str, str], fault: str | None) -> bool:
                if fault in ("403", "expired"):
                    self._refuse(403, "Request has expired" if fault == "expired" else "SignatureDoesNotMatch")
                    return False
                if query.get("sig") != server.signature(name, query.get("expires", "")):
                    self._refuse(403, "SignatureDoesNotMatch")
                    return False
                if float(query.get("expires", "0")) < time.time():
                    self._refuse(403, "Request has expired")
                    return False
                return True

            def _request(self, method: str, faults: deque[str]) -> tuple[str, dict[str, str], str | None]:
                parts = urlsplit(self.path)
                name = parts.path.removeprefix("/o/")
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                with server._lock:
                    server.methods[method] += 1
                    server.ranges.append((name, self.headers.get("Range")))
                    fault = faults.popleft() if faults else None
                return name, query, fault

            def do_PUT(self) -> None:
                name, query, fault = self._request("PUT", server.put_faults)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if fault == "reset":
                    self._reset()
                    return
                if fault == "500":
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if not self._authorised(name, query, fault):
                    return
                etag = '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'
                if fault == "bad-etag":
                    etag = '"' + "0" * 32 + '"'
                with server._lock:
                    server.blobs[name] = body
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                name, query, fault = self._request("GET", server.faults)
                if fault == "reset":
                    self._reset()
                    return
                if fault == "500":
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if not self._authorised(name, query, fault):
                    return
                with server._lock:
                    if fault == "swap":
                        server.blobs[name] = server.next_blobs.pop(name)
                    data = server.blobs.get(name)
                if data is None:
                    self._refuse(404, "NoSuchKey")
                    return
                etag = server.etag_override or '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
                match = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range") or "")
                if match and not (fault or "").startswith("200"):
                    start = int(match[1])
                    end = min(int(match[2]) if match[2] else len(data) - 1, len(data) - 1)
                    if start >= len(data):
                        self._refuse(416, "InvalidRange")
                        return
                    body = data[start:end + 1]
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                else:
                    body = data
                    self.send_response(200)
                declared = len(body)
                if fault in ("cl-small", "200-cl-small"):
                    declared = max(len(body) - 100, 0)
                elif fault in ("cl-large", "200-cl-large"):
                    declared = len(body) + 100
                if fault == "corrupt" and body:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                self.send_header("Content-Length", str(declared))
                self.send_header("ETag", etag)
                self.end_headers()
                if fault in ("truncate", "close-mid"):
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    if fault == "close-mid":
                        self._reset()
                        return
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if fault == "stall":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    server._stop.wait(server.stall_seconds)
                    self.close_connection = True
                    return
                if fault == "slow":
                    for i in range(0, len(body), 16384):
                        if server._stop.is_set():
                            break
                        try:
                            self.wfile.write(body[i:i + 16384])
                            self.wfile.flush()
                        except OSError:
                            break
                        time.sleep(server.slow_delay)
                    self.close_connection = True
                    return
                self.wfile.write(body[:declared])
                if declared != len(body) or fault in ("cl-large", "200-cl-large"):
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True

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
