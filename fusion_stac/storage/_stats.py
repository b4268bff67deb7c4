"""Transfer counters shared by everything one connection does (thread-safe, resettable).

Benchmarks and users read them as ``fs.stats``; they count data-plane traffic only (requests to
pre-signed storage URLs), which is what differs between readers. API calls are the client's business.
"""

from __future__ import annotations

import threading

__all__ = ["COUNTERS", "TransferStats"]

#: Every counter, in display order.
COUNTERS: tuple[str, ...] = (
    "requests",  # GETs sent to storage URLs (including failed and retried ones)
    "bytes",  # body bytes received from storage (what the reader consumed, wasted bytes included)
    "urls_signed",  # download URLs obtained from the API (first signing and refreshes)
    "url_refreshes",  # of which: replacements of a URL that expired or was refused
    "retries",  # requests repeated after a reset, a truncated body, a 5xx, a 429 or a faulty answer
    "resumes",  # of which: requests continuing an answer that broke off midway (its bytes kept)
)


class TransferStats:
    """A few integer counters behind one lock; ``snapshot()`` returns a plain dict."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)

    def add(self, name: str, amount: int = 1) -> None:
        """Increase counter ``name`` by ``amount``."""
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of every counter."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> dict[str, int]:
        """Zero every counter; returns the values they had (so a benchmark can read-and-reset)."""
        with self._lock:
            before = dict(self._counts)
            self._counts = dict.fromkeys(COUNTERS, 0)
            return before

    def __repr__(self) -> str:
        return f"TransferStats({self.snapshot()})"
