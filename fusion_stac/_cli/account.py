"""``login`` and ``logout``: a session token in a file only you can read, never the password."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from fusion_stac._cli._common import Context, run_with_context, save_session
from fusion_stac._cli._registry import UsageError, command


def _login_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of standard input (for scripts)")
    p.epilog = ("The password comes from --password-stdin, $FUSION_PLATFORM_PASSWORD or a netrc entry for the API "
                "host, else a prompt. Only the session token is kept, in $FUSION_STAC_TOKEN_FILE or "
                "~/.cache/fusion-stac/tokens.json (mode 0600).")


def _prompt_password(ctx: Context, who: str) -> str:
    if not sys.stdin.isatty():
        raise UsageError("no password: pass --password-stdin, set FUSION_PLATFORM_PASSWORD, or run in a terminal")
    return getpass.getpass(f"Password for {who} at {ctx.api_url}: ")


@command("login", "check your credentials and keep a session token (never the password)", _login_arguments)
def login(args: argparse.Namespace) -> int:
    def body(ctx: Context) -> int:
        from fusion_stac import _credentials
        from fusion_stac.client import ENV_API_URL, ENV_EMAIL, ENV_USER_ID, FusionClient

        probe = FusionClient.from_env(ctx.api_url, email=args.email)
        email, user_id = probe.email, probe.user_id
        if not email and not user_id:
            if not sys.stdin.isatty() or args.password_stdin:
                raise UsageError(f"no account given: pass --email or set {ENV_EMAIL} (or {ENV_USER_ID})")
            email = input(f"E-mail for {ctx.api_url}: ").strip()
            if not email:
                raise UsageError("no e-mail given")
        who = email or user_id or ""
        password = None
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                raise UsageError("--password-stdin: standard input has no password")
        client = FusionClient.from_env(ctx.api_url, email=email, user_id=user_id, password=password,
                                       on_login=save_session)
        try:
            if not client._can_login():  # no password given, in the environment or in netrc: ask
                client.close()
                client = FusionClient(ctx.api_url, email=email, user_id=user_id,
                                      password=_prompt_password(ctx, who), on_login=save_session)
            client.login()
            orgs = list(client.organisations())
        finally:
            client.close()
        ctx.echo(f"Logged in to {client.api_url} as {client.email or client.user_id} (user id {client.user_id}).")
        for org in orgs:
            ctx.echo(f"  organisation: {org.name} ({org.id})")
        ctx.echo(f"Session token kept in {_credentials.token_file()} (readable only by you); "
                 "the password was not stored.")
        if (os.environ.get(ENV_API_URL) or "").rstrip("/") != client.api_url and args.api_url:
            ctx.echo(f"Other commands use this platform with --api-url {client.api_url}, "
                     f"or after: export {ENV_API_URL}={client.api_url}")
        return 0

    return run_with_context(args, body)


def _logout_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--all", action="store_true", help="forget the sessions of every account at every API URL")


@command("logout", "forget the session token(s) kept by login", _logout_arguments)
def logout(args: argparse.Namespace) -> int:
    def body(ctx: Context) -> int:
        from fusion_stac import _credentials

        if args.all:
            removed = _credentials.clear_tokens()
        else:
            removed = _credentials.clear_tokens(ctx.api_url, email=args.email)
        where = "everywhere" if args.all else f"at {ctx.api_url}" + (f" for {args.email}" if args.email else "")
        ctx.echo(f"Forgot {removed} cached session entr{'y' if removed == 1 else 'ies'} {where}.")
        return 0

    return run_with_context(args, body)
