"""``serve``: the platform as a STAC API on this machine, with asset hrefs that never expire."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import threading
from typing import Any

from fusion_stac._cli._common import Context, with_context
from fusion_stac._cli._registry import UsageError, command

SECURITY = ("The server holds your platform session: anyone who can reach it reads your data. It binds "
            "127.0.0.1 by default; binding any other address needs an API key (--api-key or $FUSION_STAC_API_KEY), "
            "which every client must send as an X-API-Key header (or Authorization: Bearer).")


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --api-key)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--api-key", default=None,
                   help="key every request must carry (X-API-Key header); default $FUSION_STAC_API_KEY")
    p.add_argument("--index", default=None, metavar="PATH",
                   help="SQLite index file (default: under ~/.cache/fusion-stac/stac-index/, or "
                        "$FUSION_STAC_CACHE_DIR/stac-index/, one per API URL and user; servers may share one)")
    p.add_argument("--refresh", type=float, default=60.0, metavar="SECONDS",
                   help="seconds between incremental index refreshes (default 60)")
    p.add_argument("--asset-mode", choices=("redirect", "stream"), default="redirect",
                   help="redirect: 307 to a freshly signed URL (default); stream: send the bytes through this "
                        "server (for clients that cannot follow redirects; ?mode= overrides per request)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web origin allowed to read answers from a browser, e.g. a STAC Browser's (repeatable)")
    p.add_argument("--no-headers", dest="read_headers", action="store_false",
                   help="do not read raster headers the platform does not describe (faster indexing)")
    p.add_argument("--exit-with-stdin", action="store_true",
                   help="stop (cleanly) when standard input closes: for supervisors and background use, where "
                        "the parent holds a pipe to it open and the server must not outlive the parent, even "
                        "a killed one")
    # with --exit-with-stdin: a private directory to delete once stdin closed and the server stopped (the
    # background gateway's token file and log, which its parent can no longer delete when it died)
    p.add_argument("--remove-on-exit", default=None, metavar="DIR", help=argparse.SUPPRESS)


def _stop_when_stdin_closes(server: Any, closed: threading.Event) -> None:
    """A daemon thread blocking on stdin; at end of file (the parent closed its end, or died) it asks
    uvicorn to shut down as on SIGTERM: requests finish, the lifespan stops the indexer."""

    def watch() -> None:
        stream = getattr(sys.stdin, "buffer", None)
        try:
            while stream is not None and stream.read1(65536):
                pass  # whatever the parent writes is ignored: only the end matters
        except (OSError, ValueError):
            pass  # a closed or broken stdin is an end too
        closed.set()
        server.should_exit = True

    threading.Thread(target=watch, name="fusion-stac-stdin", daemon=True).start()


@command("serve", "serve the platform as a STAC API with never-expiring asset links (`fusion-stac serve --help`)",
         _serve_arguments)
@with_context
def serve(ctx: Context) -> int:
    args = ctx.args
    try:
        import uvicorn

        from fusion_stac.server import API_KEY_ENV, create_app, is_loopback
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    if args.remove_on_exit and not args.exit_with_stdin:
        raise UsageError("--remove-on-exit goes with --exit-with-stdin")
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if not is_loopback(args.host) and not api_key:
        raise UsageError(f"binding {args.host} needs an API key (--api-key or ${API_KEY_ENV}). {SECURITY}")
    app = create_app(ctx.client, index_path=args.index, refresh_interval=args.refresh, asset_mode=args.asset_mode,
                     api_key=api_key, cors_origins=args.cors_origin, read_headers=args.read_headers)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    ctx.echo(f"STAC API of {ctx.client.user.email or ctx.client.user.id} at http://{shown}:{args.port}/ "
             f"(assets: {args.asset_mode}{'; API key required' if api_key else ''}). Ctrl-C stops it.")
    if not is_loopback(args.host):
        ctx.note(SECURITY)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info",
                                           proxy_headers=False))
    closed = threading.Event()
    if args.exit_with_stdin:
        _stop_when_stdin_closes(server, closed)
    server.run()
    if closed.is_set():
        with contextlib.suppress(OSError):  # stderr may have gone with the parent
            ctx.note("standard input closed: stopped")
        if args.remove_on_exit:
            shutil.rmtree(args.remove_on_exit, ignore_errors=True)
    return 0
