"""``run``: upload a region, create a process from a service, show its price, execute, optionally wait.

``--dry-run`` changes nothing: it checks the service, the options and the region file, and says what
would be uploaded and created. The platform prices a process only when it is created, so the price
comes from ``--create-only`` (upload and create, do not execute); the next ``run`` of the same name,
service and options executes that process instead of creating another.
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Callable, Iterator
from typing import Any

from fusion_stac._cli._common import Context, human_size, parse_key_values, seconds, with_context
from fusion_stac._cli._registry import CommandFailed, UsageError, command
from fusion_stac._cli.transfer import check_local_files, upload_files
from fusion_stac._urls import process_url

#: ``--wait`` checks the run after FIRST_POLL seconds, then twice as long each time, up to MAX_POLL.
FIRST_POLL = 0.5
MAX_POLL = 5.0


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
    what = p.add_mutually_exclusive_group()
    what.add_argument("--dry-run", action="store_true",
                      help="check everything and show what would be uploaded and created; change nothing")
    what.add_argument("--create-only", action="store_true",
                      help="upload the region and create the process to see its price; do not execute (the next "
                           "`run` of the same name, service and options executes it)")
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait with --wait (default: no limit)")
    p.add_argument("--poll", type=float, default=None, metavar="SECONDS",
                   help=f"seconds between status checks (default: {FIRST_POLL:g}, doubling up to {MAX_POLL:g})")


def poll_delays(first: float = FIRST_POLL, most: float = MAX_POLL, fixed: float | None = None) -> Iterator[float]:
    """Seconds to sleep between status checks: ``fixed`` each time, else ``first`` doubling up to ``most``."""
    delay = first
    while True:
        yield fixed if fixed is not None else delay
        delay = min(most, delay * 2)


def _options_of(process_or_draft: Any) -> dict[str, str]:
    return {o.name: str(o.value) for o in process_or_draft.options if o.name}


def _unexecuted_twin(ctx: Context, org_id: str, name: str, draft: Any) -> Any | None:
    """A process of this exact name, service and options that was created (--create-only) but never run."""
    for process in ctx.client.iter_processes(org_id, name=name):
        if (process.name == name and not process.has_executions and process.service_id == draft.process.service_id
                and _options_of(process) == _options_of(draft)):
            return process
    return None


def _dry_run(ctx: Context, org: Any, service: Any, name: str, draft: Any, region: list[Any], twin: Any) -> int:
    path = region[0][0]
    ctx.echo(f"Dry run: nothing uploaded, created or executed in {org.name!r}.")
    if twin is not None:
        ctx.echo(f"Would execute process {twin.name!r} created earlier and never run "
                 f"({process_url(org.name, twin.id)}):")
        ctx.echo(f"  price per run: {twin.price} credits" if twin.price is not None else "  price per run: unknown")
        return 0
    ctx.echo(f"Would upload {path.name} ({human_size(path.stat().st_size)}) as data {name + ' region'!r}")
    ctx.echo(f"Would create process {name!r} from service {service.name} (version {service.version})")
    for option in draft.options:
        ctx.echo(f"  option {option.name} = {option.value}")
    ctx.echo("Price: the platform prices a process when it is created. To see it without running anything, add "
             "--create-only (uploads the region and creates the process, not executed); the same command without "
             "it then executes that process instead of creating another.")
    return 0


def follow_run(ctx: Context, org: Any, process: Any, *, delays: Iterator[float], timeout: float | None,
               progress: Callable[[float], None], sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait for the run just started, checking after ``delays``; raise if it failed (the client's check).

    Polls the way the client does (the process until its run is listed, then the run's executions),
    but backs off from a short interval, so a run of a second is seen finished after about a second.
    """
    client = ctx.client
    org_id = org.id
    began = time.monotonic()

    def pause() -> None:
        delay = next(delays)
        if timeout is not None and time.monotonic() - began + delay > timeout:
            raise CommandFailed(f"process {process.name!r} has not finished after {seconds(timeout)} (--timeout); "
                                f"it goes on: fusion-stac ls {shlex.quote(process_url(org.name or org.id, process.id, 'latest'))}")
        sleep(delay)

    while True:  # until the run is listed (all of its group)
        current = client.get_process(org_id, process.id)
        run = current.latest_executions() if current.has_executions else ()
        if run and (run[0].group_id is None or len(run) >= (run[0].group_count or 0)):
            break
        pause()
    head = run[0]
    expected = max(1, (current.non_aggregator_count or 0) + (current.aggregator_count or 0)) if head.group_id else 1
    while True:
        if head.group_id is not None:
            executions = list(client.iter_executions(org_id, process.id, group_id=head.group_id, reverse=False))
        else:
            executions = [client.get_execution(org_id, str(head.process_execution_id))]  # listed runs have ids
        total = max(expected, len(executions), 1)
        progress(sum(min(e.progress or 0, 100) for e in executions) / (100.0 * total))
        if len(executions) >= expected and all(e.is_complete for e in executions):
            break
        pause()
    # The client's own check of the finished run: raises ExecutionFailedError naming failed executions.
    client.wait_for_completion(org_id, process.id, group_id=head.group_id,
                               execution_id=None if head.group_id else head.process_execution_id,
                               poll_interval=MAX_POLL, timeout=None)


@command("run", "run a service over a region: upload, show the price, execute (--wait: follow progress)",
         _run_arguments)
@with_context
def run(ctx: Context) -> int:
    args = ctx.args
    if args.poll is not None and args.poll <= 0:
        raise UsageError(f"--poll must be a positive number of seconds, got {args.poll:g}")
    if args.create_only and args.wait:
        raise UsageError("--create-only does not execute: it cannot --wait")
    options = parse_key_values(args.option)
    region = check_local_files([args.region], None)
    client = ctx.client
    org = ctx.organisation()
    service = client.find_service(org.id, args.service)
    name = args.name or f"{service.name} {region[0][0].stem}"
    draft = client.new_process(org.id, service, name)
    if options:
        draft = draft.with_options(**options)  # typed and validated before anything is uploaded
    twin = _unexecuted_twin(ctx, org.id, name, draft)
    if args.dry_run:
        return _dry_run(ctx, org, service, name, draft, region, twin)
    began = time.monotonic()
    if twin is not None:
        process = twin
        ctx.echo(f"Process {process.name!r} was created earlier and never run: executing it "
                 f"({process_url(org.name or org.id, process.id)})")
    else:
        data, _ = upload_files(ctx, org.id, f"{name} region", region, poll_interval=args.poll)
        process = draft.with_input(1, data).create()
        ctx.echo(f"Process {process.name!r} created: {process_url(org.name or org.id, process.id)}")
        ctx.echo(f"  service {service.name} (version {service.version}); region {data.name!r} ({data.id})")
        for option in process.options:
            ctx.echo(f"  option {option.name} = {option.value}")
    ctx.echo(f"  price per run: {process.price} credits" if process.price is not None else "  price per run: unknown")
    if args.create_only:
        ctx.echo("Not executed (--create-only). Run the same command without --create-only to execute it.")
        return 0
    if not args.wait:
        client.execute(org.id, process.id)
        ctx.echo(f"Executing. Follow it with: fusion-stac ls {shlex.quote(process_url(org.name or org.id, process.id))}")
        return 0
    with ctx.fraction_bar(f"run {name}") as progress:
        client.execute(org.id, process.id)
        follow_run(ctx, org, process, delays=poll_delays(fixed=args.poll), timeout=args.timeout, progress=progress)
    took = seconds(time.monotonic() - began)
    latest = client.latest_execution(org.id, process.id)
    if latest.group_id is not None:
        slices, aggregators = client.group_executions(org.id, process.id, latest.group_id)
        ctx.echo(f"Finished in {took}: {len(slices)} slice(s) and {len(aggregators)} aggregator(s) succeeded.")
    else:
        ctx.echo(f"Finished in {took}.")
    ctx.echo(f"Outputs: fusion-stac ls --depth 5 {shlex.quote(process_url(org.name or org.id, process.id, 'latest'))}")
    return 0
