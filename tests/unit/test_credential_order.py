"""``resolve_credentials``: the one lookup (arguments, environment, netrc, kept session), without a server."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from fusion_stac import _credentials as creds
from fusion_stac._credentials import resolve_credentials
from fusion_stac.errors import AuthenticationError

URL = "https://api.example.com"
USER = "00000000-0000-0000-0000-000000000001"


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (creds.ENV_EMAIL, creds.ENV_USER_ID, creds.ENV_PASSWORD, creds.ENV_API_URL):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv(creds.ENV_TOKEN_FILE, str(tmp_path / "tokens.json"))
    return tmp_path


def _netrc(place: Path, login: str, password: str) -> None:
    (place / "netrc").write_text(f"machine api.example.com login {login} password {password}\n")
    (place / "netrc").chmod(0o600)


def _keep(email: str, token: str = "kept-token", *, expires_in: float = 3600, user_id: str = USER) -> None:
    creds.save_token(URL, token, user_id=user_id, email=email, expires_at=time.time() + expires_in)


def test_arguments_then_environment_then_netrc_then_kept_session(place: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_credentials(URL).source == "none"
    _keep("kept@org.com")
    got = resolve_credentials(URL)
    assert (got.source, got.email, got.user_id, got.token, got.password) == (
        "kept session", "kept@org.com", USER, "kept-token", None)
    _netrc(place, "netrc@org.com", "netrc-pw")
    got = resolve_credentials(URL)
    assert (got.source, got.email, got.password, got.token) == ("netrc", "netrc@org.com", "netrc-pw", None)
    monkeypatch.setenv(creds.ENV_EMAIL, "env@org.com")
    monkeypatch.setenv(creds.ENV_PASSWORD, "env-pw")
    got = resolve_credentials(URL)
    assert (got.source, got.email, got.password) == ("environment", "env@org.com", "env-pw")
    got = resolve_credentials(URL, email="arg@org.com", password="arg-pw")
    assert (got.source, got.email, got.password) == ("arguments", "arg@org.com", "arg-pw")
    # the environment's password never goes with another identity; netrc's only with its own login
    got = resolve_credentials(URL, email="arg@org.com")
    assert got.password is None and not got.usable and "arg@org.com" in (got.message or "")
    assert resolve_credentials(URL, email="netrc@org.com").password == "netrc-pw"


def test_a_kept_session_of_the_chosen_identity_is_reused_before_its_password(place: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _keep("env@org.com")
    monkeypatch.setenv(creds.ENV_EMAIL, "env@org.com")
    monkeypatch.setenv(creds.ENV_PASSWORD, "env-pw")
    got = resolve_credentials(URL)
    assert (got.source, got.token, got.password, got.password_source) == (
        "kept session", "kept-token", "env-pw", "environment")
    assert "kept session of env@org.com (fusion-stac login)" in got.describe()
    assert resolve_credentials(URL, kept_sessions=False).token is None
    # another identity's kept session is not borrowed
    monkeypatch.setenv(creds.ENV_EMAIL, "other@org.com")
    monkeypatch.delenv(creds.ENV_PASSWORD)
    assert resolve_credentials(URL).token is None


def test_expired_kept_session_says_so(place: Path) -> None:
    _keep("me@org.com", expires_in=-60)
    got = resolve_credentials(URL)
    assert not got.usable and got.problem == "expired" and got.email == "me@org.com"
    with pytest.raises(AuthenticationError) as info:
        got.require()
    assert "session expired, log in again (`fusion-stac login`)" in str(info.value)
    assert "not logged in" not in str(info.value) and "kept-token" not in str(info.value)
    assert resolve_credentials(URL, email="me@org.com").problem == "expired"


def test_several_kept_sessions_need_a_choice(place: Path) -> None:
    _keep("a@org.com", "token-a")
    _keep("b@org.com", "token-b", user_id="00000000-0000-0000-0000-000000000002")
    got = resolve_credentials(URL)
    assert got.problem == "several" and "a@org.com" in (got.message or "") and "b@org.com" in (got.message or "")
    assert resolve_credentials(URL, email="b@org.com").token == "token-b"


def test_the_choice_is_logged_without_secrets(place: Path, caplog: pytest.LogCaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _keep("me@org.com")
    with caplog.at_level(logging.INFO, logger="fusion_stac"):
        got = resolve_credentials(URL)
    assert "credentials: kept session of me@org.com (fusion-stac login)" in caplog.text
    assert "kept-token" not in caplog.text and "kept-token" not in repr(got)
    caplog.clear()
    monkeypatch.setenv(creds.ENV_EMAIL, "env@org.com")
    monkeypatch.setenv(creds.ENV_PASSWORD, "env-secret")
    with caplog.at_level(logging.INFO, logger="fusion_stac"):
        got = resolve_credentials(URL)
    assert "credentials: password of env@org.com from the environment" in caplog.text
    assert "env-secret" not in caplog.text and "env-secret" not in repr(got)
