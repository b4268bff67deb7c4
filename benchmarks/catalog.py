"""Build the STAC collection of a finished 16-slice group; compare requests and time.

Claim: building a group's collection with every item resolved costs at most 2x the minimum number
of API requests the API allows, and is at least 5x faster than the official SDK's sequential walk of
the same objects (executions, components, outputs, files).

Setup (untimed): one emulator in its own process (as traversal.py, so that the server does not share
this process's GIL), a square region cut into 4 x 4 slices, the classification service run on it;
then 20 ms are added to every API request (``api_latency=0.02``). Requests are counted by the
emulator, so both clients are counted the same way.

Minimum number of requests (the API allows no fewer, whatever the client):

* 1  ``GET /processes/{pid}`` — the process name and chain, which the collection shows; no listing
  of executions or components carries them;
* ⌈M / page⌉ listings ``GET /processes/{pid}/executions?filter[group_id__eq]=…`` for the M group
  members (slices and aggregators; one page of up to 24 here);
* M ``GET /process_executions/{eid}/process_service_executions`` — components are only listed per
  execution;
* O ``GET /data/{did}/files`` — one per output data item: file metadata (size, CRS, grid, selectors)
  exists only in these listings, and there is no endpoint for several data items at once.

``GET /data/{did}`` is *not* needed (files carry everything an item shows), nor are download URLs
(asset hrefs are ``fusion://`` by default). The SDK walk starts from a process object it already
has, as in its detailed example; ours starts from ids only and includes fetching the process.

Run: ``python benchmarks/catalog.py [--runs 5] [--latency 0.02] [--workers 16]``.
The last line is ``SUMMARY request_ratio_to_min=<ours / minimum> speedup_vs_sdk=<SDK time / our time>``.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
# The emulator-in-a-subprocess harness and the 4 x 4-slice region are shared with traversal.py.
from traversal import EMAIL, PASSWORD, EmulatorProcess, prepare, timed

PAGE_SIZE = 24


def build_ours(client: Any, org: str, process_id: str, group_id: str) -> int:
    """A cold build: a new FusionStacIO (empty caches), the group collection and every item."""
    import pystac

    from fusion_stac.stac.io import FusionStacIO, group_href

    href = group_href(org, process_id, group_id)
    io = FusionStacIO(client, root_href=href)  # as open_catalog does: the collection is the root
    coll = pystac.Collection.from_file(href, stac_io=io)
    items = list(coll.get_items())
    assert coll.extra_fields["fusion:state"] == "succeeded"
    return len(items)


def walk_sdk(process: Any, group_id: str) -> int:
    """The SDK's sequential walk of the same objects (no download URLs: neither side needs them)."""
    _, executions = process.find_executions(group_id=group_id)
    n_files = 0
    for execution in executions:
        for component in execution.components:
            for output in component.outputs:
                n_files += sum(1 for _ in output.files)
    return n_files


def minimum_requests(client: Any, org: str, process_id: str, group_id: str) -> tuple[int, int, int]:
    """(minimum, members, output data items), counted from the API (untimed)."""
    members = list(client.iter_executions(org, process_id, group_id=group_id))
    outputs = {d for e in members for c in client.iter_components(org, e.id) for d in c.outputs}
    return 1 + math.ceil(len(members) / PAGE_SIZE) + len(members) + len(outputs), len(members), len(outputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added to every API request")
    parser.add_argument("--workers", type=int, default=16, help="fusion-stac client max_workers")
    args = parser.parse_args(argv)
    logging.getLogger("fusion_platform").setLevel(logging.WARNING)

    import fusion_platform

    from fusion_stac.client import FusionClient

    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(execution_duration=0) as emu:
        print(f"emulator in its own process at {emu.url}")
        org, process_id, group_id = prepare(emu, Path(tmp))

        ours = FusionClient(emu.url, email=EMAIL, password=PASSWORD, max_workers=args.workers)
        minimum, n_members, n_outputs = minimum_requests(ours, org, process_id, group_id)
        user = fusion_platform.login(email=EMAIL, password=PASSWORD, api_url=emu.url)
        sdk_org = next(o for o in user.organisations if str(o.id) == org)
        sdk_process, _ = sdk_org.find_processes(id=process_id)
        ours.user  # noqa: B018 -- log in before timing, as the SDK did above
        emu.configure(api_latency=args.latency)

        rows: dict[str, list[tuple[float, int, int]]] = {"fusion-stac": [], "SDK walk": []}
        for _ in range(args.runs):
            rows["fusion-stac"].append(timed(emu, build_ours, ours, org, process_id, group_id))
            rows["SDK walk"].append(timed(emu, walk_sdk, sdk_process, group_id))

        counts = {name: {r[2] for r in runs} for name, runs in rows.items()}
        if len(counts["fusion-stac"] | counts["SDK walk"]) != 1:
            raise SystemExit(f"the two walks disagree on the number of files: {counts}")
        (n_files,) = counts["SDK walk"]
        print(f"group: {n_members} executions, {n_outputs} output data items, {n_files} files/items; "
              f"API latency {args.latency * 1000:.0f} ms; {args.runs} runs; medians")
        print(f"minimum requests: 1 process + {math.ceil(n_members / PAGE_SIZE)} group listing(s) + "
              f"{n_members} component listings + {n_outputs} file listings = {minimum}")
        print(f"{'client':<12} {'requests':>9} {'vs min':>7} {'wall s':>8}   all runs (s)")
        med: dict[str, tuple[float, float]] = {}
        for name, runs in rows.items():
            t = statistics.median(r[0] for r in runs)
            n = statistics.median(r[1] for r in runs)
            med[name] = (t, n)
            print(f"{name:<12} {n:>9.0f} {n / minimum:>6.2f}x {t:>8.3f}   " + " ".join(f"{r[0]:.3f}" for r in runs))
        ratio = med["fusion-stac"][1] / minimum
        speedup = med["SDK walk"][0] / med["fusion-stac"][0]
        print(f"fusion-stac builds the collection {speedup:.1f}x faster than the SDK walks it, "
              f"with {ratio:.2f}x the minimum requests (SDK: {med['SDK walk'][1] / minimum:.2f}x)")
        ours.close()
        print(f"SUMMARY request_ratio_to_min={ratio:.2f} speedup_vs_sdk={speedup:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
