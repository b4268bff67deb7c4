"""The engine of ``fusion-stac download``: where each file goes on disk, and one outcome per file.

* **Names on disk** (:func:`plan`): every file and directory keeps the platform's name byte for byte
  where the local file system allows it (``é`` stays ``é``, ``a:x.geojson`` stays as it is on Linux);
  elsewhere it is mapped by :func:`fusion_stac.storage.unique_local_names` (deterministically, so a
  rerun finds the same partial file; never two remote files on one local path). Each mapped name is
  kept on its :class:`Job` for the command to say ``saved as ... because ...``.
* **One outcome per file** (:func:`run`): files go in parallel through ``client.download_file``
  (atomic, verified, resumable); a failure is recorded against its file (every one is reported, not
  just the first); the ``cancel`` event (set by the first Ctrl-C) stops every transfer within a chunk
  and keeps its partial file, and files not yet started are left alone.
* **Already present?** A local file of the listed size is compared by MD5 with the one storage states
  (its ETag, the MD5 of a single-part upload, read with a one-byte request). Equal: skipped. Different:
  downloaded again (atomically over it). Storage states no MD5 (a multipart ETag): kept on its size
  alone, and the command says that it was not compared.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

from fusion_stac._cli._common import fusion_url

if TYPE_CHECKING:  # pragma: no cover
    from fusion_stac.client import FusionClient
    from fusion_stac.fs import FusionFileSystem
    from fusion_stac.storage import DownloadCancelled, LocalName

State = Literal["downloaded", "replaced", "present", "present-size", "cancelled", "not-started", "failed"]
#: Outcomes that leave the file complete at its final path.
COMPLETE: frozenset[str] = frozenset({"downloaded", "replaced", "present", "present-size"})

_MD5_ETAG_RE = re.compile(r'^(?:W/)?"?([0-9a-fA-F]{32})"?$')
_LABEL_RE = re.compile(r"^fusion://\S+(?: \('(?:[^'\\]|\\.)*'\)| \(\"(?:[^\"\\]|\\.)*\"\))?: ")


@dataclass(frozen=True)
class Mapped:
    """A remote name (file or directory) that had to change on disk."""

    remote: str
    local: Path
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Job:
    """One remote file and its local path."""

    remote: str  # the fusion:// name, as listed
    entry: dict[str, Any]
    target: Path

    @property
    def size(self) -> int | None:
        size = self.entry.get("size")
        return None if size is None else int(size)


@dataclass
class Outcome:
    job: Job
    state: State
    error: BaseException | None = None
    reason: str = ""
    partial: Path | None = None
    received: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.state in COMPLETE


# -- planning --------------------------------------------------------------------------------------
def shown(name: str) -> str:
    """A listed path as people read (and may type) it: ``fusion://org/uploads/x/é.tif``, not ``%C3%A9``
    (the platform allows no ``/`` in a name, so decoding cannot split a segment)."""
    return unquote(fusion_url(name))


def plan(fs: FusionFileSystem, url: str, dest: Path, *, into_dir: bool = False) -> tuple[list[Job], list[Mapped]]:
    """The files under ``url`` and where each goes below (or at) ``dest``; and the names that changed.

    ``into_dir``: ``dest`` was given with a trailing slash (a directory, even if it does not exist yet).
    A single file goes to ``dest`` itself unless that is a directory; a tree mirrors the platform's
    layout below ``dest``.
    """
    from fusion_stac.storage import local_name

    root = fs.info(url)
    if root["type"] == "file":
        remote = shown(root["name"])
        if not (dest.is_dir() or into_dir):
            return [Job(remote, root, dest)], []  # the user chose the name: used as given
        label = root["name"].rstrip("/").rsplit("/", 1)[-1]
        name = local_name(root.get("item_name") or unquote(label), file_id=str(root.get("file_id") or label),
                          directory=dest)
        mapped = [Mapped(remote, name.path, name.reasons)] if name.changed else []
        return [Job(remote, root, name.path)], mapped
    base = root["name"].rstrip("/")
    found = fs.find(base, detail=True)
    files = [(tuple(name[len(base):].strip("/").split("/")), entry) for name, entry in sorted(found.items())
             if entry.get("type") == "file"]
    return _tree(base, files, dest)


def _tree(base: str, files: list[tuple[tuple[str, ...], dict[str, Any]]],
          dest: Path) -> tuple[list[Job], list[Mapped]]:
    """Local paths for a tree, one :func:`~fusion_stac.storage.unique_local_names` batch per directory
    (its subdirectories and files together, so a file never lands on a directory's path)."""
    from fusion_stac.storage import unique_local_names

    children: dict[tuple[str, ...], dict[str, str]] = {}  # remote dir -> {key: name}

    def file_key(entry: dict[str, Any], segs: tuple[str, ...]) -> str:
        return "file:" + str(entry.get("file_id") or "/".join(segs))

    for segs, entry in files:
        for depth in range(len(segs) - 1):
            children.setdefault(segs[:depth], {})["dir:" + "/".join(segs[:depth + 1])] = unquote(segs[depth])
        name = entry.get("item_name") or unquote(segs[-1])
        children.setdefault(segs[:-1], {})[file_key(entry, segs)] = str(name)
    local_dirs: dict[tuple[str, ...], Path] = {(): dest}
    names: dict[tuple[str, ...], dict[str, LocalName]] = {}
    mapped: list[Mapped] = []
    for parent in sorted(children, key=len):  # parents before children
        directory = local_dirs[parent]
        batch = unique_local_names([(n, key) for key, n in children[parent].items()], directory=directory)
        names[parent] = batch
        for key, chosen in batch.items():
            if key.startswith("dir:"):
                segs = tuple(key[4:].split("/"))
                local_dirs[segs] = chosen.path
                if chosen.changed:
                    mapped.append(Mapped(shown(base + "/" + key[4:]), chosen.path, chosen.reasons))
    jobs = []
    top = dest.absolute()
    for segs, entry in files:
        chosen = names[segs[:-1]][file_key(entry, segs)]
        if top not in chosen.path.absolute().parents:  # defence in depth: never outside dest
            raise OSError(f"refusing to write {fusion_url(entry['name'])} outside {dest} (as {chosen.path})")
        jobs.append(Job(shown(entry["name"]), entry, chosen.path))
        if chosen.changed:
            mapped.append(Mapped(shown(entry["name"]), chosen.path, chosen.reasons))
    return jobs, mapped


# -- running ---------------------------------------------------------------------------------------
def run(client: FusionClient, jobs: list[Job], *, workers: int, cancel: threading.Event,
        on_bytes: Callable[[int], None]) -> list[Outcome]:
    """Every job through the pool; one :class:`Outcome` each, in the order of ``jobs``.

    Never raises for a file's failure. ``cancel`` stops transfers in flight (partials kept) and
    leaves jobs not yet started alone. A :class:`KeyboardInterrupt` (a second Ctrl-C) sets
    ``cancel``, waits for the transfers to stop and is raised again.
    """
    outcomes: dict[int, Outcome] = {}
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fusion-stac-get")
    try:
        futures = {pool.submit(_one, client, job, cancel, on_bytes): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            outcomes[futures[future]] = future.result()
    except BaseException:
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [outcomes[i] for i in range(len(jobs))]


def _one(client: FusionClient, job: Job, cancel: threading.Event, on_bytes: Callable[[int], None]) -> Outcome:
    from fusion_stac.storage import DownloadCancelled

    if cancel.is_set():
        return Outcome(job, "not-started")
    try:
        replacing = False
        if job.target.is_dir():
            raise IsADirectoryError(21, "a directory is in the way", str(job.target))
        if job.target.is_file() and job.size is not None and job.target.stat().st_size == job.size:
            try:
                same = _same_content(client, job, cancel)
            except DownloadCancelled:
                return Outcome(job, "not-started")  # interrupted while comparing: compared next time
            if same is not False:
                return Outcome(job, "present" if same else "present-size")
            replacing = True
        _download(client, job, cancel, on_bytes)
        return Outcome(job, "replaced" if replacing else "downloaded")
    except DownloadCancelled as exc:
        return _cancelled(job, exc)
    except Exception as exc:
        return Outcome(job, "failed", exc, reason(exc, job))


def _cancelled(job: Job, exc: DownloadCancelled) -> Outcome:
    return Outcome(job, "cancelled", exc, partial=exc.partial, received=exc.received if exc.partial else 0)


def _download(client: FusionClient, job: Job, cancel: threading.Event, on_bytes: Callable[[int], None]) -> None:
    from fusion_stac.models import DataFile

    entry = job.entry
    model = DataFile.from_api({"id": entry.get("record_id") or entry.get("file_id"), "file_id": entry.get("file_id"),
                               "file_name": entry.get("item_name"), "data_id": entry.get("data_id"),
                               "organisation_id": entry.get("organisation_id"), "size": entry.get("size")})
    size = job.size or 0
    seen = [0]

    def progress(fraction: float) -> None:
        now = int(fraction * size)
        on_bytes(now - seen[0])
        seen[0] = now

    client.download_file(entry["organisation_id"], entry["data_id"], model, job.target,
                         progress=progress if size else None, cancel=cancel)


def _same_content(client: FusionClient, job: Job, cancel: threading.Event) -> bool | None:
    """Whether the local file holds what storage holds: its MD5 against storage's; ``None`` when
    storage states no MD5 (only the size could be compared)."""
    from fusion_stac.storage import DownloadCancelled, FileKey, RangeReader

    if not job.size:
        return True  # two empty files
    entry = job.entry
    key = FileKey(entry["organisation_id"], entry["data_id"], entry["file_id"])
    try:
        reader = RangeReader(client.storage, key, 0, 1, path=job.remote, size=job.size)
        with reader:
            reader.read(1)
        etag = reader.pin.etag
    except Exception:
        return False  # cannot tell: the download that follows verifies (and names any real trouble)
    match = _MD5_ETAG_RE.match(etag.strip()) if etag else None
    if match is None:
        return None
    digest = hashlib.md5(usedforsecurity=False)
    with open(job.target, "rb") as local:
        while block := local.read(1 << 20):
            if cancel.is_set():
                raise DownloadCancelled(job.remote, None, 0, job.size)
            digest.update(block)
    return digest.hexdigest() == match[1].lower()


# -- reasons ---------------------------------------------------------------------------------------
def is_local(exc: BaseException) -> bool:
    """An error of the local file system (not of the platform or storage, whose errors are
    :class:`~fusion_stac.errors.FusionError` or built-ins naming a ``fusion://`` file)."""
    from fusion_stac.errors import FusionError

    if not isinstance(exc, OSError) or isinstance(exc, FusionError):
        return False
    return not str(exc.filename or "").startswith("fusion://")


def reason(exc: BaseException, job: Job) -> str:
    """Why ``job`` failed, in one line without the file's name (the caller puts the listed name
    first); a local error names the destination the user asked for, not an internal partial file."""
    from fusion_stac.errors import FusionError, redact

    if is_local(exc):
        assert isinstance(exc, OSError)
        why = exc.strerror or str(exc)
        return f"cannot write {job.target}: {why}"
    if isinstance(exc, OSError) and not isinstance(exc, FusionError) and exc.strerror:
        text = str(exc.strerror)
    else:
        text = str(exc)
    lines = text.strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    text = _LABEL_RE.sub("", text, count=1)
    if not isinstance(exc, (FusionError, OSError)):
        text = f"{type(exc).__name__}: {text}"
    return redact(text)
