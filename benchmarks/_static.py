"""A static file server for benchmarks: nginx when it can be had, else a small Python server (said so).

:func:`start_static_server` serves one directory on a loopback port and counts what it serves (requests,
body bytes sent, the ``Range`` asked for each request) from its access log. nginx is found on ``PATH``
(or ``/usr/sbin``); when it is missing and we are root, ``apt-get install -y nginx`` installs it (as a user
or CI would); otherwise a clear message is printed and a threaded Python server with single-range support
stands in (``server.kind`` says which one runs).
"""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

LOG_FORMAT = '$request_method "$http_range" $status $body_bytes_sent $request_time'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_nginx(install: bool = True) -> tuple[str | None, str]:
    """(path to nginx or None, a sentence on how it was found)."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                            if os.access(p, os.X_OK)), None)
    if found:
        return found, f"nginx found at {found}"
    if not install:
        return None, "nginx not found"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None, ("nginx not found and cannot be installed here (needs root and apt-get): "
                      "install it (apt-get install nginx) for the static-server figures")
    print("nginx not found: apt-get install -y nginx ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "install", "-y", "-q", "nginx"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "nginx"]):
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if command[1] == "install" and proc.returncode == 0:
            break
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found:
        return found, f"nginx installed with apt-get ({found})"
    return None, "apt-get install nginx failed"


class StaticServer:
    """Common interface: ``url``, ``kind``, ``reset()``, ``counts()`` -> requests, bytes, log lines."""

    kind = "?"
    url = ""

    def reset(self) -> None:
        raise NotImplementedError

    def counts(self) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class NginxServer(StaticServer):
    """nginx in the foreground (``daemon off``), a prefix of its own, one loopback port."""

    kind = "nginx"

    def __init__(self, binary: str, root: Path) -> None:
        self.prefix = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self.log = self.prefix / "access.log"
        self._offset = 0
        user = "user root root;\n" if os.geteuid() == 0 else ""  # workers must read files under /tmp/<0700>
        last_error = ""
        for _ in range(5):  # a free port may be taken between probing and binding
            port = _free_port()
            conf = self.prefix / "nginx.conf"
            # tcp_nopush off: nginx's own default. With it on (Debian's nginx.conf), a 380 kB range asked on
            # a keep-alive connection right after a 64 kB one waits ~42 ms for its tail (TCP_CORK left set):
            # measured every time with our Python client, never with curl's (GDAL). Object stores do not cork.
            conf.write_text(
                f"{user}worker_processes 1;\ndaemon off;\nmaster_process on;\npid {self.prefix}/nginx.pid;\n"
                f"error_log {self.prefix}/error.log warn;\nevents {{ worker_connections 256; }}\n"
                "http {\n  default_type application/octet-stream;\n  sendfile on;\n  tcp_nopush off;\n"
                f"  keepalive_requests 10000;\n  log_format bench '{LOG_FORMAT}';\n"
                f"  access_log {self.log} bench;\n"
                f"  client_body_temp_path {self.prefix}/body; proxy_temp_path {self.prefix}/proxy;\n"
                f"  fastcgi_temp_path {self.prefix}/fcgi; uwsgi_temp_path {self.prefix}/uwsgi;\n"
                f"  scgi_temp_path {self.prefix}/scgi;\n"
                f"  server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n}}\n")
            self.proc = subprocess.Popen([binary, "-p", str(self.prefix), "-c", str(conf)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if self._wait_listening(port):
                self.url = f"http://127.0.0.1:{port}"
                return
            self.proc.kill()
            last_error = (self.proc.communicate(timeout=10)[1] or b"").decode(errors="replace")
        raise RuntimeError(f"nginx did not start: {last_error}")

    def _wait_listening(self, port: int) -> bool:
        for _ in range(200):
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.025)
        return False

    def _lines(self) -> list[str]:
        if not self.log.exists():
            return []
        with open(self.log, "rb") as f:
            f.seek(self._offset)
            return f.read().decode(errors="replace").splitlines()

    def reset(self) -> None:
        self._offset = self.log.stat().st_size if self.log.exists() else 0

    def counts(self) -> dict[str, Any]:
        lines = self._lines()
        for _ in range(40):  # an aborted response is logged once nginx notices: wait until the log is still
            time.sleep(0.025)
            again = self._lines()
            if len(again) == len(lines):
                break
            lines = again
        total = sum(int(line.split()[-2]) for line in lines if line.split()[-2].isdigit())
        return {"requests": len(lines), "bytes": total, "log": lines}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.prefix, ignore_errors=True)


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """GET/HEAD with a single ``Range`` (206/416), keep-alive, counted."""

    protocol_version = "HTTP/1.1"
    server: _CountingHTTPServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        path = Path(self.translate_path(self.path.split("?", 1)[0]))
        if not path.is_file():
            self.send_error(404)
            self.server.note(self.command, self.headers.get("Range"), 404, 0)
            return
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        header = self.headers.get("Range")
        if header and header.startswith("bytes=") and "," not in header:
            first, _, last = header[6:].partition("-")
            if first:
                start, end = int(first), min(int(last), size - 1) if last else size - 1
            elif last:
                start = max(size - int(last), 0)
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.server.note(self.command, header, 416, 0)
                return
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        sent = 0
        if body:
            with open(path, "rb") as f:
                f.seek(start)
                try:
                    while sent < length:
                        chunk = f.read(min(1 << 20, length - sent))
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        sent += len(chunk)
                except OSError:
                    self.close_connection = True
        self.server.note(self.command, header, status, sent)


class _CountingHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lines: list[str] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), lambda *a: _RangeHandler(*a, directory=str(root)))

    def note(self, method: str, range_: str | None, status: int, sent: int) -> None:
        with self.lock:
            self.lines.append(f'{method} "{range_ or "-"}" {status} {sent} -')


class PythonStaticServer(StaticServer):
    """The fallback: ``http.server`` with single ranges, in a thread of this process."""

    kind = "python-http.server"

    def __init__(self, root: Path) -> None:
        self.server = _CountingHTTPServer(root)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def reset(self) -> None:
        with self.server.lock:
            self.server.lines.clear()

    def counts(self) -> dict[str, Any]:
        time.sleep(0.05)
        with self.server.lock:
            lines = list(self.server.lines)
        return {"requests": len(lines), "bytes": sum(int(line.split()[-2]) for line in lines), "log": lines}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_static_server(root: Path, install: bool = True) -> StaticServer:
    """nginx serving ``root`` (installed when missing and possible), else the Python fallback (said so)."""
    binary, how = find_nginx(install)
    if binary is not None:
        try:
            server: StaticServer = NginxServer(binary, root)
            print(f"static server: {how}, listening on {server.url}", flush=True)
            return server
        except (OSError, RuntimeError) as exc:
            how = f"nginx failed to start ({exc})"
    print(f"static server: {how}; FALLING BACK to a Python http.server (slower than nginx: the static "
          "figures are not comparable with the design notes)", file=sys.stderr, flush=True)
    server = PythonStaticServer(root)
    print(f"static server: python http.server on {server.url} (nginx unavailable)", flush=True)
    return server
