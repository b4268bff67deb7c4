"""Pre-signed storage URLs: signatures, expiry, method binding, ranges, HEAD, ETags, uploads and analysis."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests

from fusion_stac.emulator.storage import Refusal, UrlSigner, parse_range
from fusion_stac.models import SignedURL

from ._helpers import GLASGOW, ORG, Api, rectangle

PAYLOAD = os.urandom(300_000)


@pytest.fixture
def stored(api: Api) -> dict[str, Any]:
    """A data item with one 300 kB 'Other' file; returns ids and a fresh download URL."""
    data_id, file_ids = api.create_data(ORG, "Blob", [("blob.bin", "Other", PAYLOAD)])
    extras = api.ok("GET", f"/organisations/{ORG}/data/{data_id}/download_file/{file_ids[0]}",
                    params={"preview": "False"})["extras"]
    return {"data_id": data_id, "file_id": file_ids[0], "url": extras["url"]}


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_download_serves_exact_bytes_with_metadata(stored: dict[str, Any]) -> None:
    response = requests.get(stored["url"])
    assert response.status_code == 200
    assert response.content == PAYLOAD
    assert response.headers["Content-Length"] == str(len(PAYLOAD))
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"] == f'"{hashlib.md5(PAYLOAD).hexdigest()}"'
    assert "blob.bin" in response.headers["Content-Disposition"]
    assert "Authorization" not in response.request.headers


@pytest.mark.parametrize(("header", "start", "end"), [
    ("bytes=0-0", 0, 0),
    ("bytes=100-1123", 100, 1123),
    ("bytes=299000-", 299000, 299999),
    ("bytes=-500", 299500, 299999),
    ("bytes=299990-400000", 299990, 299999),
    ("bytes=-999999", 0, 299999),
])
def test_single_ranges(stored: dict[str, Any], header: str, start: int, end: int) -> None:
    response = requests.get(stored["url"], headers={"Range": header})
    assert response.status_code == 206
    assert response.content == PAYLOAD[start:end + 1]
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(PAYLOAD)}"
    assert response.headers["Content-Length"] == str(end - start + 1)
    assert response.headers["ETag"]


@pytest.mark.parametrize("header", ["bytes=300000-", "bytes=999999-1000000", "bytes=-0"])
def test_unsatisfiable_ranges_are_416(stored: dict[str, Any], header: str) -> None:
    response = requests.get(stored["url"], headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(PAYLOAD)}"
    assert b"InvalidRange" in response.content


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=5-1", "bytes=abc"])
def test_ignored_ranges_send_the_whole_object(stored: dict[str, Any], header: str) -> None:
    response = requests.get(stored["url"], headers={"Range": header})
    assert response.status_code == 200
    assert response.content == PAYLOAD


def test_conditional_requests(stored: dict[str, Any]) -> None:
    etag = requests.get(stored["url"], headers={"Range": "bytes=0-0"}).headers["ETag"]
    assert requests.get(stored["url"], headers={"If-None-Match": etag}).status_code == 304
    assert requests.get(stored["url"], headers={"If-None-Match": '"other"'}).status_code == 200
    # If-Range with a stale validator sends the whole object.
    stale = requests.get(stored["url"], headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert stale.status_code == 200 and len(stale.content) == len(PAYLOAD)
    fresh = requests.get(stored["url"], headers={"Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206 and fresh.content == PAYLOAD[:10]


def test_head_is_refused_like_a_cloud_presigned_get(stored: dict[str, Any]) -> None:
    response = requests.head(stored["url"])
    assert response.status_code == 403
    assert requests.head(with_query(stored["url"], **{"X-Amz-Signature": "0" * 64})).status_code == 403


def test_urls_are_s3_presigned_urls_on_a_storage_host_of_their_own(emulator: Any, stored: dict[str, Any]) -> None:
    parts = urlsplit(stored["url"])
    assert f"{parts.scheme}://{parts.netloc}" == emulator.storage_url != emulator.url
    assert parts.path == f"/_storage/download/{stored['file_id']}"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert list(query) == ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                           "X-Amz-SignedHeaders", "X-Amz-Signature"]
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and query["X-Amz-SignedHeaders"] == "host"
    issued = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - issued).total_seconds()) < 120
    assert 3600 <= int(query["X-Amz-Expires"]) <= 3601
    key, day, region, service, terminal = query["X-Amz-Credential"].split("/")
    assert key.startswith("AKIA") and day == query["X-Amz-Date"][:8] and (region, service, terminal) == (
        "eu-west-2", "s3", "aws4_request")
    assert re.fullmatch(r"[0-9a-f]{64}", query["X-Amz-Signature"])
    # the client reads the expiry from the URL itself
    assert SignedURL.issued(stored["url"]).expires_at == issued + timedelta(seconds=int(query["X-Amz-Expires"]))
    # storage answers on its port only, the API on its own
    on_api = requests.get(stored["url"].replace(emulator.storage_url, emulator.url))
    assert on_api.status_code == 404 and "error_message" in on_api.json()
    api_on_storage = requests.get(f"{emulator.storage_url}/organisations/{ORG}")
    assert api_on_storage.status_code == 404 and b"<Code>NoSuchKey</Code>" in api_on_storage.content


def test_signatures_are_aws_sigv4() -> None:
    """The example of the S3 documentation ("Authenticating Requests: Using Query Parameters")."""
    signer = UrlSigner(b"", access_key="AKIAIOSFODNN7EXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                       region="us-east-1")
    signature = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    query = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2F"
             "aws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=")
    host = {"host": "examplebucket.s3.amazonaws.com"}
    issued = datetime(2013, 5, 24, tzinfo=timezone.utc).timestamp()
    assert signer.check("GET", "/test.txt", query + signature, host, now=issued + 60) is None
    assert signer.check("GET", "/test.txt", query + signature, host, now=issued + 86401) == Refusal(
        403, "AccessDenied", "Request has expired")
    assert signer.check("GET", "/test.txt", query + signature[:-1] + "5", host, now=issued + 60).code == (
        "SignatureDoesNotMatch")
    assert signer.check("GET", "/test.txt", query + signature, {"host": "elsewhere"}, now=issued + 60).code == (
        "SignatureDoesNotMatch")
    # and what it signs, it accepts
    url, expiry = signer.sign("https://examplebucket.s3.amazonaws.com", "GET", "f", 60, now=issued)
    parts = urlsplit(url)
    assert expiry == issued + 60
    assert signer.check("GET", parts.path, parts.query, host, now=issued + 59) is None
    assert signer.check("PUT", parts.path, parts.query, host, now=issued + 59) is not None


def _refusal(response: requests.Response) -> tuple[int, str]:
    assert response.headers["Content-Type"].startswith("application/xml")
    match = re.search(rb"<Code>(\w+)</Code>", response.content)
    assert match is not None, response.content
    return response.status_code, match.group(1).decode()


def test_tampered_signature_expiry_or_file_is_refused(api: Api, stored: dict[str, Any]) -> None:
    url = stored["url"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    signature = query["X-Amz-Signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    _other_id, other_files = api.create_data(ORG, "Other blob", [("other.bin", "Other", b"secret")])
    cross_file = url.replace(stored["file_id"], other_files[0])
    expires = int(query["X-Amz-Expires"])
    mismatch = (403, "SignatureDoesNotMatch")
    malformed = (400, "AuthorizationQueryParametersError")
    cases = {
        with_query(url, **{"X-Amz-Signature": flipped}): mismatch,
        with_query(url, **{"X-Amz-Expires": str(expires + 3600)}): mismatch,
        with_query(url, **{"X-Amz-Date": "20300101T000000Z"}): mismatch,
        with_query(url, extra="1"): mismatch,
        cross_file: mismatch,
        with_query(url, **{"X-Amz-Expires": "soon"}): malformed,
        with_query(url, **{"X-Amz-Date": "yesterday"}): malformed,
        with_query(url, **{"X-Amz-Algorithm": "AWS4-HMAC-SHA1"}): malformed,
        with_query(url, **{"X-Amz-Signature": ""}): malformed,
        with_query(url, **{"X-Amz-Credential": "AKIAOTHER/" + query["X-Amz-Credential"].split("/", 1)[1]}):
            (403, "InvalidAccessKeyId"),
        url.split("?")[0]: (403, "AccessDenied"),
    }
    for bad, expected in cases.items():
        response = requests.get(bad)
        assert _refusal(response) == expected, bad
        assert b"secret" not in response.content
    # the signature covers the host: the same URL asked for under another name of the host is refused
    parts = urlsplit(url)
    response = requests.get(url, headers={"Host": f"localhost:{parts.port}"})
    assert _refusal(response) == mismatch


def test_urls_are_bound_to_their_method(api: Api, stored: dict[str, Any]) -> None:
    # A download URL cannot upload.
    assert requests.put(stored["url"].replace("/download/", "/upload/"), data=b"x").status_code == 403
    data = api.ok("POST", f"/organisations/{ORG}/data", json={"Data[name]": "Upload target"})["model"]
    added = api.ok("POST", f"/organisations/{ORG}/data/{data['id']}/add_file",
                   json={"Data": {"name": "a.bin", "file_type": "Other"}})["extras"]
    # An upload URL cannot download.
    assert requests.get(added["url"].replace("/upload/", "/download/")).status_code == 403
    assert requests.put(added["url"], data=b"abc").status_code == 200


def test_urls_expire(emulator: Any, api: Api, stored: dict[str, Any]) -> None:
    emulator.configure(url_lifetime=1)
    try:
        short = api.ok("GET", f"/organisations/{ORG}/data/{stored['data_id']}/download_file/{stored['file_id']}",
                       params={"preview": "False"})["extras"]["url"]
        assert requests.get(short, headers={"Range": "bytes=0-0"}).status_code == 206
        time.sleep(2.1)
        response = requests.get(short)
        assert _refusal(response) == (403, "AccessDenied")
        assert b"<Message>Request has expired</Message>" in response.content
    finally:
        emulator.configure(url_lifetime=3600)


def test_downloads_keep_working_after_deletion_until_collected(fresh_emulator: Any) -> None:
    api = Api(fresh_emulator.url)
    data_id, file_ids = api.create_data(ORG, "Short lived", [("x.bin", "Other", b"0123456789")])
    fresh_emulator.configure(url_lifetime=1)
    url = api.ok("GET", f"/organisations/{ORG}/data/{data_id}/download_file/{file_ids[0]}")["extras"]["url"]
    assert api.delete(f"/organisations/{ORG}/data/{data_id}").status_code == 200
    assert api.get(f"/organisations/{ORG}/data/{data_id}").status_code == 404
    assert fresh_emulator.collect_garbage() == 0  # the URL has not expired yet
    assert requests.get(url).content == b"0123456789"
    blob = fresh_emulator.platform.blobs.path(file_ids[0])
    assert blob.exists()
    time.sleep(2.1)
    assert fresh_emulator.collect_garbage() == 1
    assert not blob.exists()


def test_upload_then_analysis_fills_the_file(api: Api) -> None:
    data_id, file_ids = api.create_data(ORG, "Glasgow", [("glasgow.geojson", "GeoJSON", GLASGOW.read_bytes())])
    (record,) = api.files(ORG, data_id)
    assert record["file_id"] == file_ids[0]
    assert record["size"] == GLASGOW.stat().st_size
    assert record["publishable"] is True and "error" not in record
    assert record["crs"] == "EPSG:4326"
    assert record["polygons"] == 1
    west, south, east, north = record["bounds"]
    assert -4.49 < west < east < -4.08 and 55.78 < south < north < 55.96
    data = api.ok("GET", f"/organisations/{ORG}/data/{data_id}")["model"]
    assert data["bounds"] == record["bounds"]


def test_files_are_absent_fields_until_uploaded(api: Api) -> None:
    data = api.ok("POST", f"/organisations/{ORG}/data", json={"Data[name]": "Pending"})["model"]
    api.ok("POST", f"/organisations/{ORG}/data/{data['id']}/add_file",
           json={"Data": {"name": "late.geojson", "file_type": "GeoJSON"}})
    (record,) = api.files(ORG, data["id"])
    for key in ("size", "publishable", "error", "number_of_ingesters", "ingesters"):
        assert key not in record
    assert record["file_name"] == "late.geojson"
    response = api.get(f"/organisations/{ORG}/data/{data['id']}/download_file/{record['file_id']}")
    assert response.status_code == 409


@pytest.mark.parametrize(("file_type", "payload"), [
    ("GeoJSON", b"{ this is not json"),
    ("GeoTIFF", b"II*\x00garbage" * 10),
    ("GeoJSON", b""),
])
def test_corrupt_uploads_end_in_error_with_a_reason(api: Api, file_type: str, payload: bytes) -> None:
    data_id, _ = api.create_data(ORG, "Corrupt", [("bad.file", file_type, payload)])
    (record,) = api.files(ORG, data_id)
    assert record["error"] is True
    assert record["size"] == len(payload)
    assert record["description"]
    assert "publishable" not in record or record["publishable"] is False
    # Such data cannot be used as a process input.
    template = api.new_process(ORG, "Elevation", data_id)
    response = api.post(f"/organisations/{ORG}/processes", json=template)
    assert response.status_code == 422
    assert "failed analysis" in response.json()["error_message"]


def test_a_short_upload_is_rejected_and_leaves_no_file(emulator: Any, api: Api) -> None:
    import socket

    data = api.ok("POST", f"/organisations/{ORG}/data", json={"Data[name]": "Short"})["model"]
    url = api.ok("POST", f"/organisations/{ORG}/data/{data['id']}/add_file",
                 json={"Data": {"name": "s.geojson", "file_type": "GeoJSON"}})["extras"]["url"]
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     "Content-Length: 1000\r\n\r\n".encode() + b"x" * 10)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        with contextlib.suppress(OSError):
            sock.recv(4096)
    # The server notices the disconnect asynchronously; the partial file must then be gone.
    deadline = time.monotonic() + 10
    while any(emulator.platform.blobs.tmp_dir.iterdir()):
        assert time.monotonic() < deadline, "the partial upload was not removed"
        time.sleep(0.02)
    (record,) = api.files(ORG, data["id"])
    assert "size" not in record


def test_previews_of_rasters(api: Api) -> None:
    process = api.create_process(ORG, "Elevation", api.create_data(
        ORG, "Small", [("r.geojson", "GeoJSON", rectangle(width_km=4, height_km=4))])[0])
    api.ok("POST", f"/organisations/{ORG}/processes/{process['id']}/execute")
    execution = api.ok("GET", f"/organisations/{ORG}/processes/{process['id']}/executions")["list"][0]
    component = api.ok("GET", f"/organisations/{ORG}/process_executions/{execution['id']}/"
                               "process_service_executions")["list"][0]
    output = component["outputs"][0]
    (record,) = api.files(ORG, output)
    assert record["preview_file_id"]
    url = api.ok("GET", f"/organisations/{ORG}/data/{output}/download_file/{record['file_id']}",
                 params={"preview": "True"})["extras"]["url"]
    png = requests.get(url)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert png.headers["Content-Type"] == "image/png"
    data = api.ok("GET", f"/organisations/{ORG}/data/{output}")["model"]
    assert data["file_with_preview"] == record["file_id"]


def test_parse_range_unit() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == (2, 4)
    assert parse_range("bytes=8-", 10) == (8, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=10-", 10) == "unsatisfiable"
    assert parse_range("bytes=0-0", 0) == "unsatisfiable"
    assert parse_range("bytes=4-2", 10) is None


def test_large_bodies_use_sendfile_and_survive_a_client_vanishing(api: Api, emulator: Any) -> None:
    import socket

    payload = os.urandom(3 * 1024 * 1024 + 17)
    data_id, file_ids = api.create_data(ORG, "Large", [("large.bin", "Other", payload)])
    url = api.ok("GET", f"/organisations/{ORG}/data/{data_id}/download_file/{file_ids[0]}")["extras"]["url"]
    emulator.reset_stats()
    assert requests.get(url).content == payload
    middle = requests.get(url, headers={"Range": "bytes=1000000-2999999"})
    assert middle.status_code == 206 and middle.content == payload[1000000:3000000]
    assert emulator.stats()["storage_bytes_served"] == len(payload) + 2000000
    # A client that reads a little and disappears does not disturb the server.
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    assert requests.get(url, headers={"Range": "bytes=-10"}).content == payload[-10:]


def test_signed_urls_never_reach_a_message(stored: dict[str, Any]) -> None:
    from fusion_stac.errors import redact, redact_url

    query = {k: v[0] for k, v in parse_qs(urlsplit(stored["url"]).query).items()}
    secrets = (query["X-Amz-Signature"], query["X-Amz-Credential"].split("/")[0])
    for text in (redact(f"GET {stored['url']} failed"), redact_url(stored["url"]),
                 redact("GET " + stored["url"].split("://", 1)[1].split("/", 1)[1] + " failed"),
                 redact("X-Amz-Signature=" + secrets[0] + " X-Amz-Credential=" + query["X-Amz-Credential"])):
        assert not any(secret in text for secret in secrets), text


def test_storage_urls_can_be_routed_through_something_in_front(emulator: Any, api: Api,
                                                               stored: dict[str, Any]) -> None:
    """``route_storage``: callers of another API base URL (a proxy's) get URLs on another storage base."""
    path = f"/organisations/{ORG}/data/{stored['data_id']}/download_file/{stored['file_id']}"
    front = f"http://localhost:{urlsplit(emulator.url).port}"  # a second name for the API
    emulator.route_storage(front, "http://front.invalid:9")
    try:
        routed = Api(front).ok("GET", path)["extras"]["url"]
        direct = api.ok("GET", path)["extras"]["url"]
    finally:
        emulator.route_storage(front, None)
    assert routed.startswith("http://front.invalid:9/_storage/download/")
    assert direct.startswith(emulator.storage_url + "/_storage/download/")
    # unrouted, the URL names the host name the caller used, with the storage port
    by_name = Api(front).ok("GET", path)["extras"]["url"]
    assert by_name.startswith(f"http://localhost:{urlsplit(emulator.storage_url).port}/_storage/")
    assert requests.get(by_name).content == PAYLOAD


def test_a_fixed_storage_base_url_and_port() -> None:
    import socket

    from fusion_stac.emulator import Emulator
    from fusion_stac.emulator.settings import EmulatorSettings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Emulator(storage_port=port, storage_base_url="http://storage.example:8443/") as emu:
        assert emu.storage_url == f"http://127.0.0.1:{port}"
        api = Api(emu.url)
        data_id, _ = api.create_data(ORG, "Fixed", [])
        added = api.ok("POST", f"/organisations/{ORG}/data/{data_id}/add_file",
                       json={"Data": {"name": "a.bin", "file_type": "Other"}})["extras"]
        assert added["url"].startswith("http://storage.example:8443/_storage/upload/")
    for bad in ({"storage_base_url": "storage.example"}, {"storage_base_url": "http://h/p"},
                {"port": 8000, "storage_port": 8000}, {"storage_port": -1}):
        with pytest.raises(ValueError):
            EmulatorSettings(**bad)
