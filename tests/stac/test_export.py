"""Exported static catalogs: valid (pystac and stac-validator, offline), self-contained, atomic, verified."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import pystac
import pytest

from fusion_stac.errors import FusionError, ValidationError
from fusion_stac.stac.catalog import export_catalog, open_catalog
from fusion_stac.stac.validation import extension_schemas_available, offline_validation, schema_map

from .conftest import World


def _paths(world: World) -> dict[str, str]:
    return {
        "upload": f"fusion://{world.org_id}/uploads/{world.upload.id}",
        "single": f"fusion://{world.org_id}/processes/{world.single_process.id}/{world.single_execution.id}",
        "group": f"fusion://{world.org_id}/processes/{world.group_process.id}/{world.group_id}",
    }


def stac_validator_ok(path: Path) -> tuple[bool, list[dict[str, Any]]]:
    """stac-validator over a written catalog, offline.

    With the official extension schemas available locally (FUSION_STAC_SCHEMA_DIR) it validates
    the whole tree recursively, extensions included. Without them (CI has no network) it checks
    every document of the tree against the core schemas, one by one (its `core` mode does not
    recurse), and pystac's offline validator checks the extension fields.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from stac_validator.validate import StacValidate

    if extension_schemas_available():
        validator = StacValidate(str(path), recursive=True, max_depth=None, schema_map=schema_map())
        return validator.run(), validator.message
    ok, messages = True, []
    for doc in sorted(path.parent.rglob("*.json")):
        validator = StacValidate(str(doc), core=True, schema_map=schema_map())
        ok = validator.run() and ok
        messages.extend(validator.message)
    return ok, messages


GATEWAY = "http://gateway.example:8080/stac"


@pytest.mark.parametrize("which", ["upload", "single", "group"])
@pytest.mark.parametrize("assets", ["link", "download", "gateway"])
def test_exports_validate_with_pystac_and_stac_validator(world: World, client: Any, tmp_path: Path, which: str,
                                                         assets: str) -> None:
    coll = open_catalog(client, _paths(world)[which])
    out = export_catalog(coll, tmp_path / "cat", assets=assets,  # type: ignore[arg-type]
                         gateway_url=GATEWAY if assets == "gateway" else None)
    assert out == tmp_path / "cat" / "collection.json"
    written = pystac.read_file(str(out))
    assert isinstance(written, pystac.Collection)
    with offline_validation():
        count = written.validate_all()
    assert count == len(list(coll.get_items())) >= 1
    ok, messages = stac_validator_ok(out)
    assert ok, [m for m in messages if not m.get("valid_stac")]
    assert len(messages) == 1 + count  # the collection and every item were checked
    # self-contained: no link leaves the directory, nothing points back into the platform
    for path in (tmp_path / "cat").rglob("*.json"):
        doc = json.loads(path.read_text())
        for link in doc["links"]:
            assert not link["href"].startswith(("fusion:", "/", "http")), link
            assert (path.parent / link["href"]).resolve().exists(), link
        for asset in doc.get("assets", {}).values():
            if assets == "download":
                assert asset["href"].startswith("./") and (path.parent / asset["href"]).is_file()
            elif assets == "gateway":
                assert asset["href"].startswith(GATEWAY + "/assets/")
            else:
                assert asset["href"].startswith("fusion://")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left


def test_whole_tree_exports_and_validates(world: World, client: Any, tmp_path: Path) -> None:
    root = open_catalog(client)
    fractions: list[float] = []
    out = export_catalog(root, tmp_path / "all", progress=fractions.append, validate=True)
    assert out.name == "catalog.json"
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    ok, messages = stac_validator_ok(out)
    assert ok, [m for m in messages if not m.get("valid_stac")]
    written = pystac.read_file(str(out))
    assert isinstance(written, pystac.Catalog)
    with offline_validation():
        assert written.validate_all() == len(list(root.get_items(recursive=True)))


def test_download_export_places_verified_files_next_to_items(world: World, client: Any, tmp_path: Path) -> None:
    coll = open_catalog(client, _paths(world)["group"])
    fractions: list[float] = []
    out = export_catalog(coll, tmp_path / "group", assets="download", progress=fractions.append)
    written = pystac.read_file(str(out))
    assert isinstance(written, pystac.Collection)
    items = list(written.get_items())
    assert items
    for item in items:
        data = item.assets["data"]
        local = Path(data.get_absolute_href() or "")
        assert local.parent == Path(item.get_self_href() or "").parent
        assert local.stat().st_size == data.extra_fields["file:size"]
        assert data.extra_fields["fusion:href"].startswith("fusion://")
        assert "fusion:href_expires" not in data.extra_fields
        if "thumbnail" in item.assets:
            thumb = Path(item.assets["thumbnail"].get_absolute_href() or "")
            assert thumb.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the downloaded rasters open, and agree with their items
    import rasterio

    tif = next(i for i in items if i.properties.get("fusion:file_type") == "GeoTIFF")
    with rasterio.open(tif.assets["data"].get_absolute_href()) as src:
        assert [src.height, src.width] == tif.assets["data"].extra_fields["proj:shape"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 3


def test_export_refuses_to_overwrite_and_replaces_atomically(world: World, client: Any, tmp_path: Path) -> None:
    coll = open_catalog(client, _paths(world)["upload"])
    dest = tmp_path / "cat"
    export_catalog(coll, dest)
    marker = dest / "marker.txt"
    marker.write_text("previous export")
    with pytest.raises(FileExistsError):
        export_catalog(coll, dest)
    assert marker.exists()
    export_catalog(coll, dest, overwrite=True)
    assert not marker.exists() and (dest / "collection.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat"]


class _FailingDownloads:
    """Lets the first download through, then fails: an export must leave nothing behind."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def download_file(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls > 1:
            raise FusionError("storage went away")
        return self._inner.download_file(*args, **kwargs)


def test_failed_export_leaves_destination_untouched(world: World, client: Any, tmp_path: Path) -> None:
    dest = tmp_path / "cat"
    export_catalog(open_catalog(client, _paths(world)["upload"]), dest)
    before = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    failing = _FailingDownloads(client)
    coll = open_catalog(failing, _paths(world)["group"])
    with pytest.raises(FusionError, match="storage went away"):
        export_catalog(coll, dest, assets="download", overwrite=True, max_workers=1)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat"]
    with pytest.raises(FusionError, match="storage went away"):
        export_catalog(coll, tmp_path / "new", assets="download", max_workers=1)
    assert not (tmp_path / "new").exists()


def test_checksum_mismatch_is_caught(world: World, client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fusion_stac.stac import catalog as catalog_module

    monkeypatch.setattr(catalog_module, "_multihash_sha256", lambda path: "1220" + "0" * 64)
    coll = open_catalog(client, _paths(world)["upload"])
    with pytest.raises(FusionError, match="does not match its checksum"):
        export_catalog(coll, tmp_path / "cat", assets="download")
    assert not (tmp_path / "cat").exists()


@pytest.mark.parametrize("asset_hrefs", ["fusion", "signed"])
def test_gateway_export_links_every_asset_to_the_gateway(world: World, client: Any, tmp_path: Path,
                                                         asset_hrefs: str) -> None:
    """Whatever the catalog was opened with, every asset href is the gateway's stable URL of its file."""
    root = open_catalog(client, world.org_id, asset_hrefs=asset_hrefs)  # type: ignore[arg-type]
    out = export_catalog(root, tmp_path / "gw", assets="gateway", gateway_url=GATEWAY + "/", validate=True)
    written = pystac.read_file(str(out))
    assert isinstance(written, pystac.Catalog)
    items = list(written.get_items(recursive=True))
    assert len(items) >= 3 and any("thumbnail" in i.assets for i in items)
    pattern = re.compile(re.escape(GATEWAY) + r"/assets/([0-9a-f-]{36})/([0-9a-f-]{36})/([0-9a-f-]{36})(/preview)?")
    for item in items:
        props = item.properties
        ids = (props["fusion:organisation_id"], props["fusion:data_id"], props["fusion:file_id"])
        for key, asset in item.assets.items():
            match = pattern.fullmatch(asset.href)
            assert match, asset.href
            assert match.groups()[:3] == ids  # a preview is named by its file, like the API's download_file
            assert (match.group(4) == "/preview") == (key == "thumbnail")
            text = json.dumps(asset.to_dict())
            assert "fusion://" not in text and "X-Amz" not in text and "?" not in text
            assert "fusion:href_expires" not in asset.extra_fields and "fusion:href" not in asset.extra_fields
    assert ids[0] == world.org_id


def test_gateway_export_needs_a_gateway_url(world: World, client: Any, tmp_path: Path) -> None:
    coll = open_catalog(client, _paths(world)["upload"])
    for kwargs in ({"assets": "gateway"}, {"assets": "gateway", "gateway_url": "gateway.example"},
                   {"assets": "gateway", "gateway_url": "http://g/?token=x"}, {"assets": "link", "gateway_url": GATEWAY},
                   {"assets": "elsewhere"}):
        with pytest.raises(ValidationError):
            export_catalog(coll, tmp_path / "x", **kwargs)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())
