"""A populated emulator for the security tests: a victim organisation with data, a run and its outputs,
and an attacker (the second seeded account) in another organisation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
OTHER_EMAIL = "other@example.com"
OTHER_PASSWORD = "OtherPassword123!"
GLASGOW = Path(__file__).parents[2] / "fusion_stac" / "emulator" / "regions" / "glasgow.geojson"
ENV_NAMES = ("FUSION_PLATFORM_API_URL", "FUSION_PLATFORM_EMAIL", "FUSION_PLATFORM_USER_ID",
             "FUSION_PLATFORM_PASSWORD", "FUSION_STAC_TOKEN_FILE", "NETRC")


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials from the developer's environment; a private token cache; no netrc."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FUSION_STAC_TOKEN_FILE", str(tmp_path_factory.mktemp("tokens") / "tokens.json"))
    monkeypatch.setenv("NETRC", str(tmp_path_factory.mktemp("netrc") / "absent"))


class Api:
    """A raw HTTP client logged in as one user (plain ``requests``: what an attacker would use)."""

    def __init__(self, url: str, email: str, password: str) -> None:
        self.url = url
        self.http = requests.Session()
        answer = self.http.post(f"{url}/users/login", json={"User": {"email": email, "password": password}})
        assert answer.status_code == 200, answer.text
        self.token = answer.json()["access_token"]
        import jwt

        self.user_id = jwt.decode(answer.json()["id_token"], options={"verify_signature": False})["sub"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, self.url + path, timeout=30, **kwargs)


@dataclass(frozen=True)
class Victim:
    """Everything the victim owns, by id."""

    org_id: str
    user_id: str
    data_id: str
    file_id: str
    process_id: str
    execution_id: str
    component_id: str
    output_data_id: str
    output_file_id: str
    service_id: str
    names: tuple[str, ...]  # names only the victim's organisation knows


@pytest.fixture(scope="package")
def emu() -> Iterator[Any]:
    from fusion_stac.emulator import Emulator

    with Emulator(execution_duration=0) as server:
        yield server


@pytest.fixture(scope="package")
def victim(emu: Any) -> Victim:
    from fusion_stac.client import FusionClient

    with FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.02) as client:
        org = client.organisation().id
        data = client.create_data(org, "Victim confidential region", [GLASGOW])
        (file,) = client.list_files(org, data.id)
        process = (client.new_process(org, "Elevation", "Victim confidential process").with_input(1, data)
                   .create())
        client.execute(org, process.id, wait=True, timeout=60)
        execution = client.latest_execution(org, process.id)
        component = next(c for c in client.iter_components(org, execution.id) if c.outputs)
        output = component.outputs[0]
        out_file = client.list_files(org, output)[0]
        return Victim(org, client.user_id or "", data.id, file.file_id or "", process.id, execution.id,
                      component.id, output, out_file.file_id or "", process.service_id or "",
                      ("Victim confidential region", "Victim confidential process"))


@pytest.fixture(scope="package")
def attacker(emu: Any) -> Api:
    return Api(emu.url, OTHER_EMAIL, OTHER_PASSWORD)


@pytest.fixture(scope="package")
def attacker_org(emu: Any, attacker: Api) -> str:
    user = attacker.request("GET", f"/users/{attacker.user_id}").json()["model"]
    return str(user["organisations"][0]["id"])
