"""Schemathesis against the emulator's own OpenAPI document: no 5xx, no crash, for any request it describes.

Every operation gets a bounded number of generated requests (``EXAMPLES`` per strategy) from two
strategies: schemathesis's own (random ids: the authorisation and lookup paths), and the same with
the path's ids replaced by ids of real items of the caller (so that bodies and query strings reach
the validation and business logic). Requests carry a bearer token from a real login. DELETEs only
use random ids (they would otherwise delete the fixtures the other cases need). A server error or a
dropped connection is recorded with the request that caused it; all are reported at the end.
Afterwards the emulator must still answer normally.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
GLASGOW = Path(__file__).parents[2] / "fusion_stac" / "emulator" / "regions" / "glasgow.geojson"
EXAMPLES = 6  # per operation and strategy: ~500 requests in all, a few seconds


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    from fusion_stac.emulator import Emulator

    with Emulator(execution_duration=0) as server:
        yield server


@pytest.fixture(scope="module")
def real_ids(emu: Any) -> dict[str, str]:
    from fusion_stac.client import FusionClient

    with FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.02) as client:
        org = client.organisation().id
        data = client.create_data(org, "fuzz region", [GLASGOW])
        (file,) = client.list_files(org, data.id)
        process = client.new_process(org, "Elevation", "fuzz run").with_input(1, data).create()
        client.execute(org, process.id, wait=True, timeout=60)
        execution = client.latest_execution(org, process.id)
        component = next(iter(client.iter_components(org, execution.id)))
        return {
            "organisation_id": org, "credit_id": org, "user_id": client.user_id or "", "data_id": data.id,
            "file_id": file.file_id or "", "process_id": process.id, "execution_id": execution.id,
            "component_id": component.id, "service_id": process.service_id or "",
            "token": client.session_token or "",
        }


def test_no_operation_answers_5xx_or_drops_the_connection(emu: Any, real_ids: dict[str, str]) -> None:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    document = requests.get(emu.url + "/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 35, [f"{o.method} {o.path}" for o in operations]
    headers = {"Authorization": f"Bearer {real_ids['token']}"}
    session = requests.Session()
    failures: list[str] = []
    counts: dict[str, int] = {}
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def with_real_ids(case: Any) -> Any:
        params = dict(case.path_parameters or {})
        for name in params:
            if name in real_ids:
                params[name] = real_ids[name]
        case.path_parameters = params
        return case

    def fuzz(operation: Any) -> None:
        label = f"{operation.method.upper()} {operation.path}"
        strategy = operation.as_strategy()
        if operation.method.upper() != "DELETE" and "{" in operation.path:
            strategy = st.one_of(strategy, strategy.map(with_real_ids))

        @given(case=strategy)
        @settings(max_examples=2 * EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def probe(case: Any) -> None:
            with lock:
                counts[label] = counts.get(label, 0) + 1
            try:
                response = case.call(base_url=emu.url, session=session, headers=headers, timeout=30)
            except requests.RequestException as exc:
                failures.append(f"{label}: connection failed ({type(exc).__name__}) for "
                                f"path={case.formatted_path} query={case.query} body={str(case.body)[:200]}")
                return
            with lock:
                statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{label}: HTTP {response.status_code} {response.text[:200]} for "
                                f"path={case.formatted_path} query={case.query} body={str(case.body)[:200]}")

        probe()

    for operation in operations:
        fuzz(operation)
    total = sum(counts.values())
    print(f"schemathesis: {total} requests over {len(counts)} operations; statuses {dict(sorted(statuses.items()))}")
    assert not failures, "\n".join(failures[:15])
    assert len(counts) == len(operations) and min(counts.values()) >= 1
    assert total >= 5 * len(operations)
    # the real-id cases got past authorisation: accepted requests and validation refusals both occurred
    assert statuses[200] > 0 and statuses[400] > 0 and statuses[403] + statuses[404] > 0
    # and the server is still well
    assert requests.get(emu.url + "/_emulator/health", timeout=30).json() == {"status": "ok"}
    from fusion_stac.client import FusionClient

    with FusionClient(emu.url, email=EMAIL, password=PASSWORD) as client:
        assert client.get_data(real_ids["organisation_id"], real_ids["data_id"]).name == "fuzz region"
