"""Retries, Retry-After, timeouts, connection faults and a client shared by 32 threads."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fusion_stac.client import FusionClient, RetryPolicy
from fusion_stac.errors import RateLimitedError, ServerError, TransportError

from .conftest import new_client, rectangle_geojson, start_emulator


class RecordingSleep:
    """Sleeps for real (so the server's clock moves) and remembers every wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)
        time.sleep(seconds)


def faults(**kwargs: Any) -> Any:
    from fusion_stac.emulator.faults import FaultConfig

    return FaultConfig(**kwargs)


def test_429_honours_retry_after() -> None:
    with start_emulator(api_faults=faults(throttle=0.3, retry_after=1), seed=7) as emu:
        sleep = RecordingSleep()
        client = new_client(emu, sleep=sleep, retry=RetryPolicy(attempts=8))
        org = client.organisation().id
        for _ in range(6):
            assert client.get_organisation(org).id == org
        throttled = emu.stats()["faults"].get("api.throttle", 0)
        assert client.stats.retries > 0
        assert client.stats.snapshot()["by_status"].get(429, 0) == client.stats.retries == throttled
        # every wait after a 429 was exactly the server's Retry-After (1 s), not our own backoff
        assert sleep.waits and all(w == pytest.approx(1.0) for w in sleep.waits)


def test_throttling_that_never_ends_raises_rate_limited() -> None:
    with start_emulator(api_faults=faults(throttle=1.0, retry_after=0), seed=1) as emu:
        client = new_client(emu, sleep=lambda s: None, retry=RetryPolicy(attempts=3))
        client.login()  # login is exempt from faults by default
        with pytest.raises(RateLimitedError) as info:
            client.get_organisation("6b94c3a2-1f0e-4c8e-9a43-5b1d2a0e7c10")
        assert info.value.status == 429 and info.value.retry_after == 0
        assert client.stats.retries == 2


def test_503_retried_for_get_not_for_post(tmp_path: Path) -> None:
    with start_emulator(api_faults=faults(error_503=1.0), seed=3) as emu:
        client = new_client(emu, sleep=lambda s: None, retry=RetryPolicy(attempts=4))
        client.login()
        before = emu.stats()
        with pytest.raises(ServerError) as info:
            client.request("GET", f"/users/{client.user_id}")
        assert info.value.status == 503 and client.stats.retries == 3
        retries = client.stats.retries
        with pytest.raises(ServerError):
            client.request("POST", "/organisations/6b94c3a2-1f0e-4c8e-9a43-5b1d2a0e7c10/data",
                           body={"Data[name]": "x"})
        assert client.stats.retries == retries  # a POST is not repeated
        after = emu.stats()
        assert _api_requests(after) - _api_requests(before) == 5  # 4 GET attempts + 1 POST


def test_connection_resets_are_retried_then_reported() -> None:
    with start_emulator(api_faults=faults(reset=0.4), seed=11) as emu:
        client = new_client(emu, sleep=lambda s: None, retry=RetryPolicy(attempts=10))
        org = client.organisation().id
        for _ in range(8):
            assert client.get_organisation(org).id == org
        assert client.stats.retries > 0
    with start_emulator(api_faults=faults(reset=1.0), seed=11) as emu:
        client = new_client(emu, sleep=lambda s: None, retry=RetryPolicy(attempts=3))
        client.login()
        with pytest.raises(TransportError) as info:
            client.request("GET", f"/users/{client.user_id}")
        assert info.value.attempts == 3 and f"/users/{client.user_id}" in str(info.value)


def test_every_request_has_a_timeout() -> None:
    with start_emulator(api_latency=1.0) as emu:
        client = new_client(emu, timeout=(2.0, 0.3), sleep=lambda s: None, retry=RetryPolicy(attempts=2))
        with pytest.raises(TransportError, match="timed out after 2 attempt"):
            client.login()


def test_truncated_downloads_are_resumed(tmp_path: Path) -> None:
    with start_emulator(storage_faults=faults(truncate=0.5), seed=5) as emu:
        client = new_client(emu, sleep=lambda s: None, retry=RetryPolicy(attempts=10))
        org = client.organisation().id
        # a file large enough for truncation to bite
        big = tmp_path / "big.csv"
        big.write_text("".join(f"{i},{i * i}\n" for i in range(40000)))
        data = client.create_data(org, "Big table", [big])
        (file,) = client.list_files(org, data.id)
        for n in range(4):
            out = client.download_file(org, data.id, file, tmp_path / f"copy{n}.csv")
            assert out.read_bytes() == big.read_bytes()
        truncated = emu.stats()["faults"].get("storage.truncate", 0)
        assert truncated > 0  # the fault did happen, and we still got every byte


def test_shared_client_32_threads(client_emu: Any, tmp_path: Path) -> None:
    client = new_client(client_emu, max_workers=32)
    org = client.organisation().id
    data = client.create_data(org, "Threads", [rectangle_geojson(tmp_path / "t.geojson", width_km=1, height_km=1)])
    (file,) = client.list_files(org, data.id)
    before_server = _api_requests(client_emu.stats())
    before = client.stats.snapshot()
    barrier = threading.Barrier(32)

    def work(i: int) -> tuple[str, ...]:
        if i < 32:
            barrier.wait()
        kind = i % 4
        if kind == 0:
            return (client.get_data(org, data.id).id,)
        if kind == 1:
            return tuple(f.file_id for f in client.list_files(org, data.id))
        if kind == 2:
            return (client.download_url(org, data.id, file.file_id).url.split("?")[0].rsplit("/", 1)[1],)
        return (client.get_organisation(org).id,)

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(work, range(256)))
    expected = {0: (data.id,), 1: (file.file_id,), 3: (org,)}
    for i, result in enumerate(results):
        if i % 4 in expected:
            assert result == expected[i % 4]
        else:
            assert result[0]  # a URL naming the stored object
    after = client.stats.snapshot()
    assert after["requests"] - before["requests"] == 256
    assert Counter(after["by_method"]) - Counter(before["by_method"]) == Counter({"GET": 256})
    assert _api_requests(client_emu.stats()) - before_server == 256  # client and server agree
    assert client.map(lambda x: x * 2, range(100)) == [x * 2 for x in range(100)]
    client.delete_data(org, data.id)


def test_map_raises_the_first_error_in_order(client: FusionClient) -> None:
    def fn(x: int) -> int:
        if x in (3, 7):
            raise ValueError(f"bad {x}")
        return x

    with pytest.raises(ValueError, match="bad 3"):
        client.map(fn, range(10))


def _api_requests(stats: dict[str, Any]) -> int:
    """API requests the emulator counted."""
    return int(stats["api_requests"])
