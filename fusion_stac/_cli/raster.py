"""``mosaic``: the slices of a grouped run as one Cloud-Optimized GeoTIFF, plus a quicklook PNG."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_stac._cli._common import (
    Context,
    crs_name,
    human_size,
    parse_floats,
    require,
    seconds,
    with_context,
)
from fusion_stac._cli._registry import UsageError, command
from fusion_stac._urls import PREFIX

#: Longest side of the quicklook image, in pixels (read from the COG's overviews).
QUICKLOOK_SIZE = 1200


@dataclass(frozen=True)
class Quicklook:
    path: Path
    minimum: float | None
    maximum: float | None
    valid_fraction: float


def quicklook(tif: Path, png: Path, *, title: str, label: str | None = None,
              max_size: int = QUICKLOOK_SIZE) -> Quicklook:
    """Plot band 1 of ``tif`` to ``png``: colour bar with units, title, map coordinates, nodata blank.

    Reads a decimated copy through the COG's overviews, so it costs little whatever the mosaic size.
    Uses a bare matplotlib ``Figure`` (Agg canvas, no pyplot state), safe without a display.
    """
    import numpy as np
    import rasterio
    from matplotlib.figure import Figure

    with rasterio.open(tif) as src:
        scale = max(1.0, max(src.width, src.height) / max_size)
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        band = src.read(1, out_shape=shape, masked=True)
        bounds, crs = src.bounds, src.crs
        units = (src.units or (None,))[0] or src.tags(1).get("units") or src.tags().get("units")
        description = (src.descriptions or (None,))[0]
        count = src.count
    values = band.compressed()
    valid = float(values.size) / float(band.size) if band.size else 0.0
    lo = float(values.min()) if values.size else None
    hi = float(values.max()) if values.size else None
    height, width = shape
    aspect = height / width if width else 1.0
    fig = Figure(figsize=(9.0, max(3.0, min(12.0, 7.5 * aspect + 1.2))), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    cmap = "terrain" if (units or "").lower() in ("m", "metre", "metres", "meter", "meters") else "viridis"
    image = ax.imshow(np.ma.masked_invalid(band), extent=(bounds.left, bounds.right, bounds.bottom, bounds.top),
                      cmap=cmap, interpolation="nearest")
    if label is None:
        label = description if description and not description.isdigit() else "value"
    fig.colorbar(image, ax=ax, shrink=0.85, label=f"{label} ({units})" if units else label)
    ax.set_title(title + (f" — band 1 of {count}" if count > 1 else ""))
    unit_name = crs.linear_units if crs is not None and crs.is_projected else "degrees"
    ax.set_xlabel(f"x / easting ({unit_name}, {crs_name(crs)})" if crs is not None and crs.is_projected
                  else f"longitude ({crs_name(crs)})")
    ax.set_ylabel("y / northing" if crs is not None and crs.is_projected else "latitude")
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(axis="x", labelrotation=30)
    tmp = png.with_name(f".{png.name}.partial.png")
    fig.savefig(tmp, format="png")
    tmp.replace(png)
    return Quicklook(png, lo, hi, valid)


def parse_target(ctx: Context, process: str, organisation: str | None) -> dict[str, Any]:
    """``PROCESS`` as a name, id or fusion:// path (to a process, or one of its executions/groups)."""
    if process.startswith(PREFIX):
        info = ctx.fs.info(process)
        kind = info.get("kind")
        if kind == "process":
            return {"process": info["process_id"], "organisation": info["organisation_id"]}
        if kind == "execution":
            return {"execution": info["execution_id"], "organisation": info["organisation_id"]}
        raise UsageError(f"{process} is a {kind}, not a process or an execution")
    org = ctx.organisation(organisation)
    return {"process": ctx.client.find_process(org.id, process), "organisation": org.id}


def _mosaic_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("process", metavar="PROCESS",
                   help="process name or id, or a fusion:// path to a process or one of its executions")
    p.add_argument("out", metavar="OUT.tif", help="the Cloud-Optimized GeoTIFF to write (a PNG quicklook goes next to it)")
    p.add_argument("--group", metavar="ID", help="group id of the run to mosaic (default: the latest run)")
    p.add_argument("--bbox", metavar="W,S,E,N", help="clip to this box, in longitude/latitude (or --bbox-crs)")
    p.add_argument("--bbox-crs", metavar="CRS", help="CRS of --bbox (default EPSG:4326)")
    p.add_argument("--crs", help="output CRS, e.g. EPSG:32630 (default: the CRS most slices are in)")
    p.add_argument("--resolution", type=float, help="output pixel size in CRS units (default: the slices' own)")
    p.add_argument("--resampling", default="nearest", help="resampling when warping or reading coarser (default nearest)")
    p.add_argument("--method", default="first", choices=("first", "last", "min", "max", "mean"),
                   help="how overlapping slices combine (default first)")
    p.add_argument("--organisation", "-o", metavar="ORG", help="organisation name or id for a PROCESS name (default: last used)")
    p.add_argument("--no-quicklook", dest="quicklook", action="store_false", help="do not write the PNG quicklook")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.tif if it exists")


def cog_blocksize(da: Any) -> int:
    """GDAL builds overviews down to one block: small mosaics get smaller blocks so they have some too."""
    return 256 if max(da.sizes.get("x", 0), da.sizes.get("y", 0)) < 2048 else 512


def counting_chunks(ctx: Context, da: Any, desc: str) -> tuple[Any, Any]:
    """``da`` read in COG-block chunks that advance a bar (``ctx.bar``) as each is read.

    ``da`` is a lazily indexed mosaic (``open_mosaic(chunks=None)``); it becomes a dask array of
    blocks the COG writer computes a few at a time, each block ticking the bar once it is read
    (warped and combined). Returns the counting array and the bar (to close).
    """
    import threading

    import numpy as np

    size = cog_blocksize(da)
    chunked = da.chunk({name: size for name in ("y", "x") if name in da.dims})
    bar = ctx.bar(desc, total=chunked.data.npartitions, unit="chunk")
    lock = threading.Lock()

    def tick(block: Any) -> Any:
        if block.size:  # not dask's probe of an empty block
            with lock:
                bar.update(1)
        return block

    meta = np.empty((0,) * chunked.ndim, dtype=chunked.dtype)
    return chunked.copy(data=chunked.data.map_blocks(tick, dtype=chunked.dtype, meta=meta)), bar


def write_mosaic(ctx: Context, da: Any, out: Path, *, title: str, label: str | None = None,
                 with_quicklook: bool = True, overwrite: bool = True) -> tuple[Path, Quicklook | None]:
    """Write ``da`` as a COG (a bar of the chunks read on a terminal) and, if asked, its quicklook PNG."""
    from fusion_stac.xarray import to_cog

    if out.exists() and not overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent} is not a directory")
    bar = None
    source = da
    if ctx.progress_enabled and da.chunks is None:  # (`da.data` would read it all)
        source, bar = counting_chunks(ctx, da, f"mosaic {out.name}")
    try:
        to_cog(source, out, overwrite=True, blocksize=cog_blocksize(da))
    finally:
        if bar is not None:
            bar.close()
    if label is None:
        label = str(da.attrs.get("fusion:component") or da.attrs.get("long_name") or "") or None
    look = quicklook(out, out.with_suffix(".png"), title=title, label=label) if with_quicklook else None
    return out, look


def describe_mosaic(ctx: Context, da: Any, out: Path, look: Quicklook | None) -> None:
    geobox = da.odc.geobox
    res = abs(geobox.resolution.x)
    units = geobox.crs.units[0] if geobox.crs is not None else ""
    ctx.echo(f"Wrote {out} ({human_size(out.stat().st_size)}): {da.sizes.get('x')} x {da.sizes.get('y')} pixels of "
             f"{res:g} {units}, {da.sizes.get('band', 1)} band(s), {da.dtype}, {crs_name(geobox.crs)}, "
             f"from {da.attrs.get('fusion:slices', '?')} slices")
    if look is not None:
        span = f"{look.minimum:g} .. {look.maximum:g}" if look.minimum is not None else "no valid pixels"
        ctx.echo(f"Wrote {look.path}: values {span} {da.attrs.get('units', '')}".rstrip()
                 + f", {look.valid_fraction:.0%} of pixels valid")


def _bbox_outside(given: str, bbox_crs: str | None, whole: Any) -> str:
    """The message for a --bbox that misses every slice: the slices' extent in the CRS of --bbox."""
    crs = bbox_crs or "EPSG:4326"
    west, south, east, north = whole.odc.geobox.extent.to_crs(crs).boundingbox
    unit = "lon/lat" if bbox_crs is None else crs
    digits = 4 if bbox_crs is None else 1
    extent = ",".join(f"{v:.{digits}f}" for v in (west, south, east, north))
    return (f"--bbox {given} ({unit}) does not overlap the {whole.attrs.get('fusion:slices', '')} slices, "
            f"which cover {extent} (W,S,E,N in {unit})").replace("the  slices", "the slices")


@command("mosaic", "mosaic the slices of a grouped run into one COG (and a quicklook PNG)", _mosaic_arguments)
@with_context
def mosaic(ctx: Context) -> int:
    require("xarray", "rasterio", "odc.geo", "matplotlib")
    from fusion_stac.xarray import MosaicError, open_mosaic

    args = ctx.args
    out = Path(args.out)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise UsageError(f"{args.out}: the output must be a .tif file")
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it")
    bbox = parse_floats(args.bbox, 4, "--bbox") if args.bbox else None
    if args.resolution is not None and (not math.isfinite(args.resolution) or args.resolution <= 0):
        raise UsageError(f"--resolution must be a positive number, got {args.resolution}")
    began = time.monotonic()
    target = parse_target(ctx, args.process, args.organisation)
    if args.group and "execution" in target:
        raise UsageError("--group goes with a process, not with an execution path")
    options = dict(group_id=args.group, bbox_crs=args.bbox_crs, crs=args.crs, resolution=args.resolution,
                   resampling=args.resampling, method=args.method, **target)
    try:
        da = open_mosaic(ctx.client, bbox=bbox, **options)
    except MosaicError as exc:
        if bbox is None or getattr(exc, "field", None) != "bbox" or "does not intersect" not in str(exc):
            raise
        raise UsageError(_bbox_outside(args.bbox, args.bbox_crs, open_mosaic(ctx.client, **options))) from None
    name = getattr(target.get("process"), "name", None) or str(da.attrs.get("fusion:process_name") or "mosaic")
    _, look = write_mosaic(ctx, da, out, title=f"{name}: mosaic of {da.attrs.get('fusion:slices', '?')} slices",
                           with_quicklook=args.quicklook)
    describe_mosaic(ctx, da, out, look)
    ctx.echo(f"Done in {seconds(time.monotonic() - began)}.")
    return 0
