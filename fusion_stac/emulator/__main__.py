"""Command line: ``python -m fusion_stac.emulator serve --host 127.0.0.1 --port 8000 --data-dir DIR``.

``main(argv)`` returns an exit code; the project CLI (``fusion-stac emulator serve``) delegates to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fusion_stac.emulator.faults import FaultConfig
from fusion_stac.emulator.settings import EmulatorSettings


def _fault_config(text: str | None, option: str = "--api-faults") -> FaultConfig:
    """A FaultConfig from JSON (``'{"error_503": 0.1}'``) or ``key=value,key=value``."""
    if not text:
        return FaultConfig()
    known = [f.name for f in dataclasses.fields(FaultConfig)]
    stripped = text.strip()
    if stripped.startswith("{"):
        values = json.loads(stripped)
        if not isinstance(values, dict):
            raise ValueError(f"{option} {text!r}: expected a JSON object of fault settings")
    else:
        values = {}
        for part in filter(None, (p.strip() for p in stripped.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(f"{option} {part!r}: expected NAME=VALUE, e.g. error_503=0.1")
            if key == "include_login":
                values[key] = value.strip().lower() in ("1", "true", "yes")
                continue
            try:
                values[key] = float(value)
            except ValueError:
                raise ValueError(f"{option} {part!r}: {value.strip()!r} is not a number") from None
    unknown = [k for k in values if k not in known]
    if unknown:
        raise ValueError(f"{option}: unknown fault {unknown[0]!r}; known: {', '.join(known)}")
    return FaultConfig(**values)


def build_parser(prog: str = "python -m fusion_stac.emulator") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="A local, faithful Fusion Platform server.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve", help="run the emulator in the foreground (Ctrl-C stops it)",
        description="Run the Fusion Platform emulator in the foreground until Ctrl-C. Log in as me@org.com / "
                    "MyPassword123! (\"Example Organisation\") or other@example.com / OtherPassword123!.",
    )
    defaults = EmulatorSettings()
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (0 picks a free one; default 8000)")
    serve.add_argument("--storage-port", type=int, default=0, metavar="PORT",
                       help="port of storage, where the pre-signed URLs point (0 picks a free one; default 0)")
    serve.add_argument("--storage-base-url", default=None, metavar="URL",
                       help="base URL the pre-signed URLs name, e.g. a proxy in front of storage "
                            "(default: the host name used for the API, with the storage port)")
    serve.add_argument("--data-dir", type=Path, required=True, metavar="DIR",
                       help="directory holding the persistent state (SQLite and stored files; created if missing)")
    serve.add_argument("--token-lifetime", type=float, default=defaults.token_lifetime, metavar="SECONDS",
                       help=f"how long a session token stays valid (default {defaults.token_lifetime:g})")
    serve.add_argument("--url-lifetime", type=float, default=defaults.url_lifetime, metavar="SECONDS",
                       help=f"how long a pre-signed storage URL stays valid (default {defaults.url_lifetime:g})")
    serve.add_argument("--slice-size-m", type=float, default=defaults.slice_size_m, metavar="METRES",
                       help=f"side of the slices a large region is cut into (default {defaults.slice_size_m:g})")
    serve.add_argument("--max-region-m", type=float, default=defaults.max_region_m, metavar="METRES",
                       help=f"a region wider than this is cut into slices (default {defaults.max_region_m:g})")
    serve.add_argument("--resolution-m", type=float, default=defaults.resolution_m, metavar="METRES",
                       help=f"default pixel size of generated rasters (default {defaults.resolution_m:g})")
    serve.add_argument("--execution-duration", type=float, default=3.0, metavar="SECONDS",
                       help="seconds an execution takes (default 3; 0 = synchronous)")
    serve.add_argument("--seed", type=int, default=0, help="seed of the fault RNG (default 0: reproducible runs)")
    serve.add_argument("--api-faults", default=None, metavar="FAULTS",
                       help='fault probabilities for API calls, e.g. "error_503=0.1,throttle=0.05" (or JSON); '
                            "faults: " + ", ".join(f.name for f in dataclasses.fields(FaultConfig)))
    serve.add_argument("--storage-faults", default=None, metavar="FAULTS",
                       help="fault probabilities for storage URLs, as --api-faults")
    serve.add_argument("--api-latency", type=float, default=0.0, metavar="SECONDS",
                       help="seconds added to every API call (default 0)")
    serve.add_argument("--storage-latency", type=float, default=0.02, metavar="SECONDS",
                       help="seconds added to every storage call (default 0.02, like a cloud store's first byte; "
                            "the official SDK's examples assume downloads are not instantaneous)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                       help="server log level (default info)")
    return parser


def _bind_error(exc: OSError, host: str, port: int) -> str:
    """``[Errno 98] ...`` as a sentence naming the address and what to do."""
    if exc.filename:  # the data directory, not the socket
        return f"{exc.filename}: {exc.strerror or exc}"
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use: stop what uses it, or pick another with --port (0: any free one)"
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on port {port} on {host}: pick a port above 1023 with --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: not an address of this machine (--host)"
    return f"cannot serve on {host}:{port}: {exc.strerror or exc}"


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m fusion_stac.emulator") -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        settings = EmulatorSettings(
            data_dir=args.data_dir, host=args.host, port=args.port, storage_port=args.storage_port,
            storage_base_url=args.storage_base_url, token_lifetime=args.token_lifetime,
            url_lifetime=args.url_lifetime, slice_size_m=args.slice_size_m, max_region_m=args.max_region_m,
            resolution_m=args.resolution_m, execution_duration=args.execution_duration, seed=args.seed,
            api_faults=_fault_config(args.api_faults, "--api-faults"),
            storage_faults=_fault_config(args.storage_faults, "--storage-faults"),
            api_latency=args.api_latency, storage_latency=args.storage_latency, log_level=args.log_level,
        )
    except json.JSONDecodeError as exc:
        print(f"{prog}: error: fault settings are not valid JSON: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
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
        print(f"{prog}: error: {_bind_error(exc, args.host, args.port)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
