"""A ``requests.Session`` that loses chosen requests, before or after the server handled them.

The emulator's random faults cannot be aimed at one route; these can. ``when="before"`` drops the
request without sending it (the server never sees it), ``when="after"`` sends it, lets the server
handle it, and then drops the answer (the client sees a connection reset: the outcome is unknown),
``when="500-after"`` replaces the server's answer by a 500 (a proxy that failed after the upstream
had acted), ``when="401"`` answers 401 without sending (a session that ended, again).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import requests


@dataclass
class Rule:
    method: str
    pattern: str
    when: str  # "before" | "after" | "500-after" | "401"
    times: int = 1
    hits: int = 0


class FlakySession(requests.Session):
    """Loses the next ``times`` requests matching each rule (method and a regex on the URL path)."""

    def __init__(self, *rules: Rule) -> None:
        super().__init__()
        self.rules = list(rules)
        self._lock = threading.Lock()
        self.seen: list[tuple[str, str, str]] = []  # (method, path, what happened)

    def _match(self, request: requests.PreparedRequest) -> Rule | None:
        path = requests.utils.urlparse(request.url).path
        with self._lock:
            for rule in self.rules:
                if rule.hits < rule.times and rule.method == request.method and re.search(rule.pattern, path):
                    rule.hits += 1
                    self.seen.append((request.method or "", path, rule.when))
                    return rule
        return None

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        rule = self._match(request)
        if rule is not None and rule.when == "before":
            raise requests.ConnectionError("injected: connection reset before the request was sent")
        if rule is not None and rule.when == "401":
            return _fake(request, 401, b'{"error_message": "injected: the access token has expired"}')
        response = super().send(request, **kwargs)
        if rule is None:
            return response
        _ = response.content  # the server has fully handled the request
        response.close()
        if rule.when == "after":
            raise requests.ConnectionError("injected: connection reset after the server handled the request")
        return _fake(request, 500, b'{"error_message": "injected: upstream failed"}')

    @property
    def fired(self) -> int:
        return sum(rule.hits for rule in self.rules)


def _fake(request: requests.PreparedRequest, status: int, body: bytes) -> requests.Response:
    fake = requests.Response()
    fake.status_code = status
    fake._content = body
    fake.headers["Content-Type"] = "application/json"
    fake.url = request.url or ""
    fake.request = request
    return fake
