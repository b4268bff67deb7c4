"""Every endpoint, probed by another organisation with the victim's ids, is denied and leaks nothing.

The endpoints are taken from the emulator's own OpenAPI document, so a new route is probed without
anyone remembering to add it here. For each route and method the attacker (other@example.com, a
member of another organisation) sends two requests that differ only in the ids: the victim's real
ones, and ids that exist nowhere. The answers must be refusals (403/404) with the same status and
the same message once the ids are masked, so an attacker cannot even learn whether an id exists;
they must not carry anything of the victim's; and the victim's state must be unchanged afterwards.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
import requests

from .conftest import Api, Victim

SKIPPED_PREFIXES = ("/users/login", "/_storage/")  # login takes no ids; storage is signed-URL only (tested apart)
#: A plausible body per method, so a refusal cannot come from a malformed request alone.
BODIES: dict[str, Any] = {
    "POST": {"Data": {"name": "pwned", "file_type": "GeoJSON"}, "Process": {"name": "pwned"},
             "User": {"old_password": "x", "new_password": "Pwned-Password-123"},
             "ProcessExecution": {"delete_expiry": "2030-01-01T00:00:00Z"}},
    "PATCH": {"Data[name]": "pwned", "Process[name]": "pwned", "Organisation[name]": "pwned",
              "Service[name]": "pwned", "User[given_name]": "pwned", "ProcessExecution[name]": "pwned"},
}


def _routes(emu: Any) -> list[tuple[str, str]]:
    doc = requests.get(emu.url + "/openapi.json", timeout=30).json()
    routes = []
    for path, operations in doc["paths"].items():
        if path.startswith(SKIPPED_PREFIXES):
            continue
        for method in operations:
            routes.append((method.upper(), path))
    return sorted(routes)


def _victim_ids(victim: Victim) -> dict[str, str]:
    return {
        "organisation_id": victim.org_id, "user_id": victim.user_id, "data_id": victim.data_id,
        "file_id": victim.file_id, "process_id": victim.process_id, "execution_id": victim.execution_id,
        "component_id": victim.component_id, "service_id": victim.service_id, "credit_id": victim.org_id,
    }


def _fill(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


def _masked(response: requests.Response, ids: dict[str, str]) -> tuple[int, str]:
    text = response.text
    for value in set(ids.values()):
        text = text.replace(value, "<id>")
    try:
        message = json.loads(text).get("error_message", text)
    except (ValueError, AttributeError):
        message = text
    return response.status_code, message


def _send(api: Api, method: str, path: str) -> requests.Response:
    body = BODIES.get(method)
    return api.request(method, path, json=body) if body is not None else api.request(method, path)


ROUTE_COUNT_MIN = 30  # the platform's API has ~30 id-taking routes; a collapse of the OpenAPI doc must fail


def test_the_probe_covers_every_route(emu: Any) -> None:
    routes = _routes(emu)
    assert len(routes) >= ROUTE_COUNT_MIN, routes
    assert {m for m, _ in routes} >= {"GET", "POST", "PATCH", "DELETE"}


def _probe(emu: Any, attacker: Api, victim: Victim, own_org: str | None) -> list[tuple[str, str, int]]:
    """Probe every route; ``own_org`` puts the attacker's organisation in the path (victim's ids below it)."""
    real = _victim_ids(victim)
    seen = []
    for method, template in _routes(emu):
        names = re.findall(r"\{(\w+)\}", template)
        if own_org is not None:
            if names == ["organisation_id"] or "organisation_id" not in names or \
                    {"service_id", "credit_id"} & set(names):
                continue  # the attacker's own organisation, credit or the shared service catalogue: not a probe
            real = dict(_victim_ids(victim), organisation_id=own_org, credit_id=own_org)
        fake = {name: str(uuid.uuid4()) for name in real}
        if own_org is not None:
            fake["organisation_id"] = fake["credit_id"] = own_org
        got_real = _send(attacker, method, _fill(template, real))
        got_fake = _send(attacker, method, _fill(template, fake))
        where = f"{method} {template}"
        assert got_real.status_code in (403, 404), (where, got_real.status_code, got_real.text[:300])
        assert _masked(got_real, real) == _masked(got_fake, fake), (where, got_real.text, got_fake.text)
        for secret in victim.names:
            assert secret not in got_real.text, (where, got_real.text)
        leaked = set(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", got_real.text))
        assert leaked <= {real[n] for n in names}, (where, leaked)  # only ids the attacker sent
        seen.append((method, template, got_real.status_code))
    return seen


def test_victims_organisation_is_closed_to_another_organisation(emu: Any, attacker: Api, victim: Victim) -> None:
    probed = _probe(emu, attacker, victim, own_org=None)
    assert len(probed) >= ROUTE_COUNT_MIN


def test_victims_ids_under_the_attackers_own_organisation_lead_nowhere(emu: Any, attacker: Api, victim: Victim,
                                                                       attacker_org: str) -> None:
    """The attacker's organisation in the path, the victim's data/process/execution/component/file ids
    below it: every such request is 'not found', exactly as for ids that do not exist."""
    probed = _probe(emu, attacker, victim, own_org=attacker_org)
    assert len(probed) >= 15


def test_the_victims_state_survived_the_probes(emu: Any, attacker: Api, victim: Victim, attacker_org: str) -> None:
    from fusion_stac.client import FusionClient

    from .conftest import EMAIL, PASSWORD

    _probe(emu, attacker, victim, own_org=None)
    _probe(emu, attacker, victim, own_org=attacker_org)
    with FusionClient(emu.url, email=EMAIL, password=PASSWORD) as client:
        assert client.get_data(victim.org_id, victim.data_id).name == victim.names[0]
        process = client.get_process(victim.org_id, victim.process_id)
        assert process.name == victim.names[1]
        assert client.get_execution(victim.org_id, victim.execution_id).id == victim.execution_id
        assert [f.file_id for f in client.list_files(victim.org_id, victim.data_id)] == [victim.file_id]
        assert client.user.id == victim.user_id
        assert client.get_organisation(victim.org_id).name != "pwned"
        assert not [d for d in client.iter_data(victim.org_id) if d.name == "pwned"]


@pytest.mark.parametrize("client_call", ["get_data", "list_files", "get_process", "download_url"])
def test_the_client_reports_a_refusal_without_leaking(emu: Any, victim: Victim, client_call: str) -> None:
    """Through fusion-stac the attacker gets a typed error that says nothing about the victim's items."""
    from fusion_stac.client import FusionClient
    from fusion_stac.errors import NotFoundError, PermissionDeniedError

    from .conftest import OTHER_EMAIL, OTHER_PASSWORD

    calls = {
        "get_data": lambda c, ids: c.get_data(ids["org"], ids["data"]),
        "list_files": lambda c, ids: c.list_files(ids["org"], ids["data"]),
        "get_process": lambda c, ids: c.get_process(ids["org"], ids["process"]),
        "download_url": lambda c, ids: c.download_url(ids["org"], ids["data"], ids["file"]),
    }
    real = {"org": victim.org_id, "data": victim.data_id, "process": victim.process_id, "file": victim.file_id}
    fake = {k: str(uuid.uuid4()) for k in real}
    errors = []
    with FusionClient(emu.url, email=OTHER_EMAIL, password=OTHER_PASSWORD) as client:
        for ids in (real, fake):
            with pytest.raises((PermissionDeniedError, NotFoundError)) as info:
                calls[client_call](client, ids)
            text = str(info.value)
            for key, value in ids.items():
                text = text.replace(value, f"<{key}>")
            errors.append((type(info.value), info.value.status, text))
    assert errors[0] == errors[1]
