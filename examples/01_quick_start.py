"""Quick start: log in, upload a region, run a service over it, read the result.

    python examples/01_quick_start.py

Runs against an embedded emulator unless FUSION_PLATFORM_API_URL is set (see _platform.py).
"""

from __future__ import annotations

import rasterio
from _platform import platform, region_file

import fusion_stac

with platform():
    client = fusion_stac.login()  # FUSION_PLATFORM_* variables, netrc or `fusion-stac login`
    org = client.organisation()  # the organisation you used last
    print(f"Logged in as {client.user.email} to {org.name!r}")

    # Upload a region; the call returns once the platform has analysed the file.
    region = client.create_data(org.id, "Glasgow", [region_file("glasgow")])
    (analysed,) = client.list_files(org.id, region.id)
    print(f"Uploaded {region.name!r}: {analysed.file_type}, {analysed.crs}, bounds {analysed.bounds}")

    # A process is a service with your inputs and options; creating it prices it.
    process = (
        client.new_process(org.id, "Elevation", "Glasgow elevation")
        .with_input(1, region)
        .with_option("resolution", 100)  # checked against the option's type and range here
        .create()
    )
    print(f"Process {process.name!r} costs {process.price} credits per run")
    client.execute(org.id, process.id, wait=True, progress=lambda f: print(f"  {f:4.0%} done", end="\r"))
    print()

    # Its output is a file system path like any other: read it with rasterio through fusion://.
    fs = fusion_stac.FusionFileSystem(client=client)
    tif = next(p for p in fs.find(f"{org.name}/processes/{process.name}") if p.endswith(".tif"))
    with fs.open(tif) as f, rasterio.open(f) as src:
        band = src.read(1, masked=True)
        print(f"fusion://{tif}")
        print(f"  {src.width} x {src.height} pixels of {src.res[0]:g} m in {src.crs}")
        print(f"  elevation {band.min():.0f} to {band.max():.0f} m, mean {band.mean():.0f} m")
