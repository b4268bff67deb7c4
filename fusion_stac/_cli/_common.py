"""What every command shares: the account (client and ``fusion://`` file system), progress bars, output.

Credentials, in order: ``--email`` / ``$FUSION_PLATFORM_EMAIL`` (or ``..._USER_ID``) with
``$FUSION_PLATFORM_PASSWORD`` or a netrc entry; and the session token that ``fusion-stac login`` left in
the token cache (:mod:`fusion_stac._credentials`). With neither e-mail nor user id configured, the
one account logged in at that API URL is used. The password is never stored.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, TextIO

from fusion_stac._cli._registry import CommandFailed, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from tqdm import tqdm

    from fusion_stac.client import FusionClient
    from fusion_stac.fs import FusionFileSystem
    from fusion_stac.models import Organisation

#: How long a session token from ``login`` is trusted in the cache (the platform issues day-long ones).
TOKEN_LIFETIME = 12 * 3600.0


def require(*modules: str) -> None:
    """Import optional dependencies up front, so that a missing extra fails before any request."""
    import importlib

    for name in modules:
        importlib.import_module(name)


def api_url_of(args: argparse.Namespace) -> str:
    from fusion_stac.client import DEFAULT_API_URL, ENV_API_URL

    return (getattr(args, "api_url", None) or os.environ.get(ENV_API_URL) or DEFAULT_API_URL).rstrip("/")


def save_session(client: FusionClient) -> None:
    """``on_login`` hook: keep the new session token (never the password) in the 0600 token cache."""
    from fusion_stac import _credentials

    token = client.session_token
    if token and client.user_id:
        _credentials.save_token(client.api_url, token, user_id=client.user_id, email=client.email,
                                expires_at=time.time() + TOKEN_LIFETIME)


def expired_session(api_url: str, *, email: str | None = None, user_id: str | None = None) -> bool:
    """Whether the token cache holds a session for this API URL (and account, if given) that has expired.

    Told apart from never having logged in, to say "log in again" rather than "not logged in".
    """
    from fusion_stac import _credentials

    try:
        entries = json.loads(_credentials.token_file().read_text(encoding="utf-8")).get("tokens") or {}
    except (OSError, ValueError, AttributeError):
        return False
    url = api_url.strip().rstrip("/")
    wanted = {(email or "").strip().lower(), (user_id or "").strip().lower()} - {""}
    now = time.time()
    for key, entry in entries.items() if isinstance(entries, dict) else ():
        where, _, who = str(key).rpartition(" ")
        if where != url or not isinstance(entry, dict):
            continue
        if wanted and who.partition(":")[2] not in wanted:
            continue
        try:
            if float(entry.get("expires_at", 0)) <= now + getattr(_credentials, "EXPIRY_MARGIN", 300.0):
                return True
        except (TypeError, ValueError):
            continue
    return False


class Context:
    """One command's view of the platform: a lazily built client and file system, and the output."""

    def __init__(self, args: argparse.Namespace, *, out: TextIO | None = None, client: FusionClient | None = None,
                 fs: FusionFileSystem | None = None) -> None:
        self.args = args
        self.out = out or sys.stdout
        self.api_url = client.api_url if client is not None else api_url_of(args)
        self.cached_token_used = False
        self._closers: list[Callable[[], None]] = []
        if client is not None:  # given (the demo's): used as is, closed by its owner
            self.__dict__["client"] = client
        if fs is not None:
            self.__dict__["fs"] = fs

    # -- account -----------------------------------------------------------------------------------
    @cached_property
    def client(self) -> FusionClient:
        from fusion_stac import _credentials
        from fusion_stac.client import FusionClient

        email = getattr(self.args, "email", None)
        probe = FusionClient.from_env(self.api_url, email=email)
        email, user_id = probe.email, probe.user_id
        token: str | None = None
        if email or user_id:
            cached = _credentials.load_token(self.api_url, email=email, user_id=user_id)
        else:
            sessions = _credentials.cached_tokens(self.api_url)
            if len(sessions) > 1:
                who = ", ".join(s.email or s.user_id for s in sessions)
                raise UsageError(f"several accounts are logged in at {self.api_url} ({who}): choose one with --email")
            cached = sessions[0] if sessions else None
            if cached is not None:
                email, user_id = cached.email, cached.user_id
        if cached is not None:
            token, user_id = cached.access_token, user_id or cached.user_id
            self.cached_token_used = True
        client = FusionClient.from_env(self.api_url, email=email, user_id=user_id, token=token, on_login=save_session)
        self._closers.append(client.close)
        if token is None and not client._can_login():
            who = f" as {email or user_id}" if email or user_id else ""
            if expired_session(self.api_url, email=email, user_id=user_id):
                raise CommandFailed(f"the session kept by `fusion-stac login` for {self.api_url}{who} has expired: "
                                    "log in again with `fusion-stac login`")
            raise CommandFailed(f"not logged in to {self.api_url}{who}: run `fusion-stac login`, or set "
                                "FUSION_PLATFORM_EMAIL and FUSION_PLATFORM_PASSWORD (or a netrc entry)")
        return client

    @cached_property
    def fs(self) -> FusionFileSystem:
        from fusion_stac.fs import FusionFileSystem

        return FusionFileSystem(client=self.client)

    def organisation(self, name: str | None = None) -> Organisation:
        """The organisation named by ``--organisation`` (id or name), else the one used last."""
        return self.client.organisation(name if name is not None else getattr(self.args, "organisation", None))

    def forget_stale_session(self) -> None:
        """A cached session token was refused and nothing could log in again: drop it."""
        from fusion_stac import _credentials

        client = self.__dict__.get("client")
        if self.cached_token_used and client is not None:
            _credentials.clear_tokens(self.api_url, email=client.email, user_id=client.user_id)

    def close(self) -> None:
        for closer in reversed(self._closers):
            closer()

    # -- progress ----------------------------------------------------------------------------------
    @property
    def progress_enabled(self) -> bool:
        return not getattr(self.args, "no_progress", False) and sys.stderr.isatty()

    def bar(self, desc: str, total: float | None = None, unit: str = "it", **kwargs: Any) -> tqdm:
        """A tqdm bar on stderr, shown only on a terminal."""
        from tqdm import tqdm

        scale = unit == "B"
        return tqdm(total=total, desc=desc, unit=unit, unit_scale=scale, unit_divisor=1024 if scale else 1000,
                    disable=not self.progress_enabled, file=sys.stderr, dynamic_ncols=True, leave=True, **kwargs)

    @contextmanager
    def fraction_bar(self, desc: str, total: float | None = None, unit: str = "%") -> Iterator[Callable[[float], None]]:
        """A bar fed by the client's progress callbacks (a fraction 0..1; from any thread)."""
        size = float(total) if total else 100.0
        bar = self.bar(desc, total=size if unit != "%" else 100, unit=unit,
                       bar_format=None if unit != "%" else "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}]")
        lock = threading.Lock()

        def update(fraction: float) -> None:
            with lock:
                target = max(0.0, min(1.0, float(fraction))) * (size if unit != "%" else 100)
                if target > bar.n:
                    bar.update(target - bar.n)

        try:
            yield update
        finally:
            bar.close()

    # -- output ------------------------------------------------------------------------------------
    def echo(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        """A message for the human (stderr), not the result."""
        print(text, file=sys.stderr, flush=True)

    def json(self, value: Any) -> None:
        self.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def run_with_context(args: argparse.Namespace, body: Callable[[Context], int | None]) -> int:
    """Run a command body with a :class:`Context`, closing it and dropping a refused cached session."""
    from fusion_stac.errors import AuthenticationError, TransportError

    ctx = Context(args)
    try:
        return int(body(ctx) or 0)
    except Exception as exc:
        chain: list[BaseException] = [exc]
        while chain[-1].__cause__ is not None and len(chain) < 10:
            chain.append(chain[-1].__cause__)
        transport = next((c for c in chain if isinstance(c, TransportError)), None)
        if transport is not None and "/users/login" in str(transport.path or ""):
            reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)", transport.message)
            raise CommandFailed(f"cannot reach {ctx.api_url}: "
                                f"{reason.group(1).strip() if reason else transport.message[:160]}") from exc
        if any(isinstance(c, AuthenticationError) for c in chain):
            ctx.forget_stale_session()
            client = ctx.__dict__.get("client")
            if ctx.cached_token_used and client is not None and not client._can_login():
                raise CommandFailed(f"the session kept by `fusion-stac login` for {ctx.api_url} was refused "
                                    "(expired or revoked): run `fusion-stac login` again") from exc
        raise
    finally:
        ctx.close()


def with_context(body: Callable[[Context], int | None]) -> Callable[[argparse.Namespace], int]:
    """Decorator: a command handler taking a :class:`Context` instead of the parsed arguments."""

    def handler(args: argparse.Namespace) -> int:
        return run_with_context(args, body)

    handler.__name__ = body.__name__
    handler.__doc__ = body.__doc__
    return handler


# -- formatting ------------------------------------------------------------------------------------


def human_size(size: float | None) -> str:
    """``1536`` -> ``1.5 KiB`` (binary units, as file managers and ``ls -h`` show them)."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def crs_name(crs: Any) -> str:
    """``EPSG:32631`` for a CRS with an EPSG code (pyproj, rasterio or odc-geo), else its short string."""
    if crs is None:
        return "no CRS"
    for attr in ("epsg", "to_epsg"):
        value = getattr(crs, attr, None)
        code = value() if callable(value) else value
        if code:
            return f"EPSG:{code}"
    return str(crs)[:60]


def seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def table(rows: Mapping[str, Any]) -> str:
    """``key  value`` lines, keys aligned, ``None`` values left out."""
    shown = {k: v for k, v in rows.items() if v is not None and v != "" and v != [] and v != {}}
    width = max((len(k) for k in shown), default=0)
    lines = []
    for key, value in shown.items():
        if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
            text = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, (dict, list, tuple)):
            text = json.dumps(value, default=str, ensure_ascii=False)
        else:
            text = str(value)
        lines.append(f"{key.ljust(width)}  {text}")
    return "\n".join(lines)


def parse_key_values(pairs: list[str] | None, what: str = "--option") -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a pair without ``=`` is a usage error."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"{what} {pair!r}: expected NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def parse_floats(text: str, count: int, what: str) -> tuple[float, ...]:
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise UsageError(f"{what} {text!r}: expected {count} numbers separated by commas") from None
    if len(values) != count:
        raise UsageError(f"{what} {text!r}: expected {count} numbers separated by commas, got {len(values)}")
    return values


def fusion_url(path: str) -> str:
    from fusion_stac._urls import PREFIX

    return path if path.startswith(PREFIX) else PREFIX + path.lstrip("/")
