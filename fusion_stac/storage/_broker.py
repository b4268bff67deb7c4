"""The URL broker: one pre-signed download URL per file, signed at read time, refreshed in time.

Every peer that reads pre-signed URLs signs them once (at search or graph-build time) and fails an
hour later. Here a read asks the broker for a *lease* on the file's current URL just before each HTTP
request. The broker:

* caches one URL per :class:`FileKey` (the stable ids, never the URL) with its expiry;
* re-signs when less than a margin is left (``min(margin, 20 % of the URL's lifetime)``, so very
  short-lived URLs still get used);
* re-signs when a request with the URL was refused (403, expired), but only once per URL however many
  threads saw the refusal: :meth:`URLBroker.invalidate` drops the URL only if it is still the one the
  failed lease handed out;

A :class:`VersionPin` travels with each read operation (an open file, one ``cat_ranges`` call...): it
remembers the first ``ETag`` storage reported, so that a file whose content changes between two
requests of the same read -- typically across a URL refresh -- fails loudly instead of mixing versions.

Signing is delegated to a callable ``sign(key) -> SignedURL | (url, expires_at)`` so the broker can
be tested without the API. Expiry is tracked on the monotonic clock, measured from the moment of
signing, so wall-clock jumps on the reading machine do not matter.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fusion_stac._urls import file_url
from fusion_stac.errors import FusionError
from fusion_stac.storage._stats import TransferStats

__all__ = ["FileChangedError", "FileKey", "Lease", "Signer", "URLBroker", "VersionPin"]


@dataclass(frozen=True, order=True)
class FileKey:
    """The stable identity of a stored file: what caches and the broker key on.

    ``preview`` names the PNG preview the platform renders of the file (signed by the same file id
    with ``preview=true``): other bytes, so another key.
    """

    organisation_id: str
    data_id: str
    file_id: str
    preview: bool = False

    @property
    def url(self) -> str:
        """The short ``fusion://`` form naming this file (``#preview`` for its preview)."""
        return file_url(self.organisation_id, self.data_id, self.file_id) + ("#preview" if self.preview else "")

    @property
    def tag(self) -> str:
        """What local partial files of this file are keyed by (the file id; ``#preview`` appended)."""
        return self.file_id + ("#preview" if self.preview else "")

    def __str__(self) -> str:
        return self.url


Signer = Callable[[FileKey], Any]


class FileChangedError(FusionError, OSError):
    """The bytes behind a file changed while it was being read (its ETag or size differs).

    Raised instead of returning a mix of two versions; ``path`` names the file. Also an
    :class:`OSError`, so readers that only know built-ins (GDAL, xarray) see an I/O error.
    """


class VersionPin:
    """The version (ETag) of a file one read operation has seen; a different one later is an error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.etag: str | None = None

    def check(self, key: FileKey, etag: str | None, path: str | None = None) -> None:
        """Pin the first ETag seen; raise :class:`FileChangedError` if a later answer has another."""
        if not etag:
            return
        etag = etag.strip()
        if etag.startswith("W/"):
            etag = etag[2:]
        with self._lock:
            if self.etag is None:
                self.etag = etag
            known = self.etag
        if known != etag:
            raise FileChangedError(
                f"{path or key.url}: the file changed while it was being read (ETag {known} became {etag}); "
                "refusing to mix two versions. Re-open it to read the new version.",
                path=path or key.url,
            )


@dataclass(frozen=True)
class Lease:
    """A URL handed out by the broker; give it back to :meth:`URLBroker.invalidate` on refusal."""

    key: FileKey
    url: str = field(repr=False)
    generation: int
    deadline: float  # monotonic time at which the URL stops working


@dataclass
class _Entry:
    url: str
    generation: int
    deadline: float
    refresh_at: float


def _expiry_seconds(expires_at: Any, now_wall: float) -> float:
    """Seconds until ``expires_at`` (aware/naive datetime, epoch seconds, or None = one hour)."""
    if expires_at is None:
        return 3600.0
    if isinstance(expires_at, datetime):
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=timezone.utc)
        return expires_at.timestamp() - now_wall
    return float(expires_at) - now_wall


class URLBroker:
    """Thread-safe cache of pre-signed URLs keyed by :class:`FileKey`.

    ``margin``: seconds before expiry at which a URL is replaced (capped at 20 % of its lifetime).
    ``max_entries``: URLs kept (least recently used dropped first).
    """

    def __init__(
        self,
        sign: Signer,
        *,
        stats: TransferStats | None = None,
        margin: float = 60.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._sign = sign
        self.stats = stats if stats is not None else TransferStats()
        self.margin = float(margin)
        self.max_entries = int(max_entries)
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[FileKey, _Entry] = OrderedDict()
        self._key_locks: dict[FileKey, threading.Lock] = {}
        self._signed: set[FileKey] = set()  # keys signed before: a new URL for them is a refresh
        self._generation = 0

    # -- leases --------------------------------------------------------------------------------
    def lease(self, key: FileKey) -> Lease:
        """The file's current URL, signing a new one if there is none or it is about to expire."""
        entry = self._fresh(key)
        if entry is not None:
            return Lease(key, entry.url, entry.generation, entry.deadline)
        with self._key_lock(key):
            entry = self._fresh(key)  # another thread may have signed meanwhile
            if entry is None:
                entry = self._sign_now(key)
        return Lease(key, entry.url, entry.generation, entry.deadline)

    def invalidate(self, lease: Lease) -> None:
        """Storage refused ``lease``'s URL: drop it, unless it was already replaced."""
        with self._lock:
            entry = self._entries.get(lease.key)
            if entry is not None and entry.generation == lease.generation:
                del self._entries[lease.key]

    def forget(self, key: FileKey | None = None) -> None:
        """Drop cached URLs (of one file, or all): the next read signs afresh."""
        with self._lock:
            if key is None:
                self._entries.clear()
                self._signed.clear()
            else:
                self._entries.pop(key, None)
                self._signed.discard(key)

    def __contains__(self, key: FileKey) -> bool:
        return self._fresh(key) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- internals -----------------------------------------------------------------------------
    def _key_lock(self, key: FileKey) -> threading.Lock:
        with self._lock:
            lock = self._key_locks.get(key)
            if lock is None:
                if len(self._key_locks) > 4 * self.max_entries:
                    # Drop locks nobody holds; they are recreated on demand.
                    self._key_locks = {k: v for k, v in self._key_locks.items() if v.locked()}
                lock = self._key_locks[key] = threading.Lock()
            return lock

    def _fresh(self, key: FileKey) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._clock() >= entry.refresh_at:
                return None
            self._entries.move_to_end(key)
            return entry

    def _sign_now(self, key: FileKey) -> _Entry:
        before = self._clock()
        signed = self._sign(key)
        if isinstance(signed, tuple):
            url, expires_at = signed
        else:
            url, expires_at = signed.url, getattr(signed, "expires_at", None)
        lifetime = max(_expiry_seconds(expires_at, self._wall()), 0.0)
        margin = min(self.margin, 0.2 * lifetime)
        with self._lock:
            self._generation += 1
            refreshed = key in self._signed
            if len(self._signed) > 16 * self.max_entries:
                self._signed.clear()
            self._signed.add(key)
            entry = _Entry(url, self._generation, before + lifetime, before + lifetime - margin)
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        self.stats.add("urls_signed")
        if refreshed:
            self.stats.add("url_refreshes")
        return entry
