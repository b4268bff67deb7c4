"""The STAC API server: search latency, indexing requests, and odc-stac through the asset gateway.

Claims: ``/search`` with a bbox + datetime + CQL2 filter answers in p95 < 50 ms on an index of
10,000 items; indexing a 16-slice run costs at most 1.1x the minimum API requests; ``odc.stac.load``
of the 16 slices through the gateway (307 redirects to freshly signed URLs) takes at most 1.2x the
time of the same load on directly signed URLs.

Setup (untimed): one emulator in its own process (as traversal.py), a square region cut into 4 x 4
slices, the classification service run on it (its 16 slice rasters are the odc-stac inputs).

1. **Search latency**: 10,000 synthetic items (copies of the run's items with ids, footprints and
   datetimes spread over the UK and a year) are inserted into a fresh index; the server answers
   ``GET /search?bbox=..&datetime=..&filter=..`` over HTTP (uvicorn on loopback, in this process's
   threads) with a different bbox each time; medians and p95 of ``--searches`` requests.
2. **Indexing requests**: a cold refresh of an empty index over the platform holding the run (and
   its region upload), API requests counted by the emulator, against the minimum the API allows:
   per organisation 1 listing of uploads and 1 of processes; per upload 1 file listing; per process
   ⌈E / page⌉ listings of its E executions (they carry the group ids; one page of up to 24 here); per
   run the minimum of ``benchmarks/catalog.py`` without its process and group listings (they came
   with the listings above): M component listings for the M executions and O file listings for the
   O output data items. No process fetch, data fetch or download URL is needed.
3. **odc-stac**: ``odc.stac.load(items, bands=["data"], chunks={})`` then ``.compute()`` of the 16
   slice rasters on one geobox at native resolution, with storage answering at loopback speed and
   with ``--storage-latency`` (20 ms, the SUMMARY's ratio: a real object store adds 10-50 ms to every
   request; the STAC server stays on loopback, as it runs next to its users), with URLs GDAL has not
   seen in each run: items from the server (gateway hrefs, no GDAL settings; each open costs a HEAD,
   a 307 and a directory listing from the server, then the same ranged GETs to storage) against the
   same items with hrefs replaced by URLs signed just before (with ``GDAL_GET_ONLY``, as signed URLs
   refuse HEAD).

Run: ``python benchmarks/stac_api.py [--runs 5] [--searches 200] [--items 10000]``.
The last line is ``SUMMARY search_p95_ms=<x> index_request_ratio=<y> gateway_ratio_direct=<z>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from traversal import EMAIL, PASSWORD, EmulatorProcess, prepare

PAGE_SIZE = 24


class Served:
    """``fusion-stac serve`` in its own process on a free loopback port (as users run it)."""

    def __init__(self, api_url: str, index: Path, *options: str) -> None:
        import os
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        root = str(Path(__file__).parents[1])
        self.args = [sys.executable, "-m", "fusion_stac", "serve", "--api-url", api_url, "--no-progress",
                     "--port", str(self.port), "--index", str(index), *options]
        self.env = {**os.environ, "FUSION_PLATFORM_EMAIL": EMAIL, "FUSION_PLATFORM_PASSWORD": PASSWORD,
                    "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Served:
        import requests

        self.process = subprocess.Popen(self.args, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while True:
            if self.process.poll() is not None:
                raise SystemExit("fusion-stac serve exited")
            try:
                requests.get(self.url + "/_mgmt/ping", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)


def minimum_requests(client: Any, org: str) -> tuple[int, str]:
    """The minimum API requests to index everything the user sees, and how it was counted (untimed)."""
    data = list(client.iter_data(org))
    processes = list(client.iter_processes(org))
    total, runs, members_n, outputs_n = 2 + len(data), 0, 0, 0
    for p in processes:
        executions = list(client.iter_executions(org, p.id))
        total += max(1, math.ceil(len(executions) / PAGE_SIZE))
        runs += len({e.group_id or e.id for e in executions})
        members_n += len(executions)
        outputs = {d for e in executions for c in client.iter_components(org, e.id) for d in c.outputs}
        outputs_n += len(outputs)
    total += members_n + outputs_n
    how = (f"2 listings + {len(data)} upload file listing(s) + execution listing(s) of {len(processes)} process(es) "
           f"+ {members_n} component listings + {outputs_n} output file listings ({runs} run(s))")
    return total, how


def synthetic_index(path: Path, template: list[dict[str, Any]], n: int) -> Any:
    from fusion_stac.server import Index

    index = Index(path)
    rng = random.Random(7)
    per = 500
    for c in range(math.ceil(n / per)):
        items = []
        for k in range(min(per, n - c * per)):
            item = json.loads(json.dumps(template[(c * per + k) % len(template)]))
            item["id"] = f"synthetic-{c}-{k}"
            w, s = rng.uniform(-8.0, 1.5), rng.uniform(50.0, 58.0)
            e, n_ = w + 0.3, s + 0.2
            item["bbox"] = [w, s, e, n_]
            item["geometry"] = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n_], [w, n_], [w, s]]]}
            day = rng.randrange(365)
            stamp = f"2021-{1 + day // 31:02d}-{1 + day % 28:02d}T10:00:00Z"
            props = item["properties"]
            props["datetime"] = props["start_datetime"] = props["end_datetime"] = stamp
            props["fusion:group_index"] = rng.randrange(16)
            items.append(item)
        coll = {"type": "Collection", "id": f"synthetic-{c}", "stac_version": "1.1.0", "description": "synthetic",
                "license": "other", "links": [], "extent": {"spatial": {"bbox": [[-8, 50, 2, 58.2]]},
                                                            "temporal": {"interval": [[None, None]]}}}
        index.put_collection(coll, items, kind="run", source=f"synthetic:{c}")
    return index


def search_latency(api_url: str, group_id: str, template: list[dict[str, Any]], n: int, searches: int,
                   tmp: Path) -> list[float]:
    import requests

    path = tmp / "synthetic.sqlite"
    synthetic_index(path, template, n).close()
    rng = random.Random(11)
    times = []
    with Served(api_url, path, "--refresh", "1e9") as served, requests.Session() as http:
        # the server's first refresh adds the platform's own collections: wait for it, then time
        while group_id not in {c["id"] for c in http.get(served.url + "/collections").json()["collections"]}:
            time.sleep(0.1)
        for i in range(searches + 10):
            w, s = rng.uniform(-8.0, 0.0), rng.uniform(50.0, 56.0)
            params = {"bbox": f"{w},{s},{w + 1.5},{s + 1.5}", "datetime": "2021-03-01T00:00:00Z/2021-09-30T00:00:00Z",
                      "filter": "\"fusion:group_index\" < 8 AND \"fusion:file_type\" = 'GeoTIFF'",
                      "filter-lang": "cql2-text", "limit": 10}
            began = time.perf_counter()
            r = http.get(served.url + "/search", params=params)
            elapsed = time.perf_counter() - began
            r.raise_for_status()
            assert r.json()["features"], "the benchmark search should find items"
            if i >= 10:  # warm-up
                times.append(elapsed)
    return times


def odc_load(items: list[Any], geobox: Any, env: dict[str, Any]) -> float:
    import odc.stac
    import rasterio

    began = time.perf_counter()
    with rasterio.Env(**env):
        ds = odc.stac.load(items, bands=["data"], geobox=geobox, groupby="time", chunks={}, resampling="nearest")
        ds["data"].compute()
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--storage-latency", type=float, default=0.02,
                        help="seconds the emulator adds to every storage request for the SUMMARY's odc-stac ratio "
                             "(a real object store adds 10-50 ms; 0 is also measured)")
    args = parser.parse_args(argv)
    logging.getLogger("fusion_platform").setLevel(logging.WARNING)

    import pystac
    import pystac_client
    from odc.geo import geom
    from odc.geo.geobox import GeoBox

    from fusion_stac.client import FusionClient
    from fusion_stac.server import Index, Indexer
    from fusion_stac.stac import GDAL_GET_ONLY

    with tempfile.TemporaryDirectory() as tmpdir, EmulatorProcess(execution_duration=0) as emu:
        tmp = Path(tmpdir)
        print(f"emulator in its own process at {emu.url}")
        org, _process_id, group_id = prepare(emu, tmp)
        client = FusionClient(emu.url, email=EMAIL, password=PASSWORD, max_workers=16)
        minimum, how = minimum_requests(client, org)
        client.user  # noqa: B018 -- logged in before counting

        # 2. indexing requests: a cold refresh, counted by the emulator
        indexer = Indexer(client, Index(tmp / "index.sqlite"))
        emu.reset_stats()
        began = time.perf_counter()
        report = indexer.refresh()
        index_seconds = time.perf_counter() - began
        index_requests = int(emu.stats()["api_requests"])
        emu.reset_stats()
        assert indexer.refresh().collections == 0
        again_requests = int(emu.stats()["api_requests"])
        index_ratio = index_requests / minimum

        indexer.index.close()
        with Served(emu.url, tmp / "index.sqlite", "--refresh", "1e9") as served:
            search = pystac_client.Client.open(served.url).search(
                collections=[group_id], filter="\"fusion:file_type\" = 'GeoTIFF'", limit=100)
            gateway_items = [i for i in search.items() if not i.properties.get("fusion:aggregator")]
            template = [i.to_dict() for i in gateway_items]
            if len(gateway_items) != 16:
                raise SystemExit(f"expected the 16 slice rasters, found {len(gateway_items)}")

            # 3. odc-stac: gateway hrefs against directly signed ones, one geobox, at native resolution
            # (what odc.stac.load reads by default) and at 1/4 (overviews: per-file overhead dominates)
            first = gateway_items[0]
            crs = first.properties["proj:code"]
            native = abs(first.assets["data"].extra_fields["proj:transform"][0])
            area = geom.box(*_union_bbox(gateway_items), "EPSG:4326").to_crs(crs)
            timings: dict[str, list[float]] = {}
            storage_requests: dict[str, int] = {}  # of the last run of each kind
            geobox = GeoBox.from_bbox(area.boundingbox, crs=crs, resolution=native)
            for latency in (0.0, args.storage_latency):
                factor = f"{latency * 1000:.0f}ms"
                emu.configure(storage_latency=latency)
                gw, direct = timings.setdefault(f"gateway {factor}", []), timings.setdefault(f"direct {factor}", [])
                for run in range(args.runs):
                    time.sleep(1.05)  # (untimed) the emulator signs by the second: new URLs, nothing cached by GDAL
                    direct_items, cold_items = [], []
                    for it in gateway_items:
                        clone = pystac.Item.from_dict(it.to_dict())
                        p = it.properties
                        clone.assets["data"].href = client.download_url(org, p["fusion:data_id"],
                                                                        p["fusion:file_id"]).url
                        direct_items.append(clone)
                        cold = pystac.Item.from_dict(it.to_dict())  # a URL GDAL has not seen: nothing cached
                        cold.assets["data"].href = f"{it.assets['data'].href}?run={factor}-{run}"
                        cold_items.append(cold)
                    emu.reset_stats()
                    gw.append(odc_load(cold_items, geobox, {}))
                    storage_requests[f"gateway {factor}"] = int(emu.stats()["storage_requests"])
                    emu.reset_stats()
                    direct.append(odc_load(direct_items, geobox, GDAL_GET_ONLY))
                    storage_requests[f"direct {factor}"] = int(emu.stats()["storage_requests"])
        # 1. search latency on 10,000 items
        latencies = search_latency(emu.url, group_id, template, args.items, args.searches, tmp)
        client.close()

    p50 = statistics.median(latencies) * 1000
    p95 = sorted(latencies)[max(0, math.ceil(0.95 * len(latencies)) - 1)] * 1000
    med = {k: statistics.median(v) for k, v in timings.items()}
    slow = f"{args.storage_latency * 1000:.0f}ms"
    gateway_ratio = med[f"gateway {slow}"] / med[f"direct {slow}"]
    print(f"run: {report.items} items in {report.collections} collections indexed in {index_seconds:.2f} s")
    print(f"minimum requests: {how} = {minimum}")
    print(f"{'measure':<44} {'value':>12} {'target':>12}")
    print(f"{'/search latency median (ms), ' + str(args.items) + ' items':<44} {p50:>12.1f} {'':>12}")
    print(f"{'/search latency p95 (ms)':<44} {p95:>12.1f} {'< 50':>12}")
    print(f"{'indexing requests (cold)':<44} {index_requests:>12d} {f'min {minimum}':>12}")
    print(f"{'indexing requests / minimum':<44} {index_ratio:>12.2f} {'<= 1.1':>12}")
    print(f"{'refresh with nothing new (requests)':<44} {again_requests:>12d} {'':>12}")
    for factor in ("0ms", slow):
        for name in ("gateway", "direct"):
            key = f"{name} {factor}"
            print(f"{f'odc.stac.load 16 slices, {key} (s, med.)':<44} {med[key]:>12.3f} {'':>12}   "
                  + " ".join(f"{t:.3f}" for t in timings[key]) + f"   ({storage_requests[key]} storage requests)")
        ratio = med[f"gateway {factor}"] / med[f"direct {factor}"]
        print(f"{f'gateway / direct, storage latency {factor}':<44} {ratio:>12.2f} {'<= 1.2' if factor == slow else '':>12}")
    print(f"SUMMARY search_p95_ms={p95:.1f} index_request_ratio={index_ratio:.2f} gateway_ratio_direct={gateway_ratio:.2f}")
    return 0


def _union_bbox(items: list[Any]) -> tuple[float, float, float, float]:
    boxes = [i.bbox for i in items if i.bbox]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


if __name__ == "__main__":
    raise SystemExit(main())
