"""A local, faithful Fusion Platform server (the API used by fusion-platform-python-sdk 2.2.5).

``with Emulator(execution_duration=0) as emu:`` runs it on a free loopback port; point a client at
``emu.url``. See :class:`EmulatorSettings` for every setting and :class:`FaultConfig` for fault injection.
This package imports nothing from the client side of fusion_stac.
"""

from __future__ import annotations

from fusion_stac.emulator.faults import FaultConfig
from fusion_stac.emulator.server import Emulator
from fusion_stac.emulator.settings import EmulatorSettings

__all__ = ["Emulator", "EmulatorSettings", "FaultConfig"]
