"""``login`` / ``logout``: the session token in a 0600 file, never the password; refused and stale sessions."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from .conftest import EMAIL, PASSWORD, clean_env, on_a_terminal, run_cli


def _env(emulator: Any, home: Path, **extra: str) -> dict[str, str]:
    return clean_env(home, FUSION_PLATFORM_API_URL=emulator.url, **extra)


def test_login_keeps_a_private_token_and_not_the_password(emulator: Any, home: Path) -> None:
    env = _env(emulator, home)
    result = run_cli(["login", "--email", EMAIL, "--password-stdin"], env=env, input=PASSWORD + "\n")
    assert result.code == 0, result.err
    assert f"as {EMAIL}" in result.out and "Example Organisation" in result.out
    token_file = Path(env["FUSION_STAC_TOKEN_FILE"])
    mode = stat.S_IMODE(token_file.stat().st_mode)
    assert mode == 0o600, oct(mode)
    text = token_file.read_text()
    assert PASSWORD not in text
    entries = json.loads(text)["tokens"]
    assert any(key.endswith(f"email:{EMAIL}") and key.startswith(emulator.url) for key in entries)
    assert all(entry["access_token"] for entry in entries.values())

    # Later commands need neither the e-mail nor the password: the cached session is used.
    listed = run_cli(["ls"], env=env)
    assert listed.code == 0, listed.err
    assert "Example Organisation/" in listed.out

    out = run_cli(["logout"], env=env)
    assert out.code == 0 and "Forgot 2 cached session entries" in out.out  # filed by e-mail and by user id
    run_cli(["ls"], env=env).assert_one_line_error(1, "not logged in", "fusion-stac login")


def test_login_from_the_environment_password(emulator: Any, home: Path) -> None:
    env = _env(emulator, home, FUSION_PLATFORM_EMAIL=EMAIL, FUSION_PLATFORM_PASSWORD=PASSWORD)
    result = run_cli(["login"], env=env)
    assert result.code == 0, result.err
    assert Path(env["FUSION_STAC_TOKEN_FILE"]).is_file()


def test_login_with_netrc(emulator: Any, home: Path) -> None:
    env = _env(emulator, home)
    netrc = Path(env["NETRC"])
    netrc.write_text(f"machine 127.0.0.1 login {EMAIL} password {PASSWORD}\n")
    netrc.chmod(0o600)
    result = run_cli(["login"], env=env)
    assert result.code == 0, result.err
    assert f"as {EMAIL}" in result.out


def test_wrong_password_is_refused_in_one_line(emulator: Any, home: Path) -> None:
    env = _env(emulator, home)
    result = run_cli(["login", "--email", EMAIL, "--password-stdin"], env=env, input="not-the-password\n")
    line = result.assert_one_line_error(1, "incorrect username or password")
    assert "not-the-password" not in result.out + result.err
    assert "401" in line
    assert not Path(env["FUSION_STAC_TOKEN_FILE"]).exists()


def test_unknown_account_is_refused(emulator: Any, home: Path) -> None:
    env = _env(emulator, home)
    result = run_cli(["login", "--email", "nobody@example.com", "--password-stdin"], env=env, input=PASSWORD + "\n")
    result.assert_one_line_error(1)


def test_login_without_a_password_and_no_terminal(emulator: Any, home: Path) -> None:
    env = _env(emulator, home)
    result = run_cli(["login", "--email", EMAIL], env=env)
    result.assert_one_line_error(2, "no password", "--password-stdin")


def test_login_without_an_account(emulator: Any, home: Path) -> None:
    result = run_cli(["login", "--password-stdin"], env=_env(emulator, home), input=PASSWORD + "\n")
    result.assert_one_line_error(2, "no account given", "--email")


def test_empty_password_on_stdin(emulator: Any, home: Path) -> None:
    result = run_cli(["login", "--email", EMAIL, "--password-stdin"], env=_env(emulator, home), input="\n")
    result.assert_one_line_error(2, "--password-stdin")


def test_a_refused_cached_session_asks_to_log_in_again(emulator: Any, home: Path) -> None:
    env = _env(emulator, home)
    assert run_cli(["login", "--email", EMAIL, "--password-stdin"], env=env, input=PASSWORD + "\n").code == 0
    token_file = Path(env["FUSION_STAC_TOKEN_FILE"])
    payload = json.loads(token_file.read_text())
    for entry in payload["tokens"].values():
        entry["access_token"] = "revoked-" + entry["access_token"]  # as if the platform had revoked it
    token_file.write_text(json.dumps(payload))
    token_file.chmod(0o600)
    result = run_cli(["ls"], env=env)
    result.assert_one_line_error(1, "refused", "fusion-stac login")
    assert json.loads(token_file.read_text())["tokens"] == {}, "the refused session is forgotten"


def test_several_logged_in_accounts_need_email(emulator: Any, home: Path) -> None:
    from fusion_stac import _credentials

    env = _env(emulator, home)
    path = Path(env["FUSION_STAC_TOKEN_FILE"])
    import time

    for i, who in enumerate(("a@example.com", "b@example.com")):
        _credentials.save_token(emulator.url, f"token-{i}", user_id=f"00000000-0000-0000-0000-00000000000{i}",
                                email=who, expires_at=time.time() + 3600, path=path)
    result = run_cli(["ls"], env=env)
    result.assert_one_line_error(2, "several accounts", "a@example.com", "b@example.com", "--email")


def test_group_readable_token_cache_is_ignored(emulator: Any, home: Path) -> None:
    env = _env(emulator, home)
    assert run_cli(["login", "--email", EMAIL, "--password-stdin"], env=env, input=PASSWORD + "\n").code == 0
    Path(env["FUSION_STAC_TOKEN_FILE"]).chmod(0o644)
    result = run_cli(["ls"], env=env)
    assert result.code == 1
    warning, error = result.err_lines
    assert warning.startswith("fusion-stac: WARNING: ignoring token cache") and "chmod 600" in warning
    assert error.startswith("fusion-stac: error: not logged in")


def test_login_prompts_for_the_password_on_a_terminal(emulator: Any, home: Path) -> None:
    """getpass on a real (pseudo-)terminal: the prompt names the account and the password is not echoed."""
    env = _env(emulator, home)
    code, text, sent = on_a_terminal(["login", "--email", EMAIL], env, timeout=60,
                                     answer=(b"Password for me@org.com at ", PASSWORD.encode() + b"\n"))
    assert sent, text
    assert code == 0, text
    assert f"Logged in to {emulator.url} as {EMAIL}" in text
    assert PASSWORD not in text, "the password is not echoed"
    assert Path(env["FUSION_STAC_TOKEN_FILE"]).is_file()
