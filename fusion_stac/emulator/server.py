"""Running the emulator: in-process (:class:`Emulator`, a context manager) or as a CLI server.

The server is uvicorn with its pure-Python h11 protocol, subclassed only to register each connection's
transport (needed to inject connection resets and truncated bodies). In-process, uvicorn runs in a
background thread on sockets bound before start, so ``emu.url`` is known immediately and ``port=0``
picks a free port. One uvicorn server listens on two sockets: the API (``emu.url``) and storage
(``emu.storage_url``, where the pre-signed URLs point), each port answering only its own paths, as the
platform's API and its cloud storage are two hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from fusion_stac.emulator.app import create_app, route_template
from fusion_stac.emulator.core import Platform
from fusion_stac.emulator.downloads import StorageFastPath
from fusion_stac.emulator.faults import FaultConfig, FaultMiddleware, FaultState, Stats
from fusion_stac.emulator.settings import EmulatorSettings
from fusion_stac.emulator.storage import StorageEndpoint, normalise_base
from fusion_stac.emulator.transport import TransportRegistry, make_tracking_protocol

logger = logging.getLogger("fusion_stac.emulator")

_UNSET: Any = object()


@dataclass
class Runtime:
    """Everything the routes need, shared by reference so ``configure`` takes effect immediately."""

    platform: Platform
    processes: Any
    faults: FaultState
    stats: Stats
    registry: TransportRegistry | None = None
    storage_endpoint: StorageEndpoint | None = None


class Emulator:
    """A local Fusion Platform server.

    ``with Emulator(data_dir=..., execution_duration=0) as emu:`` starts it on a free loopback port in a
    background thread; ``emu.url`` is its base URL. State (users, data, files, processes, executions) lives
    in ``data_dir`` and survives a restart; with ``data_dir=None`` a temporary directory is used and removed
    on stop. The keyword arguments are the fields of :class:`EmulatorSettings` (documented there).
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        storage_port: int = 0,
        storage_base_url: str | None = None,
        token_lifetime: float = 86400.0,
        url_lifetime: float = 3600.0,
        slice_size_m: float = 20000.0,
        max_region_m: float = 30000.0,
        resolution_m: float = 200.0,
        execution_duration: float = 0.0,
        seed: int = 0,
        api_faults: FaultConfig | None = None,
        storage_faults: FaultConfig | None = None,
        api_latency: float = 0.0,
        storage_latency: float = 0.0,
        max_upload_bytes: int = 4 * 1024**3,
        workers: int = 2,
        log_level: str = "warning",
        settings: EmulatorSettings | None = None,
    ) -> None:
        if settings is not None:  # a complete settings object (the CLI); data_dir overrides its directory
            self.settings = settings if data_dir is None else settings.replace(data_dir=Path(data_dir))
        else:
            self.settings = EmulatorSettings(
                data_dir=Path(data_dir) if data_dir is not None else None, host=host, port=port,
                storage_port=storage_port, storage_base_url=storage_base_url,
                token_lifetime=token_lifetime, url_lifetime=url_lifetime, slice_size_m=slice_size_m,
                max_region_m=max_region_m, resolution_m=resolution_m, execution_duration=execution_duration,
                seed=seed, api_faults=api_faults or FaultConfig(), storage_faults=storage_faults or FaultConfig(),
                api_latency=api_latency, storage_latency=storage_latency, max_upload_bytes=max_upload_bytes,
                workers=workers, log_level=log_level,
            )
        self._temp_dir: Path | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._socket: socket.socket | None = None
        self._storage_socket: socket.socket | None = None
        self._runtime: Runtime | None = None
        self._port: int | None = None
        self._storage_port: int | None = None
        self._storage_routes: dict[str, str] = {}
        self.stats_counter = Stats()
        self.registry = TransportRegistry()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The directory holding the state (a temporary one when none was given)."""
        if self.settings.data_dir is not None:
            return self.settings.data_dir
        if self._temp_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="fusion-emulator-"))
        return self._temp_dir

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:54321``."""
        if self._port is None:
            raise RuntimeError("the emulator is not running")
        return _url(self.settings.host, self._port)

    @property
    def storage_url(self) -> str:
        """Base URL of the storage listener (where signed URLs point unless routed elsewhere)."""
        if self._storage_port is None:
            raise RuntimeError("the emulator is not running")
        return _url(self.settings.host, self._storage_port)

    def route_storage(self, api_url: str, storage_url: str | None) -> None:
        """Callers that reach the API at ``api_url`` get signed URLs on ``storage_url`` (``None``: undo).

        For a proxy put in front of both listeners (``benchmarks/_faultproxy.py``): its callers then
        download and upload through it too, while callers of ``emu.url`` still go to ``emu.storage_url``.
        The signature covers the host, so ``storage_url`` must be where requests arrive with that
        ``Host`` (a proxy that forwards ``Host`` unchanged).
        """
        key = normalise_base(api_url)
        if storage_url is None:
            self._storage_routes.pop(key, None)
        else:
            self._storage_routes[key] = storage_url.rstrip("/")

    @property
    def platform(self) -> Platform:
        """The emulated platform (for tests that need to look behind the API)."""
        if self._runtime is None:
            raise RuntimeError("the emulator is not running")
        return self._runtime.platform

    def build_app(self) -> Any:
        """Create the platform state and the ASGI application (wrapped in the fault middleware)."""
        from fusion_stac.emulator.processes import Processes

        platform = Platform(self.settings, self.data_dir)
        faults = FaultState(api=self.settings.api_faults, storage=self.settings.storage_faults,
                            api_latency=self.settings.api_latency, storage_latency=self.settings.storage_latency,
                            seed=self.settings.seed)
        processes = Processes(platform)
        endpoint = StorageEndpoint(base_url=self.settings.storage_base_url, routes=self._storage_routes)
        self._runtime = Runtime(platform=platform, processes=processes, faults=faults, stats=self.stats_counter,
                                registry=self.registry, storage_endpoint=endpoint)
        app = create_app(self._runtime)
        fast = StorageFastPath(app, self._runtime)
        return FaultMiddleware(fast, state=faults, stats=self.stats_counter, registry=self.registry,
                               route_of=lambda scope: route_template(app, scope))

    def uvicorn_config(self, app: Any) -> uvicorn.Config:
        return uvicorn.Config(
            app,
            http=make_tracking_protocol(self.registry),
            loop="asyncio",  # the same event loop whether or not uvloop is installed (the server extra brings it)
            lifespan="off",
            log_level=self.settings.log_level,
            access_log=False,
            timeout_keep_alive=30,
            server_header=False,
        )

    def start(self) -> Emulator:
        """Start serving in a background thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        sock = _bind(self.settings.host, self.settings.port)
        try:
            storage_sock = _bind(self.settings.host, self.settings.storage_port)
        except BaseException:
            sock.close()
            raise
        try:
            app = self.build_app()
        except BaseException:
            sock.close()
            storage_sock.close()
            raise
        self._socket = sock
        self._storage_socket = storage_sock
        self._port = sock.getsockname()[1]
        self._storage_port = storage_sock.getsockname()[1]
        assert self._runtime is not None and self._runtime.storage_endpoint is not None
        self._runtime.storage_endpoint.port = self._storage_port
        self._server = uvicorn.Server(self.uvicorn_config(app))
        # signals belong to the host program (uvicorn before 0.29 installed handlers from any thread)
        self._server.install_signal_handlers = lambda: None  # type: ignore[attr-defined,method-assign,unused-ignore]
        self._thread = threading.Thread(target=self._serve, name=f"fusion-emulator-{self._port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the emulator failed to start (see the log)")
            if time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start within 30 s")
            time.sleep(0.01)
        assert self._runtime is not None
        self._runtime.processes.start_background()
        return self

    def _serve(self) -> None:
        assert self._server is not None and self._socket is not None and self._storage_socket is not None
        asyncio.run(self._server.serve(sockets=[self._socket, self._storage_socket]))

    def stop(self) -> None:
        """Stop the server and background work; remove the temporary data directory if one was used."""
        if self._runtime is not None:
            self._runtime.processes.shutdown()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        for sock in (self._socket, self._storage_socket):
            if sock is not None:
                sock.close()
        if self._runtime is not None:
            self._runtime.platform.close()
        self._thread = None
        self._server = None
        self._socket = None
        self._storage_socket = None
        self._runtime = None
        self._port = None
        self._storage_port = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- runtime control ------------------------------------------------------------------------

    def configure(self, *, api_faults: FaultConfig | None = _UNSET, storage_faults: FaultConfig | None = _UNSET,
                  url_lifetime: float = _UNSET, token_lifetime: float = _UNSET, api_latency: float = _UNSET,
                  storage_latency: float = _UNSET, execution_duration: float = _UNSET,
                  seed: int = _UNSET) -> None:
        """Change fault injection and lifetimes while running (``None`` faults mean "no faults")."""
        changes: dict[str, Any] = {}
        if api_faults is not _UNSET:
            changes["api_faults"] = api_faults or FaultConfig()
        if storage_faults is not _UNSET:
            changes["storage_faults"] = storage_faults or FaultConfig()
        for name, value in (("url_lifetime", url_lifetime), ("token_lifetime", token_lifetime),
                            ("api_latency", api_latency), ("storage_latency", storage_latency),
                            ("execution_duration", execution_duration), ("seed", seed)):
            if value is not _UNSET:
                changes[name] = value
        self.settings = self.settings.replace(**changes)
        runtime = self._runtime
        if runtime is None:
            return
        runtime.platform.settings = self.settings
        faults = runtime.faults
        faults.api = self.settings.api_faults
        faults.storage = self.settings.storage_faults
        faults.api_latency = self.settings.api_latency
        faults.storage_latency = self.settings.storage_latency
        if "seed" in changes:
            faults.reseed(self.settings.seed)

    def stats(self) -> dict[str, Any]:
        """Request counters: api/storage request counts, bytes served, counts per route template, faults."""
        return self.stats_counter.snapshot()

    def reset_stats(self) -> None:
        """Zero the request counters."""
        self.stats_counter.reset()

    def collect_garbage(self) -> int:
        """Remove stored blobs of deleted files whose download URLs have expired; returns how many."""
        return self.platform.blobs.collect_garbage()

    def __repr__(self) -> str:
        state = f"url={self.url}" if self._port is not None else "stopped"
        return f"Emulator({state}, data_dir={str(self.settings.data_dir)!r})"


def serve_forever(settings: EmulatorSettings, announce: Any = None) -> None:
    """Run the emulator in the foreground until interrupted (used by the CLI).

    Binds the sockets first (so a busy port fails fast with ``OSError``), then calls ``announce(url)``
    with the API's URL (the storage URL is logged).
    """
    emulator = Emulator(settings=settings)
    sock = _bind(settings.host, settings.port)
    try:
        storage_sock = _bind(settings.host, settings.storage_port)
    except BaseException:
        sock.close()
        raise
    app = emulator.build_app()
    runtime = emulator._runtime
    assert runtime is not None and runtime.storage_endpoint is not None
    runtime.storage_endpoint.port = storage_sock.getsockname()[1]
    runtime.processes.start_background()
    logger.info("storage (pre-signed URLs) on %s", _url(settings.host, storage_sock.getsockname()[1]))
    if announce is not None:
        announce(_url(settings.host, sock.getsockname()[1]))
    server = _ForegroundServer(emulator.uvicorn_config(app))
    try:
        asyncio.run(server.serve(sockets=[sock, storage_sock]))
    finally:
        runtime.processes.shutdown()
        runtime.platform.close()
        sock.close()
        storage_sock.close()


class _ForegroundServer(uvicorn.Server):
    """uvicorn's server, but SIGINT/SIGTERM end it gracefully with exit code 0.

    uvicorn re-raises a captured signal after shutting down, which would kill the process before the
    emulator's own cleanup (finishing background work, closing SQLite) runs.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _url(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP;
    # without it every keep-alive response waits ~40 ms (Nagle against the client's delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
