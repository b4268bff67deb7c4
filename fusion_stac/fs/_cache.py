"""The listing caches of one ``fusion://`` file system instance: what may be remembered, and for how long.

Each instance has its own (as fsspec's file systems do): a new instance lists afresh. Entries age by
what they describe:

* things that change -- the organisations, uploads, processes, a process's runs, ``latest`` and
  anything below it, an execution still running -- are kept ``ttl`` seconds (default
  :data:`DEFAULT_LISTINGS_TTL`, 10 s);
* below a **finished** execution (named by id), whose components, outputs and files never change,
  entries are kept ``final_ttl`` seconds (default ``None``: until ``invalidate_cache()``).

``refresh=True`` and ``invalidate_cache()`` still drop entries at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["DEFAULT_FINAL_TTL", "DEFAULT_LISTINGS_TTL", "ListingCache"]

#: Seconds a listing of something that can change (runs, ``latest``, uploads...) is trusted.
DEFAULT_LISTINGS_TTL = 10.0
#: Seconds a listing below a finished execution is trusted (``None``: until invalidated).
DEFAULT_FINAL_TTL: float | None = None


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


class ListingCache:
    """``path -> value`` with a time-to-live per entry, decided by :meth:`mark_final` prefixes.

    Dict-like enough for fsspec (``[]``, ``in``, ``del``, ``clear``, ``pop``, iteration, ``_cache``).
    """

    def __init__(self, ttl: float | None = DEFAULT_LISTINGS_TTL, final_ttl: float | None = DEFAULT_FINAL_TTL,
                 *, enabled: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.final_ttl = final_ttl
        self.enabled = enabled
        self._clock = clock
        self._cache: dict[str, Any] = {}
        self._expires: dict[str, float | None] = {}
        self._final: set[str] = set()
        self._lock = threading.Lock()

    def mark_final(self, path: str) -> None:
        """``path`` (a finished execution) and everything below it will never change."""
        with self._lock:
            self._final.add(path)

    def is_final(self, path: str) -> bool:
        return any(_under(path, prefix) for prefix in self._final)

    def _lifetime(self, path: str) -> float | None:
        return self.final_ttl if self.is_final(path) else self.ttl

    def __setitem__(self, path: str, value: Any) -> None:
        if not self.enabled:
            return
        life = self._lifetime(path)
        if life is not None and life <= 0:
            return
        with self._lock:
            self._cache[path] = value
            self._expires[path] = None if life is None else self._clock() + life

    def __getitem__(self, path: str) -> Any:
        with self._lock:
            value = self._cache[path]
            expires = self._expires.get(path)
            if expires is not None and self._clock() >= expires:
                del self._cache[path]
                self._expires.pop(path, None)
                raise KeyError(path)
            return value

    def __contains__(self, path: object) -> bool:
        try:
            self[path]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def __delitem__(self, path: str) -> None:
        with self._lock:
            del self._cache[path]
            self._expires.pop(path, None)

    def pop(self, path: str, default: Any = None) -> Any:
        with self._lock:
            self._expires.pop(path, None)
            return self._cache.pop(path, default)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self._expires.clear()
            self._final.clear()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._cache))

    def __len__(self) -> int:
        return len(self._cache)

    def __repr__(self) -> str:
        return f"<ListingCache {len(self._cache)} entries, ttl={self.ttl}, final_ttl={self.final_ttl}>"
