"""Where the readers get bytes: the file system's transport, rebuilt on whichever process reads.

The loaders never put a signed URL, a password or a token in a dask graph. A task carries a
*storage*: a small picklable object which, on the process that unpickles it, rebuilds its own
session from plain settings (environment variables, the token cache of
:mod:`fusion_stac._credentials`) and hands out that process's
:class:`~fusion_stac.storage._transport.Transport`: the URL broker (signed URLs cached by file id,
re-signed before expiry and after a 403), the retry policy and the transfer counters of
``fusion://``. So there is one data plane, shared with the fsspec file system.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from fusion_stac.storage import FileKey, RetryPolicy, Transport, URLBroker
from fusion_stac.xarray._errors import MosaicError

if TYPE_CHECKING:  # pragma: no cover
    from fusion_stac.fs.core import FusionFileSystem

__all__ = ["FileSystemStorage", "SignerStorage", "Storage", "as_storage", "storage_for"]


@runtime_checkable
class Storage(Protocol):
    """Anything that gives this process a transport to stored files, and pickles without secrets."""

    def transport(self) -> Transport:
        """The process-wide transport (built on first use in each process)."""
        ...  # pragma: no cover


class FileSystemStorage:
    """Storage of a :class:`~fusion_stac.fs.FusionFileSystem` (pickles as the file system does:
    by its public settings; a worker logs in from its token cache or environment)."""

    def __init__(self, fs: FusionFileSystem) -> None:
        self.fs = fs

    def transport(self) -> Transport:
        return self.fs.transport

    def __dask_tokenize__(self) -> Any:
        return ("fusion-fs-storage", self.fs.__dask_tokenize__())

    def __repr__(self) -> str:
        return f"FileSystemStorage({self.fs!r})"


class SignerStorage:
    """Storage around a picklable ``sign(key) -> url | (url, expires_at) | SignedURL``.

    For URLs signed some other way (and for tests on local files): the broker and transport are
    built per process from ``sign``.
    """

    _registry: dict[tuple[int, str], Transport] = {}
    _lock = threading.Lock()

    def __init__(self, sign: Callable[[FileKey], Any], *, retry: RetryPolicy | None = None,
                 max_workers: int = 8) -> None:
        self.sign = sign
        self.retry = retry
        self.max_workers = max_workers

    def _token(self) -> str:
        from dask.base import tokenize

        token = self.__dict__.get("_tok")
        if token is None:
            with self._lock:  # once, not once per reading thread
                token = self.__dict__.get("_tok")
                if token is None:
                    token = self.__dict__["_tok"] = tokenize(self.sign, self.retry, self.max_workers)
        return token

    def transport(self) -> Transport:
        # One transport per process and signer (not per unpickled copy: every dask task has one).
        key = (os.getpid(), self._token())
        with self._lock:
            transport = self._registry.get(key)
            if transport is None:
                transport = Transport(URLBroker(self.sign), policy=self.retry, max_workers=self.max_workers)
                self._registry[key] = transport
            return transport

    def __getstate__(self) -> dict[str, Any]:
        return {"sign": self.sign, "retry": self.retry, "max_workers": self.max_workers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __dask_tokenize__(self) -> Any:
        return ("fusion-signer-storage", self._token())

    def __repr__(self) -> str:
        return f"SignerStorage({getattr(self.sign, '__qualname__', type(self.sign).__name__)})"


def as_storage(obj: Any) -> Storage:
    """Turn what the user has (a FusionFileSystem, a FusionClient, a storage) into a storage."""
    if isinstance(obj, Storage):
        return obj
    return storage_for(obj)


def storage_for(obj: Any) -> Storage:
    """The storage of a FusionClient or FusionFileSystem (pickles without secrets)."""
    from fusion_stac.fs import FusionFileSystem

    if isinstance(obj, FusionFileSystem):
        return FileSystemStorage(obj)
    if obj is None:
        # Credentials from the environment / token cache, as on a dask worker.
        return FileSystemStorage(FusionFileSystem())
    if type(obj).__name__ == "FusionClient":
        return FileSystemStorage(FusionFileSystem(client=obj))
    raise MosaicError(f"cannot read stored files with a {type(obj).__name__}; pass a FusionClient, a "
                      "FusionFileSystem or storage=")
