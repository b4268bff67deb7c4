"""The curated public surface: everything in __all__ resolves, nothing heavy loads at import."""

from __future__ import annotations

import subprocess
import sys

import fusion_stac


def test_every_exported_name_resolves() -> None:
    for name in fusion_stac.__all__:
        assert getattr(fusion_stac, name) is not None, name
    assert sorted(set(fusion_stac.__all__)) == sorted(fusion_stac.__all__)
    assert not [n for n in fusion_stac.__all__ if n.startswith("_") and n != "__version__"]


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        fusion_stac.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_import_is_light() -> None:
    """`import fusion_stac` must not pull in the heavy stack (dask workers and the CLI start fast)."""
    code = (
        "import sys, fusion_stac; "
        "heavy = [m for m in ('xarray', 'rasterio', 'dask', 'pystac', 'fastapi', 'numpy') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"heavy modules imported by `import fusion_stac`: {out}"
