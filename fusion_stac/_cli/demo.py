"""``demo``: the whole tour in one command, against an embedded emulator (no account, no network).

Starts the emulator, logs in with its demo account, uploads two shipped regions, runs Elevation over
the large one (split into slices over two UTM zones), exports the run as a STAC catalog with its
assets, mosaics the slices lazily into a COG with a quicklook PNG, and prints what it made, how long
each step took and how many requests it cost. Everything it starts, it stops.
"""

from __future__ import annotations

import argparse
import shlex
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_stac._cli._common import Context, crs_name, human_size, require, seconds
from fusion_stac._cli._registry import UsageError, command

DEMO_EMAIL = "me@org.com"
DEMO_PASSWORD = "MyPassword123!"  # the emulator's built-in demo account (public, documented)
SMALL_REGION = "glasgow"
LARGE_REGIONS = ("thames", "central_belt")
#: Emulator settings: slices of 20 km for regions wider than 30 km (the Thames: 5 slices in 2 UTM
#: zones), 200 m pixels, and executions that take a few seconds so progress is visible.
EMULATOR_SETTINGS: dict[str, Any] = {"slice_size_m": 20000.0, "max_region_m": 30000.0, "resolution_m": 200.0}
MIN_SLICES = 4
#: Pixel size asked of the Elevation service: fine enough for a mosaic with overviews and a crisp quicklook.
DEMO_RESOLUTION_M = 50


@dataclass
class Step:
    name: str
    seconds: float
    detail: str


class Steps:
    """Times each step and announces it on stderr as it finishes (the summary comes at the end)."""

    def __init__(self, ctx: Context, total: int) -> None:
        self.ctx = ctx
        self.total = total
        self.done: list[Step] = []

    @contextmanager
    def step(self, name: str) -> Iterator[Callable[[str], None]]:
        detail = [""]
        began = time.monotonic()
        self.ctx.note(f"[{len(self.done) + 1}/{self.total}] {name} ...")
        yield lambda text: detail.__setitem__(0, text)
        took = time.monotonic() - began
        self.done.append(Step(name, took, detail[0]))
        self.ctx.note(f"[{len(self.done)}/{self.total}] {name}: {detail[0]} ({seconds(took)})")


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="fusion-stac-demo", metavar="DIR",
                   help="where to write the catalog, mosaic.tif and mosaic.png (default ./fusion-stac-demo)")
    p.add_argument("--region", choices=LARGE_REGIONS, default="thames",
                   help="the large region to process (default thames: two UTM zones, shows reprojection)")
    p.add_argument("--execution-seconds", type=float, default=3.0,
                   help="how long each emulated execution takes (default 3)")
    p.add_argument("--keep", action="store_true",
                   help="keep the emulator's data in DIR/emulator-data (to browse it later with `emulator serve`)")


@command("demo", "the tour: emulator, login, upload, run, STAC export, mosaic COG + PNG (no account needed)",
         _demo_arguments)
def demo(args: argparse.Namespace) -> int:
    require("fastapi", "uvicorn", "xarray", "rasterio", "odc.geo", "matplotlib")
    from fusion_stac.emulator import Emulator

    if args.execution_seconds < 0:
        raise UsageError(f"--execution-seconds must be 0 or more, got {args.execution_seconds}")
    out = Path(args.out).absolute()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    data_dir = out / "emulator-data" if args.keep else Path(tempfile.mkdtemp(prefix="fusion-stac-demo-"))
    began = time.monotonic()
    ctx = Context(args)
    steps = Steps(ctx, 6)
    emulator = Emulator(data_dir=data_dir, execution_duration=args.execution_seconds, **EMULATOR_SETTINGS)
    try:
        with steps.step("start the emulator") as tell:
            emulator.start()
            tell(f"{emulator.url}, data in {data_dir}" + ("" if args.keep else " (temporary)"))
        url = emulator.url
        results = _tour(ctx, steps, emulator, out, args.region)
        stats = emulator.stats()
    finally:
        emulator.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(data_dir, ignore_errors=True)
    _summary(ctx, steps, out, results, stats, url=url, data_dir=data_dir, keep=args.keep,
             took=time.monotonic() - began)
    return 0


def _tour(ctx: Context, steps: Steps, emulator: Any, out: Path, region: str) -> dict[str, Any]:
    from fusion_stac._cli.catalog import export_catalog
    from fusion_stac._cli.raster import write_mosaic
    from fusion_stac._cli.transfer import upload_files
    from fusion_stac._urls import process_url
    from fusion_stac.client import FusionClient
    from fusion_stac.emulator.geodata import region_path
    from fusion_stac.fs import FusionFileSystem
    from fusion_stac.xarray import FileSystemStorage, open_mosaic

    results: dict[str, Any] = {}
    # The demo account's token must not land in the user's token cache: no on_login hook, no fs cache.
    client = FusionClient(emulator.url, email=DEMO_EMAIL, password=DEMO_PASSWORD, poll_interval=0.25)
    fs = FusionFileSystem(client=client, token_cache=False)
    tour = Context(ctx.args, client=client, fs=fs)
    try:
        with steps.step("log in") as tell:
            client.login()
            org = client.organisation()
            tell(f"{DEMO_EMAIL}, organisation {org.name!r}")

        with steps.step("upload regions") as tell:
            uploads = {}
            for name in (SMALL_REGION, region):
                path = region_path(name)
                data, files = upload_files(tour, org.id, _region_title(path), [(path, "GeoJSON")], poll_interval=0.1)
                uploads[name] = (data, files)
            big = uploads[region][1][0]
            area = f", {big.area / 1e6:,.0f} km²" if big.area else ""
            tell(", ".join(f"{d.name} ({human_size(fs_[0].size)})" for d, fs_ in uploads.values()) + area)

        with steps.step("run Elevation over the large region") as tell:
            data = uploads[region][0]
            process = (client.new_process(org.id, "Elevation", f"Elevation — {data.name}").with_input(1, data)
                       .with_option("resolution", DEMO_RESOLUTION_M).create())
            ctx.note(f"    price per run: {process.price} credits; executing")
            with tour.fraction_bar("Elevation") as progress:
                client.execute(org.id, process.id, wait=True, progress=progress)
            latest = client.latest_execution(org.id, process.id)
            if latest.group_id is None:
                raise RuntimeError("the large region was not split into slices; check EMULATOR_SETTINGS")
            slices, aggregators = client.group_executions(org.id, process.id, latest.group_id)
            if len(slices) < MIN_SLICES:
                raise RuntimeError(f"the large region gave {len(slices)} slices, fewer than {MIN_SLICES}")
            results.update(process=process, slices=len(slices), aggregators=len(aggregators))
            tell(f"{len(slices)} slices + {len(aggregators)} aggregator, price {process.price} credits")

        with steps.step("export the STAC catalog") as tell:
            root, items, assets, size = export_catalog(
                tour, process_url(org.id, process.id, "latest"), out / "catalog", assets="download",
                overwrite=True, validate=True)
            crs = _crs_of_items(root)
            results.update(catalog=root, crs=crs)
            tell(f"{items} items, {assets} assets downloaded ({human_size(size)}), validated offline; "
                 f"slices in {', '.join(crs)}")

        with steps.step("mosaic the slices") as tell:
            storage = FileSystemStorage(fs)
            da = open_mosaic(client, process=process, storage=storage)
            title = f"{process.name}: {da.attrs.get('fusion:slices', len(slices))} slices"
            if len(crs) > 1:
                title += f" from {len(crs)} UTM zones"
            tif, look = write_mosaic(tour, da, out / "mosaic.tif", title=title, label="Elevation")
            results.update(mosaic=tif, quicklook=look, shape=(da.sizes["x"], da.sizes["y"]), mosaic_crs=crs_name(da.odc.crs),
                           units=da.attrs.get("units", ""))
            tell(f"{da.sizes['x']} x {da.sizes['y']} pixels in {crs_name(da.odc.crs)}, {da.dtype}")
        results["client_requests"] = client.stats.snapshot()["requests"]
    finally:
        client.close()
    return results


def _region_title(path: Path) -> str:
    """The region's own name (GeoJSON ``name``), else the file name."""
    import json

    try:
        name = json.loads(path.read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return str(name) if name else path.stem.replace("_", " ").title()


def _crs_of_items(root: Path) -> list[str]:
    import pystac

    catalog = pystac.read_file(str(root))
    assert isinstance(catalog, pystac.Catalog)
    found = {i.properties.get("proj:code") for i in catalog.get_items(recursive=True)}
    return sorted(str(c) for c in found if c)


def _summary(ctx: Context, steps: Steps, out: Path, results: dict[str, Any], stats: dict[str, Any], *, url: str,
             data_dir: Path, keep: bool, took: float) -> None:
    width = max(len(s.name) for s in steps.done)
    ctx.echo(f"fusion-stac demo: done in {seconds(took)}")
    ctx.echo("")
    for s in steps.done:
        ctx.echo(f"  {s.name.ljust(width)}  {seconds(s.seconds):>7}  {s.detail}")
    ctx.echo("")
    look = results["quicklook"]
    span = f"{look.minimum:.0f} to {look.maximum:.0f} {results['units']}".rstrip() if look.minimum is not None else ""
    made = [
        (results["catalog"], "STAC catalog with its assets; open with pystac.read_file()"),
        (results["mosaic"], f"Cloud-Optimized GeoTIFF, {results['shape'][0]} x {results['shape'][1]} px, "
                            f"{results['mosaic_crs']}, {human_size(results['mosaic'].stat().st_size)}"),
        (look.path, f"quicklook, elevation {span}, {human_size(look.path.stat().st_size)}"),
    ]
    ctx.echo(f"Made in {out}:")
    names = [str(Path(path).relative_to(out)) for path, _ in made]
    for name, (_, what) in zip(names, made, strict=True):
        ctx.echo(f"  {name.ljust(max(map(len, names)))}  {what}")
    ctx.echo("")
    ctx.echo(f"Requests: {stats.get('api_requests', 0)} to the API and {stats.get('storage_requests', 0)} to storage "
             f"(counted by the emulator); {human_size(stats.get('bytes_served'))} served.")
    if keep:
        ctx.echo(f"Emulator stopped; its data is kept in {data_dir}. Browse it again with:")
        ctx.echo(f"  fusion-stac emulator serve --port 8000 --data-dir {shlex.quote(str(data_dir))}")
        ctx.echo("  FUSION_PLATFORM_API_URL=http://127.0.0.1:8000 FUSION_PLATFORM_EMAIL=me@org.com "
                 "FUSION_PLATFORM_PASSWORD='MyPassword123!' fusion-stac ls --depth 2")
    else:
        gone = "removed" if not data_dir.exists() else "NOT removed"
        ctx.echo(f"Nothing left running: the emulator at {url} is stopped and its temporary data is {gone}.")
