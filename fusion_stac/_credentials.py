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

**One lookup everywhere.** :func:`resolve_credentials` is the single place that decides whom to log
in as; the command line, :func:`fusion_stac.login`, ``FusionClient.from_env``, ``fusion://`` file
systems, the xarray backend and dask workers all call it. The order:

1. **arguments** (``email``/``user_id``/``password``/``token`` given in code or ``--email``);
2. the **environment**: ``FUSION_PLATFORM_EMAIL`` (or ``..._USER_ID``) and ``FUSION_PLATFORM_PASSWORD``
   (the environment's password is only ever paired with the environment's identity);
3. a **netrc** entry (``~/.netrc`` or ``$NETRC``) for the API host;
4. the **kept session** that ``fusion-stac login`` left in this cache: the one for the identity found
   above, or, when no identity is configured anywhere, the one account logged in at that API URL.

A kept session of the chosen identity is used even when a password is known (it spares a login
request; the password renews it when refused). A kept session is a token, never a password: once
it has expired the answer is "session expired, log in again (``fusion-stac login``)". The choice is
logged at INFO on the ``fusion_stac`` logger (``fusion-stac -v`` shows it), never with a secret.
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
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from fusion_stac.errors import AuthenticationError, ValidationError

__all__ = [
    "DEFAULT_API_URL",
    "ENV_API_URL",
    "ENV_EMAIL",
    "ENV_PASSWORD",
    "ENV_TOKEN_FILE",
    "ENV_USER_ID",
    "CachedToken",
    "Credentials",
    "cached_tokens",
    "clear_tokens",
    "load_token",
    "resolve_credentials",
    "save_token",
    "token_file",
]

log = logging.getLogger("fusion_stac")

ENV_TOKEN_FILE = "FUSION_STAC_TOKEN_FILE"
DEFAULT_API_URL = "https://api.thefusionplatform.com"
ENV_API_URL = "FUSION_PLATFORM_API_URL"
ENV_EMAIL = "FUSION_PLATFORM_EMAIL"
ENV_USER_ID = "FUSION_PLATFORM_USER_ID"
ENV_PASSWORD = "FUSION_PLATFORM_PASSWORD"
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
               path: Path | None = None, include_expired: bool = False) -> CachedToken | None:
    """The cached, unexpired session for this API URL and identity, or ``None``.

    ``include_expired=True`` also returns an expired one (to tell "expired" from "never logged in").
    """
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
        if include_expired or not token.expired():
            return token
    return None


def cached_tokens(api_url: str | None = None, *, path: Path | None = None,
                  include_expired: bool = False) -> list[CachedToken]:
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
        if include_expired or not token.expired():
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


# ==================================================================================================
# One credential lookup for every entry point

Source = Literal["arguments", "environment", "netrc", "kept session", "none"]
#: Why nothing usable was found: nothing at all, only an expired kept session, several kept sessions.
Problem = Literal["none", "expired", "several"]
LOGIN_HINT = "`fusion-stac login`"


@dataclass(frozen=True)
class Credentials:
    """Whom to log in as, and with what, as :func:`resolve_credentials` found it.

    ``source`` names where the credential used first came from (``"kept session"`` when a token of
    ``fusion-stac login`` is reused, else where the password came from; ``"none"`` when nothing
    usable was found, then ``problem``/``message`` say why). Secrets never show in the repr.
    """

    api_url: str
    email: str | None = None
    user_id: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    source: Source = "none"
    #: where the password came from (the fallback when a kept session is used first)
    password_source: Source | None = None
    #: the kept session reused (``token`` is its access token), if any
    session: CachedToken | None = field(default=None, repr=False)
    problem: Problem | None = None
    message: str | None = None

    @property
    def usable(self) -> bool:
        return bool(self.token) or (bool(self.password) and bool(self.email or self.user_id))

    @property
    def who(self) -> str:
        return self.email or self.user_id or "an unnamed account"

    def describe(self) -> str:
        """One line for the log: ``kept session of me@org.com (fusion-stac login)``; no secret."""
        if self.source == "none":
            return f"none ({self.message})"
        if self.source == "kept session":
            text = f"kept session of {self.who} (fusion-stac login)"
            if self.password_source:
                text += f", renewed with the password from {_SOURCE_WORDS[self.password_source]} if refused"
            return text
        if self.token and not self.password:
            return f"session token of {self.who} from {_SOURCE_WORDS[self.source]}"
        return f"password of {self.who} from {_SOURCE_WORDS[self.source]}"

    def require(self) -> Credentials:
        """These credentials, or :class:`~fusion_stac.errors.AuthenticationError` saying what is missing."""
        if not self.usable:
            raise AuthenticationError(self.message or f"no credentials for {self.api_url}", status=None,
                                      path="/users/login")
        return self


_SOURCE_WORDS: dict[str, str] = {
    "arguments": "the arguments", "environment": f"the environment ({ENV_EMAIL}/{ENV_PASSWORD})",
    "netrc": "netrc", "kept session": "the kept session", "none": "nowhere",
}


def netrc_credentials(api_url: str) -> tuple[str, str] | None:
    """``(login, password)`` for the API host from ``~/.netrc`` (or ``$NETRC``), if present."""
    from requests.utils import get_netrc_auth

    try:
        auth = get_netrc_auth(api_url, raise_errors=False)
    except Exception:  # pragma: no cover - a broken netrc must not break the client
        return None
    return (auth[0], auth[1]) if auth else None


def _kept(api_url: str, path: Path | None) -> list[tuple[str, CachedToken]]:
    """``(key, session)`` of every kept session at ``api_url``, expired ones included."""
    out = []
    prefix = _norm_url(api_url) + " "
    for key, entry in _read(path or token_file()).items():
        if not key.startswith(prefix) or not isinstance(entry, dict):
            continue
        try:
            out.append((key, CachedToken(_norm_url(api_url), str(entry["access_token"]), str(entry["user_id"]),
                                         entry.get("email"), float(entry["expires_at"]))))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _is_user_id(value: str) -> bool:
    import uuid

    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def resolve_credentials(
    api_url: str | None = None,
    *,
    email: str | None = None,
    user_id: str | None = None,
    password: str | None = None,
    token: str | None = None,
    kept_sessions: bool = True,
    path: Path | None = None,
    quiet: bool = False,
) -> Credentials:
    """Whom to log in as: arguments, environment, netrc, then the kept session (see the module docs).

    Never raises for missing credentials: the result's ``usable`` is false and ``message`` says why
    (``require()`` raises it). ``kept_sessions=False`` ignores the token cache. Logs the choice at INFO
    on the ``fusion_stac`` logger unless ``quiet``.
    """
    url = _norm_url(api_url or os.environ.get(ENV_API_URL) or DEFAULT_API_URL)
    if urlsplit(url).scheme not in {"http", "https"}:
        raise ValidationError(f"api_url must be an http(s) URL, got {url!r}", field="api_url")
    env_email = os.environ.get(ENV_EMAIL) or None
    env_user_id = os.environ.get(ENV_USER_ID) or None
    env_password = os.environ.get(ENV_PASSWORD) or None
    email, user_id, password, token = email or None, user_id or None, password or None, token or None
    source: Source = "none"
    password_source: Source | None = None
    if email or user_id or password or token:
        source = "arguments"
        password_source = "arguments" if password else None
    if not email and not user_id:
        email, user_id = env_email, env_user_id
        if (email or user_id) and source == "none":
            source = "environment"
    # The environment's password belongs to the environment's identity: never pair it with another.
    if password is None and env_password and (
        (env_email is None and env_user_id is None)
        or (email is not None and email == env_email)
        or (user_id is not None and user_id == env_user_id)
    ):
        password, password_source = env_password, "environment"
    if password is None:
        found = netrc_credentials(url)
        if found is not None:
            netrc_login, netrc_password = found
            if email is None and user_id is None:
                if _is_user_id(netrc_login):
                    user_id = netrc_login
                else:
                    email = netrc_login
            if netrc_login in {email, user_id}:
                password, password_source = netrc_password, "netrc"
    if source == "none" and password_source is not None:
        source = password_source
    session: CachedToken | None = None
    problem: Problem | None = None
    message: str | None = None
    if token is None and kept_sessions:
        kept = _kept(url, path)  # one read of the cache (a warning about it shows once)
        if email or user_id:
            mine = [t for key, t in kept if key in _keys(url, email, user_id)]
            session = next((t for t in mine if not t.expired()), None)
            stale = None if session else next(iter(mine), None)
        else:
            sessions = list({t.access_token: t for _, t in kept if not t.expired()}.values())
            if len(sessions) > 1:
                names = ", ".join(s.email or s.user_id for s in sessions)
                problem = "several"
                message = (f"several accounts are logged in at {url} ({names}): choose one with --email, "
                           f"email= or {ENV_EMAIL}")
            session = sessions[0] if len(sessions) == 1 else None
            expired = list({t.access_token: t for _, t in kept}.values()) if not sessions else []
            stale = expired[0] if len(expired) == 1 else None
        if session is not None:
            token, source = session.access_token, "kept session"
            email, user_id = email or session.email, user_id or session.user_id
        elif stale is not None and not password and problem is None:
            problem = "expired"
            message = (f"{stale.email or stale.user_id} at {url}: session expired, log in again ({LOGIN_HINT}); "
                       f"the session it kept ended at {_when(stale.expires_at)}")
            email, user_id = email or stale.email, user_id or stale.user_id
    creds = Credentials(url, email, user_id, password, token, source, password_source, session, problem, message)
    if not creds.usable and creds.message is None:
        host = urlsplit(url).hostname
        as_who = f" as {email or user_id}" if email or user_id else ""
        lacking = f"no password for {email or user_id}" if email or user_id else "no credentials"
        creds = Credentials(url, email, user_id, password, token, "none", None, None, "none",
                            f"not logged in to {url}{as_who}: {lacking} (no credentials in the arguments, "
                            f"{ENV_EMAIL}/{ENV_PASSWORD}, a netrc entry for {host} or a kept session): "
                            f"run {LOGIN_HINT}")
    elif not creds.usable:
        creds = Credentials(url, email, user_id, password, token, "none", None, None, problem, message)
    if not quiet:
        log.info("credentials: %s", creds.describe())
    return creds
