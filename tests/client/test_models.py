"""Pure tests of the API models against JSON fixtures shaped like API doc section 7."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fusion_stac.errors import ValidationError
from fusion_stac.models import (
    Credit,
    Data,
    DataFile,
    ExecutionStatus,
    Option,
    Organisation,
    Process,
    ProcessExecution,
    ProcessServiceExecution,
    ProcessServiceExecutionLog,
    Service,
    SignedURL,
    User,
    file_type_for_path,
)

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def test_user_fields_and_unknown_fields_kept() -> None:
    user = User.from_api(load("user.json")["model"])
    assert user.id == "3a5b7e52-8f59-4d3e-9c61-0d6f7c5f2a11"
    assert user.email == "me@org.com"
    assert user.name == "Ada Lovelace"
    assert user.organisation_ids == ("6b94c3a2-1f0e-4c8e-9a43-5b1d2a0e7c10", "1e93c378-5d2c-4f7a-8a1b-0c9e6d4b3a22")
    assert user.last_organisation_id == "1e93c378-5d2c-4f7a-8a1b-0c9e6d4b3a22"
    assert user.created_at == datetime(2022, 2, 15, 10, 4, 12, 753131, tzinfo=timezone.utc)
    assert user.raw["some_future_field"] == {"nested": [1, 2]}


def test_raw_is_read_only_but_copyable() -> None:
    user = User.from_api(load("user.json")["model"])
    with pytest.raises(TypeError):
        user.raw["email"] = "x"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        user.email = "x"  # type: ignore[misc]
    mutable = copy.deepcopy(user.raw)
    mutable["email"] = "other@example.com"
    assert user.email == "me@org.com"
    assert user.to_api()["email"] == "me@org.com"


def test_organisation_and_credit() -> None:
    org = Organisation.from_api(load("organisation.json")["model"])
    assert org.name == "Org Ltd"
    assert org.income_tax_rate == Decimal("20.0")
    assert org.users[0].roles == ("view_processing_chains", "create_and_execute_processing_chains")
    assert org.maximum_file_downloads == 5
    credit = Credit.from_api(load("credit.json")["model"])
    assert credit.any_credits == Decimal("1000.5")
    assert credit.cloud_storage_credits == Decimal(10)
    assert credit.spend[0]["credits"] == 4.25


def test_data_flags_and_bounds() -> None:
    data = Data.from_api(load("data.json")["model"])
    assert data.name == "Glasgow"
    assert data.bounds == (-4.39, 55.78, -4.07, 55.93)
    assert data.unlinked is True
    assert data.deletable is False
    assert data.uploaded is True


def test_data_files_analysis_states() -> None:
    files = [DataFile.from_api(f, organisation_id="org-1") for f in load("data_files.json")["list"]]
    raster, pending, broken = files
    assert raster.file_id == "f1111111-1111-4111-8111-111111111111"
    assert raster.name == raster.file_name == "classification.tif"
    assert raster.size == 4096 and raster.crs == "EPSG:32630" and raster.resolution == 10
    assert raster.preview_file_id == "f2222222-2222-4222-8222-222222222222"
    assert raster.organisation_id == "org-1"  # injected, as the server need not send it
    assert raster.selectors[0].histogram == (10, 0, 0, 5, 0, 0, 7, 0, 0, 3)
    assert raster.selectors[0]["histogram"][3] == 5  # SDK-style mapping access
    assert raster.ingesters == {"Common": {}}
    assert raster.stac_item is not None and raster.stac_item["assets"]["asset"]["file:size"] == 4096
    assert raster.analysed and raster.usable_as_input and raster.extended_analysis_done
    assert not pending.analysed and not pending.usable_as_input and pending.size is None
    assert broken.analysed and broken.analysis_failed and not broken.usable_as_input


def test_service() -> None:
    service = Service.from_api(load("service.json")["model"])
    assert service.name == "Demo: Sentinel-2 Cloud Classification"
    assert service.keywords == ("Sentinel-2", "Cloud")
    assert service.featured is True
    assert service.aggregator_ssd_ids == {"5c5c5c5c-5c5c-4c5c-8c5c-5c5c5c5c5c5c"}


def test_process_template_and_process() -> None:
    payload = load("process_template.json")
    template = Process.from_api(payload["model"], available_dispatchers=payload["extras"]["dispatchers"])
    assert [o.name for o in template.options][:3] == ["latest_date", "start_date", "maximum_cloud"]
    assert template.input(1).file_type == "GeoJSON"
    assert template.input(1).id is None
    assert template.input(1).accepted_file_types == {"GeoJSON", "KML", "KMZ", "ESRI Shapefile"}
    assert template.available_dispatchers[0].name == "AWS S3"
    assert template.available_dispatchers[0].options[0].name == "bucket"
    with pytest.raises(ValidationError, match="input number 2"):
        template.input(2)
    with pytest.raises(ValidationError, match=r"no option 'nope'.*'latest_date'"):
        template.option("nope")

    process = Process.from_api(load("process.json")["model"])
    assert process.price == Decimal("12.5")
    assert process.has_executions is True
    assert process.repeat_start == datetime(2022, 3, 1, 12, tzinfo=timezone.utc)
    assert process.chains[0].inputs == ("d1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8", None)
    assert process.chain_service_ids == {"41970944-aaaa-4bbb-8ccc-ddddeeeeffff"}
    run = process.latest_executions()
    assert {e.id for e in run} == {f"e0000000-0000-4000-8000-00000000000{i}" for i in (1, 2, 3)}
    assert all(isinstance(e, ExecutionStatus) and e.group_count == 2 for e in run)


def test_executions_aggregators_and_failures() -> None:
    execs = [ProcessExecution.from_api(e) for e in load("executions.json")["list"]]
    agg, ok, failed = execs
    assert agg.is_aggregator and agg.name == "aggregator 3/2"
    assert not ok.is_aggregator and ok.name == "slice 1/2"
    assert ok.is_complete and not ok.failed and ok.success is True
    assert failed.failed and failed.abort_reason == "No imagery found"
    assert agg.chains[0].inputs == (("d1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8",),)  # list of lists in executions
    assert ok.started_at is not None and ok.ended_at is not None and ok.ended_at > ok.started_at
    assert ok.group_id == "9a9a9a9a-9a9a-4a9a-8a9a-9a9a9a9a9a9a" and ok.progress == 100
    unindexed = ProcessExecution.from_api({**dict(ok.raw), "group_index": None})
    assert unindexed.is_aggregator  # a group member without a slice index
    alone = ProcessExecution.from_api({**dict(ok.raw), "group_id": None, "group_index": None, "group_count": None})
    assert not alone.is_aggregator and alone.name == f"execution {alone.id}"


def test_components_and_logs() -> None:
    comp = ProcessServiceExecution.from_api(load("components.json")["list"][0])
    assert comp.name == "Sentinel-2 Cloud Classification"
    assert comp.inputs == ("d1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8",)
    assert comp.outputs == comp.output_ids and len(comp.outputs) == 2
    assert comp.memory == Decimal(4096) and comp.storage == Decimal("20.5")
    assert comp.metrics[0]["memory_total_bytes"] == 4294967296
    logs = [ProcessServiceExecutionLog.from_api(x) for x in load("logs.json")["list"]]
    assert logs[1].logged_at == datetime(2022, 3, 1, 12, 4, 59, tzinfo=timezone.utc)  # "Z" accepted
    assert logs[0].message == "Starting classification"


def test_naive_datetime_is_utc_and_bad_payload_names_field() -> None:
    data = Data.from_api({"id": "x", "created_at": "2022-02-15T10:04:12"})
    assert data.created_at is not None and data.created_at.tzinfo is not None
    with pytest.raises(ValueError, match=r"Data\.created_at"):
        Data.from_api({"id": "x", "created_at": "not a date"})
    with pytest.raises(TypeError):
        Data.from_api(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_models_pickle_compare_and_hash() -> None:
    files = [DataFile.from_api(f) for f in load("data_files.json")["list"]]
    again = pickle.loads(pickle.dumps(files))
    assert again == files
    assert len({*files, *again}) == 3
    assert files[0] != files[1]
    process = Process.from_api(load("process.json")["model"])
    assert pickle.loads(pickle.dumps(process)).options[0].python_value is False


# -- options ------------------------------------------------------------------------------------------------


def options() -> dict[str, Option]:
    return {o["name"]: Option.from_api(o) for o in load("process_template.json")["model"]["options"]}


def test_option_boolean() -> None:
    opt = options()["latest_date"]
    assert opt.python_value is True
    assert opt.encode(False) == "false" and opt.encode("TRUE") == "true"
    with pytest.raises(ValidationError, match=r"latest_date.*true or false.*int 1"):
        opt.encode(1)


def test_option_datetime_format_and_range() -> None:
    opt = options()["start_date"]
    assert opt.format == "%Y-%m-%dT%H:%M:%S"
    assert opt.encode(datetime(2021, 3, 27, tzinfo=timezone.utc)) == "2021-03-27T00:00:00"
    # other time zones are converted to UTC before formatting
    assert opt.encode(datetime(2021, 3, 27, 2, tzinfo=timezone(timedelta(hours=2)))) == "2021-03-27T00:00:00"
    assert opt.encode("2021-03-27") == "2021-03-27T00:00:00"
    assert opt.encode(None) is None
    with pytest.raises(ValidationError, match=r"start_date.*below the minimum 2017-01-01T00:00:00"):
        opt.encode(datetime(2016, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(ValidationError, match=r"start_date.*expected a datetime, got 'yesterday'"):
        opt.encode("yesterday")
    with pytest.raises(ValidationError) as info:
        opt.encode(3.5)
    assert info.value.field == "start_date" and info.value.status is None


def test_option_numeric_and_currency() -> None:
    opts = options()
    cloud = opts["maximum_cloud"]
    assert cloud.python_value == 20.0 and cloud.minimum == 0 and cloud.maximum == 100
    assert cloud.encode(35) == "35" and cloud.encode(12.5) == "12.5" and cloud.encode("40") == "40"
    for bad, why in ((101, "above the maximum 100"), (-1, "below the minimum 0"), ("lots", "expected a number"),
                     (True, "expected a number"), (float("nan"), "finite")):
        with pytest.raises(ValidationError, match=f"maximum_cloud.*{why}"):
            cloud.encode(bad)
    with pytest.raises(ValidationError, match="required"):
        cloud.encode(None)
    price = opts["price_cap"]
    assert price.python_value == Decimal("1.50")
    assert price.encode(Decimal("2.25")) == "2.25"


def test_option_constrained_by_value_or_name() -> None:
    opt = options()["platform"]
    assert opt.constrained_values == ("A", "B", "*")
    assert opt.constrained_names == ("Sentinel-1A", "Sentinel-1B", "Both")
    assert opt.encode("B") == "B"
    assert opt.encode("Both") == "*"
    assert opt.encode("sentinel-1a") == "A"
    with pytest.raises(ValidationError, match=r"platform.*'C' is not one of 'A' \(Sentinel-1A\)"):
        opt.encode("C")


def test_option_string_and_with_value() -> None:
    opt = options()["label"]
    assert opt.encode("hello") == "hello"
    with pytest.raises(ValidationError, match=r"label.*expected a string"):
        opt.encode(5)
    changed = options()["maximum_cloud"].with_value(50)
    assert changed.value == "50" and changed.raw["value"] == "50"


def test_file_type_for_path() -> None:
    assert file_type_for_path("a/b/glasgow.GeoJSON") == "GeoJSON"
    assert file_type_for_path("x.tiff") == "GeoTIFF"
    assert file_type_for_path("storage.tar.gz") == "GZIP"
    assert file_type_for_path("shapes.zip") == "ESRI Shapefile"
    assert file_type_for_path("README") == "Other"


# -- signed URLs ---------------------------------------------------------------------------------------------


def test_signed_url_expiry_and_redacted_repr() -> None:
    issued = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    plain = SignedURL.issued("http://127.0.0.1:9/_storage/abc?signature=SECRET123", issued_at=issued)
    assert plain.expires_at == issued + timedelta(hours=1)
    assert "SECRET123" not in repr(plain) and "SECRET123" not in str(plain)
    assert "/_storage/abc" in repr(plain)
    assert plain.url.endswith("SECRET123")  # the real URL is still there to use
    aws = SignedURL.issued(
        "https://b.s3.amazonaws.com/k?X-Amz-Date=20240501T120000Z&X-Amz-Expires=600&X-Amz-Signature=abc",
        issued_at=issued,
    )
    assert aws.expires_at == issued + timedelta(minutes=10)
    epoch = SignedURL.issued("https://cdn.example.com/k?Expires=1714568400&Signature=abc", issued_at=issued)
    assert epoch.expires_at == datetime(2024, 5, 1, 13, tzinfo=timezone.utc)
    assert aws.is_expired(now=issued + timedelta(minutes=9, seconds=45))
    assert not aws.is_expired(now=issued + timedelta(minutes=5))
    assert pickle.loads(pickle.dumps(aws)) == aws
