"""A tiny pre-signed-URL object server on loopback, for testing the data plane without the emulator.

It behaves like cloud storage behind signed URLs: ``GET`` with ``Range`` (206 + ``Content-Range``),
``ETag``, URLs that expire, ``HEAD`` refused with 403, and scripted faults so each retry path can be
exercised deterministically. ``faults`` is consumed one entry per GET; an entry joins faults with
``+`` (``"whole+short"``); unknown names (``"none"``) are no fault:

* ``reset`` (RST before answering), ``500``, ``403``, ``truncate`` (half the body, then close);
* ``cut:N`` -- only the first N body bytes, then close;
* ``short`` -- ``Content-Length`` half the body's length, the whole body sent (connection kept);
* ``long`` -- ``Content-Length`` 100 more than the body, 100 junk bytes after it (connection kept);
* ``200`` -- status 200 instead of 206, ``Content-Range`` kept (a proxy relabelling the answer);
* ``200-bare`` -- status 200 and no ``Content-Range`` for a partial body;
* ``whole`` -- ``Range`` ignored for this GET (200 and the whole object);
* ``total`` -- a ``Content-Range`` total 1000 bytes too large.
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
        self.faults: deque[str] = deque()  # "reset", "truncate", "500", "403": consumed one per GET
        self.ignore_range = False
        self.methods: Counter[str] = Counter()
        self.ranges: list[tuple[str, str | None]] = []
        self.bytes_sent = 0
        self.connections: set[int] = set()  # client ports seen: one per TCP connection
        self.agents: list[str | None] = []  # User-Agent of each GET
        self.signed = 0
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

            def do_HEAD(self) -> None:
                with server._lock:
                    server.methods["HEAD"] += 1
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                name = parts.path.removeprefix("/o/")
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                with server._lock:
                    server.methods["GET"] += 1
                    server.connections.add(self.client_address[1])
                    server.ranges.append((name, self.headers.get("Range")))
                    server.agents.append(self.headers.get("User-Agent"))
                    fault = server.faults.popleft() if server.faults else None
                faults = set((fault or "").split("+"))
                cut = next((int(f[4:]) for f in faults if f.startswith("cut:")), None)
                if "reset" in faults:
                    sock = self.connection
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                    self.close_connection = True
                    return
                if "500" in faults:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if "403" in faults or query.get("sig") != server.signature(name, query.get("expires", "")):
                    self._refuse(403, "SignatureDoesNotMatch")
                    return
                if float(query.get("expires", "0")) < time.time():
                    self._refuse(403, "Request has expired")
                    return
                data = server.blobs.get(name)
                if data is None:
                    self._refuse(404, "NoSuchKey")
                    return
                etag = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
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
                length = len(body) // 2 if "short" in faults else len(body) + 100 if "long" in faults else len(body)
                self.send_header("Content-Length", str(length))
                self.send_header("ETag", etag)
                self.end_headers()
                payload = body + bytes(range(100)) if "long" in faults else body
                if "truncate" in faults:
                    cut = len(body) // 2
                if cut is not None:
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    with server._lock:
                        server.bytes_sent += len(payload[:cut])
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(payload)
                with server._lock:
                    server.bytes_sent += len(payload)

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
        self._httpd.shutdown()
        self._httpd.server_close()
