"""Things going wrong: failed analysis, stopped runs, waits that time out, expired signed URLs."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from fusion_stac.client import FusionClient
from fusion_stac.errors import AnalysisError, APIError, ExecutionFailedError, NotFoundError, WaitTimeout
from fusion_stac.models import SignedURL

from .conftest import CLASSIFICATION, FinishedRun, new_client, rectangle_geojson, start_emulator


def test_failed_analysis_names_the_file(client: FusionClient, org_id: str, tmp_path: Path) -> None:
    good = rectangle_geojson(tmp_path / "fine.geojson", width_km=1, height_km=1)
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"this is not a GeoTIFF at all" * 10)
    with pytest.raises(AnalysisError) as info:
        client.create_data(org_id, "Half broken", [good, bad])
    assert info.value.files == ["broken.tif"]
    assert "'broken.tif'" in str(info.value) and "Half broken" in str(info.value)
    assert info.value.data_id
    client.delete_data(org_id, info.value.data_id)


def test_missing_local_file_fails_before_any_request(client: FusionClient, org_id: str, tmp_path: Path) -> None:
    from fusion_stac.errors import ValidationError

    before = client.stats.requests
    with pytest.raises(ValidationError, match=r"no such file to upload: .*nope.geojson"):
        client.create_data(org_id, "Nothing", [tmp_path / "nope.geojson"])
    assert client.stats.requests == before


def test_preview_url(client: FusionClient, finished_run: FinishedRun, tmp_path: Path) -> None:
    run = finished_run
    slices, _ = client.group_executions(run.org_id, run.process.id, run.group_id)
    comp = next(c for c in client.iter_components(run.org_id, slices[0].id) if c.outputs)
    out_id = comp.outputs[0]
    raster = next(f for f in client.list_files(run.org_id, out_id) if f.file_type == "GeoTIFF")
    assert raster.preview_file_id  # rasters come with a PNG preview
    url = client.download_url(run.org_id, out_id, raster.file_id, preview=True)
    response = client.signed_get(url)
    assert response.status_code == 200 and response.content[:8] == b"\x89PNG\r\n\x1a\n"
    out = client.download_file(run.org_id, out_id, raster, tmp_path, preview=True)
    assert out.suffix == ".png" and out.read_bytes() == response.content
    # a region has no preview, and an unknown file is not found: both are typed API errors
    (region_file,) = client.list_files(run.org_id, run.region.id)
    assert region_file.preview_file_id is None
    with pytest.raises(APIError) as info:
        client.download_url(run.org_id, run.region.id, region_file.file_id, preview=True)
    assert info.value.status in {400, 404, 409, 422}
    with pytest.raises(NotFoundError):
        client.download_url(run.org_id, out_id, "00000000-0000-4000-8000-000000000000")


def test_signed_urls_expire_and_downloads_sign_again(tmp_path: Path) -> None:
    with start_emulator(url_lifetime=1.0) as emu:
        client = new_client(emu)
        org = client.organisation().id
        region = rectangle_geojson(tmp_path / "e.geojson", width_km=2, height_km=2)
        data = client.create_data(org, "Expiring", [region])
        (file,) = client.list_files(org, data.id)
        url = client.download_url(org, data.id, file.file_id)
        # the expiry comes from the URL itself, not a one-hour guess
        assert url.expires_at - datetime.now(timezone.utc) < timedelta(seconds=5)
        assert client.signed_get(url).status_code == 200
        time.sleep(max(0.0, url.expires_in().total_seconds()) + 0.3)
        assert url.is_expired(margin=timedelta(0))
        stale = client.signed_get(url)
        assert stale.status_code == 403
        # a URL that looks valid but was refused is signed again, once, and the download completes
        disguised = replace(url, expires_at=datetime.now(timezone.utc) + timedelta(hours=1))
        real = client.download_url
        calls: list[SignedURL] = []

        def first_stale(*args: Any, **kwargs: Any) -> SignedURL:
            calls.append(disguised)
            return disguised if len(calls) == 1 else real(*args, **kwargs)

        client.download_url = first_stale  # type: ignore[method-assign]
        out = client.download_file(org, data.id, file, tmp_path / "again.geojson")
        assert out.read_bytes() == region.read_bytes() and len(calls) == 2


def test_stop_timeout_and_failed_executions(tmp_path: Path) -> None:
    with start_emulator(execution_duration=4.0) as emu:
        client = new_client(emu)
        org = client.organisation().id
        region = client.create_data(org, "Slow region",
                                    [rectangle_geojson(tmp_path / "slow.geojson", width_km=45, height_km=45)])
        process = (client.new_process(org, CLASSIFICATION, "Slow run").with_input(1, region)
                   .with_options(latest_date=True).create())
        client.execute(org, process.id)
        run = client.wait_for_next_execution(org, process.id)
        assert run and all(e.group_id == run[0].group_id for e in run)
        seen: list[float] = []
        with pytest.raises(WaitTimeout, match="not complete after") as info:
            client.wait_for_completion(org, process.id, group_id=run[0].group_id, timeout=0.5, progress=seen.append)
        assert isinstance(info.value, TimeoutError)
        assert seen and all(0.0 <= f < 1.0 for f in seen)
        stopped = client.stop_process(org, process.id)
        assert stopped.process_status == "stop"
        with pytest.raises(ExecutionFailedError) as failed:
            client.wait_for_completion(org, process.id, group_id=run[0].group_id, timeout=30)
        error = failed.value
        assert error.execution_id and error.group_id == run[0].group_id
        assert error.execution_id in str(error) and (error.abort_reason or "") in str(error)
        # the same run, without raising, reports which executions failed
        executions = client.wait_for_completion(org, process.id, group_id=run[0].group_id, raise_on_failure=False)
        assert executions and all(e.is_complete for e in executions) and any(e.failed for e in executions)
        client.delete_execution(org, executions[0].id)
        with pytest.raises(NotFoundError):
            client.get_execution(org, executions[0].id)
        client.delete_process(org, process.id)
        client.delete_data(org, region.id)
