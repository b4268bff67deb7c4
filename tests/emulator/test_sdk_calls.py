"""The official SDK's other calls load every emulator model without schema errors (in-process)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

fusion_platform = pytest.importorskip("fusion_platform")

from ._helpers import ORG, rectangle  # noqa: E402

pytestmark = pytest.mark.sdk


@pytest.fixture
def sdk_user(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(fusion_platform.session.Session, "API_URL_DEFAULT", emulator.url)
    return fusion_platform.login(email="me@org.com", password="MyPassword123!",
                                 session_options={"api_update_wait_period": 0.05})


def test_sdk_round_trip(sdk_user: Any, tmp_path: Path) -> None:
    user = sdk_user
    organisation = next(user.organisations)
    assert str(organisation.id) == ORG
    organisation.get()
    user.update(given_name="Example")
    credit = organisation.credit
    assert credit.any_credits > 0
    region_file = tmp_path / "region.geojson"
    region_file.write_bytes(rectangle(width_km=8, height_km=8))
    data = organisation.create_data(name="SDK region", file_type=fusion_platform.FILE_TYPE_GEOJSON,
                                    files=[str(region_file)], wait=True)
    found, _ = organisation.find_data(name="SDK region")
    assert found is not None and found.id == data.id
    (file,) = list(data.files)
    assert file.publishable and file.size == region_file.stat().st_size
    stac = file.get_stac_item()
    assert stac is not None
    copy = data.copy("SDK region copy")
    assert copy.name == "SDK region copy"
    data.update(name="SDK region renamed")

    dispatcher, _ = organisation.find_dispatchers(name="AWS S3")
    assert dispatcher is not None
    service, _ = organisation.find_services(keyword="Elevation")
    process = organisation.new_process(name="SDK process", service=service)
    process.update(input_number=1, data=data)
    process.update(option_name="resolution", value=400.0)
    process.add_dispatcher(name="AWS S3")
    process.update(dispatcher_number=1, option_name="bucket", value="bucket-name")
    process.create()
    assert process.price > 0
    assert [d.name for d in process.dispatchers] == ["AWS S3"]
    process.update(name="SDK process renamed")
    found_process, _ = organisation.find_processes(name="renamed")
    assert found_process is not None and found_process.id == process.id
    options = {option.name: option.value for option in process.options}
    assert options["resolution"] == 400.0

    process.execute(wait=True)
    execution = next(process.executions)
    assert execution.success
    first, _ = process.find_executions(id=execution.id)
    assert first.id == execution.id
    execution.change_delete_expiry(datetime.now(timezone.utc) + timedelta(days=5))
    components = list(execution.components)
    assert [c.name for c in components] == ["Elevation"]
    component = components[0]
    component.get()
    log_path = tmp_path / "log.csv"
    component.download_log_file(str(log_path))
    assert "completed successfully" in log_path.read_text()
    output = next(component.outputs)
    (output_file,) = list(output.files)
    output_file.download(path=str(tmp_path / "out.tif"), wait=True)
    assert (tmp_path / "out.tif").stat().st_size == output_file.size
    preview = tmp_path / "preview.png"
    output_file.download(path=str(preview), preview=True, wait=True)
    assert preview.read_bytes().startswith(b"\x89PNG")

    twin = process.copy("SDK process copy")
    twin.create()
    assert twin.id != process.id
    twin.execute(wait=False)
    twin.stop()
    twin.get()
    assert twin.process_status == "stop"
    twin.delete()
    process.delete()
    copy.delete()
    data.delete()
    assert sorted(s.name for s in organisation.services)[:1] == ["AWS S3"]


def test_sdk_change_password_then_login(fresh_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fusion_platform.session.Session, "API_URL_DEFAULT", fresh_emulator.url)
    user = fusion_platform.login(email="me@org.com", password="MyPassword123!")
    user.change_password("MyPassword123!", "Another123")
    with pytest.raises(fusion_platform.session.RequestError):
        user.get()
    with pytest.raises(fusion_platform.session.RequestError, match="Incorrect username or password"):
        fusion_platform.login(email="me@org.com", password="MyPassword123!")
    again = fusion_platform.login(email="me@org.com", password="Another123")
    assert again.email == "me@org.com"
