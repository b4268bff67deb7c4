"""Helpers for the emulator tests: a minimal raw HTTP client (plain ``requests``) and small test files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import requests

from fusion_stac.emulator import services

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
OTHER_EMAIL = "other@example.com"
OTHER_PASSWORD = "OtherPassword123!"
ORG = services.EXAMPLE_ORGANISATION_ID
OTHER_ORG = services.OTHER_ORGANISATION_ID

SDK_DIR = Path(__import__("fusion_platform").__file__).parent
GLASGOW = SDK_DIR / "glasgow.geojson"


class Api:
    """A raw client: one logged-in ``requests`` session against an emulator."""

    def __init__(self, url: str, email: str = EMAIL, password: str = PASSWORD) -> None:
        self.url = url
        self.http = requests.Session()
        response = self.http.post(f"{url}/users/login",
                                  json={"User": {"email": email, "user_id": None, "password": password}})
        assert response.status_code == 200, response.text
        body = response.json()
        self.token = body["access_token"]
        import jwt

        self.user_id = jwt.decode(body["id_token"], options={"verify_signature": False})["sub"]
        self.http.headers.update({"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, f"{self.url}{path}", **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.request(method, path, **kwargs)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    # -- higher level -----------------------------------------------------------------------------

    def create_data(self, org: str, name: str, files: list[tuple[str, str, bytes]]) -> tuple[str, list[str]]:
        """Create a data item and upload files ``(name, file_type, bytes)``; returns (data id, file ids)."""
        data = self.ok("POST", f"/organisations/{org}/data", json={"Data[organisation_id]": org, "Data[name]": name})
        data_id = data["model"]["id"]
        file_ids = []
        for file_name, file_type, payload in files:
            added = self.ok("POST", f"/organisations/{org}/data/{data_id}/add_file",
                            json={"Data": {"name": file_name, "file_type": file_type}})
            upload = requests.put(added["extras"]["url"], data=payload)
            assert upload.status_code == 200, upload.text
            file_ids.append(added["extras"]["file"])
        return data_id, file_ids

    def files(self, org: str, data_id: str) -> list[dict[str, Any]]:
        return self.ok("GET", f"/organisations/{org}/data/{data_id}/files")["list"]

    def service_id(self, org: str, name: str) -> str:
        found = self.ok("GET", f"/organisations/{org}/services/latest",
                        params={"limit": 1, "filter[name__begins_with]": name})["list"]
        assert found, name
        return found[0]["id"]

    def new_process(self, org: str, service_name: str, data_id: str, name: str = "Test",
                    **overrides: Any) -> dict[str, Any]:
        """Build a create body from the template of ``service_name`` with input 1 = ``data_id``."""
        template = self.ok("GET", f"/organisations/{org}/processes/new",
                           params={"service_id": self.service_id(org, service_name)})["model"]
        template["inputs"][0]["id"] = data_id
        template["name"] = name
        template["organisation_id"] = org
        template.update(overrides)
        return {f"Process[{key}]": value for key, value in template.items()}

    def create_process(self, org: str, service_name: str, data_id: str, **overrides: Any) -> dict[str, Any]:
        body = self.new_process(org, service_name, data_id, **overrides)
        return self.ok("POST", f"/organisations/{org}/processes", json=body)["model"]


def rectangle(lon: float = -4.3, lat: float = 55.85, width_km: float = 10.0, height_km: float = 10.0) -> bytes:
    """A one-polygon GeoJSON rectangle of about ``width_km`` x ``height_km`` (CRS84)."""
    dlon = width_km / (111.32 * math.cos(math.radians(lat)))
    dlat = height_km / 110.57
    w, e, s, n = lon - dlon / 2, lon + dlon / 2, lat - dlat / 2, lat + dlat / 2
    feature = {"type": "Feature", "properties": {"name": "rectangle"},
               "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}}
    return json.dumps({"type": "FeatureCollection", "features": [feature]}).encode()
