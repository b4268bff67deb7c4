"""``Transport.round_trip``: how long storage takes to answer, which readers use to decide whether
fetching ahead pays."""

from __future__ import annotations

import threading
import time

from fusion_stac.storage import FileKey, TransferStats, Transport, URLBroker

from ._server import StorageServer

KEY = FileKey("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002",
              "00000000-0000-4000-8000-000000000003")


def _transport(server: StorageServer) -> Transport:
    return Transport(URLBroker(lambda key: server.sign("blob"), stats=TransferStats()))


def test_round_trip_is_the_fastest_recent_answer() -> None:
    with StorageServer() as server:
        server.blobs["blob"] = bytes(range(256)) * 40
        transport = _transport(server)
        assert transport.round_trip() is None  # nothing asked yet
        started = time.perf_counter()
        assert transport.round_trip(wait=0.05) is None  # waits for a first answer, then gives up
        assert time.perf_counter() - started >= 0.04
        server.answer_delay = 0.08
        assert transport.read_range(KEY, 0, 100, path="blob") == server.blobs["blob"][:100]
        slow = transport.round_trip()
        assert slow is not None and slow >= 0.08
        server.answer_delay = 0.0
        transport.read_range(KEY, 100, 200, path="blob")
        fast = transport.round_trip()
        assert fast is not None and 0 < fast < 0.08  # the fastest of the recent answers


def test_a_waiting_reader_learns_of_the_first_answer() -> None:
    with StorageServer() as server:
        server.blobs["blob"] = b"x" * 1000
        transport = _transport(server)
        seen: list[float | None] = []
        waiter = threading.Thread(target=lambda: seen.append(transport.round_trip(wait=5.0)))
        waiter.start()
        started = time.perf_counter()
        transport.read_range(KEY, 0, 10, path="blob")
        waiter.join(5)
        assert seen and seen[0] is not None and time.perf_counter() - started < 2
