"""A background ``fusion-stac serve`` for ``asset_hrefs="gateway"`` when no gateway URL is given.

One server per API URL and user, per Python process: started lazily on a free loopback port the
first time items need gateway hrefs, reused after, stopped at interpreter exit (``atexit``). It runs
as a subprocess (``python -m fusion_stac serve``), never in this process: GDAL reading its
redirects from the same process as an in-thread server deadlocks.

It never outlives this process, even one killed (``SIGKILL``, a crash) before ``atexit`` could run:
it is started with ``--exit-with-stdin`` on a pipe whose write end only this process holds (not
inherited by other subprocesses, closed in forked children), so the kernel closing that end when
this process ends, however it ends, stops the server, which then deletes its private directory.

Secrets never go on the command line (``ps`` shows it to every user): the client's session token
is written to a private token cache (``$FUSION_STAC_TOKEN_FILE`` in a fresh ``0700`` directory,
with the server's log) and its identity and password, when it has one (to log in again when the
token expires), travel in the child's environment. The server's index is the one ``fusion-stac
serve`` uses by default (``<cache>/stac-index/``, one per API URL and user): it persists across
Python sessions, so a new session's server answers from it at once and only walks what is new
(several sessions at once share it safely). With ``FUSION_STAC_CACHE=off`` it is a private
temporary index in the same directory, as nothing else is kept on disk then.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_stac import _credentials
from fusion_stac._paths import cache_disabled, stac_index_path
from fusion_stac.errors import FusionError

__all__ = ["gateway_url", "index_path", "stop_all"]

#: Seconds to wait for a new server to answer.
START_TIMEOUT = 120.0
#: How long the handed-over session token is trusted (the server logs in again with a password if refused).
TOKEN_LIFETIME = 12 * 3600.0


@dataclass
class _Gateway:
    url: str
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def log(self) -> Path:
        return self.directory / "serve.log"

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # the server stops on its own at end of file...
        if self.alive():
            self.process.terminate()  # ... and on SIGTERM, whichever it sees first
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


_lock = threading.Lock()
_gateways: dict[tuple[str, str], _Gateway] = {}


def gateway_url(client: Any) -> str:
    """The base URL of this process's background gateway for ``client``'s API and user (started if need be)."""
    key = (str(client.api_url).rstrip("/"), str(client.user_id or client.email or ""))
    with _lock:
        gateway = _gateways.get(key)
        if gateway is not None and gateway.alive():
            return gateway.url
        if gateway is not None:  # died (e.g. Ctrl-C in a terminal): start another
            gateway.stop()
        gateway = _start(client)
        _gateways[key] = gateway
        return gateway.url


def stop_all() -> None:
    """Stop every background gateway of this process (run at interpreter exit)."""
    with _lock:
        for gateway in _gateways.values():
            gateway.stop()
        _gateways.clear()


atexit.register(stop_all)


def _forget_in_forked_child() -> None:
    """In a child forked from this process (``multiprocessing``'s fork): the servers are the parent's.
    Close the child's copies of their pipes (so that they stop with the parent, not with the last
    child) and forget them (so that the child's exit neither stops them nor deletes their directories)."""
    global _lock
    for gateway in _gateways.values():
        if gateway.process.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                gateway.process.stdin.close()  # nothing is ever written to it: nothing to flush
    _gateways.clear()
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_forked_child)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _environment(client: Any, directory: Path) -> dict[str, str]:
    """The child's environment: this one, minus platform credentials, plus the client's."""
    env = {k: v for k, v in os.environ.items()
           if k not in (_credentials.ENV_EMAIL, _credentials.ENV_USER_ID, _credentials.ENV_PASSWORD,
                        _credentials.ENV_TOKEN_FILE, _credentials.ENV_API_URL)}
    token_file = directory / "tokens.json"
    env[_credentials.ENV_TOKEN_FILE] = str(token_file)
    email, user_id = client.email, client.user_id
    if email:
        env[_credentials.ENV_EMAIL] = str(email)
    elif user_id:
        env[_credentials.ENV_USER_ID] = str(user_id)
    password = getattr(client, "_password", None)
    if password:
        env[_credentials.ENV_PASSWORD] = str(password)
    token = client.session_token
    if token and user_id:
        _credentials.save_token(client.api_url, token, user_id=str(user_id), email=email,
                                expires_at=time.time() + TOKEN_LIFETIME, path=token_file)
    if not password and not (token and user_id):
        raise FusionError("asset_hrefs='gateway' without gateway_url starts `fusion-stac serve` as this client, "
                          "which has neither a session nor a password to hand over: log in first")
    # the child imports this same fusion_stac (a source checkout on sys.path, not only an installed one)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    return env


def index_path(client: Any, directory: Path) -> Path:
    """The background server's index: the user's shared one, or a private one in ``directory`` when
    disk caches are off (``FUSION_STAC_CACHE=off``)."""
    if cache_disabled():
        return directory / "index.sqlite"
    return stac_index_path(client.api_url, client.user.id)


def _start(client: Any) -> _Gateway:
    directory = Path(tempfile.mkdtemp(prefix="fusion-stac-gateway-"))  # 0700
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        args = [sys.executable, "-m", "fusion_stac", "serve", "--api-url", str(client.api_url), "--no-progress",
                "--host", "127.0.0.1", "--port", str(port), "--index", str(index_path(client, directory)),
                "--exit-with-stdin", "--remove-on-exit", str(directory)]
        env = _environment(client, directory)
        with open(directory / "serve.log", "wb") as log:
            # its own session: a Ctrl-C meant for this process does not stop it. Its stdin is a pipe
            # only this process writes to (close_fds: no other subprocess inherits the write end):
            # when this process ends, killed or not, the server sees end of file and stops.
            process = subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    gateway = _Gateway(url, process, directory)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not gateway.alive():
            output = gateway.log.read_text(errors="replace")[-2000:]
            gateway.stop()
            raise FusionError(f"the background `fusion-stac serve` for asset_hrefs='gateway' exited: {output}")
        try:
            with urllib.request.urlopen(url + "/_mgmt/ping", timeout=1):
                return gateway
        except urllib.error.HTTPError:  # it answers
            return gateway
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    gateway.stop()
    raise FusionError(f"the background `fusion-stac serve` for asset_hrefs='gateway' did not answer at {url} "
                      f"within {START_TIMEOUT:.0f} s")
