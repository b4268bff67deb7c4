"""One retry policy for every request the library sends: API calls and storage transfers alike.

A :class:`RetryPolicy` says how hard to try; the two transports apply it:

* the API transport (:class:`~fusion_stac.storage.APITransport`) retries connection failures,
  truncated or unparsable bodies of idempotent calls, 429 and the statuses in ``retry_statuses``
  (POSTs only where nothing can have taken effect; the client re-checks the rest before repeating);
* the storage transport (:class:`~fusion_stac.storage.Transport`) counts ``attempts`` per byte
  range *without progress* (a resumed body that brought bytes does not use one up) and re-signs a
  refused URL up to ``refreshes`` times.

The defaults differ because the costs differ: an API answer is small and a server in trouble should
be given time (:data:`API_RETRY`); a storage range is retried quickly and resumed from the last good
byte (:data:`STORAGE_RETRY`). Waits are exponential with jitter, or the server's ``Retry-After``.
"""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

__all__ = ["API_RETRY", "STORAGE_RETRY", "RetryPolicy", "parse_retry_after"]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try.

    ``attempts``: tries in all for one request (for storage: per byte range without progress).
    ``backoff``/``max_backoff``: the first and the largest wait in seconds (doubling, with jitter).
    ``max_retry_after``: never sleep longer than this on a server's ``Retry-After``.
    ``retry_statuses``: HTTP statuses worth another try (429 always is).
    ``refreshes``: re-signings of a refused pre-signed URL per range.
    ``connect_timeout``/``read_timeout``: seconds, per request and per socket read (storage).
    """

    attempts: int = 6
    backoff: float = 0.05
    max_backoff: float = 2.0
    max_retry_after: float = 30.0
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})
    refreshes: int = 3
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.refreshes < 0:
            raise ValueError("RetryPolicy.attempts must be >= 1 and refreshes >= 0")
        if min(self.backoff, self.max_backoff, self.max_retry_after, self.connect_timeout, self.read_timeout) < 0:
            raise ValueError("RetryPolicy durations must be non-negative")
        object.__setattr__(self, "retry_statuses", frozenset(int(s) for s in self.retry_statuses))

    def wait(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before try ``failures + 1``: the server's ``Retry-After`` (capped), else an
        exponential wait with jitter (half to all of ``backoff * 2**(failures-1)``, at most ``max_backoff``)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_backoff, self.backoff * 2 ** max(failures - 1, 0))
        return ceiling * (0.5 + random.random() / 2)

    def with_(self, **changes: Any) -> RetryPolicy:
        """A copy with some fields changed."""
        return replace(self, **changes)

    @classmethod
    def coerce(cls, value: RetryPolicy | int | dict[str, Any] | None, default: RetryPolicy) -> RetryPolicy:
        """A policy from what a caller passed: a policy, a number of attempts, a dict of fields, or
        ``None`` for ``default``."""
        if value is None:
            return default
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, bool):
            raise TypeError("retry must be a RetryPolicy, a number of attempts or a dict of its fields")
        if isinstance(value, int):
            return replace(default, attempts=value)
        if isinstance(value, dict):
            return replace(default, **value)
        raise TypeError(f"retry must be a RetryPolicy, a number of attempts or a dict, not {type(value).__name__}")


#: API calls: a few patient tries (a server in trouble gets time to recover).
API_RETRY = RetryPolicy(attempts=5, backoff=0.5, max_backoff=20.0, max_retry_after=120.0)
#: Storage transfers: quick retries, resumed from the last good byte.
STORAGE_RETRY = RetryPolicy()


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now (delta-seconds or an HTTP date); ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
