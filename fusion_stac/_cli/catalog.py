"""``catalog export``: a static, self-contained STAC catalog of (part of) the platform."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fusion_stac._cli._common import Context, human_size, run_with_context, seconds
from fusion_stac._cli._registry import UsageError, command


def _catalog_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True
    export = actions.add_parser(
        "export", help="write a static STAC catalog (asset links, downloaded assets or gateway links)",
        description="Write the STAC view of the platform (or of URL: an organisation, upload, process or "
                    "execution) as a self-contained static catalog in DEST, atomically. Asset hrefs: "
                    "--assets link keeps fusion:// hrefs (read them with fusion-stac / fsspec); --assets download "
                    "copies every asset next to its item; --assets gateway --gateway-url URL points every asset "
                    "at the asset gateway of `fusion-stac serve` (URL/assets/ORG/DATA/FILE, previews .../preview): "
                    "plain https links that never expire, for any STAC tool.",
        epilog="example: fusion-stac catalog export ./thames 'fusion://Demo Org/processes/Thames/latest' "
               "--assets gateway --gateway-url http://localhost:8080",
    )
    export.add_argument("dest", help="directory to create (refused if it exists, unless --overwrite)")
    export.add_argument("url", nargs="?", default=None,
                        help="what to export: a fusion:// path or organisation name (default: everything)")
    export.add_argument("--assets", choices=("link", "download", "gateway"), default="link",
                        help="link: keep fusion:// asset hrefs; download: copy every asset next to its item "
                             "(verified) and make hrefs relative; gateway: link every asset to the asset gateway "
                             "given by --gateway-url (default link)")
    export.add_argument("--gateway-url", metavar="URL", default=None,
                        help="base URL of the asset gateway (`fusion-stac serve`), e.g. http://localhost:8080; "
                             "required with --assets gateway, and only then")
    export.add_argument("--overwrite", action="store_true", help="replace DEST if it exists")
    export.add_argument("--no-validate", dest="validate", action="store_false",
                        help="skip the offline STAC schema validation of the written catalog")


def export_catalog(ctx: Context, url: str | None, dest: Path, *, assets: str, overwrite: bool = False,
                   validate: bool = True, gateway_url: str | None = None) -> tuple[Path, int, int, int]:
    """Export with a progress bar; returns (root JSON path, items, assets, bytes of downloaded assets)."""
    import pystac

    from fusion_stac.stac import export_catalog as export
    from fusion_stac.stac import open_catalog

    if assets == "gateway" and not gateway_url:
        raise UsageError("--assets gateway needs --gateway-url URL (the base URL of `fusion-stac serve`)")
    if gateway_url and assets != "gateway":
        raise UsageError(f"--gateway-url goes with --assets gateway, not --assets {assets}")
    if dest.exists() and not overwrite:
        raise UsageError(f"{dest} exists; pass --overwrite to replace it")
    catalog = open_catalog(ctx.client, url)
    with ctx.fraction_bar(f"export {dest.name}") as progress:
        root = export(catalog, dest, assets=assets, progress=progress,  # type: ignore[arg-type]
                      overwrite=overwrite, validate=validate, gateway_url=gateway_url)
    written = pystac.read_file(str(root))
    assert isinstance(written, pystac.Catalog)
    items = list(written.get_items(recursive=True))
    count = sum(len(i.assets) for i in items)
    size = 0
    if assets == "download":
        for item in items:
            for asset in item.assets.values():
                local = Path(asset.get_absolute_href() or "")
                if local.is_file():
                    size += local.stat().st_size
    return root, len(items), count, size


@command("catalog", "STAC catalogs of the platform (`fusion-stac catalog export --help`)", _catalog_arguments)
def catalog(args: argparse.Namespace) -> int:
    def body(ctx: Context) -> int:
        began = time.monotonic()
        root, items, assets, size = export_catalog(ctx, args.url, Path(args.dest), assets=args.assets,
                                                   overwrite=args.overwrite, validate=args.validate,
                                                   gateway_url=args.gateway_url)
        what = f"{assets} assets" + {"download": f" downloaded ({human_size(size)})",
                                     "gateway": f" linked to the gateway at {args.gateway_url}"}.get(args.assets,
                                                                                                 " linked")
        checked = ", validated offline" if args.validate else ""
        ctx.echo(f"Exported {items} items, {what}, to {root} in {seconds(time.monotonic() - began)}{checked}.")
        return 0

    return run_with_context(args, body)
