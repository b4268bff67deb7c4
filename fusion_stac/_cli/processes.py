"""``run``: upload a region, create a process from a service, show its price, execute, optionally wait."""

from __future__ import annotations

import argparse
import shlex
import time

from fusion_stac._cli._common import Context, parse_key_values, seconds, with_context
from fusion_stac._cli._registry import command
from fusion_stac._cli.transfer import check_local_files, upload_files
from fusion_stac._urls import process_url


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("service", metavar="SERVICE", help="service name, id or keyword, e.g. Elevation")
    p.add_argument("--region", required=True, metavar="FILE",
                   help="region of interest: a GeoJSON/KML/KMZ file or zipped shapefile (uploaded first)")
    p.add_argument("--option", action="append", metavar="NAME=VALUE", default=[],
                   help="a service option, e.g. --option resolution=100 (repeatable; checked before anything "
                        "is uploaded)")
    p.add_argument("--name", help="process name (default: '<service> <region file name>')")
    p.add_argument("--organisation", "-o", metavar="ORG", help="organisation name or id (default: the one you used last)")
    p.add_argument("--wait", action="store_true", help="wait for the run to finish, with a progress bar")
    p.add_argument("--dry-run", action="store_true", help="create the process and show its price; do not execute")
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait with --wait (default: no limit)")
    p.add_argument("--poll", type=float, default=None, metavar="SECONDS",
                   help="seconds between status checks (default: the client's, 5)")


@command("run", "run a service over a region: upload, show the price, execute (--wait: follow progress)",
         _run_arguments)
@with_context
def run(ctx: Context) -> int:
    args = ctx.args
    options = parse_key_values(args.option)
    region = check_local_files([args.region], None)
    client = ctx.client
    org = ctx.organisation()
    service = client.find_service(org.id, args.service)
    name = args.name or f"{service.name} {region[0][0].stem}"
    draft = client.new_process(org.id, service, name)
    if options:
        draft = draft.with_options(**options)  # typed and validated before anything is uploaded
    began = time.monotonic()
    data, _ = upload_files(ctx, org.id, f"{name} region", region, poll_interval=args.poll)
    process = draft.with_input(1, data).create()
    url = process_url(org.name, process.id)
    price = f"{process.price} credits" if process.price is not None else "unknown"
    ctx.echo(f"Process {process.name!r} created: {url}")
    ctx.echo(f"  service {service.name} (version {service.version}); region {data.name!r} ({data.id})")
    for option in process.options:
        ctx.echo(f"  option {option.name} = {option.value}")
    ctx.echo(f"  price per run: {price}")
    if args.dry_run:
        ctx.echo("Not executed (--dry-run).")
        return 0
    if not args.wait:
        client.execute(org.id, process.id)
        ctx.echo(f"Executing. Follow it with: fusion-stac ls {shlex.quote(process_url(org.name, process.id))}")
        return 0
    with ctx.fraction_bar(f"run {name}") as progress:
        client.execute(org.id, process.id, wait=True, poll_interval=args.poll, timeout=args.timeout,
                       progress=progress)
    took = seconds(time.monotonic() - began)
    latest = client.latest_execution(org.id, process.id)
    if latest.group_id is not None:
        slices, aggregators = client.group_executions(org.id, process.id, latest.group_id)
        ctx.echo(f"Finished in {took}: {len(slices)} slice(s) and {len(aggregators)} aggregator(s) succeeded.")
    else:
        ctx.echo(f"Finished in {took}.")
    ctx.echo(f"Outputs: fusion-stac ls --depth 4 {shlex.quote(process_url(org.name, process.id, 'latest'))}")
    return 0
