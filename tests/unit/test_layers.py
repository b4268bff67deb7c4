"""Imports flow one way: errors/models/_urls -> storage -> client -> stac, fs -> xarray -> cli; the emulator
stands apart; and no package reaches into another package's private modules.

The emulator importing nothing of the client side is what keeps the client tested against an
independent implementation of the API.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fusion_stac"

# layer of each top-level part; a module may import only parts of a lower or equal layer
LAYER = {
    "errors": 0, "models": 0, "_urls": 0, "_credentials": 0,
    "storage": 1,
    "client": 2,
    "stac": 3, "fs": 3,
    "xarray": 4,
    "cli": 5, "_cli": 5,
}
# stac and fs are side by side: neither imports the other
FORBIDDEN_PAIRS = {("stac", "fs"), ("fs", "stac")}


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "fusion_stac" else None


def _imports(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out += [f"{node.module}.{alias.name}" for alias in node.names if node.module == "fusion_stac"]
    return out


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path: Path) -> None:
    rel = path.relative_to(PACKAGE)
    own = rel.parts[0].removesuffix(".py")
    for module in _imports(path):
        target = _part(module)
        if target is None or target == own:
            continue
        if own == "emulator":
            raise AssertionError(f"{rel}: the emulator must not import {module}")
        if target == "emulator":
            assert own in ("cli", "_cli"), f"{rel}: only the CLI may start the emulator ({module})"
            continue
        if own not in LAYER or target not in LAYER:
            continue  # package root / __main__ re-exports
        assert (own, target) not in FORBIDDEN_PAIRS, f"{rel}: {own} and {target} are side by side ({module})"
        assert LAYER[target] <= LAYER[own], f"{rel}: layer {own} must not import the higher layer {module}"


def _private_parts(module: str) -> list[str]:
    """The private components (``_name``) below the top-level part of ``fusion_stac.<part>.…``."""
    parts = module.split(".")
    return [p for p in parts[2:] if p.startswith("_") and not p.startswith("__")]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_imports_across_packages(path: Path) -> None:
    """``fusion_stac.<part>._private`` is imported only from inside ``<part>`` (the CLI's own
    ``_cli`` package and the top-level private modules like ``_urls`` are parts of their own)."""
    rel = path.relative_to(PACKAGE)
    own = rel.parts[0].removesuffix(".py")
    for module in _imports(path):
        target = _part(module)
        if target is None or target == own:
            continue
        if own == "cli" and target == "_cli":
            continue  # the CLI package's private half
        private = _private_parts(module)
        assert not private, f"{rel}: imports {module}, a private module of fusion_stac.{target}"


def test_private_import_rule_catches_a_violation(tmp_path: Path) -> None:
    """The checker itself: a file importing another package's private module is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from fusion_stac.fs._file import FusionFile\nimport fusion_stac.storage._broker\n")
    found = [m for m in _imports(bad) if _private_parts(m)]
    assert found == ["fusion_stac.fs._file", "fusion_stac.storage._broker"]
