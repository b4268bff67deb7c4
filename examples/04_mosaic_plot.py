"""Mosaic the slices of a grouped run with xarray and plot them, without downloading any file.

    python examples/04_mosaic_plot.py [OUT.png]

Runs against an embedded emulator unless FUSION_PLATFORM_API_URL is set (see _platform.py).
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")  # write a file; no display needed
import matplotlib.pyplot as plt
from _platform import platform, region_file

import fusion_stac
from fusion_stac.xarray import open_mosaic

out = sys.argv[1] if len(sys.argv) > 1 else "thames_mosaic.png"

with platform():
    client = fusion_stac.login()
    org = client.organisation()
    thames = client.create_data(org.id, "Thames", [region_file("thames")])
    process = (client.new_process(org.id, "Elevation", "Thames 100 m").with_input(1, thames)
               .with_option("resolution", 100).create())
    client.execute(org.id, process.id, wait=True)

    # One lazy DataArray over every slice of the latest run; slices in another UTM zone are warped
    # onto the grid of the majority. Nothing is read until values are needed.
    mosaic = open_mosaic(client, process=process)
    epsg = mosaic.odc.crs.epsg
    print(f"mosaic of {mosaic.attrs['fusion:slices']} slices: {mosaic.sizes['x']} x {mosaic.sizes['y']} pixels, "
          f"{mosaic.dtype}, EPSG:{epsg}")

    # Or a window of it, on another grid: 250 m pixels over the estuary, in British National Grid.
    estuary = open_mosaic(client, process=process, bbox=(0.3, 51.42, 0.9, 51.56), crs="EPSG:27700",
                          resolution=250)
    heights = estuary.sel(band=estuary.band[0]).where(lambda v: v != v.attrs.get("_FillValue"))
    print(f"estuary: {heights.sizes['x']} x {heights.sizes['y']} pixels, mean {float(heights.mean()):.0f} m")

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), layout="constrained")
    whole = mosaic.isel(band=0)
    whole.where(whole != mosaic.attrs["_FillValue"]).plot.imshow(ax=top, cmap="terrain", center=False,
                                                               cbar_kwargs={"label": "elevation (m)"})
    top.set_title(f"{process.name}: {mosaic.attrs['fusion:slices']} slices, EPSG:{epsg}")
    heights.plot.imshow(ax=bottom, cmap="terrain", center=False, cbar_kwargs={"label": "elevation (m)"})
    bottom.set_title("the estuary at 250 m in EPSG:27700")
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")
