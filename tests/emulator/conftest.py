"""Fixtures for the emulator tests (the helpers themselves are in ``_helpers``)."""

from __future__ import annotations

from typing import Any

import pytest

from ._helpers import ORG, OTHER_EMAIL, OTHER_PASSWORD, Api, rectangle


@pytest.fixture
def api(emulator: Any) -> Api:
    return Api(emulator.url)


@pytest.fixture
def other_api(emulator: Any) -> Api:
    return Api(emulator.url, OTHER_EMAIL, OTHER_PASSWORD)


@pytest.fixture
def region(api: Api) -> str:
    """An analysed 10 km x 10 km region in the example organisation (a fresh data item per test)."""
    data_id, _ = api.create_data(ORG, "Region", [("region.geojson", "GeoJSON", rectangle())])
    return data_id
