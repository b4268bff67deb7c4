"""Every download and upload road of fusion-stac through a fault-injecting proxy: identical bytes, or a typed error.

Claim: with a reverse proxy of our own (``benchmarks/_faultproxy.py``) in front of the emulator that
breaks ``--fault-rate`` of all API and storage requests — 500, 502, 503, 429 + ``Retry-After``,
resets before any byte, connections closed mid-body, clean truncations (a short body whose
``Content-Length`` matches it, ``Content-Range`` still claiming the full range), 2-5 s stalls, a
``Content-Length`` too small or too large, and a 200 with the whole object for a range request —
with pre-signed URLs living 3 s and sessions of a few seconds, every road either gives data
identical to a fault-free reference or fails with a typed error naming the file. Never silently
wrong data, never a partial file left behind.

Roads, all in every run (the reference is taken once at the start, directly from the emulator):

* ``dl:id`` — ``client.download_file(org, data, "<file id>", path)``
* ``dl:model`` — ``client.download_file(org, data, DataFile, directory)``
* ``cli`` — ``python -m fusion_stac download fusion://... out.tif`` (``FUSION_PLATFORM_*`` at the proxy)
* ``export`` — ``export_catalog(open_catalog(...), dest, assets="download")``: every asset, previews included
* ``fs.get`` / ``fs.cat`` / ``fs.open`` — :class:`FusionFileSystem` ``get``, ``cat``, ``open().read()``
* ``mosaic`` — ``open_mosaic(client, process=...).values``, pixel for pixel
* ``up:create`` / ``up:put`` — ``client.create_data`` and ``fs.put``, the stored bytes then read back
  directly from the emulator

Outcome of a road: ``identical``; ``typed`` (a :class:`~fusion_stac.errors.FusionError`, or an
``OSError`` — not a leaked ``requests``/``urllib3`` one — naming the file or path; the CLI: exit
code != 0 with a message naming the file); ``SILENT`` (different or truncated data without an error,
or a CLI exit 0 with a wrong file: the worst); ``untyped`` (any other exception, a CLI traceback,
or a road still running after ``--road-timeout``). Leftovers: anything in a road's own directory
besides its final file(s) (``*.part``, ``.…-partial``, temporary files), or a final file that is not
identical. A run is *completed* when every road is identical.

Storage traffic goes through the proxy because the emulator is told to sign the URLs it hands the
proxy's callers for the proxy's host (``emu.route_storage``), and the proxy forwards storage paths
to the emulator's storage port with the ``Host`` header unchanged: no URL rewriting.

Run: ``python benchmarks/chaos.py [--runs 30] [--fault-rate 0.3] [--seed 1] [--json out.json]``.
The last line is ``SUMMARY runs=<n> completed=<n> identical=<n> silent_corruptions=<n> leftovers=<n>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

from _faultproxy import CLASSES, KINDS, FaultProxy

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
SERVICE = "Elevation"
REGIONS = Path(__file__).resolve().parents[1] / "fusion_stac" / "emulator" / "regions"

IDENTICAL = "identical"
TYPED = "typed"
SILENT = "SILENT"
UNTYPED = "untyped"
OUTCOMES = (IDENTICAL, TYPED, SILENT, UNTYPED)
ROADS = ("dl:id", "dl:model", "cli", "export", "fs.get", "fs.cat", "fs.open", "mosaic", "up:create", "up:put")


# ==================================================================================================
# results


@dataclass
class RoadResult:
    road: str
    outcome: str = UNTYPED
    seconds: float = 0.0
    detail: str = ""
    leftovers: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    name: str
    seed: int
    seconds: float = 0.0
    roads: list[RoadResult] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    ranged: dict[str, int] = field(default_factory=dict)
    faults: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return bool(self.roads) and all(r.outcome == IDENTICAL for r in self.roads)

    @property
    def silent(self) -> int:
        return sum(r.outcome == SILENT for r in self.roads)

    @property
    def leftovers(self) -> int:
        return sum(len(r.leftovers) for r in self.roads)


class Silent(Exception):
    """A road returned without an error, but its data differ from the reference."""


class Named(Exception):
    """A CLI failure whose message names the file (a typed failure)."""


class Unnamed(Exception):
    """A CLI failure that does not name the file, or crashed with a traceback."""


# ==================================================================================================
# the reference, taken once, directly from the emulator


@dataclass
class Target:
    """One output file of the reference process."""

    data_id: str
    file_id: str
    model: Any  # DataFile
    data: bytes

    def url(self, org: str) -> str:
        return f"fusion://{org}/data/{self.data_id}/{self.file_id}"

    def names(self, org: str) -> list[str]:
        return [self.file_id, self.url(org), str(getattr(self.model, "file_name", "") or self.file_id)]


@dataclass
class Reference:
    org: str
    process_id: str
    targets: list[Target]
    export: dict[str, str]  # relative path of each downloaded asset -> sha256
    mosaic: tuple[str, tuple[int, ...], str]  # dtype, shape, sha256 of the pixels
    upload_source: Path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def asset_files(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every non-JSON file under ``root`` (the downloaded assets)."""
    return {str(p.relative_to(root)): sha256(p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix != ".json"}


def mosaic_key(values: Any) -> tuple[str, tuple[int, ...], str]:
    return str(values.dtype), tuple(int(n) for n in values.shape), sha256(values.tobytes())


def clear_reader_caches() -> None:
    """Forget cached raster headers and open datasets, so a mosaic reads from storage again."""
    try:
        from fusion_stac.xarray._http import clear_headers
        from fusion_stac.xarray._reader import close_handles
    except ImportError:  # the library moved them: nothing to clear
        return
    clear_headers()
    close_handles()


def make_client(url: str, attempts: int) -> Any:
    from fusion_stac.client import FusionClient, RetryPolicy

    return FusionClient(url, email=EMAIL, password=PASSWORD, poll_interval=0.05,
                        retry=RetryPolicy(attempts=attempts, backoff=0.05, max_backoff=1.0))


def make_fs(client: Any, attempts: int) -> Any:
    from fusion_stac.client import RetryPolicy
    from fusion_stac.fs import FusionFileSystem

    return FusionFileSystem(client=client, token_cache=False, skip_instance_cache=True,
                            retries=RetryPolicy(attempts=attempts, backoff=0.02, max_backoff=1.0))


def build_reference(emu_url: str, region: Path, workdir: Path, attempts: int) -> Reference:
    """Upload, run, export and mosaic once, fault-free and directly against the emulator."""
    import fusion_stac
    from fusion_stac.xarray import open_mosaic

    client = make_client(emu_url, attempts)
    try:
        org = client.organisation().id
        data = client.create_data(org, "chaos region", [region])
        process = client.new_process(org, SERVICE, "chaos reference").with_input(1, data).create()
        client.execute(org, process.id, wait=True, timeout=300)
        catalog = fusion_stac.open_catalog(client, f"fusion://{org}/processes/{process.id}/latest")
        export_root = workdir / "reference" / "export"
        fusion_stac.export_catalog(catalog, export_root, assets="download")
        items = sorted((i for i in catalog.get_items(recursive=True)
                        if i.properties.get("fusion:file_type") == "GeoTIFF"),
                       key=lambda i: i.properties.get("fusion:group_index") or 0)
        if len(items) < 2:
            raise RuntimeError(f"expected at least 2 GeoTIFF slices, got {len(items)}")
        targets = []
        for item in items:
            href = item.assets["data"].href
            data_id, file_id = href.rstrip("/").split("/")[-2:]
            model = next(f for f in client.list_files(org, data_id) if f.file_id == file_id)
            path = client.download_file(org, data_id, file_id, workdir / "reference" / f"{file_id}.tif")
            targets.append(Target(data_id, file_id, model, path.read_bytes()))
        clear_reader_caches()
        mosaic = mosaic_key(open_mosaic(client, process=process.id, organisation=org).values)
        source = workdir / "reference" / "upload.tif"
        source.write_bytes(targets[0].data)
        return Reference(org, process.id, targets, asset_files(export_root), mosaic, source)
    finally:
        client.close()


# ==================================================================================================
# the roads


class Road:
    """Context of one road of one run: its directory, the clients, and the reference."""

    def __init__(self, ref: Reference, directory: Path, client: Any, fs: Any, clean: Any, run: str,
                 proxy_url: str, cli_timeout: float) -> None:
        self.ref = ref
        self.dir = directory
        self.client = client
        self.fs = fs
        self.clean = clean
        self.run = run
        self.proxy_url = proxy_url
        self.cli_timeout = cli_timeout
        self.names: list[str] = []  # more names an error may give for what this road reads or writes

    def target(self, index: int) -> Target:
        return self.ref.targets[index % len(self.ref.targets)]


def check_file(path: Path, expected: bytes, what: str) -> None:
    if not path.is_file():
        raise Silent(f"{what}: returned without error but {path.name} does not exist")
    got = path.read_bytes()
    check_bytes(got, expected, what)


def check_bytes(got: bytes, expected: bytes, what: str) -> None:
    if got != expected:
        where = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b),
                     min(len(got), len(expected)))
        raise Silent(f"{what}: {len(got)} bytes instead of {len(expected)}, first difference at byte {where}")


def road_dl_id(r: Road) -> list[str]:
    t = r.target(0)
    dest = r.dir / "out.tif"
    path = r.client.download_file(r.ref.org, t.data_id, t.file_id, dest)
    check_file(Path(path), t.data, "download_file(id)")
    return ["out.tif"]


def road_dl_model(r: Road) -> list[str]:
    t = r.target(1)
    path = Path(r.client.download_file(r.ref.org, t.data_id, t.model, r.dir))
    check_file(path, t.data, "download_file(DataFile)")
    return [path.name]


def road_cli(r: Road) -> list[str]:
    t = r.target(2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FUSION_PLATFORM_", "FUSION_STAC_"))}
    env.update(FUSION_PLATFORM_API_URL=r.proxy_url, FUSION_PLATFORM_EMAIL=EMAIL, FUSION_PLATFORM_PASSWORD=PASSWORD,
               FUSION_STAC_TOKEN_FILE=str(r.dir.parent / f"tokens-{r.run}.json"),
               NETRC=str(r.dir.parent / "no-netrc"), PYTHONPATH=os.pathsep.join(sys.path))
    dest = r.dir / "out.tif"
    try:
        proc = subprocess.run([sys.executable, "-m", "fusion_stac", "download", t.url(r.ref.org), str(dest)],
                              capture_output=True, text=True, timeout=r.cli_timeout, env=env, cwd=r.dir.parent)
    except subprocess.TimeoutExpired as exc:
        raise Unnamed(f"the CLI was still running after {r.cli_timeout:g} s") from exc
    tail = (proc.stderr.strip().splitlines() or [""])[-1][:300]
    if proc.returncode != 0:
        if "Traceback" in proc.stderr:
            raise Unnamed(f"exit {proc.returncode} with a traceback: {tail}")
        if any(name in proc.stderr for name in t.names(r.ref.org)):
            raise Named(f"exit {proc.returncode}: {tail}")
        raise Unnamed(f"exit {proc.returncode}, the message names no file: {tail}")
    check_file(dest, t.data, "CLI download (exit 0)")
    return ["out.tif"]


def road_export(r: Road) -> list[str]:
    import fusion_stac

    catalog = fusion_stac.open_catalog(r.client, f"fusion://{r.ref.org}/processes/{r.ref.process_id}/latest")
    root = r.dir / "export"
    fusion_stac.export_catalog(catalog, root, assets="download")
    got = asset_files(root)
    differ = sorted(k for k in set(got) | set(r.ref.export) if got.get(k) != r.ref.export.get(k))
    if differ:
        shown = ", ".join(f"{k} ({'missing' if k not in got else 'extra' if k not in r.ref.export else 'differs'})"
                          for k in differ[:4])
        raise Silent(f"export: {len(differ)} of {len(r.ref.export)} assets wrong: {shown}")
    return ["export"]


def road_fs_get(r: Road) -> list[str]:
    t = r.target(3)
    dest = r.dir / "out.tif"
    r.fs.get(t.url(r.ref.org), str(dest))
    check_file(dest, t.data, "fs.get")
    return ["out.tif"]


def road_fs_cat(r: Road) -> list[str]:
    t = r.target(4)
    check_bytes(r.fs.cat(t.url(r.ref.org)), t.data, "fs.cat")
    return []


def road_fs_open(r: Road) -> list[str]:
    t = r.target(5)
    with r.fs.open(t.url(r.ref.org), "rb") as handle:
        got = handle.read()
    check_bytes(got, t.data, "fs.open().read()")
    return []


def road_mosaic(r: Road) -> list[str]:
    from fusion_stac.xarray import open_mosaic

    clear_reader_caches()
    got = mosaic_key(open_mosaic(r.client, process=r.ref.process_id, organisation=r.ref.org).values)
    if got != r.ref.mosaic:
        raise Silent(f"mosaic: dtype/shape/pixels {got[:2]} differ from the reference {r.ref.mosaic[:2]}"
                     + (" (same dtype and shape, other pixels)" if got[:2] == r.ref.mosaic[:2] else ""))
    return []


def stored_bytes(r: Road, data_id: str, what: str) -> bytes:
    """The one file of a data item, downloaded directly from the emulator (no proxy)."""
    files = r.clean.list_files(r.ref.org, data_id)
    if len(files) != 1:
        raise Silent(f"{what}: the stored data item holds {len(files)} files, not 1")
    path = r.clean.download_file(r.ref.org, data_id, files[0].file_id, r.dir.parent / f"check-{what}-{r.run}.tif")
    try:
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


def road_up_create(r: Road) -> list[str]:
    data = r.client.create_data(r.ref.org, f"chaos-create-{r.run}", [r.ref.upload_source])
    check_bytes(stored_bytes(r, data.id, "create_data"), r.ref.upload_source.read_bytes(), "create_data (stored)")
    return []


def road_up_put(r: Road) -> list[str]:
    name = f"chaos-put-{r.run}"
    r.names += [f"fusion://{r.ref.org}/uploads/{name}", f"{r.ref.org}/uploads/{name}"]
    r.fs.put(str(r.ref.upload_source), f"fusion://{r.ref.org}/uploads/{name}/upload.tif")
    try:
        data = r.clean.find_data(r.ref.org, name)
    except Exception as exc:
        raise Silent(f"fs.put returned, but no data item {name!r} is stored ({type(exc).__name__})") from exc
    check_bytes(stored_bytes(r, data.id, "fs.put"), r.ref.upload_source.read_bytes(), "fs.put (stored)")
    return []


ROAD_FUNCTIONS: dict[str, Callable[[Road], list[str]]] = {
    "dl:id": road_dl_id, "dl:model": road_dl_model, "cli": road_cli, "export": road_export,
    "fs.get": road_fs_get, "fs.cat": road_fs_cat, "fs.open": road_fs_open, "mosaic": road_mosaic,
    "up:create": road_up_create, "up:put": road_up_put,
}


# ==================================================================================================
# classification


def is_leaked_transport_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith(("requests", "urllib3", "http.client", "aiohttp"))


def classify(exc: BaseException, names: list[str]) -> str:
    from fusion_stac.errors import FusionError

    if isinstance(exc, Silent):
        return SILENT
    if isinstance(exc, (Named, FusionError)):
        return TYPED
    if isinstance(exc, Unnamed):
        return UNTYPED
    if isinstance(exc, OSError) and not is_leaked_transport_error(exc):
        text = f"{exc} {getattr(exc, 'filename', '') or ''} {getattr(exc, 'filename2', '') or ''}"
        if any(n and n in text for n in names):
            return TYPED
    return UNTYPED


def scan_leftovers(directory: Path, finals: list[str]) -> list[str]:
    """Everything in ``directory`` besides its final files, and partial files inside final directories."""
    found = []
    if not directory.exists():
        return found
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        top = rel.parts[0]
        if top not in finals:
            if len(rel.parts) == 1:
                found.append(str(rel))
            continue
        name = path.name
        if name.endswith((".part", ".tmp", ".partial", ".download")) or "-partial" in name or \
                (name.startswith(".") and path.is_file()):
            found.append(str(rel))
    return found


def run_road(name: str, road: Road, timeout: float) -> RoadResult:
    """One road in a daemon thread (so a hang is bounded), classified."""
    result = RoadResult(name)
    road.dir.mkdir(parents=True, exist_ok=True)
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["finals"] = ROAD_FUNCTIONS[name](road)
        except BaseException as exc:  # classified below
            box["error"] = exc

    started = time.perf_counter()
    thread = threading.Thread(target=body, name=f"road-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    result.seconds = time.perf_counter() - started
    target_names = [n for t in road.ref.targets for n in t.names(road.ref.org)] + [str(road.dir)] + road.names
    if thread.is_alive():
        result.outcome, result.detail = UNTYPED, f"still running after {timeout:g} s"
        return result
    error = box.get("error")
    if error is None:
        result.outcome = IDENTICAL
    else:
        result.outcome = classify(error, target_names)
        text = str(error).splitlines()[0][:240] if str(error) else ""
        result.detail = text if isinstance(error, (Silent, Named, Unnamed)) else f"{type(error).__name__}: {text}"
        if result.outcome == UNTYPED and not isinstance(error, Unnamed):
            frames = traceback.extract_tb(error.__traceback__)
            inner = next((f for f in reversed(frames) if "fusion_stac" in f.filename), None)
            if inner is not None:
                result.detail += f" [at {Path(inner.filename).name}:{inner.lineno}]"
    # a final file that is not identical is a leftover too (a failed or silent road must not leave one)
    finals = box.get("finals") or []
    result.leftovers = scan_leftovers(road.dir, finals if result.outcome == IDENTICAL else [])
    return result


# ==================================================================================================
# runs


def one_run(name: str, seed: int, ref: Reference, proxy: FaultProxy, clean: Any, workdir: Path, args: Any,
            roads: list[str]) -> RunResult:
    result = RunResult(name, seed)
    proxy.reset_counts()
    proxy.configure(rate=args.fault_rate, seed=seed)
    client = make_client(proxy.url, args.attempts)
    fs = make_fs(client, args.attempts)
    started = time.perf_counter()
    try:
        for road_name in roads:
            directory = workdir / name / road_name.replace(":", "-")
            road = Road(ref, directory, client, fs, clean, name, proxy.url, args.road_timeout)
            result.roads.append(run_road(road_name, road, args.road_timeout))
    finally:
        proxy.configure(rate=0.0)
        result.seconds = time.perf_counter() - started
        result.requests = proxy.requests()
        result.ranged = proxy.ranged()
        result.faults = proxy.counts()
        with contextlib.suppress(Exception):
            client.close()
    return result


SHORT = {IDENTICAL: "ok", TYPED: "typed", SILENT: "SILENT", UNTYPED: "untyped"}


def header(roads: list[str]) -> str:
    return f"{'run':>6} {'seed':>5} {'secs':>5} {'reqs':>5} {'faults':>6} " + " ".join(f"{r:>9}" for r in roads) + \
        f" {'left':>4}"


def row(result: RunResult) -> str:
    faults = sum(sum(c.values()) for c in result.faults.values())
    cells = " ".join(f"{SHORT[r.outcome]:>9}" for r in result.roads)
    return (f"{result.name:>6} {result.seed:>5} {result.seconds:5.1f} {sum(result.requests.values()):5d} "
            f"{faults:6d} {cells} {result.leftovers:4d}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="runs through the faulty proxy (default 30)")
    parser.add_argument("--fault-rate", type=float, default=0.3, help="share of requests given a fault (default 0.3)")
    parser.add_argument("--seed", type=int, default=1, help="fault RNG seed of the first run (then +1 per run)")
    parser.add_argument("--json", type=Path, default=None, help="write every run's details to this file")
    parser.add_argument("--url-lifetime", type=float, default=3.0, help="lifetime of pre-signed URLs (s)")
    parser.add_argument("--token-lifetime", type=float, default=5.0, help="lifetime of sessions (s)")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of injected 429s (s)")
    parser.add_argument("--attempts", type=int, default=8, help="client retry attempts per request")
    parser.add_argument("--road-timeout", type=float, default=120.0, help="a road still running then is a failure")
    parser.add_argument("--region", default="thames", help="shipped region (default thames)")
    parser.add_argument("--roads", default=",".join(ROADS), help="comma-separated subset of " + ",".join(ROADS))
    parser.add_argument("--workdir", type=Path, default=None, help="keep outputs here (default: temporary)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the library's retries")
    args = parser.parse_args(argv)
    roads = [r for r in args.roads.split(",") if r]
    unknown = [r for r in roads if r not in ROAD_FUNCTIONS]
    if unknown or not roads:
        parser.error(f"unknown roads {unknown}; choose from {','.join(ROADS)}")
    if not 1 <= args.runs <= 1000 or not 0.0 <= args.fault_rate <= 1.0:
        parser.error("--runs must be 1..1000 and --fault-rate 0..1")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("fusion_stac").setLevel(logging.CRITICAL)
    region = REGIONS / f"{args.region}.geojson"
    if not region.is_file():
        parser.error(f"no shipped region {args.region!r} in {REGIONS}")
    os.environ["FUSION_STAC_TOKEN_FILE"] = os.environ.get("FUSION_STAC_TOKEN_FILE") or str(
        Path(tempfile.mkdtemp(prefix="fusion-chaos-tokens-")) / "tokens.json")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fusion-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)

    from fusion_stac.emulator import Emulator

    results: list[RunResult] = []
    totals: dict[str, dict[str, int]] = {k: dict.fromkeys(CLASSES, 0) for k in KINDS}
    with Emulator(execution_duration=0, url_lifetime=args.url_lifetime, token_lifetime=args.token_lifetime) as emu:
        started = time.perf_counter()
        try:
            ref = build_reference(emu.url, region, workdir, args.attempts)
        except Exception as exc:
            print(f"the fault-free reference failed: {type(exc).__name__}: {exc}")
            print(f"SUMMARY runs={args.runs} completed=0 identical=0 silent_corruptions=0 leftovers=0")
            return 1
        print(f"emulator {emu.url}; URLs live {args.url_lifetime:g} s, sessions {args.token_lifetime:g} s; "
              f"outputs in {workdir}")
        print(f"reference ({time.perf_counter() - started:.1f} s, direct): {len(ref.targets)} slices of "
              f"{', '.join(str(len(t.data)) for t in ref.targets)} bytes, {len(ref.export)} exported assets, "
              f"mosaic {ref.mosaic[0]} {ref.mosaic[1]}")
        clean = make_client(emu.url, args.attempts)
        with FaultProxy(emu.url, rate=0.0, seed=args.seed, retry_after=args.retry_after,
                        max_lifetime=args.runs * 600.0 + 600.0, storage_upstream=emu.storage_url) as proxy:
            emu.route_storage(proxy.url, proxy.url)
            print(f"proxy {proxy.url}: fault rate {args.fault_rate:g} of API and storage requests; kinds "
                  f"(weights) {json.dumps(proxy.kinds)}")
            print(header(roads))
            for n in range(args.runs):
                result = one_run(f"run{n + 1:02d}", args.seed + n, ref, proxy, clean, workdir, args, roads)
                results.append(result)
                for kind, by_class in result.faults.items():
                    for c, count in by_class.items():
                        totals[kind][c] += count
                print(row(result), flush=True)
                for road in result.roads:
                    if road.outcome != IDENTICAL or road.leftovers:
                        extra = f" leftovers: {', '.join(road.leftovers[:4])}" if road.leftovers else ""
                        print(f"{'':>8}{road.road:<10} {road.outcome:<8} {road.detail}{extra}"[:400])
        clean.close()
    by_road: dict[str, Counter[str]] = {r: Counter() for r in roads}
    for result in results:
        for road in result.roads:
            by_road[road.road][road.outcome] += 1
    print("totals by road: " + "  ".join(
        f"{r}: " + "/".join(f"{by_road[r][o]}" for o in OUTCOMES) for r in roads) + "  (identical/typed/SILENT/untyped)")
    print("proxy faults (api/storage): " + "  ".join(
        f"{k}={totals[k]['api']}/{totals[k]['storage']}" for k in KINDS)
        + f"  total={sum(sum(c.values()) for c in totals.values())}")
    completed = sum(r.completed for r in results)
    identical = completed  # a run is identical when every road gave identical data: the same as completed
    silent = sum(r.silent for r in results)
    leftovers = sum(r.leftovers for r in results)
    if args.json:
        args.json.write_text(json.dumps({
            "runs": [dict(asdict(r), completed=r.completed, silent=r.silent) for r in results],
            "faults": totals, "by_road": {r: dict(c) for r, c in by_road.items()},
            "reference": {"targets": [t.file_id for t in ref.targets], "export": ref.export,
                          "mosaic": list(ref.mosaic)},
        }, indent=1, default=str))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"SUMMARY runs={args.runs} completed={completed} identical={identical} silent_corruptions={silent} "
          f"leftovers={leftovers}", flush=True)
    return 0 if completed == args.runs and leftovers == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
