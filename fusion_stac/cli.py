"""The ``fusion-stac`` command line.

Every command is a small function over the public Python API; ``main()`` returns an exit code and
turns every expected failure into one line on stderr (no traceback unless ``-vv``):

* 0: success;
* 1: the command ran and failed (authentication refused, platform or network error, failed execution);
* 2: the command cannot run as given (usage, unknown path or name, invalid file, bad option value).

Results go to stdout, progress bars (only on a terminal) and logs (``-v``) to stderr. The commands
live in :mod:`fusion_stac._cli`, one module per theme, and register themselves with :func:`command`
(defined with ``UsageError`` and ``CommandFailed`` in ``fusion_stac._cli._registry``; re-exported here).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from fusion_stac import __version__
from fusion_stac._cli import COMMANDS as _COMMANDS
from fusion_stac._cli import Arguments as Arguments  # re-exported
from fusion_stac._cli import CommandFailed, UsageError, command
from fusion_stac._cli import Handler as Handler  # re-exported

log = logging.getLogger("fusion_stac.cli")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``fusion-stac ls: error: ...``) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the chain of exceptions it was raised from (the fs layer wraps API errors in built-ins)."""
    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 10:
        chain.append(chain[-1].__cause__)
    return chain


def _exit_code_for(exc: BaseException) -> int:
    from fusion_stac._urls import FusionURLError
    from fusion_stac.errors import (
        AmbiguousNameError,
        AnalysisError,
        AuthenticationError,
        FusionError,
        NotFoundError,
        PermissionDeniedError,
        ValidationError,
    )

    for cause in _causes(exc):
        if isinstance(cause, (ValidationError, NotFoundError, AmbiguousNameError, AnalysisError, FusionURLError)):
            return 2
        if isinstance(cause, (AuthenticationError, PermissionDeniedError)):
            return 1
        if isinstance(cause, FusionError):
            return 1
    if isinstance(exc, (UsageError, FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError)):
        return 2
    return 1


#: Third-party modules only the emulator needs (a missing one means the ``emulator`` extra is missing).
_EMULATOR_MODULES = frozenset({"fastapi", "uvicorn", "starlette", "shapely", "PIL", "pyogrio", "jwt", "anyio", "h11"})


def _one_line(exc: BaseException) -> str:
    from fusion_stac.errors import FusionError, redact

    where = ""
    if isinstance(exc, OSError) and exc.strerror:  # "fusion://x: no such ..." rather than "[Errno 2] ..."
        text = str(exc.strerror).strip().splitlines()
        where = f"{exc.filename}: " if exc.filename else ""
    else:
        text = str(exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    known = (FusionError, UsageError, CommandFailed, OSError, ValueError, TimeoutError)
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        extra = "emulator" if exc.name in _EMULATOR_MODULES else "xarray"
        message = (f"this command needs {exc.name}, which is not installed: pip install \"fusion-stac[{extra}]\" "
                   "(or [all])")
    elif not isinstance(exc, known):  # a bug, not bad input: say what it was
        message = f"unexpected {type(exc).__name__}: {message} (run with -vv for the traceback)"
    return f"fusion-stac: error: {where}{redact(message)}"


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options every command accepts, before or after its name (``suppress``: not overriding the first)."""
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("platform options")
    group.add_argument("--api-url", default=default, metavar="URL",
                       help="Fusion Platform API URL (default: $FUSION_PLATFORM_API_URL, else the real platform)")
    group.add_argument("--email", default=default,
                       help="account e-mail (default: $FUSION_PLATFORM_EMAIL, netrc, or the account you logged in with)")
    group.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS if suppress else False,
                       help="never show progress bars (they are shown only on a terminal anyway)")
    group.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS if suppress else 0,
                       help="log progress to stderr (-vv: debug, with tracebacks)")


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    """The global options on ``parser`` and on every sub-command below it (``catalog export ... --api-url``)."""
    _global_options(parser, suppress=True)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                _add_global_options(child)


#: A value that starts like a negative number and goes on with more numbers: ``-4.4,55.8,-4.1,56``.
_NEGATIVE_LIST = re.compile(r"^-\d*\.?\d+(?:[eE][+-]?\d+)?(?:[,\s]+-?\d*\.?\d+(?:[eE][+-]?\d+)?)+[,\s]*$")


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--bbox -4.4,55.8,...`` as ``--bbox=-4.4,55.8,...``: argparse takes such a value for an option.

    argparse accepts a lone negative number as a value, but not a list of them separated by commas.
    """
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        token = items[i]
        following = items[i + 1] if i + 1 < len(items) else None
        if (token.startswith("--") and "=" not in token and len(token) > 2 and following is not None
                and _NEGATIVE_LIST.match(following)):
            out.append(f"{token}={following}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fusion-stac",
        description="The Fusion Platform from the open geospatial Python stack: browse, upload, run, download, "
                    "export STAC, mosaic. Try `fusion-stac demo` (no account needed).",
        epilog="Exit codes: 0 success, 1 failure (refused login, platform or network error, failed execution), "
               "2 bad input (usage, unknown path, invalid file or option). Paths: fusion://{organisation}/uploads/"
               "{data}/{file}, fusion://{organisation}/processes/{process}/{execution|latest}/{component}/{output}/"
               "{file}; names or ids at every level.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _global_options(parser, suppress=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name, (help_text, add_arguments, handler) in _COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        _add_global_options(sub)
        sub.set_defaults(_handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(sys.argv[1:] if argv is None else argv))
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    quiet = "fusion-stac: %(levelname)s: %(message)s"  # warnings only: short, like the error lines
    logging.basicConfig(level=level, format=quiet if args.verbose == 0 else "%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    try:
        return int(args._handler(args) or 0)
    except KeyboardInterrupt:
        print("fusion-stac: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fusion-stac ls ... | head`
        return 0
    except Exception as exc:
        if args.verbose >= 2:
            log.exception("command failed")
        try:
            line = _one_line(exc)
        except Exception:  # the error printer must never be the thing that fails
            line = f"fusion-stac: error: {type(exc).__name__}"
        print(line, file=sys.stderr)
        return _exit_code_for(exc)


if __name__ == "__main__":
    # `python -m fusion_stac.cli` runs this file as a second copy of the module: hand over to the real
    # `fusion_stac.cli` before the command modules are imported here, so one copy registers and runs them.
    from fusion_stac.cli import main as _real_main

    sys.exit(_real_main())

# --- commands -------------------------------------------------------------------------------------
# Imported for their registrations, in the order `fusion-stac --help` lists them.
from fusion_stac._cli import account, browse, transfer, processes, catalog, raster  # noqa: E402,F401,I001


def _emulator_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("emulator_args", nargs=argparse.REMAINDER, metavar="serve ...",
                   help="arguments for the emulator, e.g. serve --port 8000 --data-dir ./emulator-data")


@command("emulator", "run the local Fusion Platform emulator (`fusion-stac emulator serve --help`)", _emulator_arguments)
def _emulator(args: argparse.Namespace) -> int:
    from fusion_stac.emulator.__main__ import main as emulator_main

    return int(emulator_main(list(args.emulator_args), prog="fusion-stac emulator") or 0)


from fusion_stac._cli import demo, serve  # noqa: E402,F401
