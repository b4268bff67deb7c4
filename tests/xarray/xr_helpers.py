"""Local stand-ins for the engine tests: COG slices on disk, a presigned-URL storage server.

The server behaves like cloud storage behind presigned URLs: GET with one ``Range`` only, HEAD
refused, URLs carrying an expiry and an HMAC signature (403 once expired or tampered with), an
``ETag``; it counts requests per file and can be told to fail.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.io import MemoryFile

from fusion_stac.storage._broker import FileKey
from fusion_stac.xarray._source import RasterSource

ORG = "0d4f3c52-6a7b-4f0e-9d1a-1a2b3c4d5e6f"
SECRET = b"local-test-secret"


def sign_path(path: str, expires: float) -> str:
    msg = f"{path}:{expires:.3f}".encode()
    return hmac.new(SECRET, msg, hashlib.sha256).hexdigest()[:32]


class StorageServer:
    """A threaded presigned-URL file server over a directory (see module doc)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.failures: dict[str, list[int]] = {}  # file name -> statuses to answer next
        self.now_offset = 0.0  # seconds added to the clock (to expire URLs)
        self.seen: set[str] = set()  # signatures used so far
        self.revoked: set[str] = set()  # signatures answered with 403 (as if expired)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _empty(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self) -> None:
                self._empty(403)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                name = parts.path.lstrip("/")
                query = parse_qs(parts.query)
                with server.lock:
                    server.requests[name] = server.requests.get(name, 0) + 1
                    queued = server.failures.get(name)
                    status = queued.pop(0) if queued else None
                if status is not None:
                    self._empty(status)
                    return
                try:
                    expires = float(query["expires"][0])
                    sig = query["sig"][0]
                except (KeyError, ValueError):
                    self._empty(403)
                    return
                if (expires < time.time() + server.now_offset or sig in server.revoked
                        or not hmac.compare_digest(sig, sign_path(name, expires))):
                    self._empty(403)
                    return
                with server.lock:
                    server.seen.add(sig)
                path = server.root / name
                if not path.is_file():
                    self._empty(404)
                    return
                size = path.stat().st_size
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                start, end, status = 0, size - 1, 200
                if match:
                    start = int(match.group(1))
                    end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
                    status = 206
                    if start >= size:
                        self._empty(416)
                        return
                n = end - start + 1
                self.send_response(status)
                self.send_header("Content-Length", str(n))
                self.send_header("ETag", f'"{int(path.stat().st_mtime_ns)}"')
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
                self.end_headers()
                with open(path, "rb") as f:
                    f.seek(start)
                    data = f.read(n)
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    return
                with server.lock:
                    server.bytes[name] = server.bytes.get(name, 0) + n

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StorageServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.bytes.clear()
            self.failures.clear()
            self.now_offset = 0.0
            self.revoked.clear()

    def expire_issued(self) -> None:
        """Every URL used so far now answers 403, as an expired presigned URL does."""
        with self.lock:
            self.revoked |= self.seen

    def fail_next(self, name: str, *statuses: int) -> None:
        with self.lock:
            self.failures.setdefault(name, []).extend(statuses)


@dataclass(frozen=True)
class LocalSigner:
    """Signs ``{base}/{file_id}.tif`` URLs valid for ``lifetime`` seconds (picklable, no secret
    travels: the HMAC key is a module constant, as a platform's would live server-side)."""

    base_url: str
    lifetime: float = 3600.0
    counter_file: str | None = None  # appends a line per signing (counts across processes)

    def __call__(self, key: FileKey) -> tuple[str, float]:
        expires = time.time() + self.lifetime
        name = f"{key.file_id}.tif"
        if self.counter_file:
            with open(self.counter_file, "a") as f:
                f.write(f"{os.getpid()} {key.file_id}\n")
        return f"{self.base_url}/{name}?expires={expires:.3f}&sig={sign_path(name, expires)}", expires

    def __dask_tokenize__(self) -> Any:
        return ("LocalSigner", self.base_url, self.lifetime, self.counter_file)


def write_cog(path: Path, data: np.ndarray, transform: Affine, crs: str, nodata: float | None = None,
              blocksize: int = 64, overviews: bool = True) -> None:
    """A real COG (tiled, DEFLATE, internal overviews) written by GDAL's COG driver."""
    if data.ndim == 2:
        data = data[np.newaxis]
    count, height, width = data.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name,
                   crs=crs, transform=transform, nodata=nodata)
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(data)
        with mem.open() as src:
            rasterio.shutil.copy(src, path, driver="COG", compress="DEFLATE", blocksize=blocksize,
                                 overviews="AUTO" if overviews else "NONE", overview_resampling="nearest")


def source_for(path: Path, *, data_id: str | None = None, label: str | None = None,
               group_index: int | None = None, **attrs: Any) -> RasterSource:
    """The :class:`RasterSource` of a local COG, keyed by its file name (``{file_id}.tif``)."""
    file_id = path.stem
    with rasterio.open(path) as ds:
        return RasterSource(
            key=FileKey(ORG, data_id or str(uuid.uuid5(uuid.NAMESPACE_URL, file_id)), file_id),
            crs=ds.crs.to_string(),
            transform=tuple(ds.transform)[:6],  # type: ignore[arg-type]
            shape=(ds.height, ds.width),
            dtype=ds.dtypes[0],
            count=ds.count,
            nodata=ds.nodata,
            size=path.stat().st_size,
            cog=ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG",
            overviews=tuple(ds.overviews(1)),
            label=label or f"slice {group_index} ({file_id})",
            group_index=group_index,
            attrs=tuple(sorted(attrs.items())),
        )


def new_id() -> str:
    return str(uuid.uuid4())


def item_for(source: RasterSource, *, when: str = "2024-05-01T10:00:00Z", **props: Any) -> Any:
    """A STAC item shaped like the STAC view's (proj on item and asset, raster:bands, fusion: ids)."""
    import pystac
    from odc.geo.geom import BoundingBox

    box = BoundingBox(*source.geobox.extent.boundingbox.bbox, crs=source.crs).to_crs("EPSG:4326")
    geometry = {"type": "Polygon", "coordinates": [[[box.left, box.bottom], [box.right, box.bottom],
                                                    [box.right, box.top], [box.left, box.top],
                                                    [box.left, box.bottom]]]}
    properties = {
        "datetime": when, "start_datetime": when, "end_datetime": when, "proj:code": source.crs,
        "fusion:organisation_id": source.key.organisation_id, "fusion:data_id": source.key.data_id,
        "fusion:file_id": source.key.file_id, **props,
    }
    item = pystac.Item(source.key.file_id, geometry, list(box.bbox), None, properties)
    band: dict[str, Any] = {"data_type": source.dtype}
    if source.nodata is not None:
        band["nodata"] = "nan" if source.nodata != source.nodata else source.nodata
    item.add_asset("data", pystac.Asset(source.key.url, media_type="image/tiff; application=geotiff", roles=["data"],
                                        extra_fields={"proj:shape": list(source.shape),
                                                      "proj:transform": list(source.transform),
                                                      "raster:bands": [dict(band) for _ in range(source.count)],
                                                      "file:size": source.size}))
    return item


#: What a test platform hides of the machine's own credentials.
ENV_NAMES = ("FUSION_PLATFORM_API_URL", "FUSION_PLATFORM_EMAIL", "FUSION_PLATFORM_USER_ID",
             "FUSION_PLATFORM_PASSWORD", "FUSION_STAC_TOKEN_FILE", "NETRC")


@contextmanager
def isolated_credentials(tmp: Path) -> Iterator[None]:
    """No credentials from the environment, a token cache and an empty netrc under ``tmp``; restored after."""
    saved = {k: os.environ.get(k) for k in ENV_NAMES}
    for name in ENV_NAMES:
        os.environ.pop(name, None)
    os.environ["FUSION_STAC_TOKEN_FILE"] = str(tmp / "tokens.json")
    os.environ["NETRC"] = str(tmp / "no-netrc")
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
