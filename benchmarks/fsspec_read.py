"""``fusion://`` next to GDAL's /vsicurl/, fsspec's HTTP file system and curl, on one signed URL.

Claims (issue 5): reading a 1024 x 1024 window of a large COG through rasterio costs at most 2x the
time of GDAL's own /vsicurl/ and at most 1.5x its bytes; a sequential whole-file read runs at >= 80 %
of curl's throughput.

Setup: an in-process emulator; a 4096 x 4096 float32 COG (512-pixel deflate tiles, overviews) is
uploaded once; one signed download URL is taken for the peers. Every measurement runs in a **fresh
Python process** (cold caches for everyone: GDAL's /vsicurl/ cache, fsspec's, our URL broker); runs
are interleaved across peers, after one warm-up each. Requests are counted **on the emulator**;
bytes **on the wire** by a counting relay in a separate pass (see :class:`CountingRelay`), both the
same way for every reader. Times are medians of ``--runs``.

* window: ``rasterio.open(...).read(1, window=Window(1280, 1280, 1024, 1024))`` (9 tiles)
  - ``vsicurl``: ``/vsicurl/<signed URL>`` with ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` and
    ``CPL_VSIL_CURL_USE_HEAD=NO`` (presigned URLs refuse HEAD; GDAL then sizes the file by a GET);
  - ``fsspec-http``: ``rasterio.open(fsspec.open(<signed URL>))`` (fsspec's HTTPFileSystem);
  - ``fusion``: ``rasterio.open("fusion://{org}/data/{data}/{file}", opener=rasterio_opener(fs))``,
    from a fresh file system: includes resolving the path and signing the URL (2 API requests,
    reported apart), excludes the login (a dask worker reuses a cached session);
  - ``fusion-fs``: the same with ``opener=fs`` (plain fsspec opener: no multi-range reads).
* sequential: a whole 256 MiB file, front to back
  - ``curl``: ``curl -s -o /dev/null`` on the signed URL;
  - ``fusion-get``: ``fs.get_file`` to /dev/null (the download, as curl does: the SUMMARY figure) and
    ``fusion``: ``fs.open(url)`` read in 4 MiB chunks (the file-object path), both with the path
    resolved and the URL signed beforehand (curl is handed its URL too: this compares the data plane);
  - ``fsspec-http``: ``fsspec.open(url)`` read in 4 MiB chunks.

Run: ``python benchmarks/fsspec_read.py [--runs 5] [--size 4096]``. The last line is
``SUMMARY window_time_ratio_vsicurl=<x> window_bytes_ratio_vsicurl=<y> seq_throughput_ratio_curl=<z>``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
WINDOW = (1280, 1280, 1024, 1024)  # col_off, row_off, width, height: 3 x 3 tiles of 512
CHUNK = 4 << 20
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "CPL_VSIL_CURL_USE_HEAD": "NO"}


# ------------------------------------------------------------------------------------------------
# worker side: one measurement in a fresh process, printed as JSON


def _window(src: Any) -> Any:
    from rasterio.windows import Window

    return src.read(1, window=Window(*WINDOW))


def worker(peer: str, test: str, target: str) -> dict[str, Any]:
    import numpy as np

    result: dict[str, Any] = {}
    if test == "window":
        import rasterio

        if peer == "vsicurl":
            with rasterio.Env(**GDAL_ENV):
                t0 = time.perf_counter()
                with rasterio.open("/vsicurl/" + target) as src:
                    data = _window(src)
                result["time"] = time.perf_counter() - t0
        elif peer == "fsspec-http":
            import fsspec

            t0 = time.perf_counter()
            with rasterio.open(fsspec.open(target)) as src:
                data = _window(src)
            result["time"] = time.perf_counter() - t0
        else:
            from fusion_stac.fs import FusionFileSystem, rasterio_opener

            fs = FusionFileSystem(token_cache=False)
            fs.client.login()
            fs.reset_stats()
            opener = rasterio_opener(fs) if peer == "fusion" else fs
            t0 = time.perf_counter()
            with rasterio.open(target, opener=opener) as src:
                data = _window(src)
            result["time"] = time.perf_counter() - t0
            result["fs_stats"] = fs.stats
        result["checksum"] = float(np.asarray(data, dtype="float64").sum())
        return result
    # sequential
    if peer == "curl":
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", target],
                             capture_output=True, text=True, check=True)
        size, seconds = out.stdout.split()
        return {"time": float(seconds), "bytes_read": int(float(size))}
    t0 = time.perf_counter()
    total = 0
    if peer == "fsspec-http":
        import fsspec

        with fsspec.open(target, "rb") as f:
            while chunk := f.read(CHUNK):
                total += len(chunk)
    else:
        from fusion_stac.fs import FusionFileSystem

        fs = FusionFileSystem(token_cache=False)
        fs.client.login()
        fs.sign(target)  # resolved and signed beforehand: this compares the data plane only
        fs.reset_stats()
        t0 = time.perf_counter()
        if peer == "fusion-get":
            with open(os.devnull, "wb") as sink:
                fs.get_file(target, None, outfile=sink)
            total = fs.info(target)["size"]
        else:
            with fs.open(target, "rb") as f:
                while chunk := f.read(CHUNK):
                    total += len(chunk)
        result["fs_stats"] = fs.stats
    result["time"] = time.perf_counter() - t0
    result["bytes_read"] = total
    return result


# ------------------------------------------------------------------------------------------------
# driver side


class CountingRelay:
    """A loopback TCP relay in front of the emulator that counts the bytes it delivers to clients.

    Server-side counters cannot tell bytes a client received from bytes written into a connection
    the client had already dropped (GDAL sizes a file with a GET it aborts after the headers), so
    the bytes column is measured here, on the wire, the same way for every reader. Connections are
    classed as storage or API by their first request line. Used for a separate counting pass, so
    the relay's own cost never enters the timings.
    """

    def __init__(self, upstream_port: int) -> None:
        import socket
        import threading

        self.upstream_port = upstream_port
        self.counts = {"storage": 0, "api": 0}
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> dict[str, int]:
        with self._lock:
            before, self.counts = self.counts, {"storage": 0, "api": 0}
        return before

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            kind: dict[str, str] = {}
            first = threading.Event()
            threading.Thread(target=self._pump, args=(client, upstream, kind, first, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, kind, first, False), daemon=True).start()

    def _pump(self, src: Any, dst: Any, kind: dict[str, str], first: Any, upward: bool) -> None:
        buffer = memoryview(bytearray(1 << 18))
        try:
            while True:
                n = src.recv_into(buffer)
                if not n:
                    break
                if upward and not first.is_set():
                    line = bytes(buffer[:n]).split(b"\r\n", 1)[0]
                    kind["kind"] = "storage" if b" /_storage/" in line else "api"
                    first.set()
                dst.sendall(buffer[:n])
                if not upward:
                    first.wait(5)
                    with self._lock:
                        self.counts[kind.get("kind", "api")] += n
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(2)
                sock.close()

    def close(self) -> None:
        self._listener.close()


def make_cog(path: Path, size: int) -> Path:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(42)
    y, x = np.mgrid[0:size, 0:size].astype("float32")
    data = (np.sin(x / 97.0) * np.cos(y / 131.0) * 500 + 1000 + rng.normal(0, 2, (size, size))).astype("float32")
    profile = {"driver": "COG", "width": size, "height": size, "count": 1, "dtype": "float32",
               "crs": "EPSG:32630", "transform": from_origin(400000, 6200000, 10, 10),
               "compress": "deflate", "blocksize": 512, "overview_resampling": "average"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path


def run_worker(peer: str, test: str, target: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--worker", peer, test, target], capture_output=True,
                         text=True, env=env, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{peer}/{test} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def count_bytes(api_relay: CountingRelay, storage_relay: CountingRelay, cases: list[tuple[str, str, str]],
                env: dict[str, str], emu: Any, resign: dict[str, tuple[str, str, str]]) -> dict[str, int]:
    """Storage bytes delivered to each case's reader, through the relays (one run each).

    The emulator serves storage on a port of its own, so there is a relay for each port, and the
    emulator signs URLs for the storage relay (``route_storage``; a signature covers the host):
    pre-signed targets are signed again through the API relay (``resign``: URL -> organisation,
    data, file ids) and ``fusion://`` readers get the API relay as their API URL.
    """
    from fusion_stac.client import FusionClient

    api_url = f"http://127.0.0.1:{api_relay.port}"
    emu.route_storage(api_url, f"http://127.0.0.1:{storage_relay.port}")
    env = dict(env, FUSION_PLATFORM_API_URL=api_url)
    out = {}
    with FusionClient(api_url, email=EMAIL, password=PASSWORD) as client:
        for peer, test, target in cases:
            if target in resign:
                target = client.download_url(*resign[target]).url
            storage_relay.reset()
            run_worker(peer, test, target, env)
            counts = storage_relay.reset()
            out[f"{test}/{peer}"] = counts["storage"] + counts["api"]  # everything on the storage port
    emu.route_storage(api_url, None)
    return out


def measure_all(emu: Any, cases: list[tuple[str, str, str]], env: dict[str, str],
                runs: int) -> dict[str, dict[str, Any]]:
    """Run every case ``runs`` times, interleaved (so background load hits all peers alike)."""
    for peer, test, target in cases:
        run_worker(peer, test, target, env)  # warm-up (server side), not counted
    rows: dict[str, list[dict[str, Any]]] = {f"{test}/{peer}": [] for peer, test, _ in cases}
    for _ in range(runs):
        for peer, test, target in cases:
            emu.stats_counter.reset()
            row = run_worker(peer, test, target, env)
            stats = emu.stats()
            row["requests"] = stats["storage_requests"]
            row["bytes_served"] = stats["storage_bytes_served"]
            row["api_requests"] = stats["api_requests"]
            row["heads"] = sum(n for route, n in stats["routes"].items() if route.startswith("HEAD"))
            rows[f"{test}/{peer}"].append(row)
    return {name: summarise(r) for name, r in rows.items()}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {
        "time": statistics.median(r["time"] for r in rows),
        "requests": statistics.median(r["requests"] for r in rows),
        "bytes_served": statistics.median(r["bytes_served"] for r in rows),
        "api_requests": statistics.median(r["api_requests"] for r in rows),
        "heads": statistics.median(r["heads"] for r in rows),
        "times": [round(r["time"], 4) for r in rows],
    }
    if "checksum" in rows[0]:
        summary["checksum"] = rows[0]["checksum"]
    if "bytes_read" in rows[0]:
        summary["throughput_mb_s"] = statistics.median(r["bytes_read"] / r["time"] / 1e6 for r in rows)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=4096, help="COG width and height in pixels")
    parser.add_argument("--seq-mb", type=int, default=256, help="size of the file read sequentially (MiB)")
    parser.add_argument("--worker", nargs=3, metavar=("PEER", "TEST", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return

    from fusion_stac.client import FusionClient
    from fusion_stac.emulator import Emulator

    with tempfile.TemporaryDirectory(prefix="fsspec-bench-") as tmp, Emulator(execution_duration=0) as emu:
        t0 = time.perf_counter()
        cog = make_cog(Path(tmp) / "big.tif", args.size)
        client = FusionClient(emu.url, email=EMAIL, password=PASSWORD, poll_interval=0.05)
        org = client.organisation()
        data = client.create_data(org.id, "benchmark COG", [cog])
        dfile = client.list_files(org.id, data.id)[0]
        signed = client.download_url(org.id, data.id, dfile.file_id).url
        short = f"fusion://{org.id}/data/{data.id}/{dfile.file_id}"
        size = cog.stat().st_size
        blob = Path(tmp) / "blob.bin"
        with open(blob, "wb") as handle:
            for _ in range(args.seq_mb):
                handle.write(os.urandom(1 << 20))
        seq_data = client.create_data(org.id, "benchmark blob", [blob])
        seq_file = client.list_files(org.id, seq_data.id)[0]
        seq_signed = client.download_url(org.id, seq_data.id, seq_file.file_id).url
        seq_short = f"fusion://{org.id}/data/{seq_data.id}/{seq_file.file_id}"
        time.sleep(2.0)  # let the emulator finish its background work on the upload
        print(f"COG {args.size}x{args.size} float32, {size / 1e6:.1f} MB, and a {args.seq_mb} MiB blob, "
              f"ready in {time.perf_counter() - t0:.1f} s")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FUSION_", "GDAL_", "CPL_"))}
        env.update({"FUSION_PLATFORM_API_URL": emu.url, "FUSION_PLATFORM_EMAIL": EMAIL,
                    "FUSION_PLATFORM_PASSWORD": PASSWORD, "FUSION_STAC_TOKEN_FILE": str(Path(tmp) / "tokens.json")})

        cases = [(peer, "window", target) for peer, target in (
            ("vsicurl", signed), ("fusion", short), ("fusion-fs", short), ("fsspec-http", signed))]
        cases += [(peer, "sequential", target) for peer, target in (
            ("curl", seq_signed), ("fusion-get", seq_short), ("fusion", seq_short), ("fsspec-http", seq_signed))]
        results = measure_all(emu, cases, env, args.runs)
        api_relay = CountingRelay(int(emu.url.rsplit(":", 1)[1]))
        storage_relay = CountingRelay(int(emu.storage_url.rsplit(":", 1)[1]))
        resign = {signed: (org.id, data.id, dfile.file_id), seq_signed: (org.id, seq_data.id, seq_file.file_id)}
        for name, wire in count_bytes(api_relay, storage_relay, cases, env, emu, resign).items():
            results[name]["bytes"] = wire
        api_relay.close()
        storage_relay.close()
        client.close()

    reference = results["window/vsicurl"]["checksum"]
    print("bytes: storage bytes delivered to the reader (wire, via a relay); served: what the emulator wrote")
    print(f"{'measurement':24} {'median s':>9} {'requests':>9} {'MB':>8} {'served':>8} {'API req':>8} "
          f"{'HEAD':>5} {'MB/s':>8}")
    for name, r in results.items():
        if "checksum" in r and abs(r["checksum"] - reference) > 1e-6 * abs(reference):
            raise SystemExit(f"{name} read different pixels ({r['checksum']} != {reference})")
        rate = f"{r['throughput_mb_s']:8.0f}" if "throughput_mb_s" in r else " " * 8
        print(f"{name:24} {r['time']:9.4f} {r['requests']:9.0f} {r['bytes'] / 1e6:8.2f} {r['bytes_served'] / 1e6:8.2f} "
              f"{r['api_requests']:8.0f} {r['heads']:5.0f} {rate}   runs={r['times']}")
    ours, peer = results["window/fusion"], results["window/vsicurl"]
    time_ratio = ours["time"] / peer["time"]
    bytes_ratio = ours["bytes"] / peer["bytes"]
    seq_ratio = results["sequential/fusion-get"]["throughput_mb_s"] / results["sequential/curl"]["throughput_mb_s"]
    print(f"SUMMARY window_time_ratio_vsicurl={time_ratio:.2f} window_bytes_ratio_vsicurl={bytes_ratio:.2f} "
          f"seq_throughput_ratio_curl={seq_ratio:.2f}")


if __name__ == "__main__":
    main()
