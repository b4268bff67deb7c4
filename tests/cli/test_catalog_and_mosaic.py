"""``catalog export`` (validated static catalogs) and ``mosaic`` (a COG and a quicklook PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from .conftest import Run, World


def _validate(root: Path) -> pystac.Catalog:
    from fusion_stac.stac.validation import validate_tree

    catalog = pystac.read_file(str(root))
    assert isinstance(catalog, pystac.Catalog)
    assert validate_tree(catalog) > 0
    return catalog


def test_export_a_run_with_downloaded_assets(cli: Run, world: World, tmp_path: Path) -> None:
    dest = tmp_path / "stac"
    result = cli("catalog", "export", str(dest), world.process_url("latest"), "--assets", "download")
    assert result.code == 0, result.err
    root = dest / "collection.json"
    assert f"to {root}" in result.out and "validated offline" in result.out
    catalog = _validate(root)
    items = list(catalog.get_items(recursive=True))
    assert f"Exported {len(items)} items" in result.out
    tifs = [a for i in items for a in i.assets.values() if a.media_type and "geotiff" in a.media_type]
    assert len(tifs) == world.slices
    for asset in tifs:
        assert not asset.href.startswith(("fusion://", "http")), "hrefs are relative after a download"
        local = Path(asset.get_absolute_href() or "")
        assert local.stat().st_size == asset.extra_fields["file:size"]

    again = cli("catalog", "export", str(dest), world.process_url("latest"))
    again.assert_one_line_error(2, "exists", "--overwrite")
    replaced = cli("catalog", "export", str(dest), world.process_url("latest"), "--overwrite")
    assert replaced.code == 0, replaced.err
    assert "linked" in replaced.out


def test_export_an_organisation_with_links(cli: Run, world: World, tmp_path: Path) -> None:
    dest = tmp_path / "org"
    result = cli("catalog", "export", str(dest), world.org_name)
    assert result.code == 0, result.err
    catalog = _validate(dest / "catalog.json")
    hrefs = [a.href for i in catalog.get_items(recursive=True) for a in i.assets.values()]
    assert hrefs and all(h.startswith("fusion://") for h in hrefs if "thumbnail" not in h)


def test_export_with_gateway_links(cli: Run, world: World, tmp_path: Path) -> None:
    dest = tmp_path / "gw"
    gateway = "http://localhost:8080"
    result = cli("catalog", "export", str(dest), world.org_name, "--assets", "gateway", "--gateway-url", gateway)
    assert result.code == 0, result.err
    assert f"linked to the gateway at {gateway}" in result.out
    catalog = _validate(dest / "catalog.json")
    items = list(catalog.get_items(recursive=True))
    assert items
    for item in items:
        prefix = f"{gateway}/assets/{world.org_id}/{item.properties['fusion:data_id']}/{item.id}"
        assert item.assets["data"].href == prefix
        if "thumbnail" in item.assets:
            assert item.assets["thumbnail"].href == prefix + "/preview"
    cli("catalog", "export", str(tmp_path / "a"), "--assets", "gateway").assert_one_line_error(2, "--gateway-url")
    cli("catalog", "export", str(tmp_path / "b"), "--gateway-url", gateway).assert_one_line_error(2, "--assets gateway")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    usage = cli("catalog", "export", "--help")
    assert "--gateway-url" in usage.out and "never expire" in usage.out


def test_export_unknown_path(cli: Run, world: World, tmp_path: Path) -> None:
    cli("catalog", "export", str(tmp_path / "x"), world.process_url("00000000-0000-0000-0000-000000000000")).\
        assert_one_line_error(2)
    assert not (tmp_path / "x").exists()


def test_mosaic_writes_a_cog_and_a_quicklook(cli: Run, world: World, tmp_path: Path) -> None:
    out = tmp_path / "thames.tif"
    result = cli("mosaic", world.process_name, str(out))
    assert result.code == 0, result.err
    assert f"from {world.slices} slices" in result.out
    with rasterio.open(out) as src:
        assert src.driver == "GTiff" and src.profile["tiled"]
        assert src.overviews(1), "a COG has overviews"
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.crs.to_epsg() in (32630, 32631)
        band = src.read(1, masked=True)
        assert band.count() > 0.5 * band.size
        assert -100 < float(band.min()) < float(band.max()) < 2000  # metres of terrain
    png = out.with_suffix(".png")
    with png.open("rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert 20_000 < png.stat().st_size < 2_000_000


def test_mosaic_options(cli: Run, world: World, tmp_path: Path) -> None:
    full = tmp_path / "full.tif"
    assert cli("mosaic", world.process_url(), str(full), "--no-quicklook").code == 0
    assert not full.with_suffix(".png").exists()
    clipped = tmp_path / "clipped.tif"
    result = cli("mosaic", world.process_url(), str(clipped), "--group", world.group_id, "--bbox", "0,51.4,0.5,51.55",
                 "--crs", "EPSG:32631", "--resolution", "400")
    assert result.code == 0, result.err
    with rasterio.open(full) as a, rasterio.open(clipped) as b:
        assert b.crs.to_epsg() == 32631 and b.res == (400.0, 400.0)
        assert b.width * b.height < a.width * a.height
        assert np.isfinite(b.read(1, masked=True).compressed()).all()


@pytest.mark.parametrize(
    ("args", "code", "fragments"),
    [
        (["No such process", "{tmp}/m.tif"], 2, ["no process", "No such process"]),
        (["{process}", "{tmp}/m.png"], 2, [".tif"]),
        (["{process}", "{tmp}/m.tif", "--bbox", "1,2,3"], 2, ["--bbox", "4 numbers"]),
        (["{process}", "{tmp}/m.tif", "--bbox", "a,b,c,d"], 2, ["--bbox"]),
        (["{process}", "{tmp}/m.tif", "--resolution", "-5"], 2, ["--resolution"]),
        (["{process}", "{tmp}/nowhere/m.tif"], 2, ["not a directory"]),
        (["{process}", "{tmp}/m.tif", "--group", "00000000-0000-0000-0000-000000000000"], 2, ["group"]),
    ],
)
def test_mosaic_bad_input(cli: Run, world: World, tmp_path: Path, args: list[str], code: int,
                          fragments: list[str]) -> None:
    filled = [a.format(tmp=tmp_path, process=world.process_name) for a in args]
    cli("mosaic", *filled).assert_one_line_error(code, *fragments)
    assert not list(tmp_path.glob("*.tif")) and not list(tmp_path.glob(".*"))
