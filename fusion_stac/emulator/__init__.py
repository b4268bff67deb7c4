"""A local, faithful Fusion Platform server (the REST API used by fusion-platform-python-sdk 2.2.5).

``with Emulator(execution_duration=0) as emu:`` runs it on a free loopback port in a background thread; point a
client (or the official SDK, via ``fusion_platform.session.Session.API_URL_DEFAULT``) at ``emu.url``. From a shell:
``python -m fusion_stac.emulator serve --port 8000 --data-dir DIR``.

Seeded accounts (ids are fixed, see :mod:`fusion_stac.emulator.services`): ``me@org.com`` / ``MyPassword123!`` in
"Example Organisation" and ``other@example.com`` / ``OtherPassword123!`` in "Other Organisation". Services:
"Elevation", "Demo: Sentinel-2 Cloud Classification", the group "Statistics Aggregator", and the dispatchers
"AWS S3" and "Email".

Conventions: errors are ``{"error_message": ...}`` with 400 (malformed), 401 (token), 403 (not your
organisation or user), 404 (unknown id, including other organisations' objects), 409 (conflict with the current
state), 422 (well-formed but unacceptable values), 402 (not enough credits). Storage URLs live under
``/_storage/`` and answer like a cloud object store (XML errors, HEAD refused, byte ranges). See
:class:`EmulatorSettings` for every setting and :class:`FaultConfig` for fault injection.

This package imports nothing from the client side of fusion_stac.
"""

from __future__ import annotations

from fusion_stac.emulator.faults import FaultConfig
from fusion_stac.emulator.server import Emulator
from fusion_stac.emulator.settings import EmulatorSettings

__all__ = ["Emulator", "EmulatorSettings", "FaultConfig"]
