"""Command line: ``python -m fusion_stac.emulator serve --host 127.0.0.1 --port 8000 --data-dir DIR``.

``main(argv)`` returns an exit code; the project CLI (``fusion-stac emulator serve``) delegates to it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fusion_stac.emulator.faults import FaultConfig
from fusion_stac.emulator.settings import EmulatorSettings


def _fault_config(text: str | None) -> FaultConfig:
    """A FaultConfig from JSON (``'{"error_503": 0.1}'``) or ``key=value,key=value``."""
    if not text:
        return FaultConfig()
    stripped = text.strip()
    if stripped.startswith("{"):
        values = json.loads(stripped)
    else:
        values = {}
        for part in stripped.split(","):
            key, _, value = part.partition("=")
            key = key.strip()
            values[key] = value.strip().lower() in ("1", "true", "yes") if key == "include_login" else float(value)
    try:
        return FaultConfig(**values)
    except TypeError as exc:
        raise ValueError(f"unknown fault setting in {text!r}: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fusion_stac.emulator",
                                     description="A local, faithful Fusion Platform server.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the emulator in the foreground")
    defaults = EmulatorSettings()
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (0 picks a free one; default 8000)")
    serve.add_argument("--storage-port", type=int, default=0,
                       help="port of storage, where the pre-signed URLs point (0 picks a free one; default 0)")
    serve.add_argument("--storage-base-url", default=None,
                       help="base URL the pre-signed URLs name, e.g. a proxy in front of storage "
                            "(default: the host name used for the API, with the storage port)")
    serve.add_argument("--data-dir", type=Path, required=True, help="directory holding the persistent state")
    serve.add_argument("--token-lifetime", type=float, default=defaults.token_lifetime, help="seconds")
    serve.add_argument("--url-lifetime", type=float, default=defaults.url_lifetime, help="seconds")
    serve.add_argument("--slice-size-m", type=float, default=defaults.slice_size_m)
    serve.add_argument("--max-region-m", type=float, default=defaults.max_region_m)
    serve.add_argument("--resolution-m", type=float, default=defaults.resolution_m)
    serve.add_argument("--execution-duration", type=float, default=3.0,
                       help="seconds an execution takes (default 3; 0 = synchronous)")
    serve.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    serve.add_argument("--api-faults", default=None,
                       help='fault probabilities for API calls, e.g. "error_503=0.1,throttle=0.05"')
    serve.add_argument("--storage-faults", default=None, help="fault probabilities for storage URLs")
    serve.add_argument("--api-latency", type=float, default=0.0, help="seconds added to every API call")
    serve.add_argument("--storage-latency", type=float, default=0.02,
                       help="seconds added to every storage call (default 0.02, like a cloud store's first byte; "
                            "the official SDK's examples assume downloads are not instantaneous)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = EmulatorSettings(
            data_dir=args.data_dir, host=args.host, port=args.port, storage_port=args.storage_port,
            storage_base_url=args.storage_base_url, token_lifetime=args.token_lifetime,
            url_lifetime=args.url_lifetime, slice_size_m=args.slice_size_m, max_region_m=args.max_region_m,
            resolution_m=args.resolution_m, execution_duration=args.execution_duration, seed=args.seed,
            api_faults=_fault_config(args.api_faults), storage_faults=_fault_config(args.storage_faults),
            api_latency=args.api_latency, storage_latency=args.storage_latency, log_level=args.log_level,
        )
    except (ValueError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from fusion_stac.emulator.server import serve_forever

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    def announce(url: str) -> None:
        print(f"Fusion Platform emulator on {url} (data in {args.data_dir}); log in as me@org.com", file=sys.stderr,
              flush=True)

    try:
        serve_forever(settings, announce)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        pass
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
