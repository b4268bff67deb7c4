"""Run stac-api-validator with the STAC schemas read from local files (this machine has no internet).

``python tests/server/_validator_offline.py --root-url ... [validator options]``: stac-validator fetches
every schema over the network unless given a ``schema_map``; this gives every ``StacValidate`` (the one
stac-api-validator makes and the ones stac-check makes) :func:`fusion_stac.stac.validation.schema_map`.
Nothing else of the validator changes.
"""

from __future__ import annotations

import sys
from typing import Any

from stac_validator.stac_validator import StacValidate

from fusion_stac.stac.validation import schema_map

_init = StacValidate.__init__
_LOCAL = schema_map()


def _offline_init(self: Any, *args: Any, **kwargs: Any) -> None:
    kwargs.setdefault("schema_map", _LOCAL)
    _init(self, *args, **kwargs)


StacValidate.__init__ = _offline_init  # type: ignore[method-assign]

if __name__ == "__main__":
    from stac_api_validator.__main__ import main

    sys.exit(main(prog_name="stac-api-validator"))
