"""Shared fixtures: one session-wide emulator, and fresh isolated emulators for tests that change state."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Keep the suite away from the user's real credentials and caches.

    Logging in writes a token cache (``~/.cache/fusion-stac/tokens.json`` by default) and the client
    reads ``FUSION_PLATFORM_*`` variables and ``~/.netrc``: point all of them at an empty, private
    place for the whole session (worker processes inherit it). Tests that need them set their own.
    """
    import os
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="fusion-stac-tests-"))
    os.environ["FUSION_STAC_TOKEN_FILE"] = str(home / "tokens.json")
    os.environ["NETRC"] = str(home / "netrc")  # does not exist: no credentials from the real ~/.netrc
    os.environ["FUSION_STAC_CACHE_DIR"] = str(home / "cache")  # headers and run metadata kept on disk
    for name in ("FUSION_PLATFORM_API_URL", "FUSION_PLATFORM_EMAIL", "FUSION_PLATFORM_USER_ID",
                 "FUSION_PLATFORM_PASSWORD"):
        os.environ.pop(name, None)
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def emulator() -> Iterator[Any]:
    """A running emulator shared by the whole session: instant executions, no faults, temporary data dir."""
    from fusion_stac.emulator import Emulator

    with Emulator(execution_duration=0) as emu:
        yield emu


@pytest.fixture
def make_emulator(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory of fresh emulators on their own data directory (stopped at the end of the test).

    ``make_emulator(**settings)`` starts one; the data directory defaults to ``tmp_path / "emulator"`` so a
    second call with the same directory emulates a restart.
    """
    from fusion_stac.emulator import Emulator

    started: list[Any] = []

    def factory(**settings: Any) -> Any:
        settings.setdefault("data_dir", tmp_path / "emulator")
        settings.setdefault("execution_duration", 0)
        emu = Emulator(**settings).start()
        started.append(emu)
        return emu

    yield factory
    for emu in reversed(started):
        emu.stop()


@pytest.fixture
def fresh_emulator(make_emulator: Callable[..., Any]) -> Any:
    """A fresh emulator with an isolated data directory (for tests that change seeded state)."""
    return make_emulator()
