"""``python -m fusion_stac``: the ``fusion-stac`` command line."""

import sys

from fusion_stac.cli import main

sys.exit(main())
