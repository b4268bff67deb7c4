"""Processes and executions (being written)."""

from __future__ import annotations

from typing import Any


class Processes:
    def __init__(self, platform: Any) -> None:
        self.platform = platform

    def start_background(self) -> None:
        pass

    def shutdown(self) -> None:
        pass
