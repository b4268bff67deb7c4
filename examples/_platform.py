"""Where the examples run: the platform named by ``FUSION_PLATFORM_API_URL``, else an embedded emulator.

With the variable set, the examples use your account (``FUSION_PLATFORM_EMAIL`` and
``FUSION_PLATFORM_PASSWORD``, a netrc entry, or the session of ``fusion-stac login``). Careful: some
examples create processes, which costs credits on the real platform.

Without it, an emulator starts in this process for the duration of the example, and the same
variables are set to its URL and demo account, so the example code is the same either way.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fusion_stac

#: The regions shipped with fusion-stac (read as files: importing the emulator is not needed).
REGIONS = Path(fusion_stac.__file__).parent / "emulator" / "regions"


@contextmanager
def platform(**emulator_settings: object) -> Iterator[str]:
    """Yield the API URL to use; start (and finally stop) an emulator if none is configured."""
    if os.environ.get("FUSION_PLATFORM_API_URL"):
        yield os.environ["FUSION_PLATFORM_API_URL"]
        return
    from fusion_stac.emulator import Emulator

    emulator_settings.setdefault("execution_duration", 0)
    with Emulator(**emulator_settings) as emu, tempfile.TemporaryDirectory() as tmp:
        os.environ.update({
            "FUSION_PLATFORM_API_URL": emu.url,
            "FUSION_PLATFORM_EMAIL": "me@org.com",
            "FUSION_PLATFORM_PASSWORD": "MyPassword123!",
            # the emulator's sessions stay out of your token cache
            "FUSION_STAC_TOKEN_FILE": str(Path(tmp) / "tokens.json"),
        })
        try:
            yield emu.url
        finally:
            for name in ("FUSION_PLATFORM_API_URL", "FUSION_PLATFORM_EMAIL", "FUSION_PLATFORM_PASSWORD",
                         "FUSION_STAC_TOKEN_FILE"):
                os.environ.pop(name, None)


def region_file(name: str) -> Path:
    """A region shipped with fusion-stac: ``glasgow``, ``central_belt`` or ``thames``."""
    return REGIONS / f"{name}.geojson"
