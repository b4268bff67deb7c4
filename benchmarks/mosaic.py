"""``open_mosaic`` next to a GDAL VRT, odc-stac, stackstac and ``rasterio.merge``, as users really run it.

Data: one group of 4 x 4 float32 COG slices of 2048 x 2048 pixels (512-px DEFLATE tiles, overviews
2/4/8), rendered by an in-process emulator (Elevation service over a square region of one UTM zone).

Three server settings, side by side in one run:
  * ``static``: the same 16 files served by nginx on loopback (installed and started by this script when
    missing: ``nginx`` on PATH, else ``apt-get install -y nginx`` when root, else a Python static server,
    said so in the output), plain URLs, no added latency;
  * ``emulator``: the emulator's storage port, S3-style presigned URLs;
  * ``+20 ms``: the same with 20 ms added to every storage request (``storage_latency``), what an object
    store in the same region costs per round trip.

Three reads: ``full`` (the whole mosaic at 30 m), ``window`` (1024 x 1024 where four slices meet),
``overview`` (the whole mosaic at 1/8 resolution, 240 m). Readers, all on the same URLs:
  * ``ours``: ``open_mosaic(items=..., storage=SignerStorage(sign))`` + selection + ``.values``, the sign
    function handing out the very URLs the peers get (nginx's for ``static``), **cold**: a new process with
    an empty cache directory (``FUSION_STAC_CACHE_DIR``);
  * ``ours-reopen``: the same in a new process after another process has opened and read the same
    selection with the same cache directory (header and metadata caches warm; without such caches it
    equals the cold read);
  * ``vrt``: ``rasterio.open`` of a VRT of ``/vsicurl/<URL>`` sources + ``read`` (with
    ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR``, ``CPL_VSIL_CURL_USE_HEAD=NO``, multi-range, merged
    consecutive ranges, ``VSI_CACHE``, ``GDAL_INGESTED_BYTES_AT_OPEN=32768``, as for every GDAL peer);
  * ``odc-stac``: ``odc.stac.load`` of the items (hrefs: the URLs) on the output GeoBox + ``.values``;
  * ``stackstac``: ``stackstac.stack`` of the items on the output grid, ``stackstac.mosaic`` + ``.values``;
  * ``merge``: ``rasterio.merge.merge`` over the ``/vsicurl/`` URLs (bounds / resolution of the read).

Every measurement runs in a **fresh Python process**; imports are done before the clock starts and the
clock covers opening and reading (``time`` = open + read). Requests and bytes are counted by the server:
nginx's access log (``$body_bytes_sent``) or the emulator's storage counters (body bytes actually sent,
so a GET that GDAL aborts after the headers counts what the socket took, as with nginx). Peak memory is
the worker's peak RSS (``VmHWM``) above its RSS just before opening. Runs are interleaved across readers;
figures are medians of ``--runs``.

Targets (ours / VRT time): static full <= 0.8, static window and overview <= 1.0 (cold); at 20 ms per
request window and overview <= 0.6 cold and <= 0.4 reopened; a reopened window costs 1 request per slice
touched; peak RSS <= 1.5x the output array.

Run: ``python benchmarks/mosaic.py [--runs 5] [--slice-px 2048]``. The last line is ``SUMMARY
static_full_vrt=<r> static_window_vrt=<r> static_overview_vrt=<r> lat20_window_vrt=<r>
lat20_overview_vrt=<r> reopen_window_vrt=<r> reopen_requests_per_slice=<n> peak_rss_ratio=<r>``.
"""

from __future__ import annotations

import argparse
import compileall
import itertools
import json
import os
import shutil
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
LATENCY = 0.020
GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_USE_HEAD": "NO",
    "GDAL_HTTP_MULTIRANGE": "YES",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "VSI_CACHE": "TRUE",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
}
SCENARIOS = {
    "full": "the whole mosaic",
    "window": "1024 x 1024 where 4 slices meet",
    "overview": "the whole mosaic at 1/8 resolution",
}
READERS = ["ours", "ours-reopen", "vrt", "odc-stac", "stackstac", "merge"]
SETTINGS = {"static": "static (nginx)", "emulator": "emulator storage", "lat20": "emulator + 20 ms/request"}


# ------------------------------------------------------------------------------------------------
# worker side: one open + read in a fresh process


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


def _ours(spec: dict[str, Any], scenario: str) -> Any:
    import pystac

    from fusion_stac.xarray import SignerStorage, open_mosaic

    items = [pystac.Item.from_dict(d) for d in spec["items"]]
    by_file = {d["properties"]["fusion:file_id"]: spec["urls"][d["id"]] for d in spec["items"]}
    storage = SignerStorage(_SameURLs(by_file))
    kwargs: dict[str, Any] = {"resolution": RES * 8} if scenario == "overview" else {}

    def run() -> Any:
        da = open_mosaic(items=items, storage=storage, **kwargs)
        if scenario == "window":
            n = spec["slice_px"] * GRID
            da = da.isel(y=slice(n // 2 - 512, n // 2 + 512), x=slice(n // 2 - 512, n // 2 + 512))
        return da.values

    return run


def _vrt(spec: dict[str, Any], scenario: str, tmp: Path) -> Any:
    import rasterio
    from rasterio.windows import Window

    n = spec["slice_px"]
    sources = []
    for item in spec["items"]:
        t = item["assets"]["data"]["proj:transform"]
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
    path = tmp / "mosaic.vrt"
    path.write_text(f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>{spec["crs"]}</SRS>'
                    f"<GeoTransform>{x0},{RES},0,{y0},0,{-RES}</GeoTransform>"
                    f'<VRTRasterBand dataType="Float32" band="1"><NoDataValue>-9999</NoDataValue>'
                    f'{"".join(sources)}</VRTRasterBand></VRTDataset>')

    def run() -> Any:
        with rasterio.Env(**GDAL_ENV), rasterio.open(path) as ds:
            if scenario == "window":
                return ds.read(1, window=Window(size // 2 - 512, size // 2 - 512, 1024, 1024))
            if scenario == "overview":
                return ds.read(1, out_shape=(size // 8, size // 8))
            return ds.read(1)

    return run


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


def _stackstac(spec: dict[str, Any], scenario: str) -> Any:
    import copy

    import numpy as np
    import stackstac
    from rasterio.enums import Resampling

    items = []  # plain dicts (stackstac would resolve the pystac items' fusion:// links)
    for d in spec["items"]:
        item = {**copy.deepcopy(d), "links": []}
        item["assets"]["data"]["href"] = spec["urls"][d["id"]]
        items.append(item)
    _, bounds = _grid(spec, scenario)
    epsg = int(str(spec["crs"]).rsplit(":", 1)[-1])
    env = stackstac.rio_env.LayeredEnv(always=dict(GDAL_ENV))

    def run() -> Any:
        arr = stackstac.stack(items, assets=["data"], epsg=epsg, bounds=bounds,
                              resolution=RES * 8 if scenario == "overview" else RES, dtype="float32",
                              fill_value=np.float32(np.nan), rescale=False, resampling=Resampling.nearest,
                              gdal_env=env)
        return stackstac.mosaic(arr, dim="time").values

    return run


def _merge(spec: dict[str, Any], scenario: str) -> Any:
    import rasterio
    import rasterio.merge

    _, bounds = _grid(spec, scenario)
    urls = ["/vsicurl/" + spec["urls"][d["id"]] for d in spec["items"]]

    def run() -> Any:
        kwargs: dict[str, Any] = {}
        if scenario == "window":
            kwargs["bounds"] = bounds
        elif scenario == "overview":
            kwargs["res"] = (RES * 8, RES * 8)
        with rasterio.Env(**GDAL_ENV):
            data, _ = rasterio.merge.merge(urls, nodata=-9999, **kwargs)
        return data

    return run


PRELOAD = {
    "ours": ["fusion_stac.xarray.mosaic", "fusion_stac.xarray._build", "fusion_stac.xarray._reader",
             "fusion_stac.xarray._grid", "fusion_stac.xarray._storage", "xarray", "dask.array", "odc.geo.xr",
             "fusion_stac.xarray._platform", "rasterio.warp", "pystac"],
    "vrt": ["rasterio", "rasterio.windows"],
    "odc-stac": ["odc.stac", "rasterio", "pystac"],
    "stackstac": ["stackstac", "rasterio", "pystac", "dask.array", "xarray"],
    "merge": ["rasterio.merge"],
}


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
        if reader == "ours":
            run = _ours(spec, scenario)
        elif reader == "vrt":
            run = _vrt(spec, scenario, Path(tmpdir))
        elif reader == "odc-stac":
            run = _odc(spec, scenario)
        elif reader == "stackstac":
            run = _stackstac(spec, scenario)
        else:
            run = _merge(spec, scenario)
        base = psutil.Process().memory_info().rss
        t0 = time.perf_counter()
        data = run()
        elapsed = time.perf_counter() - t0
        peak = _peak_rss()
    values = np.asarray(data, dtype="float32")
    valid = np.where((values == -9999) | ~np.isfinite(values), np.nan, values)
    return {"time": elapsed, "peak_extra": max(0, peak - base), "nbytes": int(values.nbytes),
            "shape": list(values.shape), "valid_mean": float(np.nanmean(valid))}


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


def _run_worker(reader: str, scenario: str, spec_path: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--worker", reader, scenario, str(spec_path)],
                          capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{reader}/{scenario} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class _Bench:
    """Runs one measurement: fresh cache directory (cold) or one warmed by an earlier process (reopen)."""

    def __init__(self, tmp: Path, env: dict[str, str], emu: Any, static: Any) -> None:
        self.tmp = tmp
        self.env = env
        self.emu = emu
        self.static = static
        self.serial = 0

    def _cache_env(self) -> dict[str, str]:
        self.serial += 1
        cache = self.tmp / "caches" / f"c{self.serial}"
        cache.mkdir(parents=True)
        return {**self.env, "FUSION_STAC_CACHE_DIR": str(cache)}

    def _reset(self, setting: str) -> None:
        if setting == "static":
            self.static.reset()
        else:
            self.emu.reset_stats()

    def _counts(self, setting: str) -> tuple[int, int]:
        if setting == "static":
            counts = self.static.counts()
            return counts["requests"], counts["bytes"]
        stats = self.emu.stats()
        return stats["storage_requests"], stats["storage_bytes_served"]

    def measure(self, setting: str, reader: str, scenario: str, spec_path: Path) -> dict[str, Any]:
        env = self._cache_env()
        if reader == "ours-reopen":  # another process opens and reads first, with the same cache dir
            _run_worker("ours", scenario, spec_path, env)
        self._reset(setting)
        out = _run_worker("ours" if reader == "ours-reopen" else reader, scenario, spec_path, env)
        out["requests"], out["bytes"] = self._counts(setting)
        shutil.rmtree(Path(env["FUSION_STAC_CACHE_DIR"]), ignore_errors=True)
        return out


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def _report(results: dict[tuple[str, str, str], list[dict[str, Any]]], slice_px: int) -> dict[str, float]:
    import numpy as np

    n = slice_px * GRID
    sizes = {"full": f"{n} x {n}", "window": "1024 x 1024", "overview": f"{n // 8} x {n // 8}"}
    block = 30
    for scenario, title in SCENARIOS.items():
        print(f"\n{scenario}: {title} ({sizes[scenario]} float32); time = open + read, medians")
        print(f"  {'':<12}" + "".join(f" | {SETTINGS[s]:^{block - 3}}" for s in SETTINGS))
        print(f"  {'reader':<12}" + f" | {'time s':>7} {'req':>5} {'MB':>6} {'peakMB':>6}" * len(SETTINGS))
        for reader in READERS:
            row = f"  {reader:<12}"
            for setting in SETTINGS:
                runs = results[(setting, scenario, reader)]
                row += (f" | {_median(runs, 'time'):>7.3f} {_median(runs, 'requests'):>5.0f}"
                        f" {_median(runs, 'bytes') / 1e6:>6.1f} {_median(runs, 'peak_extra') / 2**20:>6.0f}")
            print(row)
        ours_mean = results[("static", scenario, "ours")][0]["valid_mean"]
        for (setting, sc, reader), runs in results.items():
            mean = runs[0]["valid_mean"]
            if sc == scenario and not np.isclose(mean, ours_mean, rtol=1e-2 if sc == "overview" else 1e-3):
                print(f"  ! {reader} ({setting}) mean of valid pixels {mean:.4f} differs from ours {ours_mean:.4f}")

    def ratio(setting: str, scenario: str, reader: str = "ours") -> float:
        return (_median(results[(setting, scenario, reader)], "time")
                / _median(results[(setting, scenario, "vrt")], "time"))

    targets = {("full", "ours"): ("<= 0.8", "", ""), ("window", "ours"): ("<= 1.0", "", "<= 0.6"),
               ("overview", "ours"): ("<= 1.0", "", "<= 0.6"), ("window", "ours-reopen"): ("", "", "<= 0.4"),
               ("overview", "ours-reopen"): ("", "", "<= 0.4")}
    print("\nours / VRT, time (open + read)   " + "".join(f"{s:>10} {'target':>7}" for s in SETTINGS))
    for scenario in SCENARIOS:
        for reader in ("ours", "ours-reopen"):
            target = targets.get((scenario, reader), ("", "", ""))
            label = f"{scenario}, {'cold' if reader == 'ours' else 'reopened'}"
            print(f"  {label:<31}" + "".join(f"{ratio(s, scenario, reader):>10.2f} {t:>7}"
                                             for s, t in zip(SETTINGS, target, strict=True)))
    print("best peer / VRT (time): " + ", ".join(
        f"{scenario} {setting} {min(ratio(setting, scenario, r) for r in READERS[3:]):.2f}"
        for scenario in SCENARIOS for setting in SETTINGS))
    reopen_requests = _median(results[("lat20", "window", "ours-reopen")], "requests") / 4
    cold_requests = _median(results[("lat20", "window", "ours")], "requests") / 4
    vrt_requests = _median(results[("lat20", "window", "vrt")], "requests") / 4
    full = results[("static", "full", "ours")]
    peak = statistics.median(r["peak_extra"] / r["nbytes"] for r in full)
    print(f"window requests per slice touched (+20 ms): ours reopened {reopen_requests:g} (target 1), "
          f"ours cold {cold_requests:g}, VRT {vrt_requests:g}")
    print(f"peak RSS of ours (full, static) over the output array: {peak:.2f} (target <= 1.5)")
    return {"static_full_vrt": ratio("static", "full"), "static_window_vrt": ratio("static", "window"),
            "static_overview_vrt": ratio("static", "overview"), "lat20_window_vrt": ratio("lat20", "window"),
            "lat20_overview_vrt": ratio("lat20", "overview"),
            "reopen_window_vrt": ratio("lat20", "window", "ours-reopen"),
            "reopen_requests_per_slice": reopen_requests, "peak_rss_ratio": peak}


def _render(tmp: Path, emu: Any, slice_px: int) -> tuple[Any, list[Any], tuple[float, float], dict[str, str]]:
    """The group of GRID x GRID slices: (client, items, origin, signed URL per item id)."""
    from fusion_stac.client import FusionClient
    from fusion_stac.stac.catalog import open_catalog

    client = FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.05)
    org = client.organisation()
    origin = _region(tmp / "square.geojson", slice_px)
    t0 = time.perf_counter()
    region = client.create_data(org.id, "Benchmark square", [tmp / "square.geojson"])
    proc = client.new_process(org.id, "Elevation", "Benchmark DEM").with_input(1, region).create()
    client.execute(org.id, proc.id, wait=True)
    print(f"emulator rendered the group in {time.perf_counter() - t0:.1f} s", flush=True)
    coll = open_catalog(client, f"fusion://{org.id}/processes/{proc.id}/latest")
    items = sorted((i for i in coll.get_items(recursive=True) if "raster:bands" in i.assets["data"].extra_fields),
                   key=lambda i: i.properties["fusion:group_index"])
    shapes = {tuple(i.assets["data"].extra_fields["proj:shape"]) for i in items}
    crs = {i.properties["proj:code"] for i in items}
    if len(items) != GRID * GRID or shapes != {(slice_px, slice_px)} or len(crs) != 1:
        raise SystemExit(f"expected {GRID}x{GRID} slices of {slice_px} px in one CRS, got "
                         f"{len(items)} slices, shapes {shapes}, CRS {crs}")
    urls = {item.id: client.download_url(org.id, item.properties["fusion:data_id"],
                                         item.properties["fusion:file_id"]).url for item in items}
    return client, items, origin, urls


def _serve_statically(root: Path, urls: dict[str, str]) -> dict[str, str]:
    """Copy each slice into ``root`` (read through its signed URL); the file name per item id."""
    import requests

    root.mkdir(parents=True)
    names = {}
    with requests.Session() as session:
        for i, (item_id, url) in enumerate(urls.items()):
            name = f"slice{i:02d}.tif"
            with session.get(url, stream=True, timeout=120) as r, open(root / name, "wb") as f:
                r.raise_for_status()
                for chunk in r.iter_content(8 << 20):
                    f.write(chunk)
            names[item_id] = name
    for path in (root, *root.iterdir()):  # nginx's workers may run as another user
        path.chmod(0o755 if path.is_dir() else 0o644)
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs per setting, read and reader")
    parser.add_argument("--slice-px", type=int, default=2048, help="slice side in pixels")
    args = parser.parse_args()
    if args.runs < 1 or args.slice_px < 512 or args.slice_px % 512:
        parser.error("--runs >= 1 and --slice-px a multiple of 512")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _static import start_static_server

    from fusion_stac.emulator import Emulator

    # our package byte-compiled, as `pip install` leaves it (an editable checkout under
    # PYTHONDONTWRITEBYTECODE would compile our modules inside every timed first call)
    compileall.compile_dir(str(Path(__file__).resolve().parents[1] / "fusion_stac"), quiet=1)
    with tempfile.TemporaryDirectory(prefix="mosaic-bench-") as tmpdir:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)
        side = args.slice_px * RES
        settings = dict(execution_duration=0, slice_size_m=side, max_region_m=side, resolution_m=RES,
                        url_lifetime=7200.0)
        with Emulator(data_dir=tmp / "emulator", **settings) as emu:
            client, items, origin, emu_urls = _render(tmp, emu, args.slice_px)
            total_mb = sum(i.assets["data"].extra_fields.get("file:size", 0) for i in items) / 1e6
            print(f"{len(items)} slices of {args.slice_px}x{args.slice_px} float32 in "
                  f"{items[0].properties['proj:code']}, {total_mb:.0f} MB", flush=True)
            names = _serve_statically(tmp / "static", emu_urls)
            static = start_static_server(tmp / "static")
            try:
                base = {"items": [i.to_dict() for i in items], "origin": origin,
                        "crs": items[0].properties["proj:code"], "slice_px": args.slice_px}
                specs = {}
                for setting in SETTINGS:
                    urls = emu_urls if setting != "static" else {k: f"{static.url}/{v}" for k, v in names.items()}
                    specs[setting] = tmp / f"spec-{setting}.json"
                    specs[setting].write_text(json.dumps({**base, "urls": urls}))
                env = {**os.environ, "FUSION_STAC_TOKEN_FILE": str(tmp / "tokens.json")}
                bench = _Bench(tmp, env, emu, static)
                results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
                t0 = time.perf_counter()
                for reader in READERS:  # one warm-up each (page cache, first-import effects)
                    bench.measure("static", reader, "window", specs["static"])
                for setting in SETTINGS:
                    emu.configure(storage_latency=LATENCY if setting == "lat20" else 0.0)
                    for scenario in SCENARIOS:
                        for _ in range(args.runs):
                            for reader in READERS:
                                out = bench.measure(setting, reader, scenario, specs[setting])
                                results.setdefault((setting, scenario, reader), []).append(out)
                    print(f"{SETTINGS[setting]}: measured ({time.perf_counter() - t0:.0f} s so far)", flush=True)
                print(f"\nstatic server: {static.kind}; {args.runs} runs each, every read in a fresh process")
                summary = _report(results, args.slice_px)
            finally:
                static.close()
                client.close()
    print("SUMMARY " + " ".join(f"{k}={v:g}" if k == "reopen_requests_per_slice" else f"{k}={v:.2f}"
                                for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, reader_, scenario_, spec_file = sys.argv
        print(json.dumps(worker(reader_, scenario_, json.loads(Path(spec_file).read_text()))))
        sys.exit(0)
    sys.exit(main())
