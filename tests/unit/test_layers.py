"""Imports flow one way: errors/models/_urls -> storage -> client -> stac, fs -> xarray -> cli; the emulator
stands apart; and no package reaches into another package's private modules.

The emulator importing nothing of the client side is what keeps the client tested against an
independent implementation of the API.
"""

from __future__ import annotations

import ast
import graphlib
import itertools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fusion_stac"

# layer of each top-level part; a module may import only parts of a lower or equal layer
LAYER = {
    "errors": 0, "models": 0, "_urls": 0, "_credentials": 0, "_paths": 0,
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


# ==================================================================================================
# No import cycles: module A imports B (directly or through others) and B imports A, even lazily.

#: Parts left out of the cycle check (none today). Imports *into* an excluded part are left out too.
CYCLE_CHECK_EXCLUDED: tuple[str, ...] = ()  # nothing: the emulator has no cycles either (tests/emulator/test_structure.py)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST, known: set[str]) -> set[str]:
    """Modules of ``known`` imported anywhere in ``tree`` (module level and inside functions and
    classes), except in ``if TYPE_CHECKING:`` blocks, which never run. ``from pkg import name`` counts
    as importing ``pkg.name`` when that is a module, else ``pkg``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit_node(other)
                continue
            visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        else:
            visit(node)

    visit(tree)
    return found & known


def _excluded(module: str) -> bool:
    return any(module == part or module.startswith(part + ".") for part in CYCLE_CHECK_EXCLUDED)


def _import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """``{module: modules it imports}`` for module sources ``{dotted name: text}``."""
    known = set(sources)
    return {
        module: {m for m in _runtime_imports(ast.parse(text, module), known) if m != module and not _excluded(m)}
        for module, text in sources.items() if not _excluded(module)
    }


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]`` (``a`` imports ``b`` ...), or ``None``; found by the
    standard library's topological sort, which lists it from imported to importer."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(reversed(exc.args[1]))
    return None


def _package_sources() -> dict[str, str]:
    return {_module_name(path): path.read_text() for path in _sources()}


def test_no_import_cycles() -> None:
    graph = _import_graph(_package_sources())
    assert "fusion_stac.client" in graph and "fusion_stac.cli" in graph  # the graph is the real one
    cycle = _find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or ())}"


def test_cycle_detector_finds_a_synthetic_cycle() -> None:
    """The checker itself: a lazy (function-level) import closing a loop is found; TYPE_CHECKING-only
    imports are not edges."""
    sources = {
        "fusion_stac.a": "from fusion_stac.b import x\n",
        "fusion_stac.b": "def f():\n    from fusion_stac import c\n",
        "fusion_stac.c": "import fusion_stac.a\n",
        "fusion_stac.d": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import fusion_stac.a\n",
    }
    graph = _import_graph(sources)
    cycle = _find_cycle(graph)
    assert cycle is not None
    assert set(cycle) == {"fusion_stac.a", "fusion_stac.b", "fusion_stac.c"} and cycle[0] == cycle[-1]
    for importer, imported in itertools.pairwise(cycle):
        assert imported in graph[importer]
    assert graph["fusion_stac.d"] == set()
    del sources["fusion_stac.c"]
    assert _find_cycle(_import_graph(sources)) is None
