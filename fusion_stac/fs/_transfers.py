"""``fusion://`` bytes in and out: ``open``, ``cat_file``, ``cat_ranges``, ``get`` and ``put``."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any
from urllib.parse import unquote

from fsspec.callbacks import DEFAULT_CALLBACK, Callback, NoOpCallback
from fsspec.utils import isfilelike

from fusion_stac._urls import FusionPath, FusionURLError, is_uuid, parse
from fusion_stac.fs._errors import translate
from fusion_stac.fs._file import FusionFile, FusionUploadFile
from fusion_stac.fs._listing import _Listing
from fusion_stac.storage import (
    Block,
    FileKey,
    VersionPin,
    download,
    download_to,
    merge_ranges,
    slice_ranges,
    unique_local_names,
)

log = logging.getLogger("fusion_stac.fs")


class _Transfers(_Listing):
    """Reading (``_open``, ``cat_file``, ``cat_ranges``, ``get_file``, ``get``) and writing, which
    is uploads only (``put_file``, ``put``, ``cp_file`` into ``uploads/``); everything else refuses."""

    # -- reading ----------------------------------------------------------------------------------
    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        cache_type: str = "fusion",
        **kwargs: Any,
    ) -> Any:
        path = self._strip_protocol(path)
        if "r" not in mode:
            self._check_writable(path)
            return FusionUploadFile(self, path, mode=mode, autocommit=autocommit)
        path, info, key = self._file(path)
        return FusionFile(
            self, path, key=key, details=info, transport=self._conn.transport, mode=mode,
            block_size=block_size, cache_type=cache_type, cache_options=cache_options, **kwargs,
        )

    @staticmethod
    def _bounds(size: int, start: int | None, end: int | None) -> tuple[int, int]:
        start = 0 if start is None else (max(size + start, 0) if start < 0 else min(start, size))
        end = size if end is None else (max(size + end, 0) if end < 0 else min(end, size))
        return start, max(start, end)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """Bytes ``[start, end)`` of a file (negative values count from the end), verified."""
        path, info, key = self._file(path)
        s, e = self._bounds(info["size"], start, end)
        return self._conn.transport.read_range(key, s, e, path=self._url(path), size=info["size"])

    def cat_ranges(
        self,
        paths: list[str],
        starts: int | list[int | None] | None,
        ends: int | list[int | None] | None,
        max_gap: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list[Any]:
        """Many byte ranges of many files: overlapping/adjacent ranges of a file (or within
        ``max_gap`` bytes) are merged, and all requests run in parallel."""
        if not isinstance(paths, list):
            raise TypeError("cat_ranges takes a list of paths")
        starts = starts if isinstance(starts, list) else [starts] * len(paths)
        ends = ends if isinstance(ends, list) else [ends] * len(paths)
        if not len(starts) == len(ends) == len(paths):
            raise ValueError("cat_ranges: paths, starts and ends must have the same length")
        results: list[Any] = [None] * len(paths)
        per_file: dict[FileKey, tuple[str, int, list[tuple[int, tuple[int, int]]]]] = {}
        for i, (p, s, e) in enumerate(zip(paths, starts, ends, strict=True)):
            try:
                stripped, info, key = self._file(p)
            except Exception as exc:
                if on_error != "return":
                    raise
                results[i] = exc
                continue
            entry = per_file.setdefault(key, (stripped, info["size"], []))
            entry[2].append((i, self._bounds(info["size"], s, e)))
        blocks: list[Block] = []
        plans = []
        for key, (stripped, size, wanted) in per_file.items():
            merged = merge_ranges([r for _, r in wanted], max_gap=max_gap or 0)
            pin = VersionPin()
            first = len(blocks)
            blocks.extend(Block(key, s, e, self._url(stripped), size, pin) for s, e in merged)
            plans.append((wanted, merged, first))
        payloads = self._conn.transport.read_blocks(blocks, raise_first=on_error != "return")
        for wanted, merged, first in plans:
            sliced = slice_ranges([r for _, r in wanted], merged, payloads[first:first + len(merged)])
            for (i, _), value in zip(wanted, sliced, strict=True):
                results[i] = value
        return results

    def get_file(self, rpath: str, lpath: Any, callback: Callback = DEFAULT_CALLBACK, outfile: Any = None,
                 **kwargs: Any) -> None:
        """Download one file; a local path is written atomically: into a partial file named after the
        file id, renamed when complete; a download interrupted earlier (killed, failed) resumes."""
        collecting = getattr(self._collect, "gets", None)
        if collecting is not None:
            collecting.append((rpath, lpath))
            return
        if outfile is None and isfilelike(lpath):
            outfile = lpath
        if outfile is None and self.isdir(rpath):
            os.makedirs(lpath, exist_ok=True)
            return
        path, info, key = self._file(rpath)
        size = info["size"]
        callback.set_size(size)
        # One road for whole files (fusion_stac.storage.download): verified size (and MD5 where
        # storage's ETag is one), partial beside the target keyed by file id and version, resumed,
        # locked against a second writer, synced and renamed into place.
        if outfile is not None:
            # a file object gets what every read gets: each answer verified, the size checked (a
            # download to a path is also MD5-checked before it is renamed into place)
            download_to(self._conn.transport, key, outfile, path=self._url(path), size=size,
                        progress=callback.relative_update, checksum=False)
            return
        download(self._conn.transport, key, os.fspath(lpath), path=self._url(path), size=size,
                 progress=callback.relative_update)

    def get(self, rpath: Any, lpath: Any, recursive: bool = False, callback: Callback = DEFAULT_CALLBACK,
            maxdepth: int | None = None, **kwargs: Any) -> None:
        """Download files (globs, lists, ``recursive=True`` as in fsspec), ``max_workers`` at a time.

        ``callback`` follows fsspec's API: its size is the number of files, and each file gets a
        branched child callback counting its bytes.
        """
        pairs: list[tuple[str, Any]] = []
        self._collect.gets = pairs
        try:
            super().get(rpath, lpath, recursive=recursive, callback=NoOpCallback(), maxdepth=maxdepth, **kwargs)
        finally:
            self._collect.gets = None
        pairs = self._local_paths(pairs)
        callback.set_size(len(pairs))
        lock = threading.Lock()

        def one(pair: tuple[str, Any]) -> None:
            r, local = pair
            with lock:
                child = callback.branched(r, local)
            with child:
                self.get_file(r, local, callback=_Locked(child, lock))

        self._run_parallel(one, pairs, on_done=lambda: callback.relative_update(1), lock=lock)

    def _local_paths(self, pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """The local path of each file as the platform names it, not as its URL spells it (fsspec
        derives local names from the remote path, whose segments are percent-encoded: ``é`` would
        become ``%C3%A9``), mapped where the local file system does not allow the name and made
        unique per directory (:func:`fusion_stac.storage.unique_local_names`). A local name the
        caller gave (not the remote one) is kept as given."""
        by_dir: dict[str, list[tuple[int, str, str]]] = {}
        for i, (rpath, local) in enumerate(pairs):
            if isfilelike(local):
                continue
            try:
                _, info, key = self._file(rpath)
            except OSError:
                continue  # a directory: get_file makes it
            directory, base = os.path.split(os.fspath(local))
            if base != rpath.rstrip("/").rsplit("/", 1)[-1]:
                continue  # a local name the caller chose: kept as given
            name = info.get("item_name") or unquote(base)
            by_dir.setdefault(directory, []).append((i, str(name), key.file_id))
        out = list(pairs)
        for directory, entries in by_dir.items():
            names = unique_local_names([(name, file_id) for _, name, file_id in entries],
                                       directory=directory or ".")
            for i, _, file_id in entries:
                mapped = names[file_id]
                if mapped.changed:
                    log.info("%s: saved as %s (%s)", pairs[i][0], mapped.name, "; ".join(mapped.reasons))
                out[i] = (pairs[i][0], os.path.join(directory, mapped.name))
        return out

    def _run_parallel(self, fn: Callable[[Any], Any], items: Sequence[Any], *, on_done: Callable[[], Any],
                      lock: threading.Lock) -> None:
        pool = self._conn.transport.pool
        futures: list[Future[Any]] = [pool.submit(fn, item) for item in items]
        error: BaseException | None = None
        for future in futures:
            exc = future.exception()
            if exc is not None:
                if error is None:
                    error = exc
                    for pending in futures:
                        pending.cancel()
                continue
            if not future.cancelled():
                with lock:
                    on_done()
        if error is not None:
            raise error

    # -- writing: uploads only --------------------------------------------------------------------
    def _check_writable(self, path: str) -> FusionPath:
        url = self._url(path)
        try:
            fp = parse(path)
        except FusionURLError as exc:
            if path.split("/")[1:2] == ["uploads"]:
                raise translate(exc, url) from exc
            fp = FusionPath()
        if fp.section != "uploads" or fp.kind not in ("data", "file"):
            raise PermissionError(
                errno.EACCES,
                "fusion:// is read-only except for uploads: write to "
                "fusion://{organisation}/uploads/{data}/{file} to create a new data item",
                url,
            )
        return fp

    def put_file(self, lpath: Any, rpath: str, callback: Callback = DEFAULT_CALLBACK, mode: str = "overwrite",
                 **kwargs: Any) -> None:
        """Upload one local file as a new data item (see :meth:`put`)."""
        collecting = getattr(self._collect, "puts", None)
        if collecting is not None:
            if not os.path.isdir(lpath):
                collecting.append((os.fspath(lpath), rpath))
            return
        if os.path.isdir(lpath):
            return
        self._upload([(os.fspath(lpath), rpath)], bytes_callback=callback)

    def put(self, lpath: Any, rpath: Any, recursive: bool = False, callback: Callback = DEFAULT_CALLBACK,
            maxdepth: int | None = None, **kwargs: Any) -> None:
        """Upload local files into ``{organisation}/uploads/``.

        ``uploads/{data}/{file}`` puts the file into a new data item ``{data}`` (several files aimed at
        the same ``{data}`` in one call become one item); ``uploads/{data}`` names the item and keeps
        the local file name. The file type follows the extension (API doc 10.1); the call returns once
        the platform has analysed every file. An existing item of that name is never replaced or
        extended: ``FileExistsError``. Anywhere else: ``PermissionError``.
        """
        pairs: list[tuple[str, str]] = []
        self._collect.puts = pairs
        try:
            super().put(lpath, rpath, recursive=recursive, callback=NoOpCallback(), maxdepth=maxdepth, **kwargs)
        finally:
            self._collect.puts = None
        self._upload(pairs, files_callback=callback)

    def _upload(self, pairs: Sequence[tuple[str, str]], *, files_callback: Callback | None = None,
                bytes_callback: Callback | None = None) -> None:
        groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
        labels: dict[tuple[str, str], str] = {}
        for local, remote in pairs:
            remote = self._strip_protocol(remote)
            fp = self._check_writable(remote)
            org = self._node(fp.organisation or "")
            assert fp.data is not None
            name = fp.file or os.path.basename(local)
            group = (org["organisation_id"], fp.data)
            groups.setdefault(group, []).append((local, name))
            labels[group] = self._strip_protocol(self._parent(remote) if fp.file else remote)
        for (org_id, data_name), files in groups.items():
            names = [n for _, n in files]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{self._url(labels[(org_id, data_name)])}: two files would be called "
                                 f"{', '.join(map(repr, dupes))}")
            self._refuse_existing(labels[(org_id, data_name)], org_id, data_name)
        if files_callback is not None:
            files_callback.set_size(len(pairs))
        for group, files in groups.items():
            self._upload_group(labels[group], group[0], group[1], files, files_callback, bytes_callback)

    def _refuse_existing(self, path: str, org_id: str, data_name: str) -> None:
        client = self._lazy_client(path)
        existing = self._call(path, lambda: [d for d in client.iter_data(org_id, name=data_name)
                                             if d.name == data_name or d.id == data_name])
        if is_uuid(data_name) and not existing:
            try:
                existing = [self._call(path, client.get_data, org_id, data_name)]
            except FileNotFoundError:
                existing = []
        if existing:
            ids = ", ".join(d.id for d in existing)
            raise FileExistsError(
                errno.EEXIST,
                f"data {data_name!r} already exists (id {ids}); an upload creates a new data item and never "
                "replaces or extends one: choose another name",
                self._url(path),
            )

    def _upload_group(self, path: str, org_id: str, data_name: str, files: list[tuple[str, str]],
                      files_callback: Callback | None, bytes_callback: Callback | None) -> None:
        client = self._lazy_client(path)
        total = sum(os.path.getsize(local) for local, _ in files)
        child = (files_callback.branched(files[0][0], self._url(path)) if files_callback is not None
                 else bytes_callback or DEFAULT_CALLBACK)
        child.set_size(total)
        staging = tempfile.mkdtemp(prefix="fusion-put-")
        try:
            staged = []
            for local, name in files:
                if os.path.basename(local) == name:
                    staged.append(local)
                    continue
                target = os.path.join(staging, name)
                try:
                    os.link(local, target)
                except OSError:
                    shutil.copyfile(local, target)
                staged.append(target)
            data = self._call(
                path, client.create_data, org_id, data_name, staged, wait=True, timeout=self.upload_timeout,
                progress=lambda fraction: child.absolute_update(int(fraction * total)),
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if files_callback is not None:
                child.close()
        log.info("uploaded %d file(s) to %s as data %s", len(files), self._url(path), data.id)
        self.invalidate_cache(path)
        org_path = path.split("/", 1)[0]
        for section in ("uploads", "data"):
            self.invalidate_cache(f"{org_path}/{section}")
        if files_callback is not None:
            files_callback.relative_update(len(files))

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy a file into ``uploads/`` (via a local temporary file); nothing else is writable."""
        path2 = self._strip_protocol(path2)
        self._check_writable(path2)
        with tempfile.TemporaryDirectory(prefix="fusion-cp-") as tmp:
            local = os.path.join(tmp, os.path.basename(self._strip_protocol(path1)) or "file")
            self.get_file(path1, local)
            self.put_file(local, path2)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Folders under ``uploads/`` appear with their first file: nothing to do. Elsewhere: refused."""
        path = self._strip_protocol(path)
        fp = self._check_writable_dir(path)
        if fp is None:
            raise PermissionError(errno.EACCES, "fusion:// is read-only outside uploads/", self._url(path))

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.mkdir(path)

    def _check_writable_dir(self, path: str) -> FusionPath | None:
        try:
            fp = parse(path)
        except FusionURLError:
            return None
        return fp if fp.section == "uploads" and fp.kind in ("section", "data") else None

    def _refuse(self, path: Any, what: str) -> None:
        shown = path if isinstance(path, str) else ", ".join(map(str, path))
        raise PermissionError(errno.EACCES, f"fusion:// does not {what}; the platform's data is read-only "
                              "here (uploads are added with put)", self._url(self._strip_protocol(shown)))

    def rm_file(self, path: str) -> None:
        self._refuse(path, "delete files")

    def _rm(self, path: str) -> None:
        self._refuse(path, "delete files")

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        self._refuse(path, "delete files")

    def rmdir(self, path: str) -> None:
        self._refuse(path, "delete directories")

    def mv(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None, **kwargs: Any) -> None:
        self._refuse(path1, "move or rename files")

    def touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        self._refuse(path, "create empty files")



class _Locked(Callback):
    """Serialises a child callback's updates (files download in parallel; progress bars are not
    thread-safe)."""

    def __init__(self, inner: Callback, lock: threading.Lock) -> None:
        super().__init__()
        self._inner = inner
        self._lock = lock

    def set_size(self, size: Any) -> None:
        with self._lock:
            self._inner.set_size(size)

    def relative_update(self, inc: int = 1) -> None:
        with self._lock:
            self._inner.relative_update(inc)

    def absolute_update(self, value: int) -> None:
        with self._lock:
            self._inner.absolute_update(value)
