"""The static file server of ``benchmarks/mosaic.py``: nginx when present, else the Python fallback; both
answer single ranges and count requests and body bytes from their access log."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _static import NginxServer, PythonStaticServer, StaticServer, find_nginx

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def _exercise(server: StaticServer) -> None:
    server.reset()
    whole = requests.get(f"{server.url}/blob.bin", timeout=30)
    part = requests.get(f"{server.url}/blob.bin", headers={"Range": "bytes=1000-1999"}, timeout=30)
    tail = requests.get(f"{server.url}/blob.bin", headers={"Range": "bytes=-10"}, timeout=30)
    assert whole.status_code == 200 and whole.content == PAYLOAD
    assert part.status_code == 206 and part.content == PAYLOAD[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(PAYLOAD)}"
    assert tail.content == PAYLOAD[-10:]
    counts = server.counts()
    assert counts["requests"] == 3
    assert counts["bytes"] == len(PAYLOAD) + 1000 + 10
    assert '"bytes=1000-1999" 206 1000' in counts["log"][1]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "blob.bin").write_bytes(PAYLOAD)
    tmp_path.chmod(0o755)
    return tmp_path


def test_python_fallback_serves_ranges_and_counts(root: Path) -> None:
    server = PythonStaticServer(root)
    try:
        _exercise(server)
    finally:
        server.close()


def test_nginx_serves_ranges_and_counts(root: Path) -> None:
    binary, how = find_nginx(install=False)
    # scripts/test.sh installs nginx when it is missing (Debian's package): a machine without it fails here
    assert binary is not None, f"nginx is needed by benchmarks/mosaic.py and this test: {how}"
    server = NginxServer(binary, root)
    try:
        _exercise(server)
    finally:
        server.close()
    assert server.proc.poll() is not None  # stopped
