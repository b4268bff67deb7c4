"""Large runs: what opening 10, 50 and 200 runs of a 16-slice group costs, and what reopening costs.

Claim: ``open_timeseries`` of a process makes, once its runs are known, only the executions listing's
requests (nothing per run: finished runs are kept on disk); the first open costs about the minimum the
API forces (the listing pages, plus one walk of each run's STAC collection); time grows linearly with
the number of runs (exponent fitted to time against runs <= 1.1).

One emulator in its own process (``execution_duration=0``, 1 km pixels: 20x20-pixel slices), one
process on a 78 km square (4 x 4 slices), executed in a loop. Every measurement runs in a fresh Python
process with imports done and the client logged in before the clock; API requests are the client's
own count (signed storage requests excluded). For each size the script prints ``open_timeseries``
cold (empty cache) and reopened (same cache, nothing new), a walk of the process's STAC view
(``get_items(recursive=True)``) and ``fs.find`` of the process, with the minimum beside each:

* ``open_timeseries`` cold: the executions listing's pages (``ceil(17 n / 100)``) plus, per execution
  (16 slices and an aggregator per run), its components and its output's files: the API has no call
  that lists either for several executions, so ``pages + 34 n`` is what it forces. Reopened, nothing
  new: the listing pages only.
* STAC walk and ``fs.find``: the same minimum (neither keeps anything on disk).

Run: ``python benchmarks/scale.py [--runs 10,50,200] [--latency 0]``.
Ends ``SUMMARY runs200_request_ratio=<r> runs200_build_s=<s> growth_exponent=<e> reopen200_requests=<n>``
(for the largest size run when 200 is not among ``--runs``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
PAGE = 100  # executions per listing page the client asks for (see _list_params)


def _child(args: argparse.Namespace) -> int:
    """Measure one call in this (fresh) process; print one JSON line."""
    import resource
    import warnings

    warnings.simplefilter("ignore")
    import dask.array  # noqa: F401 - imports before the clock (xarray imports dask on its first DataArray)
    import xarray  # noqa: F401

    import fusion_stac.xarray._build
    import fusion_stac.xarray._platform  # noqa: F401
    from fusion_stac.client import FusionClient
    from fusion_stac.fs import FusionFileSystem
    from fusion_stac.stac.catalog import open_catalog
    from fusion_stac.xarray import open_timeseries

    client = FusionClient(args.url, email=EMAIL, password=PASSWORD)
    process = client.get_process(args.org, args.process)
    stats = client.stats
    stats.reset()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if args.what == "timeseries":
        ts = open_timeseries(client, process)
        result: Any = int(ts.sizes["time"])
    elif args.what == "stac":
        coll = open_catalog(client, f"fusion://{args.org}/processes/{args.process}")
        result = sum(1 for _ in coll.get_items(recursive=True))
    elif args.what == "find":
        fs = FusionFileSystem(client=client)
        result = len(fs.find(f"fusion://{args.org}/processes/{args.process}"))
    else:  # pragma: no cover
        raise SystemExit(f"unknown measurement {args.what}")
    elapsed = time.perf_counter() - started
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    requests = stats.requests - stats.signed_requests
    # The executions listing alone, afterwards: what the API's paging costs (server side) at this size.
    started = time.perf_counter()
    listed = sum(1 for _ in client.iter_executions(args.org, args.process, reverse=False))
    listing = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "requests": requests, "result": result, "listing_s": listing,
                      "executions": listed, "peak_mb": rss1 / 1024, "grew_mb": (rss1 - rss0) / 1024}))
    return 0


def measure(what: str, url: str, org: str, process: str, cache: Path) -> dict[str, Any]:
    env = {**os.environ, "FUSION_STAC_CACHE_DIR": str(cache), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, __file__, "--child", what, "--url", url, "--org", org, "--process", process],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(max(y, 1e-9)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / den if den else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="10,50,200", help="comma-separated numbers of runs")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API request")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--org", help=argparse.SUPPRESS)
    parser.add_argument("--process", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.what = args.child
        return _child(args)

    from traversal import EmulatorProcess, square_region  # type: ignore[import-not-found]

    from fusion_stac.client import FusionClient

    sizes = sorted(int(n) for n in args.runs.split(","))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(execution_duration=0, resolution_m=1000.0) as emu:
        work = Path(tmp)
        client = FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.02)
        org = client.organisation().id
        region = client.create_data(org, "Scale square", [square_region(work / "square.geojson")])
        process = client.new_process(org, "Elevation", "Scale DEM").with_input(1, region).create()
        done = 0
        made = 0.0
        for n in sizes:
            started = time.perf_counter()
            while done < n:
                client.execute(org, process.id, wait=True)
                done += 1
            made += time.perf_counter() - started
            print(f"{n} runs ({made:.1f} s spent creating runs so far)", flush=True)
            if args.latency:
                emu.configure(api_latency=args.latency)
            cache = work / f"cache-{n}"
            cold = measure("timeseries", emu.url, org, process.id, cache)
            reopen = measure("timeseries", emu.url, org, process.id, cache)
            stac = measure("stac", emu.url, org, process.id, work / "unused")
            find = measure("find", emu.url, org, process.id, work / "unused")
            if args.latency:
                emu.configure(api_latency=0)
            pages = math.ceil(n * 17 / PAGE) or 1
            least = pages + n * 17 * 2
            rows.append({"runs": n, "cold": cold, "reopen": reopen, "stac": stac, "find": find, "pages": pages,
                         "least": least})
            print(f"  open_timeseries cold   {cold['requests']:6d} requests (min {least}: {pages} pages + 34/run) "
                  f"{cold['seconds']:7.3f} s  peak {cold['peak_mb']:.0f} MB")
            print(f"  open_timeseries reopen {reopen['requests']:6d} requests (min {pages} listing pages)     "
                  f"{reopen['seconds']:7.3f} s  peak {reopen['peak_mb']:.0f} MB  (the listing alone: "
                  f"{reopen['listing_s']:.3f} s for {reopen['executions']} executions)")
            print(f"  STAC view walk         {stac['requests']:6d} requests (min {least}; {stac['result']} items) "
                  f"{stac['seconds']:7.3f} s  peak {stac['peak_mb']:.0f} MB")
            print(f"  fs.find                {find['requests']:6d} requests (min {least}; {find['result']} files) "
                  f"{find['seconds']:7.3f} s  peak {find['peak_mb']:.0f} MB", flush=True)
        client.close()
    last = rows[-1]
    ratio = last["cold"]["requests"] / last["least"]
    growth = exponent([r["runs"] for r in rows], [r["cold"]["seconds"] for r in rows]) if len(rows) > 1 else float("nan")
    n = last["runs"]
    print(f"SUMMARY runs{n}_request_ratio={ratio:.2f} runs{n}_build_s={last['cold']['seconds']:.3f} "
          f"growth_exponent={growth:.2f} reopen{n}_requests={last['reopen']['requests']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
