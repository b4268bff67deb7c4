"""Accounts: password hashing and policy, access tokens, id tokens.

Passwords are stored as scrypt hashes with a per-user salt (``scrypt$n$r$p$salt$hash``). Access tokens are
random opaque strings; only their SHA-256 is stored, together with the user and an expiry, so a leaked
database does not leak usable tokens. The id token is an HS256 JWT (signed with the data directory's
secret) whose ``sub`` is the user id, which is all the official SDK reads from it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

import jwt

from fusion_stac.emulator.store import Store

_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_MIN_PASSWORD_LENGTH = 8
_MAX_PASSWORD_LENGTH = 256


def hash_password(password: str) -> str:
    """Salted scrypt hash of ``password`` in a self-describing string."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    return "$".join(
        ["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)]
    )


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a hash from :func:`hash_password`."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def password_problems(password: str) -> list[str]:
    """What ``password`` lacks under the platform's policy (empty when acceptable)."""
    problems = []
    if len(password) < _MIN_PASSWORD_LENGTH:
        problems.append(f"at least {_MIN_PASSWORD_LENGTH} characters")
    if len(password) > _MAX_PASSWORD_LENGTH:
        problems.append(f"at most {_MAX_PASSWORD_LENGTH} characters")
    if not re.search(r"[A-Z]", password):
        problems.append("an upper-case letter")
    if not re.search(r"[a-z]", password):
        problems.append("a lower-case letter")
    if not re.search(r"[0-9]", password):
        problems.append("a digit")
    return problems


def token_hash(token: str) -> str:
    """What is stored for an access token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedTokens:
    """Tokens handed out by a successful login."""

    access_token: str
    id_token: str
    refresh_token: str
    expires_in: int


class TokenService:
    """Issues and checks tokens for one store."""

    def __init__(self, store: Store, secret: bytes, issuer: str = "fusion-stac-emulator") -> None:
        self._store = store
        self._secret = secret
        self._issuer = issuer

    def issue(self, user_id: str, email: str, lifetime: float) -> IssuedTokens:
        """Create and persist an access token; build the id token."""
        now = time.time()
        access = secrets.token_urlsafe(32)
        with self._store.tx():
            self._store.execute(
                "INSERT INTO tokens (token_hash, user_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
                (token_hash(access), user_id, now, now + lifetime),
            )
            # Keep the table small: forget tokens that expired more than a day ago.
            self._store.execute("DELETE FROM tokens WHERE expires_at < ?", (now - 86400,))
        claims = {
            "sub": user_id,
            "email": email,
            "iss": self._issuer,
            "aud": "fusion-platform",
            "token_use": "id",
            "iat": int(now),
            "exp": int(now + lifetime),
        }
        id_token = jwt.encode(claims, self._secret, algorithm="HS256")
        return IssuedTokens(
            access_token=access,
            id_token=id_token,
            refresh_token=secrets.token_urlsafe(32),
            expires_in=int(lifetime),
        )

    def user_for(self, access_token: str) -> tuple[str | None, str]:
        """(user id, "") for a valid token, else (None, reason)."""
        rows = self._store.execute(
            "SELECT t.user_id, t.issued_at, t.expires_at, u.password_changed_at FROM tokens t "
            "LEFT JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?",
            (token_hash(access_token),),
        )
        if not rows:
            return None, "Invalid access token"
        row = rows[0]
        if row["password_changed_at"] is None:
            return None, "Invalid access token"
        if row["expires_at"] <= time.time():
            return None, "The access token has expired; log in again"
        if row["issued_at"] < row["password_changed_at"]:
            return None, "The access token was issued before a password change; log in again"
        return row["user_id"], ""

    def revoke_user(self, user_id: str) -> None:
        """Forget every token of a user (password change, deletion)."""
        self._store.execute("DELETE FROM tokens WHERE user_id = ?", (user_id,))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
