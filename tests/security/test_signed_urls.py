"""Pre-signed storage URLs: tampered, expired, cross-file and cross-method URLs are refused.

A signed URL is a capability for one file, one method, until its expiry: changing any part of it
(the signature, the expiry, the file, the method) must get a 403 that reveals nothing, and an
upload URL must not be able to overwrite a stored file once refused.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests

from .conftest import EMAIL, GLASGOW, PASSWORD, Victim


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    query = {k: v for k, v in query.items() if v != ""}
    return urlunsplit(parts._replace(query=urlencode(query)))


def _with_file(url: str, file_id: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rsplit("/", 1)[0] + "/" + file_id))


@pytest.fixture
def signed(emu: Any, victim: Victim) -> Iterator[dict[str, Any]]:
    from fusion_stac.client import FusionClient

    with FusionClient(emu.url, email=EMAIL, password=PASSWORD) as client:
        url = client.download_url(victim.org_id, victim.data_id, victim.file_id).url
        other = client.download_url(victim.org_id, victim.output_data_id, victim.output_file_id).url
        yield {"url": url, "other": other, "client": client}


def _refused(response: requests.Response, victim: Victim, status: int = 403) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert GLASGOW.read_bytes()[:64] not in response.content
    for name in victim.names:
        assert name not in response.text


def test_the_untouched_url_works(signed: dict[str, Any]) -> None:
    answer = requests.get(signed["url"], timeout=30)
    assert answer.status_code == 200 and answer.content == GLASGOW.read_bytes()


@pytest.mark.parametrize("change", ["signature-flipped", "signature-truncated", "signature-missing",
                                    "signature-of-other-file", "expiry-extended", "expiry-missing",
                                    "expiry-not-a-number"])
def test_tampered_urls_are_refused(signed: dict[str, Any], victim: Victim, change: str) -> None:
    """S3's answers: a wrong signature 403; a malformed one (a parameter missing or not a number) 400."""
    url = signed["url"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    sig, expires = query["X-Amz-Signature"], query["X-Amz-Expires"]
    other_sig = parse_qs(urlsplit(signed["other"]).query)["X-Amz-Signature"][0]
    tampered, status = {
        "signature-flipped": ({"X-Amz-Signature": sig[:-1] + ("0" if sig[-1] != "0" else "1")}, 403),
        "signature-truncated": ({"X-Amz-Signature": sig[:32]}, 403),
        "signature-missing": ({"X-Amz-Signature": ""}, 400),
        "signature-of-other-file": ({"X-Amz-Signature": other_sig}, 403),
        "expiry-extended": ({"X-Amz-Expires": str(int(expires) + 86400)}, 403),
        "expiry-missing": ({"X-Amz-Expires": ""}, 400),
        "expiry-not-a-number": ({"X-Amz-Expires": "never"}, 400),
    }[change]
    _refused(requests.get(_with_query(url, **tampered), timeout=30), victim, status)


def test_a_url_cannot_be_moved_to_another_file(signed: dict[str, Any], victim: Victim) -> None:
    """The query string of file A's URL on file B's path (same organisation, or a file the holder
    of the URL should not see): refused."""
    _refused(requests.get(_with_file(signed["url"], victim.output_file_id), timeout=30), victim)
    _refused(requests.get(_with_file(signed["other"], victim.file_id), timeout=30), victim)


def test_a_download_url_is_not_an_upload_url(signed: dict[str, Any], victim: Victim, emu: Any) -> None:
    """The signature covers the method: a download URL cannot PUT, and HEAD is refused too."""
    upload = signed["url"].replace("/_storage/download/", "/_storage/upload/")
    _refused(requests.put(upload, data=b"overwritten!", timeout=30), victim)
    assert requests.head(signed["url"], timeout=30).status_code == 403
    assert requests.get(signed["url"], timeout=30).content == GLASGOW.read_bytes()  # unchanged


def test_an_upload_url_cannot_download_or_outlive_its_file(emu: Any, victim: Victim) -> None:
    from fusion_stac.client import FusionClient

    with FusionClient(emu.url, email=EMAIL, password=PASSWORD) as client:
        org = victim.org_id
        data = client.request("POST", f"/organisations/{org}/data", body={"Data[name]": "upload probe"})["model"]
        added = client.request("POST", f"/organisations/{org}/data/{data['id']}/add_file",
                               body={"Data": {"name": "probe.geojson", "file_type": "GeoJSON"}})
        upload_url = added["extras"]["url"]
        download = upload_url.replace("/_storage/upload/", "/_storage/download/")
        _refused(requests.get(download, timeout=30), victim)
        # the upload URL aimed at the victim's stored file: refused, and the file is unchanged
        _refused(requests.put(_with_file(upload_url, victim.file_id), data=b"overwritten!", timeout=30), victim)
        url = client.download_url(org, victim.data_id, victim.file_id).url
        assert requests.get(url, timeout=30).content == GLASGOW.read_bytes()
        client.delete_data(org, data["id"])


def test_expired_urls_are_refused_and_the_client_signs_again(emu: Any, victim: Victim, tmp_path: Any) -> None:
    from fusion_stac.client import FusionClient

    emu.configure(url_lifetime=1.0)
    try:
        with FusionClient(emu.url, email=EMAIL, password=PASSWORD) as client:
            url = client.download_url(victim.org_id, victim.data_id, victim.file_id)
            time.sleep(2.1)
            answer = requests.get(url.url, timeout=30)
            _refused(answer, victim)
            assert b"expired" in answer.content
            # the client's own reads do not fail for it: they sign again
            (file,) = client.list_files(victim.org_id, victim.data_id)
            before = client.stats.snapshot()["by_status"].get(403, 0)
            out = client.download_file(victim.org_id, victim.data_id, file, tmp_path)
            assert out.read_bytes() == GLASGOW.read_bytes()
            assert client.stats.snapshot()["by_status"].get(403, 0) == before  # fresh URL, no refusal
    finally:
        emu.configure(url_lifetime=3600.0)


def test_refusals_do_not_depend_on_the_file_existing(signed: dict[str, Any], victim: Victim) -> None:
    """A forged URL for a file that exists and for one that does not get the same answer."""
    import uuid

    forged = {"X-Amz-Signature": "0" * 64}
    real = requests.get(_with_query(signed["url"], **forged), timeout=30)
    fake = requests.get(_with_query(_with_file(signed["url"], str(uuid.uuid4())), **forged), timeout=30)
    assert real.status_code == fake.status_code == 403

    def message(answer: requests.Response) -> str:
        text = answer.text
        return text[text.index("<Message>"):text.index("</Message>")]

    assert message(real) == message(fake)
