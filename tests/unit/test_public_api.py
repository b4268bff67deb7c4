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


def test_type_checking_imports_match_the_lazy_map() -> None:
    """Type checkers see exactly the names `__getattr__` serves, from the same modules."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(fusion_stac.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", None) == "TYPE_CHECKING")
    seen = {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    lazy = dict(fusion_stac._LAZY)
    # a name may be imported from the package that re-exports it (e.g. fusion_stac.stac for fusion_stac.stac.catalog)
    assert set(seen) == set(lazy)
    for name, module in seen.items():
        assert getattr(__import__(module, fromlist=[name]), name) is getattr(fusion_stac, name), name
