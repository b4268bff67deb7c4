"""Cold start: what opening costs in a fresh process, against ``rasterio.open`` of a VRT of the same slices.

Claim: ``open_mosaic``, ``open_timeseries`` and ``xr.open_dataset(..., engine="fusion")`` cost no more
than ``rasterio.open`` of a VRT (over ``/vsicurl/`` signed URLs) in a fresh process, once the run's
metadata and the file's header are known (kept on disk by earlier processes): no thread is started and
nothing is waited for at open time. Every figure is one fresh Python process, imports (xarray, dask,
rasterio, fusion_stac.xarray) and login done before the clock; medians of ``--repeat``.

Run: ``python benchmarks/coldstart.py [--repeat 5]``. Ends
``SUMMARY vrt_ms=<> mosaic_ms=<> timeseries_ms=<> engine_ms=<> mosaic_api_requests=<>``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"


def _child(what: str, url: str, org: str, process: str, arg: str) -> int:
    import warnings

    warnings.simplefilter("ignore")
    import dask.array  # noqa: F401 - xarray imports it on the first DataArray: an import, not an open
    import rasterio
    import xarray as xr

    from fusion_stac.client import FusionClient
    from fusion_stac.xarray import open_mosaic, open_timeseries

    if os.environ.get("COLDSTART_IMPORT_ALL"):  # also the modules the calls import lazily (fs, STAC view, graph)
        import fusion_stac.fs
        import fusion_stac.stac.catalog
        import fusion_stac.xarray._build
        import fusion_stac.xarray._platform  # noqa: F401
    client = FusionClient(url, email=EMAIL, password=PASSWORD)
    proc = client.get_process(org, process)
    client.stats.reset()
    started = time.perf_counter()
    if what == "vrt":
        with rasterio.open(arg) as ds:
            shape: Any = ds.shape
    elif what == "mosaic":
        shape = open_mosaic(client, process=proc).shape
    elif what == "timeseries":
        shape = open_timeseries(client, proc).shape
    elif what == "engine":
        shape = xr.open_dataset(arg, engine="fusion", client=client)["band_data"].shape
    else:  # pragma: no cover
        raise SystemExit(what)
    elapsed = time.perf_counter() - started
    print(json.dumps({"ms": elapsed * 1000, "api": client.stats.requests - client.stats.signed_requests,
                      "shape": list(shape)}))
    return 0


def _vrt(client: Any, org: str, process: Any, path: Path) -> Path:
    """A VRT of the latest run's slices over /vsicurl/ signed URLs (built from metadata, no request)."""
    from fusion_stac.fs import FusionFileSystem
    from fusion_stac.xarray._platform import resolve_sources

    sources = resolve_sources(client, process=process)
    fs = FusionFileSystem(client=client)
    xs = [s.transform[2] for s in sources]
    ys = [s.transform[5] for s in sources]
    res = sources[0].transform[0]
    x0, y1 = min(xs), max(ys)
    x1 = max(s.transform[2] + s.shape[1] * res for s in sources)
    y0 = min(s.transform[5] - s.shape[0] * res for s in sources)
    w, h = round((x1 - x0) / res), round((y1 - y0) / res)
    parts = []
    for s in sources:
        href = fs.sign(s.key.url, expiration=3600)
        col, row = round((s.transform[2] - x0) / res), round((y1 - s.transform[5]) / res)
        parts.append(f"<SimpleSource><SourceFilename>/vsicurl/{href.replace('&', '&amp;')}</SourceFilename>"
                     f"<SourceBand>1</SourceBand><SrcRect xOff='0' yOff='0' xSize='{s.shape[1]}' ySize='{s.shape[0]}'/>"
                     f"<DstRect xOff='{col}' yOff='{row}' xSize='{s.shape[1]}' ySize='{s.shape[0]}'/></SimpleSource>")
    from rasterio.crs import CRS

    path.write_text(f"<VRTDataset rasterXSize='{w}' rasterYSize='{h}'><SRS>{CRS.from_user_input(sources[0].crs).to_wkt()}"
                    f"</SRS><GeoTransform>{x0}, {res}, 0, {y1}, 0, {-res}</GeoTransform>"
                    f"<VRTRasterBand dataType='{sources[0].dtype.capitalize()}' band='1'>{''.join(parts)}"
                    "</VRTRasterBand></VRTDataset>")
    return path


def run(what: str, info: dict[str, str], arg: str, cache: Path) -> dict[str, Any]:
    env = {**os.environ, "FUSION_STAC_CACHE_DIR": str(cache)}
    env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, __file__, "--child", what, info["url"], info["org"], info["process"], arg],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{what}: {out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        return _child(*sys.argv[2:7])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from traversal import EmulatorProcess, square_region  # type: ignore[import-not-found]

    # our package byte-compiled, as `pip install` leaves it (an editable checkout under
    # PYTHONDONTWRITEBYTECODE would compile the modules an open imports inside every timed call)
    compileall.compile_dir(str(Path(__file__).resolve().parents[1] / "fusion_stac"), quiet=1)

    from fusion_stac.client import FusionClient
    from fusion_stac.xarray._platform import resolve_sources

    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(execution_duration=0, resolution_m=250.0) as emu:
        work = Path(tmp)
        client = FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.02)
        org = client.organisation().id
        region = client.create_data(org, "Cold square", [square_region(work / "square.geojson")])
        process = client.new_process(org, "Elevation", "Cold DEM").with_input(1, region).create()
        for _ in range(3):
            client.execute(org, process.id, wait=True)
        info = {"url": emu.url, "org": org, "process": process.id}
        vrt = _vrt(client, org, process, work / "mosaic.vrt")
        first = resolve_sources(client, process=process)[0].key.url
        cache = work / "cache"
        for what, arg in (("mosaic", ""), ("timeseries", ""), ("engine", first)):
            run(what, info, arg, cache)  # fills the cache: metadata of the runs, the file's header
        rows: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.repeat):
            for what, arg in (("vrt", str(vrt)), ("mosaic", ""), ("timeseries", ""), ("engine", first)):
                rows.setdefault(what, []).append(run(what, info, arg, cache))
        client.close()
    med = {k: statistics.median(r["ms"] for r in v) for k, v in rows.items()}
    for k, v in rows.items():
        print(f"{k:<11} {med[k]:7.1f} ms (median of {len(v)})  API requests {v[-1]['api']}  shape {v[-1]['shape']}")
    print(f"SUMMARY vrt_ms={med['vrt']:.1f} mosaic_ms={med['mosaic']:.1f} timeseries_ms={med['timeseries']:.1f} "
          f"engine_ms={med['engine']:.1f} mosaic_api_requests={rows['mosaic'][-1]['api']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
