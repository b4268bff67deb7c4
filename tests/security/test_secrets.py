"""No password, session token or URL signature in any log line, repr, exception message or pickle.

The secrets are not guessed: the emulator is instrumented to record every access token, id token,
refresh token and URL signature it hands out during the test, and the password is known. A whole
workflow then runs with the ``fusion_stac`` and ``urllib3`` loggers at DEBUG (upload, process run,
STAC export with downloads, ``fusion://`` listing/reading/copying, a dask mosaic), plus the usual
failures (a refused URL, a dead connection, an ended session), and every log line (with
tracebacks), repr, exception text and pickle (client, file system, dask graph) is searched for the
secrets, raw and URL-encoded.
"""

from __future__ import annotations

import logging
import pickle
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from fusion_stac.emulator import FaultConfig

from .conftest import EMAIL, GLASGOW, PASSWORD

SERVICE = "Elevation"


class Secrets:
    """What the emulator issued (filled as it happens) and the password."""

    def __init__(self) -> None:
        self.values: set[str] = {PASSWORD}
        self._lock = threading.Lock()

    def add(self, *values: str) -> None:
        with self._lock:
            self.values.update(v for v in values if v)

    def find_in(self, text: str | bytes, where: str) -> list[str]:
        found = []
        haystack = text if isinstance(text, str) else text.decode("latin-1")
        for secret in sorted(self.values):
            for form in {secret, quote(secret, safe="")}:
                if form in haystack:
                    at = haystack.index(form)
                    found.append(f"{where}: contains {secret[:6]}… after {haystack[max(0, at - 120):at]!r}")
        return found


@pytest.fixture
def secrets(emu: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Secrets]:
    issued = Secrets()
    platform = emu.platform
    sign, issue = platform.signer.sign, platform.tokens.issue

    def recording_sign(*args: Any, **kwargs: Any) -> Any:
        url, expires = sign(*args, **kwargs)
        issued.add(*parse_qs(urlsplit(url).query).get("X-Amz-Signature", []))
        return url, expires

    def recording_issue(*args: Any, **kwargs: Any) -> Any:
        tokens = issue(*args, **kwargs)
        issued.add(tokens.access_token, tokens.id_token, tokens.refresh_token)
        return tokens

    monkeypatch.setattr(platform.signer, "sign", recording_sign)
    monkeypatch.setattr(platform.tokens, "issue", recording_issue)
    yield issued


def _log_text(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [(record.name, formatter.format(record)) for record in caplog.records]


def test_a_whole_workflow_leaks_no_secret(emu: Any, secrets: Secrets, caplog: pytest.LogCaptureFixture,
                                          tmp_path: Path) -> None:
    import fusion_stac
    from fusion_stac.client import FusionClient, RetryPolicy
    from fusion_stac.errors import FusionError
    from fusion_stac.fs import FusionFileSystem
    from fusion_stac.xarray import FileSystemStorage, open_mosaic

    caplog.set_level(logging.DEBUG, logger="fusion_stac")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    texts: list[tuple[str, str]] = []  # (where, text) to search
    blobs: list[tuple[str, bytes]] = []
    errors: list[BaseException] = []

    client = FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.02,
                          retry=RetryPolicy(attempts=2, backoff=0.01))
    org = client.organisation().id
    region = client.create_data(org, "secrets region", [GLASGOW])
    process = client.new_process(org, SERVICE, "secrets run").with_input(1, region).create()
    client.execute(org, process.id, wait=True, timeout=60)
    catalog = fusion_stac.open_catalog(client, f"fusion://{org}/processes/{process.id}/latest")
    root = fusion_stac.export_catalog(catalog, tmp_path / "export", assets="download")
    items = [i for i in catalog.get_items(recursive=True) if i.properties.get("fusion:file_type") == "GeoTIFF"]
    (file,) = client.list_files(org, region.id)
    signed = client.download_url(org, region.id, file.file_id)

    fs = FusionFileSystem(api_url=emu.url, email=EMAIL, password=PASSWORD, skip_instance_cache=True)
    listing = fs.ls(f"{org}/uploads", detail=True)
    fs.cat_file(f"{org}/data/{region.id}/{file.file_id}")
    fs.get(f"{org}/data/{region.id}", str(tmp_path / "copy"), recursive=True)
    mosaic = open_mosaic(items=items, storage=FileSystemStorage(fs), chunks={})
    mosaic.compute()

    # failures: a tampered URL, storage that drops every connection, a session that cannot be renewed
    tampered = signed.url[:-1] + ("0" if signed.url[-1] != "0" else "1")
    texts.append(("tampered answer", client.signed_get(tampered).text))
    emu.configure(storage_faults=FaultConfig(reset=1.0))
    try:
        for attempt in (lambda: client.download_file(org, region.id, file, tmp_path / "x.geojson"),
                        lambda: fs.cat_file(f"{org}/data/{region.id}/{file.file_id}")):
            try:
                attempt()
            except (FusionError, OSError) as exc:
                errors.append(exc)
    finally:
        emu.configure(storage_faults=None)
    # the API drops connections: the failed request carried the bearer token (and, for login, the password)
    emu.configure(api_faults=FaultConfig(reset=1.0, include_login=True))
    try:
        for attempt in (lambda: client.get_organisation(org),
                        lambda: FusionClient(emu.url, email=EMAIL, password=PASSWORD,
                                             retry=RetryPolicy(attempts=1)).login()):
            try:
                attempt()
            except FusionError as exc:
                errors.append(exc)
    finally:
        emu.configure(api_faults=None)
    orphan = FusionClient(emu.url, token=client.session_token or "", email=EMAIL)
    emu.configure(token_lifetime=0.001)
    try:
        expired = FusionClient(emu.url, email=EMAIL, password=PASSWORD)
        expired.login()
        import time

        time.sleep(0.05)
        orphan._token = expired.session_token  # an ended session and no password to renew it
        try:
            orphan.get_organisation(org)
        except FusionError as exc:
            errors.append(exc)
    finally:
        emu.configure(token_lifetime=86400.0)
    assert len(errors) == 5, errors

    for exc in errors:
        texts += [(f"str({type(exc).__name__})", str(exc)), (f"repr({type(exc).__name__})", repr(exc))]
        texts.append((f"args of {type(exc).__name__}", repr(exc.args)))
        blobs.append((f"pickle({type(exc).__name__})", pickle.dumps(exc)))
        cause = exc.__cause__
        while cause is not None:  # chained causes end up in tracebacks
            texts.append((f"cause {type(cause).__name__}", f"{cause!s} {cause!r}"))
            cause = cause.__cause__
    texts += [("repr(client)", repr(client)), ("repr(fs)", repr(fs)), ("repr(signed URL)", repr(signed)),
              ("repr(stats)", repr(client.stats)), ("fs.to_json()", fs.to_json()),
              ("fs.storage_options", repr(fs.storage_options)), ("repr(file)", repr(file)),
              ("listing", repr(listing)), ("repr(mosaic)", repr(mosaic)), ("exported root", root.read_text())]
    texts += [(f"export {p.name}", p.read_text()) for p in root.parent.rglob("*.json")]
    blobs += [("pickle(client)", pickle.dumps(client)), ("pickle(fs)", pickle.dumps(fs)),
              ("pickle(mosaic with its dask graph)", pickle.dumps(mosaic)),
              ("pickle(dask graph)", pickle.dumps(dict(mosaic.data.__dask_graph__())))]
    texts += [(f"log {name}", line) for name, line in _log_text(caplog)]

    assert len(secrets.values) >= 10  # tokens and signatures were issued and recorded
    assert any("urllib3" in name for name, _ in _log_text(caplog))  # urllib3 did log at DEBUG
    leaks = [hit for where, text in texts for hit in secrets.find_in(text, where)]
    leaks += [hit for where, blob in blobs for hit in secrets.find_in(blob, where)]
    assert leaks == [], "\n".join(leaks[:20])
    client.close()


def test_urllib3_request_lines_keep_the_path_but_not_the_query(emu: Any, secrets: Secrets,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """The redaction keeps urllib3's log useful: method, path and status stay; the query goes."""
    from fusion_stac.client import FusionClient

    caplog.set_level(logging.DEBUG, logger="urllib3")
    with FusionClient(emu.url, email=EMAIL, password=PASSWORD) as client:
        org = client.organisation().id
        data = client.create_data(org, "urllib3 log region", [GLASGOW])  # its own: other tests' uploads vary
        (file,) = client.list_files(org, data.id)
        client.signed_get(client.download_url(org, data.id, file.file_id)).close()
    lines = [line for name, line in _log_text(caplog) if "/_storage/download/" in line]
    assert lines and all(re.search(r'"GET /_storage/download/[0-9a-f-]{36}\?… HTTP/1.1" 200', line) for line in lines), lines
    assert not [hit for _, line in _log_text(caplog) for hit in secrets.find_in(line, "log")]
