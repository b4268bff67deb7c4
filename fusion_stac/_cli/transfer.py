"""``upload`` (files -> a new data item, analysed) and ``download`` (files or whole trees, in parallel)."""

from __future__ import annotations

import argparse
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fusion_stac._cli._common import Context, fusion_url, human_size, seconds, with_context
from fusion_stac._cli._registry import UsageError, command
from fusion_stac._urls import upload_url


def check_local_files(paths: list[str], file_type: str | None) -> list[tuple[Path, str]]:
    """Each file exists and its type is known (from the extension, or ``--file-type``)."""
    from fusion_stac.models import FILE_TYPE_EXTENSIONS, file_type_for_path

    out = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise UsageError(f"no such file: {raw}" if not path.exists() else f"not a file: {raw}")
        kind = file_type or file_type_for_path(path.name)
        if kind == "Other":
            known = ", ".join(sorted(FILE_TYPE_EXTENSIONS))
            raise UsageError(f"cannot tell the file type of {raw} from its extension (known: {known}); "
                             "pass --file-type")
        out.append((path, kind))
    return out


def upload_files(ctx: Context, org_id: str, name: str, files: list[tuple[Path, str]], *,
                 poll_interval: float | None = None, timeout: float | None = None) -> Any:
    """Upload as one new data item with a bytes bar, then wait for the analysis with a files bar.

    Returns the Data and its analysed files; raises :class:`~fusion_stac.errors.AnalysisError` naming
    the files the platform could not analyse (after deleting the useless data item).
    """
    from fusion_stac.errors import AnalysisError, FusionError

    client = ctx.client
    total = sum(p.stat().st_size for p, _ in files)
    types = {kind for _, kind in files}
    with ctx.fraction_bar(f"upload {name}", total=total or 1, unit="B") as progress:
        data = client.create_data(org_id, name, [p for p, _ in files],
                                  file_type=types.pop() if len(types) == 1 else None,
                                  wait=False, progress=progress)
    interval = client.poll_interval if poll_interval is None else poll_interval
    started = time.monotonic()
    bar = ctx.bar(f"analyse {name}", total=len(files), unit="file")
    try:
        while True:
            listed = client.list_files(org_id, data.id)
            done = sum(1 for f in listed if f.analysed or f.analysis_failed)
            bar.update(done - bar.n)
            if listed and done == len(listed):
                break
            if timeout is not None and time.monotonic() - started > timeout:
                break  # wait_for_analysis below raises the typed timeout
            time.sleep(interval)
    finally:
        bar.close()
    left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
    try:
        analysed = client.wait_for_analysis(org_id, data.id, poll_interval=interval, timeout=left, name=name)
    except AnalysisError as exc:
        # A data item the platform cannot read is of no use to anyone: do not leave it behind.
        try:
            client.delete_data(org_id, data.id)
            fate = "the upload was deleted"
        except FusionError:
            fate = f"the upload (data {data.id}) could not be deleted"
        raise AnalysisError(f"{exc.message}: is it really a {', '.join(sorted({k for _, k in files}))} file? "
                            f"({fate})", data_id=data.id, files=exc.files, path=exc.path) from exc
    return data, analysed


def _upload_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="local files (GeoTIFF, GeoJSON, KML, zipped shapefile...)")
    p.add_argument("--name", required=True, help="name of the new data item")
    p.add_argument("--organisation", "-o", metavar="ORG", help="organisation name or id (default: the one you used last)")
    p.add_argument("--file-type", help="platform file type for every file (default: from each extension)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the analysis (default 1800)")
    p.add_argument("--poll", type=float, default=None, metavar="SECONDS",
                   help="seconds between checks of the analysis (default: the client's, 5)")
    p.add_argument("--allow-duplicate-name", action="store_true",
                   help="upload even if a data item of that name exists (paths by name then become ambiguous)")


@command("upload", "upload local files as a new data item and wait for the platform to analyse them",
         _upload_arguments)
@with_context
def upload(ctx: Context) -> int:
    args = ctx.args
    files = check_local_files(args.files, args.file_type)
    client = ctx.client
    org = ctx.organisation()
    if not args.allow_duplicate_name:
        same = [d for d in client.iter_data(org.id, name=args.name) if d.name == args.name]
        if same:
            raise UsageError(f"a data item named {args.name!r} already exists in {org.name} (id {same[0].id}); "
                             "choose another --name (or pass --allow-duplicate-name)")
    began = time.monotonic()
    data, analysed = upload_files(ctx, org.id, args.name, files, poll_interval=args.poll, timeout=args.timeout)
    ctx.echo(f"Uploaded {len(files)} file(s) to {upload_url(org.name, args.name)} "
             f"(data id {data.id}) in {seconds(time.monotonic() - began)}:")
    for f in analysed:
        extra = [f.file_type or "", human_size(f.size)]
        if f.crs:
            extra.append(f.crs)
        if f.bounds:
            extra.append("bounds " + ", ".join(f"{b:.4f}" for b in f.bounds))
        ctx.echo(f"  {f.file_name}  " + "  ".join(e for e in extra if e))
    return 0


# ==================================================================================================
# download


def _download_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="a fusion:// file, or a directory (upload, process, execution, ...) to copy whole")
    p.add_argument("dest", help="local file or directory (created); a tree is written below it")
    p.add_argument("-j", "--jobs", type=int, default=4, help="files downloaded at once (default 4)")
    p.epilog = ("Files already present with the right size are skipped and interrupted downloads resume "
                "(from FILE.<id>.part), so running the command again finishes the job. Sizes are verified.")


def _plan(ctx: Context, url: str, dest: Path, *, into_dir: bool = False) -> list[tuple[dict[str, Any], Path]]:
    """(file info, local path) of every file to fetch; ``into_dir``: ``dest`` was given with a trailing
    slash (a directory, even if it does not exist yet)."""
    fs = ctx.fs
    root = fs.info(url)
    if root["type"] == "file":
        target = dest / _local_name(root["name"].rsplit("/", 1)[-1]) \
            if dest.is_dir() or into_dir else dest
        return [(root, target)]
    base = root["name"].rstrip("/")
    found = fs.find(base, detail=True)
    plan = []
    for name, entry in sorted(found.items()):
        if entry.get("type") != "file":
            continue
        relative = [_local_name(s) for s in name[len(base):].strip("/").split("/")]
        target = dest.joinpath(*relative)
        if dest.absolute() not in target.absolute().parents:  # defence in depth: never outside dest
            raise OSError(f"refusing to write {fusion_url(name)} outside {dest} (as {target})")
        plan.append((entry, target))
    return plan


def _local_name(label: str) -> str:
    """The local name of a listed path segment: the platform's name where it is one harmless file
    name, else the (percent-encoded, sibling-unique) label itself, so that names from the server like
    ``../../x`` or ``/etc/x`` cannot lead outside the destination."""
    from fusion_stac.client import safe_file_name

    name = unquote(label)
    if safe_file_name(name, "") == name:
        return name
    return safe_file_name(label)


@command("download", "download a file or a whole tree, in parallel, resumable, size-verified", _download_arguments)
@with_context
def download(ctx: Context) -> int:
    args = ctx.args
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    dest = Path(args.dest)
    began = time.monotonic()
    plan = _plan(ctx, args.url, dest, into_dir=args.dest.endswith(("/", os.sep)))
    if not plan:
        ctx.note(f"nothing to download: {fusion_url(ctx.fs.info(args.url)['name'])} holds no files")
        return 0
    todo = []
    skipped = 0
    for entry, target in plan:
        if target.is_file() and entry.get("size") is not None and target.stat().st_size == entry["size"]:
            skipped += 1
        else:
            todo.append((entry, target))
    total = sum(e.get("size") or 0 for e, _ in todo)
    client = ctx.client
    lock = threading.Lock()
    bar = ctx.bar("download", total=total or None, unit="B")

    def fetch(job: tuple[dict[str, Any], Path]) -> Path:
        entry, target = job
        seen = [0]

        def progress(fraction: float) -> None:
            size = entry.get("size") or 0
            now = int(fraction * size)
            with lock:
                bar.update(now - seen[0])
                seen[0] = now

        path = client.download_file(entry["organisation_id"], entry["data_id"], entry["file_id"], target,
                                    progress=progress)
        size = path.stat().st_size
        if entry.get("size") is not None and size != entry["size"]:
            raise OSError(f"{fusion_url(entry['name'])}: downloaded {size} bytes, the platform lists {entry['size']}")
        return path

    try:
        with ThreadPoolExecutor(max_workers=args.jobs, thread_name_prefix="fusion-stac-get") as pool:
            futures = [pool.submit(fetch, job) for job in todo]
            try:
                for future in as_completed(futures):
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        bar.close()
    took = time.monotonic() - began
    done = f"Downloaded {len(todo)} file(s), {human_size(total)}, to {dest} in {seconds(took)}"
    ctx.echo(done + (f"; {skipped} already present" if skipped else "") + ".")
    for _, target in plan if len(plan) <= 20 else []:
        ctx.echo(f"  {target}")
    return 0
