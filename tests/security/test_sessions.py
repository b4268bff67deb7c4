"""Sessions end when they should: after a password change, when the user is deleted, at expiry.

Each test uses a fresh emulator (it changes accounts). A session token of the old state must stop
working on the API, in ``FusionClient`` (which must not log in again with a stale password, nor
loop) and in ``fusion://`` (whose cached token is dropped from the token cache).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import EMAIL, OTHER_EMAIL, OTHER_PASSWORD, PASSWORD, Api

NEW_PASSWORD = "Brand-New-Password-42"


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Any]:
    from fusion_stac.emulator import Emulator

    with Emulator(data_dir=tmp_path / "emulator", execution_duration=0) as server:
        yield server


def _status(api_url: str, token: str, path: str) -> int:
    return requests.get(api_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code


def test_password_change_ends_every_session(fresh: Any) -> None:
    from fusion_stac.client import FusionClient
    from fusion_stac.errors import AuthenticationError

    old_client = FusionClient(fresh.url, email=EMAIL, password=PASSWORD).login()
    other_session = Api(fresh.url, EMAIL, PASSWORD)  # a second session of the same user
    user_id = old_client.user_id
    org = old_client.organisation().id
    assert _status(fresh.url, other_session.token, f"/users/{user_id}") == 200
    changer = Api(fresh.url, EMAIL, PASSWORD)
    answer = changer.request("POST", f"/users/{user_id}/change_password",
                             json={"User": {"old_password": PASSWORD, "new_password": NEW_PASSWORD}})
    assert answer.status_code == 200, answer.text
    for token in (old_client.session_token, other_session.token, changer.token):
        assert token and _status(fresh.url, token, f"/users/{user_id}") == 401
    # the client's renewal with the stale password is refused: a typed error, after one attempt
    before = fresh.stats()["routes"].get("POST /users/login", 0)
    with pytest.raises(AuthenticationError) as info:
        old_client.get_organisation(org)
    assert info.value.status == 401 and PASSWORD not in str(info.value) and NEW_PASSWORD not in str(info.value)
    assert fresh.stats()["routes"].get("POST /users/login", 0) - before == 1
    # the new password works
    with FusionClient(fresh.url, email=EMAIL, password=NEW_PASSWORD) as renewed:
        assert renewed.organisation().id


def test_a_cached_fs_session_from_before_the_change_is_dropped(fresh: Any, monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    from fusion_stac import _credentials
    from fusion_stac.fs import FusionFileSystem

    cache = tmp_path / "tokens.json"
    monkeypatch.setenv("FUSION_STAC_TOKEN_FILE", str(cache))
    fs = FusionFileSystem(api_url=fresh.url, email=EMAIL, password=PASSWORD, skip_instance_cache=True)
    org = fs.ls("", detail=True)[0]["organisation_id"]
    assert _credentials.load_token(fresh.url, email=EMAIL) is not None  # the session was cached
    api = Api(fresh.url, EMAIL, PASSWORD)
    api.request("POST", f"/users/{api.user_id}/change_password",
                json={"User": {"old_password": PASSWORD, "new_password": NEW_PASSWORD}})
    # a process without the password (a dask worker) that finds only the stale cached token
    worker = FusionFileSystem(api_url=fresh.url, email=EMAIL, skip_instance_cache=True)
    with pytest.raises(PermissionError):
        worker.ls(f"{org}/uploads")
    assert _credentials.load_token(fresh.url, email=EMAIL) is None  # and nobody else will try it


def test_a_deleted_users_session_stops_working(fresh: Any) -> None:
    from fusion_stac.client import FusionClient
    from fusion_stac.errors import AuthenticationError

    client = FusionClient(fresh.url, email=OTHER_EMAIL, password=OTHER_PASSWORD).login()
    org = client.organisation().id
    token = client.session_token or ""
    deleter = Api(fresh.url, OTHER_EMAIL, OTHER_PASSWORD)
    assert deleter.request("DELETE", f"/users/{deleter.user_id}").status_code == 200
    assert _status(fresh.url, token, f"/organisations/{org}") == 401
    assert _status(fresh.url, deleter.token, f"/users/{deleter.user_id}") == 401
    with pytest.raises(AuthenticationError):
        client.get_organisation(org)
    with pytest.raises(AuthenticationError):
        FusionClient(fresh.url, email=OTHER_EMAIL, password=OTHER_PASSWORD).login()
    # the other account is untouched
    with FusionClient(fresh.url, email=EMAIL, password=PASSWORD) as survivor:
        assert survivor.organisation().id != org


def test_expired_sessions_are_refused_and_renewed_by_the_client(tmp_path: Path) -> None:
    from fusion_stac.client import FusionClient
    from fusion_stac.emulator import Emulator
    from fusion_stac.errors import AuthenticationError

    with Emulator(data_dir=tmp_path / "emulator", execution_duration=0, token_lifetime=1.0) as server:
        client = FusionClient(server.url, email=EMAIL, password=PASSWORD).login()
        org = client.organisation().id
        stale = client.session_token or ""
        time.sleep(1.2)
        assert _status(server.url, stale, f"/organisations/{org}") == 401
        assert client.get_organisation(org).id == org  # renewed transparently
        assert client.stats.relogins == 1 and client.session_token != stale
        tokenonly = FusionClient(server.url, token=stale)  # no password: nothing to renew with
        with pytest.raises(AuthenticationError):
            tokenonly.get_organisation(org)
