"""``serve``: the platform as a STAC API on this machine, with asset hrefs that never expire."""

from __future__ import annotations

import argparse
import os

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
                   help="SQLite index file (default: under ~/.cache/fusion-stac/stac-index/, one per user)")
    p.add_argument("--refresh", type=float, default=60.0, metavar="SECONDS",
                   help="seconds between incremental index refreshes (default 60)")
    p.add_argument("--asset-mode", choices=("redirect", "stream"), default="redirect",
                   help="redirect: 307 to a freshly signed URL (default); stream: send the bytes through this "
                        "server (for clients that cannot follow redirects; ?mode= overrides per request)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web origin allowed to read answers from a browser, e.g. a STAC Browser's (repeatable)")
    p.add_argument("--no-headers", dest="read_headers", action="store_false",
                   help="do not read raster headers the platform does not describe (faster indexing)")


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
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", proxy_headers=False)
    return 0
