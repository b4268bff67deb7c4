"""Walk a finished 16-slice group with fusion-stac and with the official SDK; compare time and requests.

Claim: ``FusionClient.group_tree`` walks every execution of a group, its components, their output
Data, files and download URLs at least 5x faster than the SDK's sequential walk (as in its detailed
example), with no more requests. Both run against one in-process emulator that adds 20 ms to every
API request (``api_latency=0.02``); requests are counted on the emulator side, so both clients are
counted the same way. Each walk starts from a logged-in session and a known process and group.

Run: ``python benchmarks/traversal.py [--runs 5] [--latency 0.02] [--workers 16]``.
The last line is ``SUMMARY speedup=<SDK time / our time> request_ratio=<our requests / SDK requests>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
SERVICE = "Demo: Sentinel-2 Cloud Classification"


def square_region(path: Path, *, side_m: float = 78_000.0, lon: float = -3.7, lat: float = 55.6) -> Path:
    """A square of ``side_m`` in its UTM zone (so the emulator cuts it into 4 x 4 slices of 20 km)."""
    from pyproj import Transformer

    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32630", always_xy=True)
    to_lonlat = Transformer.from_crs("EPSG:32630", "EPSG:4326", always_xy=True)
    cx, cy = to_utm.transform(lon, lat)
    x0 = round(cx / 1000.0) * 1000.0 + 500.0  # inside a whole kilometre, so the grid spans 4 cells
    y0 = round(cy / 1000.0) * 1000.0 + 500.0
    steps = 40
    edge: list[tuple[float, float]] = []
    corners = [(x0, y0), (x0 + side_m, y0), (x0 + side_m, y0 + side_m), (x0, y0 + side_m)]
    for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1], strict=True):
        edge.extend((ax + (bx - ax) * i / steps, ay + (by - ay) * i / steps) for i in range(steps))
    ring = [list(to_lonlat.transform(x, y)) for x, y in edge]
    ring.append(ring[0])
    doc = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"name": "benchmark square"},
                                                      "geometry": {"type": "Polygon", "coordinates": [ring]}}]}
    path.write_text(json.dumps(doc))
    return path


def prepare(emu: Any, workdir: Path) -> tuple[str, str, str]:
    """Upload the region and run the service on it (untimed). Returns (org id, process id, group id)."""
    from fusion_stac.client import FusionClient

    client = FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.1)
    org = client.organisation().id
    region = client.create_data(org, "Benchmark square", [square_region(workdir / "square.geojson")])
    draft = (client.new_process(org, SERVICE, "Traversal benchmark").with_input(1, region)
             .with_options(latest_date=False, start_date="2021-03-27T00:00:00"))
    process = draft.create()
    client.execute(org, process.id, wait=True)
    group_id = client.latest_execution(org, process.id).group_id
    assert group_id is not None, "the region should have been run as a group"
    slices, aggregators = client.group_executions(org, process.id, group_id)
    print(f"group {group_id}: {len(slices)} slices, {len(aggregators)} aggregator(s)")
    client.close()
    return org, process.id, group_id


def walk_ours(client: Any, org: str, process: Any, group_id: str) -> tuple[int, int, int]:
    tree = client.group_tree(org, process, group_id, urls=True)
    n_files = sum(1 for _ in tree.iter_files())
    n_urls = sum(len(o.urls) for n in tree.executions for c in n.components for o in c.outputs)
    return len(tree.executions), n_files, n_urls


def walk_sdk(process: Any, group_id: str) -> tuple[int, int, int]:
    """The SDK's sequential walk, as its detailed example does it (all components and outputs)."""
    _, executions = process.find_executions(group_id=group_id)
    n_exec = n_files = n_urls = 0
    for execution in executions:
        n_exec += 1
        for component in execution.components:
            for output in component.outputs:
                for file in output.files:
                    n_files += 1
                    if file.download_url():
                        n_urls += 1
    return n_exec, n_files, n_urls


class EmulatorProcess:
    """The emulator in its own process, driven over a pipe (url, stats, reset_stats, configure).

    A server sharing the benchmark's process would also share its GIL, so a concurrent client
    would be measured against a server starved of CPU by the client's own threads; a real
    platform runs elsewhere. Requests are still counted by the emulator itself.
    """

    def __init__(self, **settings: Any) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_emulator_main, args=(child, settings), daemon=True)
        self._proc.start()
        self.url = self._call("url")

    def _call(self, name: str, **kwargs: Any) -> Any:
        self._conn.send((name, kwargs))
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"emulator {name} failed: {value}")
        return value

    def stats(self) -> dict[str, Any]:
        return self._call("stats")

    def reset_stats(self) -> None:
        self._call("reset_stats")

    def configure(self, **kwargs: Any) -> None:
        self._call("configure", **kwargs)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._call("stop")
        finally:
            self._proc.join(timeout=30)


def _emulator_main(conn: Any, settings: dict[str, Any]) -> None:
    from fusion_stac.emulator import Emulator

    with Emulator(**settings) as emu:
        while True:
            name, kwargs = conn.recv()
            try:
                if name == "stop":
                    conn.send((True, None))
                    return
                value = emu.url if name == "url" else getattr(emu, name)(**kwargs)
                conn.send((True, value))
            except Exception as exc:  # report to the parent rather than dying silently
                conn.send((False, repr(exc)))


R = TypeVar("R")


def timed(emu: Any, fn: Callable[..., R], *args: Any) -> tuple[float, int, R]:
    """Wall time, API requests (counted by the emulator) and result of one call; shared by catalog.py."""
    emu.reset_stats()
    started = time.perf_counter()
    result = fn(*args)
    elapsed = time.perf_counter() - started
    return elapsed, int(emu.stats()["api_requests"]), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every API request")
    parser.add_argument("--workers", type=int, default=16, help="fusion-stac client max_workers")
    parser.add_argument("--in-process", action="store_true",
                        help="run the emulator in this process (it then shares the GIL with the clients)")
    args = parser.parse_args(argv)
    logging.getLogger("fusion_platform").setLevel(logging.WARNING)

    import fusion_platform

    from fusion_stac.client import FusionClient

    if args.in_process:
        from fusion_stac.emulator import Emulator

        server: Any = Emulator(execution_duration=0)
    else:
        server = EmulatorProcess(execution_duration=0)
    where = "in this process" if args.in_process else "in its own process"
    with tempfile.TemporaryDirectory() as tmp, server as emu:
        print(f"emulator {where} at {emu.url}")
        org, process_id, group_id = prepare(emu, Path(tmp))
        emu.configure(api_latency=args.latency)

        ours = FusionClient(emu.url, email=EMAIL, password=PASSWORD, max_workers=args.workers)
        process = ours.get_process(org, process_id)  # both walks start from a process object
        user = fusion_platform.login(email=EMAIL, password=PASSWORD, api_url=emu.url)
        sdk_org = next(o for o in user.organisations if str(o.id) == org)
        sdk_process, _ = sdk_org.find_processes(id=process_id)

        rows: dict[str, list[tuple[float, int, tuple[int, int, int]]]] = {"fusion-stac": [], "SDK": []}
        for _ in range(args.runs):
            rows["fusion-stac"].append(timed(emu, walk_ours, ours, org, process, group_id))
            rows["SDK"].append(timed(emu, walk_sdk, sdk_process, group_id))

        shapes = {name: {r[2] for r in runs} for name, runs in rows.items()}
        if len(shapes["fusion-stac"] | shapes["SDK"]) != 1:
            raise SystemExit(f"the walks disagree on what they found: {shapes}")
        (n_exec, n_files, n_urls), = shapes["SDK"]
        print(f"walk: {n_exec} executions, {n_files} files, {n_urls} download URLs; "
              f"API latency {args.latency * 1000:.0f} ms; {args.runs} runs; median shown")
        print(f"{'client':<12} {'requests':>9} {'wall s':>8}   all runs (s)")
        med: dict[str, tuple[float, float]] = {}
        for name, runs in rows.items():
            t = statistics.median(r[0] for r in runs)
            n = statistics.median(r[1] for r in runs)
            med[name] = (t, n)
            print(f"{name:<12} {n:>9.0f} {t:>8.3f}   " + " ".join(f"{r[0]:.3f}" for r in runs))
        speedup = med["SDK"][0] / med["fusion-stac"][0]
        ratio = med["fusion-stac"][1] / med["SDK"][1]
        print(f"fusion-stac is {speedup:.1f}x faster with {ratio:.2f}x the requests "
              f"(client-side count: {ours.stats.requests} requests over all runs, {ours.stats.retries} retries)")
        ours.close()
        print(f"SUMMARY speedup={speedup:.2f} request_ratio={ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
