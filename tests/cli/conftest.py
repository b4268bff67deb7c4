"""The command line, tested as users run it: the installed ``fusion-stac`` console script, in a subprocess.

Every test gets an environment of its own: ``HOME``, the token cache and netrc in a temporary
directory (the real home is never read or written), pointed at the session's emulator.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EMAIL = "me@org.com"
PASSWORD = "MyPassword123!"
REGIONS = Path(__file__).parents[2] / "fusion_stac" / "emulator" / "regions"


def console_script() -> str:
    """The ``fusion-stac`` entry point of the environment running the tests."""
    candidate = Path(sys.executable).parent / "fusion-stac"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("fusion-stac")
    assert found, "the fusion-stac console script is not installed (pip install -e .)"
    return found


def on_a_terminal(args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 180,
                  answer: tuple[bytes, bytes] | None = None) -> tuple[int, str, bool]:
    """Run the console script on a pseudo-terminal of 120 columns (stdout and stderr both on it; a new pty
    has no size, and tqdm would draw nothing): exit code, output, and whether ``answer``'s reply was typed
    (once, after its prompt appeared)."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child
        import fcntl
        import struct
        import termios

        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        if cwd is not None:
            os.chdir(cwd)
        os.execve(console_script(), [console_script(), *args], env)
    seen = b""
    sent = False
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise AssertionError(f"no output for {timeout} s; so far: {seen!r}")
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if answer is not None and not sent and answer[0] in seen:
                os.write(fd, answer[1])
                sent = True
    finally:
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace"), sent


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def assert_one_line_error(self, code: int, *fragments: str) -> str:
        """Exit ``code``, exactly one line on stderr, naming every fragment, and no traceback."""
        assert self.code == code, f"exit {self.code}, expected {code}\nstdout: {self.out}\nstderr: {self.err}"
        assert len(self.err_lines) == 1, f"expected one line on stderr, got:\n{self.err}"
        line = self.err_lines[0]
        assert line.startswith("fusion-stac"), line
        assert "Traceback" not in self.err
        for fragment in fragments:
            assert fragment.lower() in line.lower(), f"{fragment!r} not in {line!r}"
        return line


Run = Callable[..., Result]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The process environment minus the user's platform settings, with a private home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FUSION_PLATFORM_", "FUSION_STAC_"))}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), NETRC=str(home / ".netrc"), XDG_CACHE_HOME=str(home / ".cache"),
               FUSION_STAC_TOKEN_FILE=str(home / "tokens.json"), MPLBACKEND="Agg", PYTHONUNBUFFERED="1",
               COLUMNS="120")
    env.update(extra)
    return env


def run_cli(args: list[str], *, env: Mapping[str, str], input: str | None = None, cwd: Path | None = None,
            timeout: float = 180) -> Result:
    proc = subprocess.run([console_script(), *args], env=dict(env), input=input, capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def anonymous_env(emulator: Any, home: Path) -> dict[str, str]:
    """Pointed at the emulator, with no credentials at all."""
    return clean_env(home, FUSION_PLATFORM_API_URL=emulator.url)


@pytest.fixture
def env(emulator: Any, home: Path) -> dict[str, str]:
    """Pointed at the emulator, with the demo account in the environment."""
    return clean_env(home, FUSION_PLATFORM_API_URL=emulator.url, FUSION_PLATFORM_EMAIL=EMAIL,
                     FUSION_PLATFORM_PASSWORD=PASSWORD)


@pytest.fixture
def cli(env: dict[str, str], tmp_path: Path) -> Run:
    """``cli("ls", "--depth", "2")`` runs the console script with the demo account's environment."""

    def run(*args: str, input: str | None = None, extra_env: Mapping[str, str] | None = None,
            timeout: float = 180) -> Result:
        return run_cli(list(args), env={**env, **(extra_env or {})}, input=input, cwd=tmp_path, timeout=timeout)

    return run


def client_for(emulator: Any) -> Any:
    from fusion_stac.client import FusionClient

    return FusionClient(emulator.url, email=EMAIL, password=PASSWORD, poll_interval=0.05)


@dataclass(frozen=True)
class World:
    """What the session's emulator holds for the CLI tests: a grouped Elevation run over two UTM zones."""

    org_id: str
    org_name: str
    process_id: str
    process_name: str
    group_id: str
    slices: int
    upload_name: str

    def process_url(self, *more: str) -> str:
        return "/".join([f"fusion://{self.org_name}/processes/{self.process_name}", *more])


@pytest.fixture(scope="session")
def world(emulator: Any) -> World:
    client = client_for(emulator)
    try:
        org = client.organisation()
        region = client.create_data(org.id, "CLI Thames", [REGIONS / "thames.geojson"], poll_interval=0.05)
        process = client.new_process(org.id, "Elevation", "CLI Elevation").with_input(1, region).create()
        client.execute(org.id, process.id, wait=True, poll_interval=0.05)
        latest = client.latest_execution(org.id, process.id)
        slices, _ = client.group_executions(org.id, process.id, latest.group_id)
        return World(org.id, org.name, process.id, process.name, latest.group_id, len(slices), region.name)
    finally:
        client.close()
