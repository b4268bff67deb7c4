"""The ``fusion-stac`` command line.

Every command is a small function over the public Python API; ``main()`` returns an exit code and
turns every expected failure into one line on stderr (no traceback unless ``--verbose``):

* 0: success;
* 1: the command ran and failed (authentication refused, platform or network error, failed execution);
* 2: the command cannot run as given (usage, unknown path or name, invalid file, bad option value).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from fusion_stac import __version__

log = logging.getLogger("fusion_stac.cli")

Handler = Callable[[argparse.Namespace], int]
Arguments = Callable[[argparse.ArgumentParser], None]
_COMMANDS: dict[str, tuple[str, Arguments, Handler]] = {}


def command(name: str, help: str, arguments: Arguments = lambda parser: None) -> Callable[[Handler], Handler]:
    """Register ``handler`` as sub-command ``name``; ``arguments`` adds its options to its parser."""

    def register(handler: Handler) -> Handler:
        _COMMANDS[name] = (help, arguments, handler)
        return handler

    return register


class UsageError(Exception):
    """Bad input to a command: reported in one line, exit code 2."""


def _exit_code_for(exc: BaseException) -> int:
    from fusion_stac._urls import FusionURLError

    if isinstance(exc, (UsageError, FusionURLError, FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return 2
    try:
        from fusion_stac.errors import AmbiguousNameError, NotFoundError, ValidationError
    except ImportError:  # pragma: no cover - errors module always present in a release
        return 1
    if isinstance(exc, (ValidationError, NotFoundError, AmbiguousNameError)):
        return 2
    return 1


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    return f"fusion-stac: error: {message}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusion-stac",
        description="The Fusion Platform from the open geospatial Python stack: browse, stream, mosaic, export STAC.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log progress (-vv: debug, with tracebacks)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name, (help_text, add_arguments, handler) in _COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(_handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args._handler(args) or 0)
    except KeyboardInterrupt:
        print("fusion-stac: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose >= 2:
            log.exception("command failed")
        print(_one_line(exc), file=sys.stderr)
        return _exit_code_for(exc)


# --- emulator -------------------------------------------------------------------------------------


def _emulator_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("emulator_args", nargs=argparse.REMAINDER, help="arguments for the emulator, e.g. serve --port 8000")


@command("emulator", "run the local Fusion Platform emulator (`fusion-stac emulator serve --help`)", _emulator_arguments)
def _emulator(args: argparse.Namespace) -> int:
    from fusion_stac.emulator.__main__ import main as emulator_main

    return int(emulator_main(list(args.emulator_args)) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
