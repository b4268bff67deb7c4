"""Help on every command, the version, and usage errors: one line on stderr, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fusion_stac import __version__

from .conftest import Run, clean_env, run_cli

COMMANDS = ["login", "logout", "ls", "info", "upload", "download", "run", "catalog", "mosaic", "emulator", "demo"]


@pytest.fixture
def offline_env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "home")


def test_top_level_help_lists_every_command(offline_env: dict[str, str]) -> None:
    result = run_cli(["--help"], env=offline_env)
    assert result.code == 0, result.err
    for name in COMMANDS:
        assert f"    {name}" in result.out, name
    assert "--api-url" in result.out and "--email" in result.out and "--verbose" in result.out
    assert "Exit codes" in result.out


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(offline_env: dict[str, str], name: str) -> None:
    result = run_cli([name, "--help"], env=offline_env)
    assert result.code == 0, result.err
    assert result.out.startswith(f"usage: fusion-stac {name}")
    # every option is explained (argparse prints the help text next to it)
    if name != "emulator":
        assert "--api-url" in result.out, "global options are accepted after the command too"


def test_catalog_export_help(offline_env: dict[str, str]) -> None:
    result = run_cli(["catalog", "export", "--help"], env=offline_env)
    assert result.code == 0
    assert "--assets {link,download,gateway}" in result.out and "--gateway-url URL" in result.out


def test_emulator_serve_help(offline_env: dict[str, str]) -> None:
    result = run_cli(["emulator", "serve", "--help"], env=offline_env)
    assert result.code == 0
    assert "--data-dir" in result.out and "--execution-duration" in result.out


def test_version(offline_env: dict[str, str]) -> None:
    result = run_cli(["--version"], env=offline_env)
    assert result.code == 0
    assert result.out.strip() == f"fusion-stac {__version__}"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        ([], ["required", "COMMAND"]),
        (["frobnicate"], ["invalid choice", "frobnicate"]),
        (["ls", "--depth", "many"], ["--depth", "invalid int value", "many"]),
        (["upload", "x.geojson"], ["--name", "required"]),
        (["catalog"], ["ACTION", "required"]),
        (["catalog", "export", "out", "--assets", "copy"], ["--assets", "invalid choice"]),
        (["mosaic", "P", "out.tif", "--method", "median"], ["--method", "invalid choice"]),
    ],
)
def test_usage_errors_are_one_line(offline_env: dict[str, str], args: list[str], fragments: list[str]) -> None:
    run_cli(args, env=offline_env).assert_one_line_error(2, *fragments)


def test_global_options_before_or_after_the_command(cli: Run, emulator: Any) -> None:
    unreachable = {"FUSION_PLATFORM_API_URL": "http://127.0.0.1:9"}  # nothing listens on port 9
    for args in (["--api-url", emulator.url, "ls"], ["ls", "--api-url", emulator.url]):
        result = cli(*args, extra_env=unreachable)
        assert result.code == 0, result.err  # the option wins over the environment, in either place
        assert "Example Organisation/" in result.out


def test_unreachable_platform_is_one_line(cli: Run) -> None:
    result = cli("ls", extra_env={"FUSION_PLATFORM_API_URL": "http://127.0.0.1:9"})
    result.assert_one_line_error(1, "cannot reach http://127.0.0.1:9: connection refused")


def test_not_logged_in_is_one_line(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "home", FUSION_PLATFORM_API_URL="http://127.0.0.1:9")
    run_cli(["ls"], env=env).assert_one_line_error(1, "not logged in", "fusion-stac login")


def test_verbose_logs_to_stderr(cli: Run) -> None:
    result = cli("-v", "ls")
    assert result.code == 0
    assert "logged in to" in result.err  # the client's INFO log
    assert "fusion://" in result.out


def test_a_missing_extra_is_named(tmp_path: Path) -> None:
    """As if only the core were installed: the command says which extra it needs."""
    shadow = tmp_path / "shadow" / "xarray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'xarray\'", name="xarray")\n')
    env = clean_env(tmp_path / "home", PYTHONPATH=str(tmp_path / "shadow"))
    result = run_cli(["mosaic", "Some process", str(tmp_path / "m.tif")], env=env)
    result.assert_one_line_error(1, "needs xarray", 'pip install "fusion-stac[xarray]"')


@pytest.mark.parametrize("module", ["fusion_stac", "fusion_stac.cli"])
def test_runs_as_a_module(module: str) -> None:
    """`python -m fusion_stac[.cli]` is the same command (no circular import through the command modules)."""
    done = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("fusion-stac ")
