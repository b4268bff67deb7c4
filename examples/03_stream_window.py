"""Stream a window of a GeoTIFF through fsspec: only the bytes of the window travel.

    python examples/03_stream_window.py

Runs against an embedded emulator unless FUSION_PLATFORM_API_URL is set (see _platform.py).
"""

from __future__ import annotations

import fsspec
import rasterio
from _platform import platform, region_file
from rasterio.windows import Window

import fusion_stac
from fusion_stac.fs import rasterio_opener

with platform():
    client = fusion_stac.login()
    org = client.organisation()
    region = client.create_data(org.id, "Central Belt", [region_file("central_belt")])
    process = (client.new_process(org.id, "Elevation", "Central Belt 30 m").with_input(1, region)
               .with_option("resolution", 30).create())
    client.execute(org.id, process.id, wait=True)

    # "fusion" is an fsspec protocol: credentials come from the environment, like s3:// or gs://.
    fs = fsspec.filesystem("fusion")
    tifs = sorted(p for p in fs.find(f"{org.name}/processes/{process.name}") if p.endswith(".tif"))
    path = tifs[0]
    size = fs.size(path)
    print(f"{len(tifs)} slices; the first is fusion://{path} ({size / 2**20:.1f} MiB)")

    fs.reset_stats()
    # rasterio reads through the file system; GDAL's multi-range reads become parallel range requests.
    with rasterio.open(f"fusion://{path}", opener=rasterio_opener(fs)) as src:
        window = Window(col_off=src.width // 2, row_off=src.height // 2, width=128, height=128)
        block = src.read(1, window=window, masked=True)
        print(f"window {window.width} x {window.height} at ({window.col_off}, {window.row_off}) of "
              f"{src.width} x {src.height}: {block.min():.0f} to {block.max():.0f} m")
    stats = fs.stats
    print(f"read {stats['bytes'] / 2**10:.0f} KiB in {stats['requests']} range request(s) "
          f"({stats['bytes'] / size:.0%} of the file), {stats['urls_signed']} URL(s) signed")

    # Plain file objects work too: the first bytes of the file are a TIFF header.
    with fsspec.open(f"fusion://{path}", "rb") as f:
        print(f"header: {f.read(4)!r}")
