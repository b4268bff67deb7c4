"""The demo pipeline under faults: every run completes, and its outputs are byte-identical to a clean run.

Claim: with faults injected on 40 % of API and storage requests, pre-signed URLs that live 5 s and
sessions that end every few seconds, the whole demo pipeline of fusion-stac

1. uploads a shipped region (``fusion_stac/emulator/regions/``) — ``client.create_data``;
2. runs a grouped process (Elevation over a region cut into >= 4 slices) — ``create`` + ``execute(wait=True)``;
3. exports the run as a STAC catalog with its assets downloaded — ``export_catalog(..., assets="download")``;
4. builds the mosaic of the slices and writes it to a GeoTIFF — ``open_mosaic`` (read over ``fusion://``),
   then, once the URLs signed for that read have expired, reads it again (as a notebook coming back to it);

completes N times out of N, every downloaded file, every item's metadata and the mosaic's pixels are
identical to those of a fault-free run, no partial or temporary file is left behind, and no
exception escapes.

Faults (emulator :class:`~fusion_stac.emulator.FaultConfig`, separately for API and storage calls,
login included): 5 % HTTP 500 + 5 % HTTP 503, 10 % HTTP 429 with ``Retry-After``, 10 % connection
resets, 10 % truncated bodies (``--fault-rate`` scales all of them), plus 10 % latency spikes of
50 ms. The fault RNG is seeded per run (``--seed``), so a run's fault pattern is reproducible up to
thread scheduling.

How non-idempotent calls stay correct: the emulator injects 500/503/429/resets *before* handling a
request and truncates bodies *after* handling it, so a POST that failed may or may not have taken
effect — exactly the uncertainty of a real flaky network. The client never repeats a POST blindly:
429 (explicitly refused) is retried; after any other failure it re-checks the platform's state
first (a data item is created under a client-chosen id and looked up by it; a process is looked up
by name, service and inputs; an execution is recognised by the process's status change). See
``FusionClient._post_once``.

Run: ``python benchmarks/chaos.py [--runs 20] [--seed 1] [--retry-after 1] [--json out.json]``.
The last line is ``SUMMARY runs=<N> completed=<n> identical=<n> leftovers=<n>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
SERVICE = "Elevation"
REGIONS = Path(__file__).resolve().parents[1] / "fusion_stac" / "emulator" / "regions"
#: Names of files and directories that only exist while something is being written.
LEFTOVER_SUFFIXES = (".part", ".download", ".tmp", ".partial")
LEFTOVER_MARKERS = ("-partial", ".old-", "fusion-put-", "fusion-cp-")

#: Item properties that describe the data (not the run): compared between runs.
STABLE_PROPERTIES = ("gsd", "proj:code", "proj:epsg", "proj:bbox", "proj:shape", "proj:transform",
                     "fusion:file_name", "fusion:file_type", "fusion:group_index", "fusion:group_count",
                     "fusion:component")
STABLE_ASSET_FIELDS = ("type", "file:size", "file:checksum", "proj:shape", "proj:transform", "raster:bands",
                       "roles")


@dataclass
class RunResult:
    """What one run did and produced."""

    name: str
    completed: bool = False
    seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    url_refreshes: int = 0
    relogins: int = 0
    faults: int = 0
    files: dict[str, str] = field(default_factory=dict)  # slice/file -> sha256
    items: dict[str, str] = field(default_factory=dict)  # slice -> sha256 of its stable metadata
    mosaic: str | None = None  # sha256 of shape, dtype, georeferencing and pixels
    leftovers: list[str] = field(default_factory=list)
    error: str | None = None
    identical: bool | None = None
    differences: list[str] = field(default_factory=list)


def fault_configs(rate: float, retry_after: float, latency: float) -> tuple[Any, Any]:
    """(api, storage) fault settings: ``rate`` each of 500/503 (split), 429, resets and truncations."""
    from fusion_stac.emulator import FaultConfig

    config = FaultConfig(error_500=rate / 2, error_503=rate / 2, throttle=rate, retry_after=retry_after,
                         reset=rate, truncate=rate, latency=0.1 if latency > 0 else 0.0,
                         latency_seconds=latency, include_login=True)
    return config, config


def count_faults(emu: Any) -> int:
    """Faults the emulator injected so far (latency spikes not included)."""
    return sum(n for kind, n in emu.stats()["faults"].items() if not kind.endswith(".latency"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def canonical(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def scan_leftovers(*roots: Path) -> list[str]:
    """Partial or temporary files and directories under ``roots`` (what an interrupted write leaves)."""
    found = []
    for root in roots:
        if not root.exists():
            continue
        for path in root.rglob("*"):
            name = path.name
            if name.endswith(LEFTOVER_SUFFIXES) or any(m in name for m in LEFTOVER_MARKERS) or \
                    (path.is_dir() and name.startswith(("tmp", ".tmp"))):
                found.append(str(path.relative_to(root)))
    return sorted(found)


def summarise_export(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(``slice<i>/<file>`` -> sha256 of every downloaded asset, ``slice<i>`` -> hash of stable item metadata).

    Item directories are named by file ids, which differ between runs; the slice index does not.
    """
    files: dict[str, str] = {}
    items: dict[str, str] = {}
    for doc_path in sorted(root.rglob("*.json")):
        doc = json.loads(doc_path.read_text())
        if doc.get("type") != "Feature":
            continue
        props = doc.get("properties", {})
        slot = f"slice{props.get('fusion:group_index')}"
        stable = {k: props.get(k) for k in STABLE_PROPERTIES}
        stable["bbox"] = doc.get("bbox")
        stable["geometry"] = doc.get("geometry")
        stable["assets"] = {}
        for key, asset in sorted(doc.get("assets", {}).items()):
            href = asset.get("href", "")
            stable["assets"][key] = {k: asset.get(k) for k in STABLE_ASSET_FIELDS}
            local = (doc_path.parent / href).resolve()
            if "://" in href or not local.is_file():
                files[f"{slot}/{key}"] = f"missing: {href}"
                continue
            files[f"{slot}/{Path(href).name}"] = sha256_file(local)
        items[slot] = canonical(stable)
    return files, items


def mosaic_digest(array: Any) -> str:
    """A hash of what a mosaic is: pixels, dtype, shape, CRS and transform (not run-specific attributes)."""
    digest = hashlib.sha256()
    values = array.values
    digest.update(f"{values.dtype}|{values.shape}|{array.rio.crs}|{tuple(array.rio.transform())}".encode())
    digest.update(values.tobytes())
    return digest.hexdigest()


def write_geotiff(array: Any, path: Path) -> None:
    """Write the mosaic atomically: a temporary file beside ``path``, renamed into place when complete."""
    tmp = path.with_name(f".{path.name}.part")
    try:
        array.rio.to_raster(tmp, driver="GTiff", tiled=True, compress="deflate")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def run_pipeline(emu: Any, region: Path, workdir: Path, name: str, *, attempts: int,
                 reread_after: float = 0.0) -> RunResult:
    """One run of the demo pipeline, with fresh client, file system and counters."""
    import rioxarray  # noqa: F401  (the .rio accessor used to write the mosaic)

    import fusion_stac
    from fusion_stac.client import FusionClient, RetryPolicy
    from fusion_stac.fs import FusionFileSystem
    from fusion_stac.storage._transport import RetryPolicy as DataRetryPolicy
    from fusion_stac.xarray import FileSystemStorage, open_mosaic

    result = RunResult(name)
    out = workdir / name
    out.mkdir(parents=True)
    faults_before = count_faults(emu)
    started = time.perf_counter()
    client = FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.05,
                          retry=RetryPolicy(attempts=attempts, backoff=0.05, max_backoff=1.0))
    fs = FusionFileSystem(client=client, token_cache=False,
                          retries=DataRetryPolicy(attempts=attempts, backoff=0.02, max_backoff=1.0))
    try:
        org = client.organisation().id
        data = client.create_data(org, f"Region {name}", [region])
        draft = client.new_process(org, SERVICE, f"Chaos {name}").with_input(1, data)
        process = draft.create()
        client.execute(org, process.id, wait=True, timeout=300)
        catalog = fusion_stac.open_catalog(client, f"fusion://{org}/processes/{process.id}/latest")
        fusion_stac.export_catalog(catalog, out / "export", assets="download")
        items = [i for i in catalog.get_items(recursive=True)
                 if i.properties.get("fusion:file_type") == "GeoTIFF"]
        if len(items) < 4:
            raise RuntimeError(f"expected at least 4 slices, got {len(items)}")
        lazy = open_mosaic(items=items, storage=FileSystemStorage(fs))
        mosaic = lazy.compute()
        write_geotiff(mosaic, out / "mosaic.tif")
        result.mosaic = mosaic_digest(mosaic)
        if reread_after > 0:
            # a notebook coming back to its mosaic later: the URLs signed for the first read have
            # (nearly) expired, so the broker must sign again, and the pixels must not change
            time.sleep(reread_after)
            # the slices here are so small that their first read held them whole: forget those header
            # bytes and close the open datasets (with their decoded blocks), as a process would for
            # real-sized rasters, so the re-read goes to storage again
            from fusion_stac.xarray._http import clear_headers
            from fusion_stac.xarray._reader import close_handles

            clear_headers()
            close_handles()
            again = mosaic_digest(lazy.compute())
            if again != result.mosaic:
                raise RuntimeError("the mosaic read again after the URLs expired differs from the first read")
        result.files, result.items = summarise_export(out / "export")
        result.completed = True
    except Exception as exc:  # reported, never raised: the benchmark is about whether this happens
        result.error = f"{type(exc).__name__}: {exc}"
        logging.getLogger("chaos").debug("run %s failed", name, exc_info=True)
        result.error += "\n" + "".join(traceback.format_exception(exc)[-3:])
    finally:
        result.seconds = time.perf_counter() - started
        api = client.stats.snapshot()
        data_plane = fs.stats
        result.requests = int(api["requests"]) + int(data_plane.get("requests", 0))
        result.retries = int(api["retries"]) + int(data_plane.get("retries", 0))
        # URLs signed again: after storage refused one (each 403 the client saw), and by the broker
        result.url_refreshes = int(api["by_status"].get(403, 0)) + int(data_plane.get("url_refreshes", 0))
        result.relogins = int(api["relogins"])
        result.faults = count_faults(emu) - faults_before
        client.close()
    result.leftovers = scan_leftovers(out)
    return result


def compare(result: RunResult, reference: RunResult) -> None:
    """Fill ``identical`` and ``differences`` against the fault-free run."""
    if not result.completed:
        result.identical = False
        return
    diffs = []
    for key in sorted(set(reference.files) | set(result.files)):
        if reference.files.get(key) != result.files.get(key):
            diffs.append(f"file {key}")
    for key in sorted(set(reference.items) | set(result.items)):
        if reference.items.get(key) != result.items.get(key):
            diffs.append(f"item metadata {key}")
    if result.mosaic != reference.mosaic:
        diffs.append("mosaic pixels")
    result.differences = diffs
    result.identical = not diffs


def row(result: RunResult) -> str:
    return (f"{result.name:>8} {'yes' if result.completed else 'NO':>9} {result.seconds:7.1f} {result.requests:8d} "
            f"{result.faults:6d} "
            f"{result.retries:7d} {result.url_refreshes:8d} {result.relogins:8d} "
            f"{'yes' if result.identical else 'NO':>9} {len(result.leftovers):9d}")


HEADER = (f"{'run':>8} {'completed':>9} {'seconds':>7} {'requests':>8} {'faults':>6} {'retries':>7} {'url-refr':>8} "
          f"{'relogins':>8} {'identical':>9} {'leftovers':>9}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs with faults (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="fault RNG seed of the first run (then +1 per run)")
    parser.add_argument("--fault-rate", type=float, default=0.10,
                        help="probability of each fault kind (500/503 together, 429, reset, truncate)")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of injected 429s (seconds)")
    parser.add_argument("--latency", type=float, default=0.05, help="latency spike (seconds; 10 %% of requests)")
    parser.add_argument("--url-lifetime", type=float, default=5.0, help="lifetime of pre-signed URLs (seconds)")
    parser.add_argument("--token-lifetime", type=float, default=3.0, help="lifetime of sessions (seconds)")
    parser.add_argument("--attempts", type=int, default=12, help="client retry attempts per request")
    parser.add_argument("--region", default="thames", help="shipped region (default thames: 5 slices)")
    parser.add_argument("--no-reread", dest="reread", action="store_false",
                        help="skip reading the mosaic again once its URLs have expired")
    parser.add_argument("--workdir", type=Path, default=None, help="keep outputs here (default: temporary)")
    parser.add_argument("--json", type=Path, default=None, help="write every run's details to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries and refreshes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("fusion_stac").setLevel(logging.ERROR)  # retries are counted, not printed

    from fusion_stac.emulator import Emulator

    region = REGIONS / f"{args.region}.geojson"
    if not region.is_file():
        parser.error(f"no shipped region {args.region!r} in {REGIONS}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fusion-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    api_faults, storage_faults = fault_configs(args.fault_rate, args.retry_after, args.latency)
    results: list[RunResult] = []
    with Emulator(execution_duration=0, url_lifetime=args.url_lifetime, token_lifetime=args.token_lifetime,
                  seed=args.seed) as emu:
        print(f"emulator {emu.url}; outputs in {workdir}")
        print(f"faults per request (API and storage): {json.dumps(api_faults.to_dict())}")
        print(f"URL lifetime {args.url_lifetime} s, session lifetime {args.token_lifetime} s, "
              f"client attempts {args.attempts}")
        reread = args.url_lifetime if args.reread else 0.0
        reference = run_pipeline(emu, region, workdir, "clean", attempts=args.attempts, reread_after=reread)
        if not reference.completed:
            print(f"the fault-free run failed: {reference.error}")
            print(f"SUMMARY runs={args.runs} completed=0 identical=0 leftovers=0")
            return 1
        reference.identical = True
        print(f"fault-free run: {len(reference.files)} files, {len(reference.items)} items, "
              f"{reference.seconds:.1f} s")
        print(HEADER)
        print(row(reference))
        for n in range(args.runs):
            emu.configure(api_faults=api_faults, storage_faults=storage_faults, seed=args.seed + n)
            result = run_pipeline(emu, region, workdir, f"run{n + 1:02d}", attempts=args.attempts,
                                  reread_after=reread)
            emu.configure(api_faults=None, storage_faults=None)
            compare(result, reference)
            results.append(result)
            print(row(result), flush=True)
            if result.error:
                print(f"         error: {result.error.splitlines()[0][:300]}")
            if result.differences:
                print(f"         differs: {', '.join(result.differences[:6])}")
            if result.leftovers:
                print(f"         leftovers: {', '.join(result.leftovers[:6])}")
        server = emu.stats()
    completed = sum(r.completed for r in results)
    identical = sum(bool(r.identical) for r in results)
    leftovers = sum(len(r.leftovers) for r in results) + len(reference.leftovers)
    print(f"totals: requests={sum(r.requests for r in results)} faults={sum(r.faults for r in results)} "
          f"retries={sum(r.retries for r in results)} "
          f"url_refreshes={sum(r.url_refreshes for r in results)} relogins={sum(r.relogins for r in results)} "
          f"seconds={sum(r.seconds for r in results):.1f} (fault-free run {reference.seconds:.1f} s); "
          f"server faults by kind {json.dumps(server['faults'], sort_keys=True)}")
    if args.json:
        args.json.write_text(json.dumps({"reference": asdict(reference), "runs": [asdict(r) for r in results],
                                         "server": server}, indent=1, default=str))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"SUMMARY runs={args.runs} completed={completed} identical={identical} leftovers={leftovers}")
    return 0 if completed == identical == args.runs and leftovers == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
