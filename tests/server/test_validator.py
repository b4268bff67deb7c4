"""stac-api-validator passes against the served API with every conformance class the landing page claims."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .conftest import Served, World

pytest.importorskip("stac_api_validator")

SCHEMAS = "/work/shared/stac-schemas"  # the official extension schemas (FUSION_STAC_SCHEMA_DIR overrides)
#: Validator names of the conformance classes, and the landing-page URIs that claim them.
CLASSES = {
    "core": "https://api.stacspec.org/v1.0.0/core",
    "collections": "https://api.stacspec.org/v1.0.0/collections",
    "features": "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "item-search": "https://api.stacspec.org/v1.0.0/item-search",
    "item-search#fields": "https://api.stacspec.org/v1.0.0/item-search#fields",
    "item-search#sort": "https://api.stacspec.org/v1.0.0/item-search#sort",
    "filter": "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",  # item search and features filters
    "features#sort": "https://api.stacspec.org/v1.0.0/ogcapi-features#sort",
}


def test_stac_api_validator_passes_every_claimed_class(served: Served, world: World) -> None:
    claimed = set(requests.get(served.url + "/").json()["conformsTo"])
    names = [name for name, uri in CLASSES.items() if uri in claimed]
    assert set(names) == set(CLASSES)  # every class the validator knows and we claim is validated
    # stac-api-validator itself, with the STAC schemas from local files (no network here)
    exe = [sys.executable, str(Path(__file__).with_name("_validator_offline.py"))]
    # the validator needs a collection with a footprint and a geometry inside it
    geometry = ('{"type":"Polygon","coordinates":[[[0.3,51.4],[0.5,51.4],[0.5,51.5],[0.3,51.5],[0.3,51.4]]]}')
    args = [*exe, "--root-url", served.url + "/", "--collection", world.group_id, "--geometry", geometry,
            "--fields-nested-property", "properties.fusion:group_id"]
    for name in names:
        args += ["--conformance", name]
    env = {**os.environ, "FUSION_STAC_SCHEMA_DIR": os.environ.get("FUSION_STAC_SCHEMA_DIR", SCHEMAS),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[output.find("Errors:"):][:6000]
    assert "Errors: none" in output
