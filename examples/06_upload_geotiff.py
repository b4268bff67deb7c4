"""Upload a local GeoTIFF and see it as STAC: projection, raster bands and statistics from the platform.

    python examples/06_upload_geotiff.py

Runs against an embedded emulator unless FUSION_PLATFORM_API_URL is set (see _platform.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import fsspec
import numpy as np
import rasterio
from _platform import platform
from rasterio.transform import from_origin

import fusion_stac

with platform(), tempfile.TemporaryDirectory() as tmp:
    # A small GeoTIFF of our own: 250 x 200 pixels of 20 m near Edinburgh (UTM 30N), with nodata.
    local = Path(tmp) / "ndvi.tif"
    y, x = np.mgrid[0:200, 0:250]
    ndvi = (np.sin(x / 25.0) * np.cos(y / 30.0)).astype("float32")
    ndvi[:10, :10] = -9999
    with rasterio.open(local, "w", driver="GTiff", width=250, height=200, count=1, dtype="float32",
                       crs="EPSG:32630", transform=from_origin(480000, 6200000, 20, 20), nodata=-9999,
                       tiled=True, blockxsize=128, blockysize=128, compress="deflate") as dst:
        dst.write(ndvi, 1)
        dst.set_band_description(1, "ndvi")

    client = fusion_stac.login()
    org = client.organisation()

    # Upload with fsspec: a new data item named "NDVI sample"; returns once the platform analysed it.
    fs = fsspec.filesystem("fusion")
    fs.put(str(local), f"{org.name}/uploads/NDVI sample/ndvi.tif")
    print(f"uploaded {local.name} to fusion://{org.name}/uploads/NDVI sample/")

    # The upload as STAC: a Collection with one Item, its asset a fusion:// href any reader can open.
    collection = fusion_stac.open_catalog(client, f"fusion://{org.name}/uploads/NDVI sample")
    item = next(collection.get_items())
    asset = item.assets["data"]
    print(f"item {item.id}: bbox {[round(v, 4) for v in item.bbox]}")
    print(f"  proj:code {item.properties['proj:code']}, proj:shape {asset.extra_fields['proj:shape']}")
    print(f"  proj:transform {asset.extra_fields['proj:transform'][:6]}")
    band = asset.extra_fields["raster:bands"][0]
    stats = band["statistics"]
    print(f"  raster: {band['data_type']}, nodata {band['nodata']}, "
          f"min {stats['minimum']:.3f}, max {stats['maximum']:.3f}, mean {stats['mean']:.3f}")
    print(f"  file:size {asset.extra_fields['file:size']} bytes; href {asset.href}")

    # Round trip: the asset reads back as the same pixels.
    with fsspec.open(asset.href, "rb") as f, rasterio.open(f) as src:
        assert np.array_equal(src.read(1), ndvi), "the platform kept the pixels"
        print(f"  read back through {asset.href[:9]}...: identical pixels")
