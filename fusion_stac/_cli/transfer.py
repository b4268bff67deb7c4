"""``upload`` (files -> a new data item, analysed) and ``download`` (files or whole trees, in parallel)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from fusion_stac._cli._common import Context, fusion_url, human_size, seconds, with_context
from fusion_stac._cli._registry import CommandFailed, UsageError, command
from fusion_stac._urls import upload_url

if TYPE_CHECKING:  # pragma: no cover
    from fusion_stac._cli import _fetch


def check_local_files(paths: list[str], file_type: str | None) -> list[tuple[Path, str]]:
    """Each file exists and its type is known (from the extension, or ``--file-type``)."""
    from fusion_stac.models import FILE_TYPE_EXTENSIONS, file_type_for_path

    out = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise UsageError(f"no such file: {raw}" if not path.exists() else f"not a file: {raw}")
        try:
            path.open("rb").close()
        except OSError as exc:
            raise UsageError(f"cannot read {raw}: {exc.strerror or exc}") from None
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
    try:
        with ctx.fraction_bar(f"upload {name}", total=total or 1, unit="B") as progress:
            data = client.create_data(org_id, name, [p for p, _ in files],
                                      file_type=types.pop() if len(types) == 1 else None,
                                      wait=False, progress=progress)
    except (FusionError, OSError) as exc:
        raise CommandFailed(_upload_failure([p for p, _ in files], name, exc)) from exc
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


def _upload_failure(paths: list[Path], name: str, exc: BaseException) -> str:
    """One line naming the local file(s) that could not be uploaded and why (never a signed URL)."""
    from fusion_stac.errors import redact

    if isinstance(exc, OSError) and exc.filename and not str(exc.filename).startswith("fusion://") \
            and exc.strerror and not hasattr(exc, "message"):
        text = f"{exc.filename}: {exc.strerror}"  # a local error: the file as the user named it
    else:
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else type(exc).__name__
    named = [p for p in paths if p.name in text] or paths
    shown = ", ".join(str(p) for p in named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
    return redact(f"cannot upload {shown} as {name!r}: {text}")


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
    ctx.echo(f"Uploaded {len(files)} file(s) to {upload_url(org.name or org.id, args.name)} "
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
    p.add_argument("-j", "--jobs", type=int, default=DEFAULT_JOBS,
                   help=f"files downloaded at once (default {DEFAULT_JOBS})")
    p.epilog = ("Files keep the platform's names; a name the local file system does not allow is changed "
                "(a short hash is added) and the output says so. A file already present is skipped when its "
                "MD5 equals the one storage states (else downloaded again; when storage states none, its size "
                "is compared and the output says so). Bytes go to FILE.<tag>.part until the file is complete "
                "and verified. Ctrl-C stops at once and keeps what was fetched: running the same command again "
                "resumes. Exit 0 when every file is complete, 1 when any failed (each is named), 130 when "
                "interrupted with files unfinished.")


DEFAULT_JOBS = 4


@contextmanager
def _first_interrupt_cancels(cancel: threading.Event, note: Callable[[str], None]) -> Iterator[None]:
    """The first Ctrl-C (SIGINT) sets ``cancel`` (transfers stop within a chunk, partials kept); the
    next one raises :class:`KeyboardInterrupt` as usual. Only in the main thread (where signals go)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:  # started with interrupts ignored (nohup, a background job): keep it so
        yield
        return

    def first(signum: int, frame: FrameType | None) -> None:
        cancel.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with contextlib.suppress(Exception):  # never let the message be what fails
            note("fusion-stac: stopping the downloads and keeping what they fetched (Ctrl-C again to quit at once)")

    signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@command("download", "download a file or a whole tree, in parallel, resumable, verified", _download_arguments)
@with_context
def download(ctx: Context) -> int:
    from fusion_stac._cli import _fetch

    args = ctx.args
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    dest = Path(args.dest)
    began = time.monotonic()
    jobs, mapped = _fetch.plan(ctx.fs, args.url, dest, into_dir=args.dest.endswith(("/", os.sep)))
    if not jobs:
        ctx.note(f"nothing to download: {fusion_url(ctx.fs.info(args.url)['name'])} holds no files")
        return 0
    if len(jobs) > 1 and dest.exists() and not dest.is_dir():
        raise UsageError(f"{args.dest} is a file: a tree of {len(jobs)} files needs a directory")
    total = sum(j.size or 0 for j in jobs)
    lock = threading.Lock()
    bar = ctx.bar("download", total=total or None, unit="B")

    def on_bytes(n: int) -> None:
        with lock:
            bar.update(n)

    cancel = threading.Event()
    try:
        with _first_interrupt_cancels(cancel, ctx.note):
            outcomes = _fetch.run(ctx.client, jobs, workers=args.jobs, cancel=cancel, on_bytes=on_bytes)
    finally:
        bar.close()
    return _report(ctx, outcomes, mapped, dest, time.monotonic() - began, interrupted=cancel.is_set())


def _report(ctx: Context, outcomes: list[_fetch.Outcome], mapped: list[_fetch.Mapped], dest: Path, took: float,
            *, interrupted: bool) -> int:
    """What was done (stdout), every failure and what is left (stderr); the exit code."""
    by_state: dict[str, list[_fetch.Outcome]] = {}
    for outcome in outcomes:
        by_state.setdefault(outcome.state, []).append(outcome)
    fetched = by_state.get("downloaded", []) + by_state.get("replaced", [])
    present = by_state.get("present", []) + by_state.get("present-size", [])
    failed = by_state.get("failed", [])
    unfinished = by_state.get("cancelled", []) + by_state.get("not-started", [])
    size = sum(o.job.size or 0 for o in fetched)
    of = f" of {len(outcomes)}" if failed or unfinished else ""
    line = f"Downloaded {len(fetched)}{of} file(s), {human_size(size)}, to {dest} in {seconds(took)}"
    if present:
        line += f"; {len(present)} already present"
        if by_state.get("present-size"):
            line += (f" ({len(by_state['present-size'])} compared by size only: storage states no MD5 "
                     "for them)")
    if by_state.get("replaced"):
        line += f"; {len(by_state['replaced'])} present but different from the platform's, downloaded again"
    ctx.echo(line + ".")
    for outcome in outcomes if len(outcomes) <= 20 else []:
        if outcome.complete:
            ctx.echo(f"  {outcome.job.target}")
    for m in mapped:
        ctx.echo(f"  {m.remote} saved as {m.local} because: {'; '.join(m.reasons)}")
    for outcome in failed:
        ctx.note(f"fusion-stac: error: {outcome.job.remote}: {outcome.reason}")
    if unfinished:
        ctx.note(f"fusion-stac: interrupted: {len(outcomes) - len(unfinished) - len(failed)} of {len(outcomes)} "
                 f"file(s) complete, {len(unfinished)} unfinished"
                 + (f", {len(failed)} failed" if failed else "") + ":")
        for outcome in unfinished:
            ctx.note(f"  {outcome.job.remote}: {_left(outcome)}")
        ctx.note(f"Run the same command again to resume: {_again(ctx)}")
        return 130
    if interrupted:
        ctx.note("fusion-stac: interrupted, but every file had already completed")
    if failed:
        raise CommandFailed(f"{len(failed)} of {len(outcomes)} file(s) failed (each named above); nothing "
                            f"incomplete is left at a final path; run the same command again to retry: {_again(ctx)}")
    return 0


def _left(outcome: _fetch.Outcome) -> str:
    if outcome.state == "not-started" or outcome.partial is None:
        return "not started"
    size = outcome.job.size
    return (f"{human_size(outcome.received)}" + (f" of {human_size(size)}" if size is not None else "")
            + f" kept in {outcome.partial} (resumes)")


def _again(ctx: Context) -> str:
    args = ctx.args
    words = ["fusion-stac", "download", args.url, args.dest]
    if args.jobs != DEFAULT_JOBS:
        words += ["--jobs", str(args.jobs)]
    return shlex.join(words)
