"""Storage throughput: the emulator's pre-signed download URLs against a plain static file server.

Serves the same ~96 MiB file from both and measures, in one run, side by side:

* whole-file GET throughput (one request per run), and
* 1 MiB ``Range`` GET throughput (64 random aligned ranges per run over one keep-alive connection),

taking the median of several interleaved runs. The static server is nginx (``sendfile on``) when the
``nginx`` binary is available, started on a free loopback port with a temporary configuration; otherwise
Python's ``ThreadingHTTPServer`` with a small Range-capable handler. The client is ``http.client`` reading
into a reused buffer, so that client overhead is the same for both servers and small.

The last line is ``SUMMARY whole_ratio_static=<x> range_ratio_static=<y>`` (emulator / static throughput).
Run: ``python benchmarks/storage.py [--size-mib 96] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from traversal import EmulatorProcess

from fusion_stac.emulator import Emulator, services

MIB = 1024 * 1024
RANGE_SIZE = MIB
RANGES_PER_RUN = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_file(directory: Path, size_mib: int) -> Path:
    path = directory / "payload.bin"
    rng = random.Random(1234)
    with path.open("wb") as handle:
        for _ in range(size_mib):
            handle.write(rng.randbytes(MIB))
    return path


# -- static servers -----------------------------------------------------------------------------------


class StaticServer:
    """A static file server over ``root`` on loopback: nginx if available, else Python's."""

    def __init__(self, root: Path, work: Path) -> None:
        self.root = root
        self.work = work
        self.port = free_port()
        self.kind = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._httpd: ThreadingHTTPServer | None = None

    def __enter__(self) -> StaticServer:
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
        if nginx:
            self._start_nginx(nginx)
        else:
            self._start_python()
        return self

    def _start_nginx(self, binary: str) -> None:
        prefix = self.work / "nginx"
        (prefix / "logs").mkdir(parents=True)
        user = "user root root;\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else ""
        conf = prefix / "nginx.conf"
        conf.write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log;\n"
            "events { worker_connections 64; }\n"
            "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000;\n"
            f"  client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n"
            f"  fastcgi_temp_path {prefix}/fastcgi;\n  uwsgi_temp_path {prefix}/uwsgi;\n"
            f"  scgi_temp_path {prefix}/scgi;\n"
            f"  server {{ listen 127.0.0.1:{self.port}; root {self.root}; }}\n}}\n"
        )
        self._process = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_listening()
        version = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False).stderr.strip()
        self.kind = f"nginx ({version.split('/')[-1]}, sendfile on)"

    def _start_python(self) -> None:
        root = self.root

        class Handler(RangeHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self._wait_listening()
        self.kind = "python ThreadingHTTPServer (nginx not available)"

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                error = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"nginx exited: {error}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("static server did not start")

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


class RangeHandler(SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler plus single byte ranges (the stdlib handler ignores Range)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        start, end = 0, size - 1
        header = self.headers.get("Range")
        status = 200
        if header and header.startswith("bytes="):
            first, _, last = header[6:].partition("-")
            start, end, status = int(first), min(int(last), size - 1) if last else size - 1, 206
        self.send_response(status)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        with path.open("rb") as handle:
            os.sendfile(self.wfile.fileno(), handle.fileno(), start, end - start + 1) if hasattr(os, "sendfile") \
                else self.wfile.write(handle.read())


# -- client ---------------------------------------------------------------------------------------------


class Client:
    """One keep-alive HTTP/1.1 connection reading bodies into a reused buffer."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.buffer = memoryview(bytearray(4 * MIB))

    def get(self, headers: dict[str, str] | None = None) -> int:
        self.connection.request("GET", self.target, headers=headers or {})
        response = self.connection.getresponse()
        if response.status not in (200, 206):
            raise RuntimeError(f"unexpected status {response.status}: {response.read()[:200]!r}")
        total = 0
        while True:
            count = response.readinto(self.buffer)
            if not count:
                break
            total += count
        return total

    def close(self) -> None:
        self.connection.close()


def whole_file(url: str, size: int) -> float:
    client = Client(url)
    try:
        started = time.perf_counter()
        received = client.get()
        elapsed = time.perf_counter() - started
    finally:
        client.close()
    assert received == size, (received, size)
    return size / elapsed / MIB


def ranges(url: str, size: int, seed: int) -> float:
    rng = random.Random(seed)
    offsets = [rng.randrange(0, size // RANGE_SIZE) * RANGE_SIZE for _ in range(RANGES_PER_RUN)]
    client = Client(url)
    try:
        started = time.perf_counter()
        for offset in offsets:
            got = client.get({"Range": f"bytes={offset}-{offset + RANGE_SIZE - 1}"})
            assert got == RANGE_SIZE
        elapsed = time.perf_counter() - started
    finally:
        client.close()
    return RANGES_PER_RUN * RANGE_SIZE / elapsed / MIB


# -- main -------------------------------------------------------------------------------------------------


def emulator_url(emu: Any, payload: Path) -> str:
    session = requests.Session()
    login = session.post(f"{emu.url}/users/login",
                         json={"User": {"email": "me@org.com", "user_id": None, "password": "MyPassword123!"}})
    login.raise_for_status()
    session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    org = services.EXAMPLE_ORGANISATION_ID
    data = session.post(f"{emu.url}/organisations/{org}/data", json={"Data[name]": "Benchmark"}).json()["model"]
    added = session.post(f"{emu.url}/organisations/{org}/data/{data['id']}/add_file",
                         json={"Data": {"name": payload.name, "file_type": "Other"}}).json()["extras"]
    with payload.open("rb") as handle:
        requests.put(added["url"], data=handle).raise_for_status()
    download = session.get(f"{emu.url}/organisations/{org}/data/{data['id']}/download_file/{added['file']}")
    download.raise_for_status()
    return str(download.json()["extras"]["url"])


def median_of(runs: int, measure: Callable[[int], float]) -> tuple[float, list[float]]:
    values = [measure(i) for i in range(runs)]
    return statistics.median(values), values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=96)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--in-process", action="store_true",
                        help="run the emulator in this process (it then shares the GIL with the measuring client)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fusion-storage-bench-"))
    try:
        public = work / "public"
        public.mkdir()
        os.chmod(work, 0o755)
        payload = make_file(public, args.size_mib)
        size = payload.stat().st_size
        # Like nginx, the emulator gets a process of its own: in this one it would share the GIL with the
        # measuring client and be timed against a server starved by the client's own reads.
        settings: dict[str, Any] = {"data_dir": work / "emulator", "log_level": "error"}
        server: Any = Emulator(**settings) if args.in_process else EmulatorProcess(**settings)
        where = "in this process" if args.in_process else "in its own process"
        with server as emu, StaticServer(public, work) as static:
            emulated = emulator_url(emu, payload)
            plain = static.url(payload.name)
            for url in (emulated, plain):  # warm the page cache and both servers
                whole_file(url, size)
            emu.reset_stats()
            results: dict[str, dict[str, list[float]]] = {"emulator": {"whole": [], "range": []},
                                                          "static": {"whole": [], "range": []}}
            for run in range(args.runs):  # interleaved, so drifts in machine load hit both alike
                for name, url in (("emulator", emulated), ("static", plain)):
                    results[name]["whole"].append(whole_file(url, size))
                    results[name]["range"].append(ranges(url, size, seed=run))
            stats = emu.stats()
        print(f"file: {size / MIB:.0f} MiB, runs: {args.runs}, ranges per run: {RANGES_PER_RUN} x 1 MiB")
        print(f"static server: {static.kind}; emulator {where}")
        print(f"emulator requests: {stats['storage_requests']} storage, "
              f"{stats['storage_bytes_served'] / MIB:.0f} MiB served")
        print(f"{'':10} {'whole-file MiB/s':>18} {'1 MiB ranges MiB/s':>20}")
        medians = {}
        for name in ("emulator", "static"):
            whole = statistics.median(results[name]["whole"])
            ranged = statistics.median(results[name]["range"])
            medians[name] = (whole, ranged)
            print(f"{name:10} {whole:18.0f} {ranged:20.0f}   (runs: "
                  f"{', '.join(f'{v:.0f}' for v in results[name]['whole'])} / "
                  f"{', '.join(f'{v:.0f}' for v in results[name]['range'])})")
        whole_ratio = medians["emulator"][0] / medians["static"][0]
        range_ratio = medians["emulator"][1] / medians["static"][1]
        print(f"{'ratio':10} {whole_ratio:18.2f} {range_ratio:20.2f}")
        print(f"SUMMARY whole_ratio_static={whole_ratio:.2f} range_ratio_static={range_ratio:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
