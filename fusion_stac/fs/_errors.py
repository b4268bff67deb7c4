"""API errors become built-in exceptions at the file-system boundary (the s3fs/gcsfs convention).

Code that names files by URL (xarray, pandas, dask, GDAL's Python opener) only knows built-ins:
``FileNotFoundError`` means "no such path", ``PermissionError`` "not allowed". Each translated
error carries ``errno``, the ``fusion://`` path as ``filename`` (so it shows in the message) and the
original fusion-stac error as ``__cause__`` (status, request id, candidates stay inspectable).

=====================================  ===========================================================
fusion-stac error                      built-in raised by ``fusion://``
=====================================  ===========================================================
NotFoundError (404), unknown name,     ``FileNotFoundError`` (ENOENT)
malformed path (FusionURLError)
AmbiguousNameError                     :class:`AmbiguousPathError` (a ``FileNotFoundError``
                                       listing the candidates)
AuthenticationError (401),             ``PermissionError`` (EACCES)
PermissionDeniedError (403)
ConflictError (409)                    ``FileExistsError`` (EEXIST)
ValidationError, AnalysisError         ``ValueError`` (the request or the file's content was refused)
WaitTimeout                            ``TimeoutError`` (ETIMEDOUT)
RateLimited, Server, Transport, other  ``OSError`` (EIO)
=====================================  ===========================================================

Errors that already are built-ins (``FileNotFoundError`` from storage, :class:`TransferError`,
:class:`FileChangedError`, which are also ``OSError``) pass through unchanged.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from fusion_stac._urls import FusionURLError
from fusion_stac.errors import (
    AmbiguousNameError,
    AnalysisError,
    AuthenticationError,
    ConflictError,
    FusionError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
    WaitTimeout,
)

__all__ = ["AmbiguousPathError", "translate", "translated"]

T = TypeVar("T")


class AmbiguousPathError(FileNotFoundError):
    """A name in the path matches several items; ``candidates`` lists ``(id, name)`` pairs.

    Use an id (always unique) or rename one of the items.
    """

    def __init__(self, path: str, kind: str, name: str, candidates: list[tuple[str, str]]) -> None:
        listed = "; ".join(f"{n!r} (id {i})" for i, n in candidates[:10])
        more = f" and {len(candidates) - 10} more" if len(candidates) > 10 else ""
        super().__init__(
            errno.ENOENT,
            f"{kind} name {name!r} is ambiguous: it matches {listed}{more}; use the id instead",
            path,
        )
        self.kind = kind
        self.name = name
        self.candidates = candidates

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.filename, self.kind, self.name, self.candidates))


def _message(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, FusionURLError) and text.startswith("'") and "': " in text:
        text = text.split("': ", 1)[1]  # the path is shown as the error's filename already
    return text.rstrip(".")


def translate(exc: BaseException, path: str) -> BaseException:
    """The built-in exception standing for ``exc`` at ``path`` (``exc`` itself if already built-in)."""
    if isinstance(exc, AmbiguousNameError):
        return AmbiguousPathError(path, exc.kind, exc.name, list(exc.candidates))
    if isinstance(exc, (NotFoundError, FusionURLError)):
        return FileNotFoundError(errno.ENOENT, _message(exc), path)
    if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
        return PermissionError(errno.EACCES, _message(exc), path)
    if isinstance(exc, ConflictError):
        return FileExistsError(errno.EEXIST, _message(exc), path)
    if isinstance(exc, (ValidationError, AnalysisError)):
        return ValueError(f"{path}: {_message(exc)}")
    if isinstance(exc, WaitTimeout):
        return TimeoutError(errno.ETIMEDOUT, _message(exc), path)
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, FusionError):
        return OSError(errno.EIO, _message(exc), path)
    return exc


@contextmanager
def translated(path: str) -> Iterator[None]:
    """``with translated(url): ...`` re-raises fusion-stac errors as built-ins naming ``url``."""
    try:
        yield
    except Exception as exc:
        new = translate(exc, path)
        if new is exc:
            raise
        raise new from exc


def call(path: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` with errors translated for ``path``."""
    with translated(path):
        return fn(*args, **kwargs)
