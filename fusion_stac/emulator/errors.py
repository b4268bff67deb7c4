"""The API's error type: a status and a human-readable ``error_message``.

Status conventions (documented in the emulator's README section of the report):
400 malformed request (bad JSON, wrong types, unparseable ids or query parameters),
401 missing/invalid/expired token or bad credentials, 403 an organisation or user that is not yours,
404 unknown id (also ids of other organisations' objects, so existence never leaks),
409 conflict with the current state (data in use, process executing),
422 well-formed request whose values are not acceptable (option out of range, unusable input, weak password).
"""

from __future__ import annotations


class ApiError(Exception):
    """Raised by handlers; rendered as ``{"error_message": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def unauthorised(message: str) -> ApiError:
    return ApiError(401, message, {"WWW-Authenticate": 'Bearer realm="fusion-platform"'})


def forbidden(message: str) -> ApiError:
    return ApiError(403, message)


def not_found(kind: str, id_: object) -> ApiError:
    return ApiError(404, f"{kind} {id_} not found")


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def invalid(message: str) -> ApiError:
    return ApiError(422, message)
