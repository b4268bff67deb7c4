"""The command line, the OpenAPI document, the public surface and the package's import boundary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

import fusion_stac.emulator as emulator_package
from fusion_stac.emulator.__main__ import main


def test_public_surface() -> None:
    assert emulator_package.__all__ == ["Emulator", "EmulatorSettings", "FaultConfig"]
    for name in emulator_package.__all__:
        assert getattr(emulator_package, name).__doc__


def test_emulator_imports_nothing_of_the_client_side() -> None:
    code = ("import sys, fusion_stac.emulator, fusion_stac.emulator.__main__; "
            "bad = [m for m in sys.modules if m.startswith('fusion_stac.') and not m.startswith('fusion_stac.emulator')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_openapi_declares_every_path(emulator: Any) -> None:
    schema = requests.get(f"{emulator.url}/openapi.json").json()
    paths = schema["paths"]
    expected = [
        "/users/login", "/users/{user_id}", "/users/{user_id}/change_password", "/organisations/{organisation_id}",
        "/organisations/{organisation_id}/credits/{credit_id}", "/organisations/{organisation_id}/data/uploaded",
        "/organisations/{organisation_id}/data/new", "/organisations/{organisation_id}/data",
        "/organisations/{organisation_id}/data/{data_id}", "/organisations/{organisation_id}/data/{data_id}/copy",
        "/organisations/{organisation_id}/data/{data_id}/add_file",
        "/organisations/{organisation_id}/data/{data_id}/files",
        "/organisations/{organisation_id}/data/{data_id}/download_file/{file_id}",
        "/organisations/{organisation_id}/services", "/organisations/{organisation_id}/services/latest",
        "/organisations/{organisation_id}/services/dispatchers",
        "/organisations/{organisation_id}/services/{service_id}", "/organisations/{organisation_id}/processes",
        "/organisations/{organisation_id}/processes/new", "/organisations/{organisation_id}/processes/{process_id}",
        "/organisations/{organisation_id}/processes/{process_id}/copy",
        "/organisations/{organisation_id}/processes/{process_id}/execute",
        "/organisations/{organisation_id}/processes/{process_id}/stop",
        "/organisations/{organisation_id}/processes/{process_id}/executions",
        "/organisations/{organisation_id}/process_executions/{execution_id}",
        "/organisations/{organisation_id}/process_executions/{execution_id}/change_delete_expiry",
        "/organisations/{organisation_id}/process_executions/{execution_id}/process_service_executions",
        "/organisations/{organisation_id}/process_service_executions/{component_id}",
        "/organisations/{organisation_id}/process_service_executions/{component_id}/logs",
        "/_storage/upload/{file_id}", "/_storage/download/{file_id}",
    ]
    for path in expected:
        assert path in paths, path
    listing = paths["/organisations/{organisation_id}/data/uploaded"]["get"]
    names = {p["name"] for p in listing["parameters"]}
    assert {"limit", "reverse", "search", "organisation_id"} <= names
    uuid_param = next(p for p in listing["parameters"] if p["name"] == "organisation_id")
    assert uuid_param["schema"]["format"] == "uuid"
    assert "HTTPBearer" in str(schema["components"]["securitySchemes"])


def test_cli_rejects_bad_settings(tmp_path: Path, capsys: Any) -> None:
    assert main(["serve", "--data-dir", str(tmp_path), "--url-lifetime", "0"]) == 2
    assert "url_lifetime" in capsys.readouterr().err
    assert main(["serve", "--data-dir", str(tmp_path), "--api-faults", "error_500=2"]) == 2
    assert main(["serve", "--data-dir", str(tmp_path), "--api-faults", "bogus=1"]) == 2


def test_cli_serves_until_terminated(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "fusion_stac.emulator", "serve", "--port", "0", "--data-dir", str(tmp_path),
         "--log-level", "warning", "--api-faults", "error_500=0"],
        stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert "Fusion Platform emulator on http://127.0.0.1:" in line, line
        url = line.split(" on ")[1].split(" ")[0]
        response = requests.post(f"{url}/users/login",
                                 json={"User": {"email": "me@org.com", "user_id": None, "password": "MyPassword123!"}})
        assert response.status_code == 200
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    assert (tmp_path / "emulator.sqlite3").exists()


def test_emulator_defaults_match_the_settings() -> None:
    import dataclasses
    import inspect

    from fusion_stac.emulator import Emulator, EmulatorSettings

    parameters = inspect.signature(Emulator.__init__).parameters
    for field in dataclasses.fields(EmulatorSettings):
        default = parameters[field.name].default
        if field.name in ("api_faults", "storage_faults"):
            assert default is None
            continue
        assert default == getattr(EmulatorSettings(), field.name), field.name
