"""A time series of a scheduled process: every run becomes a time step of one lazy DataArray.

    python examples/05_timeseries.py

Runs against an embedded emulator unless FUSION_PLATFORM_API_URL is set (see _platform.py); there a
"day" between runs lasts two seconds, so the example takes a few seconds, not a few days.
"""

from __future__ import annotations

import os
import time

from _platform import platform, region_file

import fusion_stac
from fusion_stac.xarray import open_timeseries

RUNS = 3
CLOUD_CLASSES = (6, 9)  # thick and thin cloud in the classification's legend

with platform():
    client = fusion_stac.login()
    org = client.organisation()
    region = client.create_data(org.id, "Glasgow", [region_file("glasgow")])
    emulated = "127.0.0.1" in os.environ["FUSION_PLATFORM_API_URL"]
    gap = {"seconds": 2} if emulated else {"days": 1}
    process = (
        client.new_process(org.id, "Demo: Sentinel-2 Cloud Classification", "Glasgow clouds")
        .with_input(1, region)
        .with_fields(run_type="run_schedule", repeat_count=RUNS, repeat_gap=gap)  # from now on
        .create()
    )
    print(f"{process.name!r}: {RUNS} runs, one every {gap}, {process.price} credits each")
    client.execute(org.id, process.id)

    # Wait until every scheduled run has finished.
    while True:
        runs = list(client.iter_executions(org.id, process.id))
        if len(runs) >= RUNS and all(e.is_complete for e in runs):
            break
        time.sleep(1)

    # One DataArray (time, band, y, x): each run's output is a time step, on one common grid.
    series = open_timeseries(client, process)
    print(f"{series.sizes['time']} time steps of {series.sizes['x']} x {series.sizes['y']} pixels, {series.dtype}")
    cloudy = series.isel(band=0).isin(CLOUD_CLASSES).mean(dim=("y", "x"))
    for when, fraction in zip(series.time.values, cloudy.values, strict=True):
        print(f"  {str(when)[:19]}  cloud cover {fraction:6.1%}")
