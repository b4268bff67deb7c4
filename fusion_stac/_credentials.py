"""Session-token cache: how a ``fusion://`` file system rebuilds its login on a dask worker.

The problem (earthaccess #276 and friends): a filesystem object is pickled into the task graph and
rebuilt on workers. Whatever it pickles travels to every worker and into scheduler logs, so it must
hold **no secret**: no password, no access token, no signed URL.

The design:

1. ``FusionFileSystem`` pickles only plain storage options: ``api_url``, ``email``/``user_id`` and
   tuning knobs. Passwords, tokens and in-process clients are stripped (see ``fusion_stac.fs``).
2. On the worker, the file system rebuilds a :class:`~fusion_stac.client.FusionClient` from, in order:
   a session token in this cache (no login request, so a thousand tasks do not log in a thousand
   times), then a password from the worker's environment (``FUSION_PLATFORM_PASSWORD``) or
   ``~/.netrc``. If a cached token is refused (401) and a password is known, the client logs in again.
3. Whoever logs in with a password (the notebook, or a worker) writes the session token here, so
   processes on the same machine or with a shared home directory reuse it.

The cache is a JSON file at ``$FUSION_STAC_TOKEN_FILE`` or ``~/.cache/fusion-stac/tokens.json``,
written atomically (temporary file + rename, under an advisory lock) with mode ``0600`` in a ``0700``
directory. Entries are keyed by API URL and identity (email, lower-cased, or user id) and hold the
access token, the user id, the email and an expiry; **never the password**. Expired entries are
dropped on every write. A cache file readable by group or others is ignored (like ssh's keys).
Tokens are bearer credentials: treat this file like ``~/.netrc``; :func:`clear_tokens` logs out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_TOKEN_FILE",
    "CachedToken",
    "cached_tokens",
    "clear_tokens",
    "load_token",
    "save_token",
    "token_file",
]

log = logging.getLogger("fusion_stac")

ENV_TOKEN_FILE = "FUSION_STAC_TOKEN_FILE"
_VERSION = 1
#: Seconds before expiry at which a cached token is no longer handed out.
EXPIRY_MARGIN = 300.0


@dataclass(frozen=True)
class CachedToken:
    """One cached session: bearer ``access_token`` for ``user_id`` at ``api_url`` until ``expires_at``."""

    api_url: str
    access_token: str
    user_id: str
    email: str | None
    expires_at: float  # unix seconds

    def expired(self, margin: float = EXPIRY_MARGIN, now: float | None = None) -> bool:
        return (time.time() if now is None else now) + margin >= self.expires_at

    def __repr__(self) -> str:  # the token itself never shows
        return (f"CachedToken(api_url={self.api_url!r}, user_id={self.user_id!r}, email={self.email!r}, "
                f"expires_at={self.expires_at!r})")


def token_file() -> Path:
    """Where the cache lives: ``$FUSION_STAC_TOKEN_FILE`` or ``~/.cache/fusion-stac/tokens.json``."""
    configured = os.environ.get(ENV_TOKEN_FILE)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fusion-stac" / "tokens.json"


def _norm_url(api_url: str) -> str:
    return api_url.strip().rstrip("/")


def _keys(api_url: str, email: str | None, user_id: str | None) -> list[str]:
    url = _norm_url(api_url)
    keys = []
    if email:
        keys.append(f"{url} email:{email.strip().lower()}")
    if user_id:
        keys.append(f"{url} user:{user_id.strip().lower()}")
    return keys


def _read(path: Path) -> dict[str, Any]:
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("ignoring token cache %s: it is readable by other users (chmod 600 it)", path)
        return {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable token cache %s: %s", path, type(exc).__name__)
        return {}
    if not isinstance(payload, dict) or payload.get("version") != _VERSION or not isinstance(payload.get("tokens"), dict):
        return {}
    return payload["tokens"]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write cycles between processes (advisory; a no-op where unsupported)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except (ImportError, OSError):  # pragma: no cover - non-POSIX or unsupported file system
            pass
        yield
    finally:
        os.close(fd)


def _write(path: Path, tokens: dict[str, Any]) -> None:
    """Replace the cache atomically: readers see the old or the new file, never half of one."""
    payload = json.dumps({"version": _VERSION, "tokens": tokens}, indent=1, sort_keys=True)
    fd, tmp = tempfile.mkstemp(prefix=".tokens-", suffix=".tmp", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_token(api_url: str, *, email: str | None = None, user_id: str | None = None,
               path: Path | None = None) -> CachedToken | None:
    """The cached, unexpired session for this API URL and identity, or ``None``."""
    entries = _read(path or token_file())
    for key in _keys(api_url, email, user_id):
        entry = entries.get(key)
        if not isinstance(entry, dict):
            continue
        try:
            token = CachedToken(
                api_url=_norm_url(api_url),
                access_token=str(entry["access_token"]),
                user_id=str(entry["user_id"]),
                email=entry.get("email"),
                expires_at=float(entry["expires_at"]),
            )
        except (KeyError, TypeError, ValueError):
            continue
        if not token.expired():
            return token
    return None


def cached_tokens(api_url: str | None = None, *, path: Path | None = None) -> list[CachedToken]:
    """The unexpired cached sessions (of one API URL, or all), one per session, oldest expiry first.

    Lets a command line use "the account I logged in with" when no identity is configured.
    """
    found: dict[str, CachedToken] = {}
    for key, entry in _read(path or token_file()).items():
        url = key.rsplit(" ", 1)[0]
        if (api_url is not None and url != _norm_url(api_url)) or not isinstance(entry, dict):
            continue
        try:
            token = CachedToken(url, str(entry["access_token"]), str(entry["user_id"]), entry.get("email"),
                                float(entry["expires_at"]))
        except (KeyError, TypeError, ValueError):
            continue
        if not token.expired():
            found.setdefault(token.access_token, token)
    return sorted(found.values(), key=lambda t: t.expires_at)


def save_token(api_url: str, access_token: str, *, user_id: str, email: str | None = None,
               expires_at: float, path: Path | None = None) -> CachedToken:
    """Cache a session token under every identity given (email and user id); prunes expired ones."""
    if not access_token or not user_id:
        raise ValueError("save_token needs an access token and the user id it belongs to")
    path = path or token_file()
    token = CachedToken(_norm_url(api_url), access_token, user_id, email, float(expires_at))
    entry = {k: v for k, v in asdict(token).items() if k != "api_url"}
    with _locked(path):
        entries = _read(path)
        now = time.time()
        entries = {k: v for k, v in entries.items()
                   if isinstance(v, dict) and float(v.get("expires_at", 0)) > now}
        for key in _keys(api_url, email, user_id):
            entries[key] = entry
        _write(path, entries)
    return token


def clear_tokens(api_url: str | None = None, *, email: str | None = None, user_id: str | None = None,
                 path: Path | None = None) -> int:
    """Forget cached sessions: all of them, those of one API URL, or of one identity there.

    Returns how many entries were removed.
    """
    path = path or token_file()
    if not path.exists():
        return 0
    with _locked(path):
        entries = _read(path)
        if api_url is None:
            doomed = set(entries)
        elif email or user_id:
            doomed = set(_keys(api_url, email, user_id)) & set(entries)
            # the same session is also filed under the other identity
            tokens = {entries[k].get("access_token") for k in doomed if isinstance(entries[k], dict)}
            doomed |= {k for k, v in entries.items() if isinstance(v, dict) and v.get("access_token") in tokens}
        else:
            prefix = _norm_url(api_url) + " "
            doomed = {k for k in entries if k.startswith(prefix)}
        for key in doomed:
            del entries[key]
        _write(path, entries)
    return len(doomed)
