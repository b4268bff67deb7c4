"""A client that drops a download mid-body stops the send, and only what was sent is counted (as nginx/S3).

GDAL's ``/vsicurl/`` with ``CPL_VSIL_CURL_USE_HEAD=NO`` (presigned URLs refuse HEAD) sizes a file with a plain
GET and aborts it as soon as the headers arrived. A static server or a cloud store then sends what the socket
buffers take before the client's reset (nginx logs a few MB as ``$body_bytes_sent`` on loopback), not the
object: the emulator used to count the whole ``Content-Length`` of every aborted GET, so a GDAL VRT read at
1/8 of 16 COGs appeared to cost 151 MB against nginx's few MB, and its figures could not be compared.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_origin

from fusion_stac.emulator.storage import CHUNK_SIZE, send_file_body

from ._helpers import ORG, Api

#: Loopback socket buffers a reset connection may already have taken (send + receive buffers, autotuned).
SOCKET_SLACK = 16 * 1024 * 1024
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "CPL_VSIL_CURL_USE_HEAD": "NO", "VSI_CACHE": "TRUE",
            "GDAL_HTTP_MULTIRANGE": "YES", "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
            "GDAL_INGESTED_BYTES_AT_OPEN": "32768"}


def _big_tiled_geotiff(path: Path) -> np.ndarray:
    """48 MiB of uncompressed float32, 512-px tiles, internal overviews 2/4/8 (a COG's layout, no compression)."""
    height, width = 3072, 4096
    data = np.arange(height * width, dtype="float32").reshape(height, width) % 1000
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="float32",
                       crs="EPSG:32630", transform=from_origin(300000, 5790000, 30, 30), tiled=True,
                       blockxsize=512, blockysize=512) as dst:
        dst.write(data, 1)
        dst.build_overviews([2, 4, 8], Resampling.nearest)
    return data


def test_a_gdal_vrt_overview_read_costs_what_it_reads_not_the_objects_it_probes(
        emulator: Any, api: Api, tmp_path: Path) -> None:
    tif = tmp_path / "big.tif"
    _big_tiled_geotiff(tif)
    size = tif.stat().st_size
    data_id, (file_id,) = api.create_data(ORG, "Big", [("big.tif", "GeoTIFF", tif.read_bytes())])
    url = api.ok("GET", f"/organisations/{ORG}/data/{data_id}/download_file/{file_id}")["extras"]["url"]
    vrt = tmp_path / "mosaic.vrt"
    source = url.replace("&", "&amp;")
    vrt.write_text(
        '<VRTDataset rasterXSize="4096" rasterYSize="3072"><SRS>EPSG:32630</SRS>'
        '<GeoTransform>300000,30,0,5790000,0,-30</GeoTransform><VRTRasterBand dataType="Float32" band="1">'
        f'<ComplexSource><SourceFilename relativeToVRT="0">/vsicurl/{source}</SourceFilename>'
        '<SourceBand>1</SourceBand><SourceProperties RasterXSize="4096" RasterYSize="3072" DataType="Float32" '
        'BlockXSize="512" BlockYSize="512"/><SrcRect xOff="0" yOff="0" xSize="4096" ySize="3072"/>'
        '<DstRect xOff="0" yOff="0" xSize="4096" ySize="3072"/></ComplexSource></VRTRasterBand></VRTDataset>')
    with rasterio.open(tif) as local:
        expected = local.read(1, out_shape=(3072 // 8, 4096 // 8))

    emulator.reset_stats()
    with rasterio.Env(**GDAL_ENV), rasterio.open(vrt) as src:
        got = src.read(1, out_shape=(3072 // 8, 4096 // 8))
    stats = emulator.stats()

    assert np.array_equal(got, expected)
    assert stats["statuses"].get("200") == 1, stats  # the size probe: a GET without Range, aborted
    # The overview read itself needs about 1/64 of the file (the 1/8 overview and the headers).
    needed = size // 64 + 1024 * 1024
    served = stats["storage_bytes_served"]
    assert served <= needed + SOCKET_SLACK, f"{served / 1e6:.1f} MB served for a {size / 1e6:.1f} MB object"
    assert served < size // 2


def test_a_body_sent_through_asgi_stops_when_the_client_is_gone(tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(8 * CHUNK_SIZE))
    sent: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(len(message.get("body", b"")))

    fd = os.open(blob, os.O_RDONLY)
    asyncio.run(send_file_body(send, fd, 0, 8 * CHUNK_SIZE, "blob", gone=lambda: len(sent) >= 2))
    assert sent == [CHUNK_SIZE, CHUNK_SIZE]
    with pytest.raises(OSError):
        os.fstat(fd)  # closed all the same
