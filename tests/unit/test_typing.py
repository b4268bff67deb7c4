"""The package type-checks: ``mypy`` (configured in pyproject.toml) over ``fusion_stac`` finds nothing.

The package ships ``py.typed``, so users' type checkers read our annotations; a wrong one is a bug
they meet. Runs mypy in a subprocess (its own cache under the test's temporary directory).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.xdist_group("mypy")
def test_mypy_finds_no_errors(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, f"mypy found errors:\n{done.stdout[-6000:]}{done.stderr[-2000:]}"
