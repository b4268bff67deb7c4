"""The commands of ``fusion-stac`` (see :mod:`fusion_stac.cli`), one module per theme.

Each module registers its commands with :func:`fusion_stac._cli._registry.command` when imported
(never importing :mod:`fusion_stac.cli`, which imports them), and imports
heavy libraries (xarray, rasterio, matplotlib, the emulator) inside the handlers, so that
``fusion-stac --help`` starts fast.
"""

from fusion_stac._cli._registry import COMMANDS, Arguments, CommandFailed, Handler, UsageError, command

__all__ = ["COMMANDS", "Arguments", "CommandFailed", "Handler", "UsageError", "command"]
