"""Accounts and tokens: login, bearer checks, expiry, tampering, password changes, deleted users."""

from __future__ import annotations

import time
from typing import Any

import jwt
import requests

from fusion_stac.emulator import services
from fusion_stac.emulator.auth import hash_password, password_problems, verify_password

from ._helpers import EMAIL, ORG, OTHER_ORG, PASSWORD, Api


def login(url: str, email: str | None = EMAIL, password: str | None = PASSWORD, **extra: Any) -> requests.Response:
    body = {"User": {"email": email, "user_id": None, "password": password, **extra}}
    return requests.post(f"{url}/users/login", json=body)


def test_login_returns_opaque_access_token_and_jwt_id_token(emulator: Any) -> None:
    response = login(emulator.url)
    assert response.status_code == 200
    body = response.json()
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["sub"] == services.EXAMPLE_USER_ID
    assert claims["exp"] > claims["iat"]
    assert body["access_token"] not in body["id_token"]
    assert len(body["access_token"]) >= 32


def test_login_by_user_id_works(emulator: Any) -> None:
    response = requests.post(f"{emulator.url}/users/login",
                             json={"User": {"email": None, "user_id": services.EXAMPLE_USER_ID, "password": PASSWORD}})
    assert response.status_code == 200


def test_bad_credentials_use_the_platform_message(emulator: Any) -> None:
    for email, password in ((EMAIL, "wrong"), ("nobody@example.com", PASSWORD), (EMAIL.upper(), "MyPassword123")):
        response = login(emulator.url, email, password)
        assert response.status_code == 401
        assert response.json() == {"error_message": "Incorrect username or password"}


def test_login_input_errors_are_400(emulator: Any) -> None:
    assert login(emulator.url, None, PASSWORD).status_code == 400
    assert login(emulator.url, EMAIL, None).status_code == 400
    assert login(emulator.url, EMAIL, 12345).status_code == 400  # type: ignore[arg-type]
    response = requests.post(f"{emulator.url}/users/login", data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "Malformed JSON" in response.json()["error_message"]


def test_every_endpoint_but_login_needs_a_bearer_token(emulator: Any) -> None:
    schema = requests.get(f"{emulator.url}/openapi.json").json()
    checked = 0
    for path, operations in schema["paths"].items():
        if path == "/users/login" or path.startswith("/_storage/"):
            continue
        concrete = path
        for name in ("organisation_id", "user_id", "data_id", "file_id", "process_id", "execution_id",
                     "component_id", "service_id", "credit_id"):
            concrete = concrete.replace("{" + name + "}", services.EXAMPLE_ORGANISATION_ID)
        for method in operations:
            response = requests.request(method.upper(), f"{emulator.url}{concrete}", json={})
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "error_message" in response.json()
            checked += 1
    assert checked >= 35


def test_tampered_and_malformed_tokens_are_refused(emulator: Any) -> None:
    api = Api(emulator.url)
    path = f"/users/{api.user_id}"
    tampered = api.token[:-2] + ("AA" if not api.token.endswith("AA") else "BB")
    for header in (f"Bearer {tampered}", "Bearer ", "Basic abc", api.token, f"Bearer {api.token}x"):
        response = requests.get(f"{emulator.url}{path}", headers={"Authorization": header})
        assert response.status_code == 401, header
    # The id token is not an access token.
    id_token = login(emulator.url).json()["id_token"]
    assert requests.get(f"{emulator.url}{path}", headers={"Authorization": f"Bearer {id_token}"}).status_code == 401


def test_tokens_expire(make_emulator: Any) -> None:
    emu = make_emulator(token_lifetime=1)
    api = Api(emu.url)
    assert api.get(f"/users/{api.user_id}").status_code == 200
    time.sleep(1.3)
    response = api.get(f"/users/{api.user_id}")
    assert response.status_code == 401
    assert "expired" in response.json()["error_message"]
    emu.configure(token_lifetime=3600)
    assert Api(emu.url).get(f"/users/{api.user_id}").status_code == 200


def test_change_password_policy_and_revocation(fresh_emulator: Any) -> None:
    url = fresh_emulator.url
    api = Api(url)
    path = f"/users/{api.user_id}/change_password"

    def change(old: Any, new: Any) -> requests.Response:
        return api.post(path, json={"User": {"old_password": old, "new_password": new}})

    assert change("wrong", "NewPassword123").status_code == 422
    for weak in ("short1A", "alllowercase1", "ALLUPPERCASE1", "NoDigitsHere"):
        response = change(PASSWORD, weak)
        assert response.status_code == 422, weak
        assert "must contain" in response.json()["error_message"]
    assert change(PASSWORD, 123).status_code == 400
    assert change(PASSWORD, "NewPassword123").status_code == 200
    # Tokens issued before the change stop working; the old password no longer logs in.
    assert api.get(f"/users/{api.user_id}").status_code == 401
    assert login(url).status_code == 401
    assert login(url, EMAIL, "NewPassword123").status_code == 200


def test_deleted_users_tokens_stop_working(fresh_emulator: Any) -> None:
    api = Api(fresh_emulator.url)
    second = Api(fresh_emulator.url)
    assert api.delete(f"/users/{api.user_id}").status_code == 200
    assert second.get(f"/organisations/{ORG}").status_code == 401
    assert login(fresh_emulator.url).status_code == 401


def test_users_only_see_themselves(api: Api, other_api: Api) -> None:
    assert api.get(f"/users/{other_api.user_id}").status_code == 403
    assert api.patch(f"/users/{other_api.user_id}", json={"User[given_name]": "x"}).status_code == 403
    assert api.get(f"/users/{services.fixed_id('user:nobody')}").status_code == 403


def test_user_model_and_update(fresh_emulator: Any) -> None:
    api = Api(fresh_emulator.url)
    model = api.ok("GET", f"/users/{api.user_id}")["model"]
    assert model["organisations"] == [{"id": ORG, "last": True}]
    assert model["email"] == EMAIL
    # The SDK echoes the whole model: read-only and hidden fields are ignored.
    body = {f"User[{key}]": value for key, value in model.items()}
    body.update({"User[given_name]": "Ada", "User[email]": "hijack@example.com", "User[id]": OTHER_ORG})
    updated = api.ok("PATCH", f"/users/{api.user_id}", json=body)["model"]
    assert updated["given_name"] == "Ada"
    assert updated["email"] == EMAIL and updated["id"] == api.user_id
    assert api.patch(f"/users/{api.user_id}", json={"User[time_zone]": "Mars/Olympus"}).status_code == 422
    assert api.patch(f"/users/{api.user_id}", json={"User[default_output_storage_period]": "x"}).status_code == 400


def test_password_hashing() -> None:
    stored = hash_password("Secret123")
    assert "Secret123" not in stored and stored.startswith("scrypt$")
    assert verify_password("Secret123", stored)
    assert not verify_password("Secret124", stored)
    assert not verify_password("Secret123", "garbage")
    assert hash_password("Secret123") != stored  # salted
    assert password_problems("Secret123") == []
