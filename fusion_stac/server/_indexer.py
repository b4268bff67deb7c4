"""Keeping the index up to date: incremental walks of what the user can see.

A refresh lists, per organisation of the user, its uploads and its processes (one paged listing
each) and each process's executions (one listing per process, fanned out), and builds only the
collections not indexed yet — a new upload, a new execution or group — through the STAC view
(:class:`~fusion_stac.stac.FusionStacIO`, whose walks fan out over the client's pool and cost the
minimum requests). Runs still going (and uploads still being analysed) are indexed as they are and
walked again at the next refresh; finished ones are never walked again. What disappeared from the
platform (a deleted upload or execution) is dropped from the index.

The first search of a server whose index was empty at its start waits for the first refresh (not
for a part of it); with an index kept from before (a restart, another session), searches answer from
it at once, while refreshes run every ``interval`` seconds in a background thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fusion_stac.client import FusionClient
from fusion_stac.errors import FusionError, redact
from fusion_stac.models import Process, ProcessExecution
from fusion_stac.server._index import Index
from fusion_stac.stac import FusionStacIO
from fusion_stac.stac.io import execution_href, group_href, upload_href

__all__ = ["Indexer", "RefreshReport"]

log = logging.getLogger("fusion_stac.server")

#: Collection states after which nothing changes any more.
FINAL_STATES = frozenset({"succeeded", "failed", "stopped", "ready"})


@dataclass
class RefreshReport:
    """What one refresh did."""

    collections: int = 0
    items: int = 0
    skipped: int = 0
    dropped: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class Indexer:
    """Refreshes ``index`` from ``client``; :meth:`ensure` before answering, :meth:`start` for the timer."""

    def __init__(self, client: FusionClient, index: Index, *, interval: float = 60.0, read_headers: bool = True,
                 include_intermediate: bool = False) -> None:
        self.client = client
        self.index = index
        self.interval = float(interval)
        self.read_headers = read_headers
        self.include_intermediate = include_intermediate
        self.last_refresh: float | None = None  # monotonic time the last refresh finished
        self.last_report: RefreshReport | None = None
        self._lock = threading.Lock()  # one refresh at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._empty_at_start = index.count() == 0 and not index.sources()

    # -- scheduling -----------------------------------------------------------------------------
    def ensure(self) -> None:
        """Before an answer: on an index that was empty when this indexer began, wait for the first
        refresh (running one if none is: an index half written by the first walk is not an answer);
        on an index kept from before, never wait."""
        if self.last_refresh is None and self._empty_at_start:
            with self._lock:
                if self.last_refresh is None:
                    self._refresh_locked()

    def catch_up(self, max_age: float = 5.0) -> None:
        """After a miss (a file the index does not know, which a new run or a stale index shared with
        another session explains): wait for the refresh running, if one is, else run one, unless the
        last one finished less than ``max_age`` seconds ago (misses coalesce: one refresh for many)."""
        asked = time.monotonic()
        with self._lock:
            if self.last_refresh is not None and self.last_refresh >= asked - max_age:
                return
            self._refresh_locked()

    def start(self) -> None:
        """Refresh now and then every ``interval`` seconds, in a daemon thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="fusion-stac-index", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # keep serving the index we have
                log.warning("index refresh failed: %s", redact(str(exc)))
            self._stop.wait(self.interval)

    # -- one refresh ----------------------------------------------------------------------------
    def refresh(self) -> RefreshReport:
        """One incremental pass (waits for a pass already running, then runs its own)."""
        with self._lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> RefreshReport:
        began = time.monotonic()
        report = RefreshReport()
        io = FusionStacIO(self.client, read_headers=self.read_headers, include_intermediate=self.include_intermediate)
        complete = self.index.complete_sources()
        seen: set[str] = set()
        listed: list[str] = []  # organisations whose listings answered: what they lost is dropped
        todo: list[tuple[str, str, str]] = []  # (source, kind, stac href)
        for org_id in self.client.user.organisation_ids:
            def listing(process: Process, org_id: str = org_id) -> tuple[str, list[ProcessExecution]]:
                return process.id, io.executions(org_id, process.id)

            try:
                uploads = io.uploads(org_id)
                processes = io.processes(org_id)
                runs = self.client.map(listing, processes)
            except FusionError as exc:
                report.errors.append(f"organisation {org_id}: {redact(str(exc))}")
                continue
            listed.append(org_id)
            for d in uploads:
                source = f"upload:{org_id}/{d.id}"
                seen.add(source)
                if source not in complete:
                    todo.append((source, "upload", upload_href(org_id, d.id)))
            for process_id, executions in runs:
                for run_id, hrefs in _runs(org_id, process_id, executions).items():
                    source = f"run:{org_id}/{run_id}"
                    seen.add(source)
                    if source not in complete:
                        todo.append((source, "run", hrefs))
        report.skipped = len(seen) - len(todo)

        def build(job: tuple[str, str, str]) -> tuple[str, str, dict[str, Any], list[dict[str, Any]]] | str:
            source, kind, href = job
            try:
                doc = io.document(href)
                items = [io.document(link["href"]) for link in doc.get("links", []) if link.get("rel") == "item"]
            except FusionError as exc:
                return f"{source}: {redact(str(exc))}"
            return source, kind, doc, items

        for result in self.client.map(build, todo):
            if isinstance(result, str):
                report.errors.append(result)
                continue
            source, kind, doc, items = result
            final = doc.get("fusion:state") in FINAL_STATES
            report.items += self.index.put_collection(doc, items, kind=kind, source=source, complete=final)
            report.collections += 1
        prefixes = tuple(f"{kind}:{org}/" for org in listed for kind in ("upload", "run"))
        for source in self.index.sources() - seen:
            if source.startswith(prefixes):  # an upload or run of a listed organisation that is gone
                self.index.forget_source(source)
                report.dropped += 1
        report.seconds = time.monotonic() - began
        for problem in report.errors:
            log.warning("index refresh: %s", problem)
        log.info("index refresh: %d collection(s), %d item(s) indexed, %d unchanged, %d dropped in %.2f s",
                 report.collections, report.items, report.skipped, report.dropped, report.seconds)
        self.last_refresh = time.monotonic()
        self.last_report = report
        return report


def _runs(org_id: str, process_id: str, executions: list[ProcessExecution]) -> dict[str, str]:
    """``run id -> STAC href``: one per ungrouped execution, one per group (slices and aggregators)."""
    groups: dict[str, list[ProcessExecution]] = defaultdict(list)
    out: dict[str, str] = {}
    for ex in executions:
        if ex.group_id is None:
            out[ex.id] = execution_href(org_id, process_id, ex.id)
        else:
            groups[ex.group_id].append(ex)
    for group_id in groups:
        out[group_id] = group_href(org_id, process_id, group_id)
    return out
