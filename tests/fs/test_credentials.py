"""The session-token cache: atomic, private, keyed by API URL and identity, never holding a password."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from fusion_stac import _credentials as creds

URL = "https://api.example.com/"


def test_save_load_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tokens.json"
    saved = creds.save_token(URL, "tok-123", user_id="u-1", email="Me@Org.com", expires_at=time.time() + 3600,
                             path=path)
    assert "tok-123" not in repr(saved)
    by_email = creds.load_token("https://api.example.com", email="me@org.com", path=path)
    by_user = creds.load_token(URL, user_id="u-1", path=path)
    assert by_email == by_user and by_email is not None and by_email.access_token == "tok-123"
    assert by_email.user_id == "u-1" and by_email.email == "Me@Org.com"
    assert creds.load_token("https://other.example.com", email="me@org.com", path=path) is None
    assert creds.load_token(URL, email="someone@else.com", path=path) is None
    assert creds.load_token(URL, path=path) is None  # no identity, no token


def test_file_is_private_and_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    creds.save_token(URL, "tok", user_id="u", expires_at=time.time() + 60, path=path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert {p.name for p in tmp_path.iterdir()} == {"tokens.json", "tokens.json.lock"}  # no temp files left
    payload = json.loads(path.read_text())
    assert payload["version"] == 1 and "password" not in path.read_text().lower()


def test_expired_and_insecure_caches_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    creds.save_token(URL, "old", user_id="u", expires_at=time.time() + 10, path=path)
    assert creds.load_token(URL, user_id="u", path=path) is None  # within the expiry margin
    creds.save_token(URL, "new", user_id="u", expires_at=time.time() + 3600, path=path)
    assert creds.load_token(URL, user_id="u", path=path).access_token == "new"  # type: ignore[union-attr]
    os.chmod(path, 0o644)
    assert creds.load_token(URL, user_id="u", path=path) is None
    os.chmod(path, 0o600)
    path.write_text("{not json")
    assert creds.load_token(URL, user_id="u", path=path) is None


def test_clear(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    later = time.time() + 3600
    creds.save_token(URL, "a", user_id="u1", email="a@x.com", expires_at=later, path=path)
    creds.save_token(URL, "b", user_id="u2", expires_at=later, path=path)
    creds.save_token("https://other.example.com", "c", user_id="u3", expires_at=later, path=path)
    assert creds.clear_tokens(URL, email="a@x.com", path=path) == 2  # filed under email and user id
    assert creds.load_token(URL, user_id="u1", path=path) is None
    assert creds.load_token(URL, user_id="u2", path=path) is not None
    assert creds.clear_tokens(URL, path=path) == 1
    assert creds.clear_tokens(path=path) == 1
    assert creds.load_token("https://other.example.com", user_id="u3", path=path) is None


def test_default_location_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(creds.ENV_TOKEN_FILE, str(tmp_path / "t.json"))
    assert creds.token_file() == tmp_path / "t.json"
    monkeypatch.delenv(creds.ENV_TOKEN_FILE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert creds.token_file() == tmp_path / "fusion-stac" / "tokens.json"


def test_save_needs_a_token_and_user() -> None:
    with pytest.raises(ValueError):
        creds.save_token(URL, "", user_id="u", expires_at=0)
