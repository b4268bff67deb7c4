"""Fixtures for the fault tests: credentials isolated from the developer's environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ENV_NAMES = ("FUSION_PLATFORM_API_URL", "FUSION_PLATFORM_EMAIL", "FUSION_PLATFORM_USER_ID",
             "FUSION_PLATFORM_PASSWORD", "FUSION_STAC_TOKEN_FILE", "NETRC")


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No credentials from the environment; a private token cache; no netrc."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FUSION_STAC_TOKEN_FILE", str(tmp_path_factory.mktemp("tokens") / "tokens.json"))
    monkeypatch.setenv("NETRC", str(Path(tmp_path_factory.mktemp("netrc")) / "absent"))
    yield
