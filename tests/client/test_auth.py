"""Login, configuration from the environment and netrc, session renewal, and secrets kept out of sight."""

from __future__ import annotations

import logging
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import fusion_stac
from fusion_stac.client import FusionClient, login
from fusion_stac.errors import AuthenticationError, PermissionDeniedError

from .conftest import (
    EMAIL,
    OTHER_EMAIL,
    OTHER_PASSWORD,
    PASSWORD,
    new_client,
    rectangle_geojson,
    start_emulator,
)


def test_login_and_user(client_emu: Any) -> None:
    client = login(EMAIL, PASSWORD, api_url=client_emu.url)
    assert client.logged_in and client.user.email == EMAIL
    assert fusion_stac.login is login and fusion_stac.FusionClient is FusionClient


def test_wrong_password_is_an_authentication_error(client_emu: Any) -> None:
    client = FusionClient(client_emu.url, email=EMAIL, password="WrongPassword999")
    with pytest.raises(AuthenticationError) as info:
        client.login()
    assert "Incorrect username or password" in str(info.value)
    assert info.value.status in {400, 401} and info.value.path == "/users/login"
    assert "WrongPassword999" not in str(info.value) and "WrongPassword999" not in repr(info.value)
    assert not client.logged_in


def test_no_credentials_fails_before_any_request(client_emu: Any, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    for name in ("FUSION_PLATFORM_EMAIL", "FUSION_PLATFORM_USER_ID", "FUSION_PLATFORM_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "absent-netrc"))
    client = FusionClient.from_env(client_emu.url)
    with pytest.raises(AuthenticationError, match="no credentials"):
        client.organisation()
    assert client.stats.requests == 0


def test_from_env(client_emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSION_PLATFORM_API_URL", client_emu.url)
    monkeypatch.setenv("FUSION_PLATFORM_EMAIL", OTHER_EMAIL)
    monkeypatch.setenv("FUSION_PLATFORM_PASSWORD", OTHER_PASSWORD)
    client = FusionClient.from_env()
    assert client.api_url == client_emu.url.rstrip("/")
    assert client.user.email == OTHER_EMAIL
    assert fusion_stac.login().user.email == OTHER_EMAIL


def test_netrc(client_emu: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("FUSION_PLATFORM_EMAIL", "FUSION_PLATFORM_USER_ID", "FUSION_PLATFORM_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    host = client_emu.url.split("://", 1)[1].split(":")[0].split("/")[0]
    netrc.write_text(f"machine {host}\n  login {EMAIL}\n  password {PASSWORD}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = FusionClient.from_env(client_emu.url)
    assert client.email == EMAIL and client.user.email == EMAIL
    # an explicit, different e-mail does not borrow the netrc password
    other = FusionClient.from_env(client_emu.url, email=OTHER_EMAIL)
    with pytest.raises(AuthenticationError):
        other.login()


def test_permission_denied_is_typed(client_emu: Any) -> None:
    mine = new_client(client_emu)
    theirs = new_client(client_emu, email=OTHER_EMAIL, password=OTHER_PASSWORD)
    my_org = mine.organisation().id
    their_orgs = set(theirs.user.organisation_ids)
    if my_org in their_orgs:
        pytest.fail("the emulator's second user should not belong to the first user's organisation")
    with pytest.raises((PermissionDeniedError, AuthenticationError)) as info:
        theirs.get_organisation(my_org)
    assert info.value.status in {401, 403, 404} and my_org in (info.value.path or "")


def test_expired_session_is_renewed_once() -> None:
    with start_emulator(token_lifetime=1.0) as emu:
        client = new_client(emu)
        org = client.organisation().id
        time.sleep(1.3)
        assert client.credit(org).organisation_id == org  # transparently logged in again
        assert client.stats.relogins == 1
        # many threads hitting an expired session renew it once, not once each
        time.sleep(1.3)
        barrier = threading.Barrier(16)

        def call(_: int) -> str:
            barrier.wait()
            return client.get_organisation(org).id

        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(call, range(16))) == {org}
        assert client.stats.relogins == 2
        # without a password there is nothing to renew with: the 401 surfaces
        token_only = FusionClient(emu.url, token=client._token, user_id=client.user_id)
        time.sleep(1.3)
        with pytest.raises(AuthenticationError) as info:
            token_only.get_organisation(org)
        assert info.value.status == 401


def test_secrets_stay_out_of_logs_reprs_and_pickles(client_emu: Any, caplog: pytest.LogCaptureFixture,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG, logger="fusion_stac")
    client = new_client(client_emu)
    org = client.organisation().id
    data = client.create_data(org, "Secret test", [rectangle_geojson(tmp_path / "x.geojson", width_km=1, height_km=1)])
    try:
        (file,) = client.list_files(org, data.id)
        url = client.download_url(org, data.id, file.file_id)
        client.download_file(org, data.id, file, tmp_path / "x-copy.geojson")
    finally:
        client.delete_data(org, data.id)
    token = client._token
    assert token and "X-Amz-Signature=" in url.url
    signature = url.url.split("X-Amz-Signature=", 1)[1].split("&")[0]
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("fusion_stac"))
    assert ours  # we do log
    shown = [ours, repr(client), repr(url), str(url)]
    for secret in (PASSWORD, token, signature):
        assert all(secret not in text for text in shown)
    blob = pickle.dumps(client)
    assert PASSWORD.encode() not in blob and token.encode() not in blob
    monkeypatch.setenv("FUSION_PLATFORM_EMAIL", EMAIL)
    monkeypatch.setenv("FUSION_PLATFORM_PASSWORD", PASSWORD)
    clone = pickle.loads(blob)  # e.g. on a worker, whose environment holds the credentials
    assert clone.api_url == client.api_url and clone.email == EMAIL and not clone.logged_in
    assert clone.organisation().id == org


def test_client_settings_are_validated() -> None:
    from fusion_stac.errors import ValidationError

    with pytest.raises(ValidationError, match="api_url"):
        FusionClient("ftp://example.com")
    with pytest.raises(ValidationError, match="max_workers"):
        FusionClient("http://127.0.0.1:1", max_workers=0)


def test_on_login_hook_sees_each_new_session(client_emu: Any) -> None:
    tokens: list[str | None] = []
    client = new_client(client_emu, on_login=lambda c: tokens.append(c.session_token))
    client.organisation()
    client.logout()
    client.organisation()
    assert len(tokens) == 2 and all(tokens) and tokens[-1] == client.session_token

    def broken(_: FusionClient) -> None:
        raise RuntimeError("cache is full")

    assert new_client(client_emu, on_login=broken).login().logged_in  # a failing hook does not break login
