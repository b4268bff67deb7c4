"""What pystac itself makes of an opened catalog: ``normalize_and_save`` then ``from_file``, and ``full_copy``.

The whole platform's root href, ``fusion://?stac=catalog``, is normalised by pystac to ``fusion:?stac=catalog``;
its copies once kept that string as their root link, so ``pystac.Catalog.from_file`` of a saved copy could
not walk it and ``full_copy`` failed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pystac
import pytest

from fusion_stac.stac.catalog import open_catalog

from .conftest import World


def _tree(catalog: pystac.Catalog) -> tuple[set[str], dict[str, dict[str, str]]]:
    """(ids of every catalog and collection, item id -> asset key -> href), by a full walk."""
    nodes: set[str] = set()
    assets: dict[str, dict[str, str]] = {}
    for node, _children, items in catalog.walk():
        nodes.add(node.id)
        for item in items:
            assets[item.id] = {key: asset.href for key, asset in item.assets.items()}
    return nodes, assets


@pytest.fixture(params=["platform", "organisation"])
def which(request: pytest.FixtureRequest, world: World) -> str | None:
    return None if request.param == "platform" else world.org_id


def test_normalize_and_save_then_from_file_walks_everything(client: Any, world: World, tmp_path: Path,
                                                           which: str | None) -> None:
    nodes, assets = _tree(open_catalog(client, which))
    assert world.upload.id in nodes and world.group_id in nodes and len(assets) >= 3

    open_catalog(client, which).normalize_and_save(str(tmp_path), catalog_type=pystac.CatalogType.SELF_CONTAINED)

    for path in tmp_path.rglob("*.json"):  # every structural link of every document is a relative file
        for link in json.loads(path.read_text())["links"]:
            assert not link["href"].startswith(("fusion:", "/", "http")), (path, link)
    saved = pystac.Catalog.from_file(str(tmp_path / "catalog.json"))
    assert saved.get_root() is saved
    assert _tree(saved) == (nodes, assets)  # every child and item resolves; asset hrefs as they were
    assert all(href.startswith("fusion://") for hrefs in assets.values() for href in hrefs.values())
    for item in saved.get_items(recursive=True):
        assert item.get_root() is saved
        assert Path(item.get_self_href() or "").is_file()


def test_full_copy(client: Any, world: World, which: str | None) -> None:
    original = open_catalog(client, which)
    expected = _tree(open_catalog(client, which))
    copy = original.full_copy()
    assert copy is not original and copy.get_root() is copy
    assert _tree(copy) == expected
    for item in copy.get_items(recursive=True):
        assert item.get_root() is copy


def test_an_execution_collection_round_trips(client: Any, world: World, tmp_path: Path) -> None:
    path = f"fusion://{world.org_id}/processes/{world.group_process.id}/{world.group_id}"
    expected = _tree(open_catalog(client, path))
    opened = open_catalog(client, path)
    assert isinstance(opened, pystac.Collection)
    opened.normalize_and_save(str(tmp_path), catalog_type=pystac.CatalogType.SELF_CONTAINED)
    assert _tree(pystac.Collection.from_file(str(tmp_path / "collection.json"))) == expected
    assert _tree(open_catalog(client, path).full_copy()) == expected
