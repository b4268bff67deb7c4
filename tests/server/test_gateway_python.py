"""``asset_hrefs="gateway"`` from Python: the README's odc-stac / stackstac block, run against the emulator.

No server is started by hand: the first search starts ``fusion-stac serve`` in the background (a
subprocess, as GDAL needs), and the pixels are computed through its redirects.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from .conftest import EMAIL, PASSWORD, ROOT, World, new_client

README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = "## With odc-stac, stackstac, GDAL and QGIS"


def readme_block() -> str:
    """The first Python block of the README's odc-stac / stackstac section."""
    section = README.split(SECTION, 1)[1].split("\n## ", 1)[0]
    found = re.search(r"^```python\n(.*?)^```$", section, re.M | re.S)
    assert found, "the section shows a python block"
    return found.group(1)


@pytest.fixture
def platform_env(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fusion_stac.login()`` finds the emulator and this test's account; the session goes to a temporary cache."""
    monkeypatch.setenv("FUSION_PLATFORM_API_URL", world.emu.url)
    monkeypatch.setenv("FUSION_PLATFORM_EMAIL", EMAIL)
    monkeypatch.setenv("FUSION_PLATFORM_PASSWORD", PASSWORD)
    monkeypatch.delenv("FUSION_PLATFORM_USER_ID", raising=False)
    monkeypatch.setenv("FUSION_STAC_TOKEN_FILE", str(tmp_path / "tokens.json"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


@pytest.fixture
def gateways() -> Any:
    from fusion_stac.stac import _gateway_process

    yield _gateway_process
    _gateway_process.stop_all()


def test_the_readme_block_computes_pixels_through_a_background_gateway(
        world: World, platform_env: None, gateways: Any) -> None:
    pytest.importorskip("odc.stac")
    pytest.importorskip("stackstac")
    namespace: dict[str, Any] = {}
    exec(compile(readme_block(), "README.md", "exec"), namespace)  # the README block, as a reader runs it

    items = namespace["items"]
    assert len(items) >= 2
    gateway = next(iter(gateways._gateways.values()))
    for item in items:
        org, data, file = (item.properties[f"fusion:{k}"] for k in ("organisation_id", "data_id", "file_id"))
        assert item.assets["data"].href == f"{gateway.url}/assets/{org}/{data}/{file}"
        if "thumbnail" in item.assets:
            assert item.assets["thumbnail"].href == f"{gateway.url}/assets/{org}/{data}/{file}/preview"
        assert "fusion:href_expires" not in item.assets["data"].extra_fields
    assert gateway.process.args[:4] == [gateway.process.args[0], "-m", "fusion_stac", "serve"]
    assert PASSWORD not in " ".join(map(str, gateway.process.args))  # secrets never on the command line

    pixels = namespace["pixels"]
    nodata = pixels.attrs.get("nodata")
    values = np.asarray(pixels.values)
    assert values.size and (values != nodata).mean() > 0.2, "odc-stac read pixels through the gateway"
    stacked = np.asarray(namespace["stacked"].values)
    assert np.isfinite(stacked).mean() > 0.2, "stackstac read pixels through the gateway"

    # the same process reuses its gateway; stopping it (as atexit does) ends the subprocess
    import fusion_stac

    client = new_client(world.emu)
    try:
        again = fusion_stac.search(client, text="Thames classification", asset_hrefs="gateway", max_items=1)
        assert next(iter(again)).assets["data"].href.startswith(gateway.url + "/assets/")
        assert len(gateways._gateways) == 1
        catalog = fusion_stac.open_catalog(client, asset_hrefs="gateway")
        item = next(catalog.get_items(recursive=True))
        assert item.assets["data"].href.startswith(gateway.url + "/assets/")
    finally:
        client.close()
    gateways.stop_all()
    assert gateway.process.poll() is not None
    with pytest.raises(requests.ConnectionError):
        requests.get(gateway.url + "/_mgmt/ping", timeout=2)


def test_gateway_url_given_is_used_as_is_and_only_with_gateway_hrefs(world: World, gateways: Any) -> None:
    import fusion_stac
    from fusion_stac.errors import ValidationError

    client = new_client(world.emu)
    try:
        items = fusion_stac.search(client, text="Thames classification", filter={"fusion:file_type": "GeoTIFF"},
                                   asset_hrefs="gateway", gateway_url="http://example.test:8080/")
        assert items and all(i.assets["data"].href.startswith("http://example.test:8080/assets/") for i in items)
        assert not gateways._gateways, "no background server when a gateway URL is given"
        with pytest.raises(ValidationError):
            fusion_stac.search(client, asset_hrefs="signed", gateway_url="http://example.test:8080")
        with pytest.raises(ValidationError):
            fusion_stac.open_catalog(client, gateway_url="http://example.test:8080")
    finally:
        client.close()
