"""``open_mosaic`` next to a GDAL VRT, odc-stac, rioxarray and "download + rasterio.merge".

Claims (issue 6): over one group of 4 x 4 float32 COG slices of 2048 x 2048 pixels, our mosaic
reads the full extent and the whole mosaic at 1/8 resolution within 1.1x the time of a GDAL VRT
over the same signed URLs, a 1024 x 1024 window where four slices meet within 1.2x with at most 2
requests per slice touched, and its peak memory stays within 1.5x of the output array.

Setup: an in-process emulator (execution_duration=0, slices of 2048 px at 30 m) runs the
Elevation service over a square region cut into exactly 4 x 4 slices of one UTM zone (16 DEM
COGs, 512-px DEFLATE tiles with internal overviews). The STAC items come from the STAC view; one
signed URL per slice is taken for the peers. Each measurement runs in a **fresh Python process**
(cold caches for everyone; imports, parsing the items and the login are done before the clock
starts). Two times are taken: *read*, the SUMMARY's, and *open + read*. Opening is
``rasterio.open`` of the VRT (GDAL parses it and sets up its PROJ context) and ``open_mosaic`` for
ours (planning from metadata, no request; it also starts, in the background, the threads and the
GDAL PROJ context the read will use, work that then overlaps the timed read); odc-stac, rioxarray
and the download do everything in one call, all of it timed as the read. ``ours-api`` signs its
URLs inside the read. Runs are interleaved across readers; figures are medians of ``--runs``. Requests and bytes are counted **on the emulator** (bytes served, so a GET
that GDAL aborts after the headers still counts what was sent); peak memory is the worker's peak
RSS (``VmHWM``) above its RSS just before the read.

Readers (same output grid: the slices' own, EPSG:32630 at 30 m; 1/8: 240 m):
  * ``ours``: ``open_mosaic(items=...)`` then ``.values`` (lazily indexed: one buffer, slices read
    concurrently), over the same signed URLs as the peers (handed to it as its signer);
    ``ours-dask``: the same with ``chunks={}`` computed by dask's threads; ``ours-api``: the
    production path, which signs each URL through the API at read time (inside the timing: one
    API request per slice, on top of the storage requests counted);
  * ``vrt``: a VRT of ``/vsicurl/<signed URL>`` sources, read with rasterio
    (``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR``, ``CPL_VSIL_CURL_USE_HEAD=NO``, multi-range and
    merged consecutive ranges, ``VSI_CACHE``, ``GDAL_INGESTED_BYTES_AT_OPEN=32768``);
  * ``odc-stac``: ``odc.stac.load`` of the items with signed hrefs (same GDAL settings);
  * ``rioxarray``: ``rioxarray.merge.merge_arrays`` over ``open_rasterio(<signed URL>)`` arrays;
  * ``download``: every slice downloaded (``requests``, one after the other) then
    ``rasterio.merge.merge`` (full mosaic only).

Run: ``python benchmarks/mosaic.py [--runs 3] [--slice-px 2048]``. The last line is
``SUMMARY full_ratio_vrt=<x> window_ratio_vrt=<y> overview_ratio_vrt=<z> window_requests_per_slice=<n>
peak_rss_ratio=<r>``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
RES = 30.0  # the Elevation service's finest resolution
GRID = 4
GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_USE_HEAD": "NO",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "VSI_CACHE": "TRUE",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
}
READERS = {
    "full": ["ours", "ours-api", "ours-dask", "vrt", "odc-stac", "rioxarray", "download"],
    "window": ["ours", "ours-api", "vrt", "odc-stac", "rioxarray"],
    "overview": ["ours", "ours-api", "vrt", "odc-stac", "rioxarray"],
}


# ------------------------------------------------------------------------------------------------
# worker side: one read in a fresh process


def _grid(spec: dict[str, Any], scenario: str) -> tuple[Any, tuple[float, float, float, float]]:
    """The output GeoBox of a scenario, and its bounds."""
    from affine import Affine
    from odc.geo.geobox import GeoBox

    n = spec["slice_px"] * GRID
    x0, y0 = spec["origin"]
    full = GeoBox((n, n), Affine(RES, 0, x0, 0, -RES, y0), spec["crs"])
    if scenario == "window":
        half = 512
        box = full[n // 2 - half:n // 2 + half, n // 2 - half:n // 2 + half]
    elif scenario == "overview":
        box = full.zoom_out(8)
    else:
        box = full
    return box, box.boundingbox.bbox


class _SameURLs:
    """Signs by looking up the URLs the peers were given (so every reader reads the same URLs)."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls

    def __call__(self, key: Any) -> tuple[str, float]:
        return self.urls[key.file_id], time.time() + 3600.0


def _ours(spec: dict[str, Any], scenario: str, dask: bool, platform: bool = False) -> tuple[Any, Any]:
    import pystac

    from fusion_stac.fs import FusionFileSystem
    from fusion_stac.xarray import SignerStorage, open_mosaic
    from fusion_stac.xarray._storage import FileSystemStorage

    items = [pystac.Item.from_dict(d) for d in spec["items"]]
    fs = None
    if platform:
        fs = FusionFileSystem()
        fs.client.login()  # a worker reuses a session; signing URLs stays inside the timing
        storage: Any = FileSystemStorage(fs)
    else:
        by_file = {d["properties"]["fusion:file_id"]: spec["urls"][d["id"]] for d in spec["items"]}
        storage = SignerStorage(_SameURLs(by_file))

    kwargs: dict[str, Any] = {"chunks": {}} if dask else {}
    if scenario == "overview":
        kwargs["resolution"] = RES * 8

    def open_step() -> Any:
        # Planning from metadata (no request); it also starts, in the background, what the read
        # will need (threads, GDAL's PROJ context): that work overlaps the timed read.
        da = open_mosaic(items=items, storage=storage, **kwargs)
        if scenario == "window":
            n = spec["slice_px"] * GRID
            da = da.isel(y=slice(n // 2 - 512, n // 2 + 512), x=slice(n // 2 - 512, n // 2 + 512))
        return da

    return (open_step, lambda da: da.values), fs


def _vrt(spec: dict[str, Any], scenario: str, tmp: Path) -> Any:
    import rasterio

    n = spec["slice_px"]
    sources = []
    for item in spec["items"]:
        a = item["assets"]["data"]
        t = a["proj:transform"]
        col = round((t[2] - spec["origin"][0]) / RES)
        row = round((spec["origin"][1] - t[5]) / RES)
        url = escape("/vsicurl/" + spec["urls"][item["id"]])
        sources.append(
            f'<ComplexSource><SourceFilename relativeToVRT="0">{url}</SourceFilename><SourceBand>1</SourceBand>'
            f'<SourceProperties RasterXSize="{n}" RasterYSize="{n}" DataType="Float32" BlockXSize="512" '
            f'BlockYSize="512"/><SrcRect xOff="0" yOff="0" xSize="{n}" ySize="{n}"/>'
            f'<DstRect xOff="{col}" yOff="{row}" xSize="{n}" ySize="{n}"/><NODATA>-9999</NODATA></ComplexSource>'
        )
    size = n * GRID
    x0, y0 = spec["origin"]
    vrt = (f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>{spec["crs"]}</SRS>'
           f"<GeoTransform>{x0},{RES},0,{y0},0,{-RES}</GeoTransform>"
           f'<VRTRasterBand dataType="Float32" band="1"><NoDataValue>-9999</NoDataValue>{"".join(sources)}'
           "</VRTRasterBand></VRTDataset>")
    path = tmp / "mosaic.vrt"
    path.write_text(vrt)

    def open_step() -> Any:
        env = rasterio.Env(**GDAL_ENV)
        env.__enter__()
        return env, rasterio.open(path)

    def read_step(opened: Any) -> Any:
        from rasterio.windows import Window

        env, ds = opened
        try:
            if scenario == "window":
                return ds.read(1, window=Window(size // 2 - 512, size // 2 - 512, 1024, 1024))
            if scenario == "overview":
                return ds.read(1, out_shape=(size // 8, size // 8))
            return ds.read(1)
        finally:
            ds.close()
            env.__exit__(None, None, None)

    return open_step, read_step


def _signed_items(spec: dict[str, Any]) -> list[Any]:
    import pystac

    items = []
    for d in spec["items"]:
        item = pystac.Item.from_dict(d)
        item.assets["data"].href = spec["urls"][item.id]
        items.append(item)
    return items


def _odc(spec: dict[str, Any], scenario: str) -> Any:
    import odc.stac
    import rasterio

    items = _signed_items(spec)
    box, _ = _grid(spec, scenario)

    def run() -> Any:
        with rasterio.Env(**GDAL_ENV):
            ds = odc.stac.load(items, bands=["data"], geobox=box, groupby="solar_day")
            return ds["data"].values

    return run


def _rioxarray(spec: dict[str, Any], scenario: str) -> Any:
    import rasterio
    import rioxarray
    from rioxarray.merge import merge_arrays

    _, bounds = _grid(spec, scenario)

    def run() -> Any:
        with rasterio.Env(**GDAL_ENV):
            arrays = [rioxarray.open_rasterio("/vsicurl/" + spec["urls"][d["id"]]) for d in spec["items"]]
            kwargs: dict[str, Any] = {}
            if scenario == "window":
                kwargs["bounds"] = bounds
            elif scenario == "overview":
                kwargs["res"] = (RES * 8, RES * 8)
            return merge_arrays(arrays, **kwargs).values

    return run


def _download(spec: dict[str, Any], tmp: Path) -> Any:
    import rasterio
    import rasterio.merge
    import requests

    def run() -> Any:
        paths = []
        with requests.Session() as session:
            for d in spec["items"]:
                path = tmp / f"{d['id']}.tif"
                with session.get(spec["urls"][d["id"]], stream=True, timeout=60) as r:
                    r.raise_for_status()
                    with open(path, "wb") as f:
                        for chunk in r.iter_content(8 << 20):
                            f.write(chunk)
                paths.append(path)
        data, _ = rasterio.merge.merge([str(p) for p in paths])
        return data

    return run


PRELOAD = {
    "ours": ["fusion_stac.xarray.mosaic", "fusion_stac.xarray._build", "fusion_stac.xarray._reader",
             "fusion_stac.xarray._grid", "fusion_stac.fs", "xarray", "dask.array", "odc.geo.xr", "rasterio.warp",
             "pystac"],
    "vrt": ["rasterio", "rasterio.windows"],
    "odc-stac": ["odc.stac", "rasterio", "pystac"],
    "rioxarray": ["rioxarray", "rioxarray.merge", "rasterio"],
    "download": ["rasterio.merge", "requests"],
}
PRELOAD["ours-dask"] = PRELOAD["ours-api"] = PRELOAD["ours"]


def _peak_rss() -> int:
    """This process's peak RSS in bytes. Not ``getrusage``'s ``ru_maxrss``: Linux carries that over
    ``execve`` from the forked parent (the driver, with the emulator: hundreds of MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(reader: str, scenario: str, spec: dict[str, Any]) -> dict[str, Any]:
    import importlib

    import numpy as np
    import psutil

    for module in PRELOAD[reader]:  # imports are not what we measure
        importlib.import_module(module)

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        fs = None
        if reader.startswith("ours"):
            (open_step, read_step), fs = _ours(spec, scenario, dask=reader == "ours-dask",
                                               platform=reader == "ours-api")
        elif reader == "vrt":
            open_step, read_step = _vrt(spec, scenario, tmp)
        else:  # one call does it all: all of it is timed as the read
            if reader == "odc-stac":
                run = _odc(spec, scenario)
            elif reader == "rioxarray":
                run = _rioxarray(spec, scenario)
            else:
                run = _download(spec, tmp)
            open_step, read_step = (lambda: None), (lambda _: run())
        base = psutil.Process().memory_info().rss
        t0 = time.perf_counter()
        opened = open_step()
        t1 = time.perf_counter()
        data = read_step(opened)
        t2 = time.perf_counter()
        peak = _peak_rss()
        values = np.asarray(data)
        out: dict[str, Any] = {
            "time": t2 - t1, "open": t1 - t0, "total": t2 - t0,
            "peak_extra": max(0, peak - base), "nbytes": int(values.nbytes),
            "shape": list(values.shape), "valid_mean": float(np.nanmean(np.where(values == -9999, np.nan, values))),
        }
        if fs is not None:
            out["fs_stats"] = fs.stats
        return out


# ------------------------------------------------------------------------------------------------
# driver side


def _region(path: Path, slice_px: int) -> tuple[float, float]:
    """A GeoJSON square that the emulator cuts into exactly GRID x GRID slices of UTM zone 30."""
    import pyproj

    side = slice_px * RES
    x0, y1 = 300000.0, 5790000.0  # whole km and whole pixels (the emulator anchors its grid there), zone 30
    margin = 300.0
    xs = [x0 + margin, x0 + GRID * side - margin]
    ys = [y1 - GRID * side + margin, y1 - margin]
    to_ll = pyproj.Transformer.from_crs(32630, 4326, always_xy=True)
    ring = []
    steps = 20
    corners = [(xs[0], ys[1]), (xs[1], ys[1]), (xs[1], ys[0]), (xs[0], ys[0]), (xs[0], ys[1])]
    for (ax, ay), (bx, by) in itertools.pairwise(corners):
        for i in range(steps):
            lon, lat = to_ll.transform(ax + (bx - ax) * i / steps, ay + (by - ay) * i / steps)
            ring.append([lon, lat])
    ring.append(ring[0])
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "benchmark square"},
         "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    return x0, y1


def _measure(reader: str, scenario: str, spec_path: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--worker", reader, scenario, str(spec_path)],
                          capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{reader}/{scenario} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="measured runs per reader and scenario")
    parser.add_argument("--slice-px", type=int, default=2048, help="slice side in pixels")
    args = parser.parse_args()

    import numpy as np

    from fusion_stac.client import FusionClient
    from fusion_stac.emulator import Emulator
    from fusion_stac.stac.catalog import open_catalog

    with tempfile.TemporaryDirectory(prefix="mosaic-bench-") as tmpdir:
        tmp = Path(tmpdir)
        token_file = tmp / "tokens.json"
        side = args.slice_px * RES
        settings = dict(execution_duration=0, slice_size_m=side, max_region_m=side,
                        resolution_m=RES, url_lifetime=7200.0)
        with Emulator(data_dir=tmp / "emulator", **settings) as emu:
            env = {**os.environ, "FUSION_PLATFORM_API_URL": emu.url, "FUSION_PLATFORM_EMAIL": EMAIL,
                   "FUSION_PLATFORM_PASSWORD": PASSWORD, "FUSION_STAC_TOKEN_FILE": str(token_file)}
            os.environ["FUSION_STAC_TOKEN_FILE"] = str(token_file)
            client = FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.05)
            org = client.organisation()
            origin = _region(tmp / "square.geojson", args.slice_px)
            t0 = time.perf_counter()
            region = client.create_data(org.id, "Benchmark square", [tmp / "square.geojson"])
            proc = client.new_process(org.id, "Elevation", "Benchmark DEM").with_input(1, region).create()
            client.execute(org.id, proc.id, wait=True)
            print(f"emulator rendered the group in {time.perf_counter() - t0:.1f} s", flush=True)
            coll = open_catalog(client, f"fusion://{org.id}/processes/{proc.id}/latest")
            items = sorted((i for i in coll.get_items(recursive=True)
                            if "raster:bands" in i.assets["data"].extra_fields),
                           key=lambda i: i.properties["fusion:group_index"])
            shapes = {tuple(i.assets["data"].extra_fields["proj:shape"]) for i in items}
            crs = {i.properties["proj:code"] for i in items}
            if len(items) != GRID * GRID or shapes != {(args.slice_px, args.slice_px)} or len(crs) != 1:
                raise SystemExit(f"expected {GRID}x{GRID} slices of {args.slice_px} px in one CRS, got "
                                 f"{len(items)} slices, shapes {shapes}, CRS {crs}")
            urls = {}
            for item in items:
                signed = client.download_url(org.id, item.properties["fusion:data_id"], item.properties["fusion:file_id"])
                urls[item.id] = signed.url
            total_mb = sum(i.assets["data"].extra_fields.get("file:size", 0) for i in items) / 1e6
            print(f"{len(items)} slices of {args.slice_px}x{args.slice_px} float32 in {crs.pop()}, {total_mb:.0f} MB",
                  flush=True)
            # Log in once so that workers find a session in the token cache.
            from fusion_stac.fs import FusionFileSystem

            warm_fs = FusionFileSystem(api_url=emu.url, email=EMAIL, password=PASSWORD)
            warm_fs.sign(items[0].assets["data"].href)
            spec = {"items": [i.to_dict() for i in items], "urls": urls, "origin": origin,
                    "crs": items[0].properties["proj:code"], "slice_px": args.slice_px}
            spec_path = tmp / "spec.json"
            spec_path.write_text(json.dumps(spec))

            results: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for scenario, readers in READERS.items():
                for reader in readers:  # one warm-up each (page cache, first-import effects)
                    _measure(reader, scenario, spec_path, env)
                for _ in range(args.runs):
                    for reader in readers:
                        emu.reset_stats()
                        out = _measure(reader, scenario, spec_path, env)
                        stats = emu.stats()
                        out["requests"] = stats["storage_requests"]
                        out["bytes"] = stats["storage_bytes_served"]
                        results.setdefault((scenario, reader), []).append(out)

            summary: dict[str, float] = {}
            opened: dict[str, float] = {}
            for scenario, readers in READERS.items():
                print(f"\n{scenario}: " + {"full": "the whole mosaic", "window": "1024 x 1024 where 4 slices meet",
                                           "overview": "whole mosaic at 1/8 resolution"}[scenario])
                print(f"  {'reader':<10} {'read s':>8} {'open+read':>9} {'requests':>9} {'MB':>8} {'peak MB':>8}"
                      f" {'out MB':>7}  {'ours/it':>8} {'(open+read)':>11}")
                med = {r: statistics.median(x["time"] for x in results[(scenario, r)]) for r in readers}
                tot = {r: statistics.median(x["total"] for x in results[(scenario, r)]) for r in readers}
                means = {r: results[(scenario, r)][0]["valid_mean"] for r in readers}
                for reader in readers:
                    runs = results[(scenario, reader)]
                    req = statistics.median(x["requests"] for x in runs)
                    mb = statistics.median(x["bytes"] for x in runs) / 1e6
                    peak = statistics.median(x["peak_extra"] for x in runs) / 2**20
                    out_mb = runs[0]["nbytes"] / 2**20
                    print(f"  {reader:<10} {med[reader]:>8.3f} {tot[reader]:>9.3f} {req:>9.0f} {mb:>8.1f} {peak:>8.0f}"
                          f" {out_mb:>7.0f}  {med['ours'] / med[reader]:>8.2f} {tot['ours'] / tot[reader]:>11.2f}")
                    if not np.isclose(means[reader], means["ours"], rtol=1e-3):
                        print(f"  ! {reader} mean {means[reader]:.4f} differs from ours {means['ours']:.4f}")
                opened[scenario] = tot["ours"] / tot["vrt"]
                summary[f"{scenario}_ratio_vrt"] = med["ours"] / med["vrt"]
                if scenario == "window":
                    summary["window_requests_per_slice"] = statistics.median(
                        x["requests"] for x in results[(scenario, "ours")]) / 4
                if scenario == "full":
                    ours = results[(scenario, "ours")]
                    summary["peak_rss_ratio"] = statistics.median(x["peak_extra"] / x["nbytes"] for x in ours)
            api = {sc: statistics.median(x["time"] for x in results[(sc, "ours-api")])
                   / statistics.median(x["time"] for x in results[(sc, "vrt")]) for sc in READERS}
            client.close()
    print("\nsigning each URL through the API at read time (ours-api), against the VRT: "
          + ", ".join(f"{sc} {ratio:.2f}x" for sc, ratio in api.items()))
    print("opening included (open_mosaic from 16 items; rasterio.open of the VRT), ours against the VRT: "
          + ", ".join(f"{sc} {ratio:.2f}x" for sc, ratio in opened.items()))
    print(f"SUMMARY full_ratio_vrt={summary['full_ratio_vrt']:.2f} window_ratio_vrt={summary['window_ratio_vrt']:.2f} "
          f"overview_ratio_vrt={summary['overview_ratio_vrt']:.2f} "
          f"window_requests_per_slice={summary['window_requests_per_slice']:g} "
          f"peak_rss_ratio={summary['peak_rss_ratio']:.2f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, reader_, scenario_, spec_file = sys.argv
        print(json.dumps(worker(reader_, scenario_, json.loads(Path(spec_file).read_text()))))
        sys.exit(0)
    sys.exit(main())
