"""Emulator settings: one frozen dataclass, validated once, shared by the app and the CLI."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion_stac.emulator.faults import FaultConfig


@dataclass(frozen=True)
class EmulatorSettings:
    """Everything that shapes the emulator's behaviour.

    ``data_dir``: where SQLite and stored files live (``None``: a temporary directory removed on stop).
    ``host`` / ``port``: where the API listens (``port=0``: a free port).
    ``storage_port``: where storage (the pre-signed URLs) listens, a port of its own as cloud storage is
    another host than the API (0: a free port).
    ``storage_base_url``: the base URL every signed URL names (``http://host:port``; default: the host
    name the caller used for the API, with the storage port). For a proxy in front of storage.
    ``token_lifetime``: seconds an access token stays valid (the real platform: one day).
    ``url_lifetime``: seconds a pre-signed upload/download URL stays valid (real: up to one hour).
    ``slice_size_m`` / ``max_region_m``: a region whose extent exceeds ``max_region_m`` is cut into a grid
    of ``slice_size_m`` slices, one execution each (plus the group aggregator).
    ``resolution_m``: default raster resolution of generated outputs.
    ``execution_duration``: seconds an execution takes; 0 completes it synchronously inside ``execute``.
    ``seed``: seed of the fault RNG.
    ``api_faults`` / ``storage_faults``: fault probabilities (see :class:`FaultConfig`).
    ``api_latency`` / ``storage_latency``: constant seconds added to every request of that kind.
    ``max_upload_bytes``: largest accepted upload.
    ``workers``: threads running background executions.
    ``log_level``: uvicorn's log level.
    """

    data_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    storage_port: int = 0
    storage_base_url: str | None = None
    token_lifetime: float = 86400.0
    url_lifetime: float = 3600.0
    slice_size_m: float = 20000.0
    max_region_m: float = 30000.0
    resolution_m: float = 200.0
    execution_duration: float = 0.0
    seed: int = 0
    api_faults: FaultConfig = field(default_factory=FaultConfig)
    storage_faults: FaultConfig = field(default_factory=FaultConfig)
    api_latency: float = 0.0
    storage_latency: float = 0.0
    max_upload_bytes: int = 4 * 1024**3
    workers: int = 2
    log_level: str = "warning"

    def __post_init__(self) -> None:
        if self.data_dir is not None and not isinstance(self.data_dir, Path):
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        positive = ("token_lifetime", "url_lifetime", "slice_size_m", "max_region_m", "resolution_m")
        for name in positive:
            value = getattr(self, name)
            if not _is_number(value) or value <= 0:
                raise ValueError(f"EmulatorSettings.{name} must be a positive number, got {value!r}")
        for name in ("execution_duration", "api_latency", "storage_latency"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"EmulatorSettings.{name} must be a non-negative number, got {value!r}")
        for name in ("port", "storage_port"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
                raise ValueError(f"EmulatorSettings.{name} must be an integer in 0..65535, got {value!r}")
        if self.port and self.port == self.storage_port:
            raise ValueError("EmulatorSettings.storage_port must differ from port (storage has a port of its own)")
        if self.storage_base_url is not None:
            object.__setattr__(self, "storage_base_url", _base_url(self.storage_base_url))
        if not isinstance(self.seed, int):
            raise ValueError(f"EmulatorSettings.seed must be an integer, got {self.seed!r}")
        if self.slice_size_m > self.max_region_m:
            raise ValueError("EmulatorSettings.slice_size_m must not exceed max_region_m")
        for name in ("api_faults", "storage_faults"):
            if not isinstance(getattr(self, name), FaultConfig):
                raise ValueError(f"EmulatorSettings.{name} must be a FaultConfig")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError("EmulatorSettings.workers must be a positive integer")

    def replace(self, **changes: Any) -> EmulatorSettings:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _base_url(value: Any) -> str:
    """``scheme://host[:port]`` (no path, query or fragment), without a trailing slash."""
    from urllib.parse import urlsplit

    text = str(value).strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query or parts.fragment:
        raise ValueError(f"EmulatorSettings.storage_base_url must be http(s)://host[:port], got {value!r}")
    return text
