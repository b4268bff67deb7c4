"""GDAL and the emulator's S3-style signed URLs behind a redirect (what an asset gateway does).

GDAL's ``/vsicurl/`` follows a redirect and then reads the target directly, but it recognises an
S3-style signed target (``X-Amz-Signature``, with ``X-Amz-Date`` + ``X-Amz-Expires``), reuses it while it
is valid and goes back to the original URL once it has expired: a long read through a redirecting URL
never meets an expired signature (GDAL's ``cpl_vsil_curl.cpp``, ``bS3LikeRedirect``).
"""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ._helpers import ORG, Api


def _tiled_geotiff(path: Path) -> np.ndarray:
    from rasterio.transform import from_origin

    data = (np.arange(512 * 512, dtype="uint32").reshape(512, 512) % 60000).astype("uint16")
    with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=1, dtype="uint16",
                       crs="EPSG:32630", transform=from_origin(500000, 6000000, 10, 10), tiled=True,
                       blockxsize=256, blockysize=256) as dst:
        dst.write(data, 1)
    return data


class _Redirector(http.server.ThreadingHTTPServer):
    """``GET /<name>``: 302 to a freshly signed download URL of one file (counted); anything else 404."""

    def __init__(self, name: str, sign: Any) -> None:
        self.name = name
        self.sign = sign
        self.redirects = 0
        super().__init__(("127.0.0.1", 0), _RedirectHandler)


class _RedirectHandler(http.server.BaseHTTPRequestHandler):
    server: _Redirector

    def do_GET(self) -> None:
        if self.path != f"/{self.server.name}":  # sidecar files (.ovr, .aux.xml, ...)
            self.send_response(404)
        else:
            self.server.redirects += 1
            self.send_response(302)
            self.send_header("Location", self.server.sign())
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args: Any) -> None:
        pass


#: GDAL reuses a signed redirect target only when it is valid for more than 10 s (by the server's Date).
LIFETIME = 12


@pytest.fixture
def short_lived(emulator: Any) -> Iterator[None]:
    emulator.configure(url_lifetime=LIFETIME)
    try:
        yield
    finally:
        emulator.configure(url_lifetime=3600)


def test_gdal_goes_back_to_the_redirecting_url_when_the_signed_target_expires(
        emulator: Any, api: Api, tmp_path: Path, short_lived: None) -> None:
    data = _tiled_geotiff(tmp_path / "tiled.tif")
    data_id, (file_id,) = api.create_data(ORG, "Tiled", [("tiled.tif", "GeoTIFF", (tmp_path / "tiled.tif").read_bytes())])
    path = f"/organisations/{ORG}/data/{data_id}/download_file/{file_id}"
    name = f"{uuid.uuid4().hex}.tif"  # GDAL caches by URL: a name of its own
    server = _Redirector(name, lambda: api.ok("GET", path)["extras"]["url"])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        emulator.reset_stats()
        url = f"/vsicurl/http://127.0.0.1:{server.server_address[1]}/{name}"
        with rasterio.Env(CPL_VSIL_CURL_USE_HEAD="NO", GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR",
                          GDAL_HTTP_MAX_RETRY="0"), rasterio.open(url) as src:
            first = src.read(1, window=Window(0, 0, 256, 256))
            assert server.redirects == 1  # the signed target is used directly while it is valid
            time.sleep(LIFETIME + 1.5)  # the signed target has expired
            last = src.read(1, window=Window(256, 256, 256, 256))
    finally:
        server.shutdown()
        server.server_close()
    assert np.array_equal(first, data[:256, :256]) and np.array_equal(last, data[256:, 256:])
    assert server.redirects == 2  # GDAL asked the redirecting URL again rather than reuse the expired target
    stats = emulator.stats()
    assert stats["storage_requests"] >= 2 and "403" not in stats["statuses"], stats
