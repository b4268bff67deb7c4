"""The command registry of ``fusion-stac``: :func:`command` and the two exceptions commands raise.

The command modules of :mod:`fusion_stac._cli` import these from here (never from
:mod:`fusion_stac.cli`, which imports them), so imports flow one way: ``cli`` -> ``_cli``.
:mod:`fusion_stac.cli` re-exports them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]
Arguments = Callable[[argparse.ArgumentParser], None]
#: name -> (help, add_arguments, handler), in registration order (the order ``--help`` lists them).
COMMANDS: dict[str, tuple[str, Arguments, Handler]] = {}


def command(name: str, help: str, arguments: Arguments = lambda parser: None) -> Callable[[Handler], Handler]:
    """Register ``handler`` as sub-command ``name``; ``arguments`` adds its options to its parser."""

    def register(handler: Handler) -> Handler:
        COMMANDS[name] = (help, arguments, handler)
        return handler

    return register


class UsageError(Exception):
    """Bad input to a command: reported in one line, exit code 2."""


class CommandFailed(Exception):
    """The command ran and did not succeed (already explained to the user): exit code 1."""
