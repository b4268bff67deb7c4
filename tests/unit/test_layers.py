"""Imports flow one way: errors/models/_urls -> client -> stac, fs -> xarray -> cli; the emulator stands apart.

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
    "errors": 0, "models": 0, "_urls": 0, "_credentials": 0, "_http": 0,
    "client": 1,
    "stac": 2, "fs": 2,
    "xarray": 3,
    "cli": 4, "_cli": 4,
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
