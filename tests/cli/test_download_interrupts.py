"""``download``'s Ctrl-C handling and exit codes, in process (the end-to-end test, a real SIGINT to a
running download, is in ``tests/chaos/test_interrupts.py``)."""

from __future__ import annotations

import argparse
import io
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusion_stac._cli import _fetch
from fusion_stac._cli._common import Context
from fusion_stac._cli._registry import CommandFailed
from fusion_stac._cli.transfer import _first_interrupt_cancels, _report


@pytest.fixture
def interactive_sigint() -> Iterator[None]:
    """Python's own SIGINT handler, as in an interactive run: a suite started in the background
    inherits an ignored SIGINT, which the CLI rightly leaves ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("interactive_sigint")
def test_the_first_ctrl_c_cancels_and_the_second_interrupts() -> None:
    cancel = threading.Event()
    notes: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    with _first_interrupt_cancels(cancel, notes.append):
        signal.raise_signal(signal.SIGINT)  # the first: no KeyboardInterrupt, the transfers are told to stop
        assert cancel.is_set() and len(notes) == 1 and "Ctrl-C again" in notes[0]
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)  # the second: as usual
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_no_handler_outside_the_main_thread() -> None:
    cancel = threading.Event()
    seen: list[object] = []

    def body() -> None:
        with _first_interrupt_cancels(cancel, print):
            seen.append(signal.getsignal(signal.SIGINT))

    worker = threading.Thread(target=body)
    worker.start()
    worker.join()
    assert seen == [signal.getsignal(signal.SIGINT)]


def _ctx(tmp_path: Path) -> tuple[Context, io.StringIO]:
    out = io.StringIO()
    args = argparse.Namespace(url="fusion://Org/uploads/x", dest=str(tmp_path), jobs=4)
    return Context(args, out=out), out


def _job(tmp_path: Path, name: str, size: int = 10) -> _fetch.Job:
    return _fetch.Job(f"fusion://Org/uploads/x/{name}", {"size": size, "name": f"Org/uploads/x/{name}"},
                      tmp_path / name)


def test_interrupted_after_everything_completed_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx, out = _ctx(tmp_path)
    outcomes = [_fetch.Outcome(_job(tmp_path, "a.tif"), "downloaded"),
                _fetch.Outcome(_job(tmp_path, "b.tif"), "present")]
    assert _report(ctx, outcomes, [], tmp_path, 1.0, interrupted=True) == 0
    assert "Downloaded 1 file(s)" in out.getvalue() and "1 already present" in out.getvalue()
    assert "every file had already completed" in capsys.readouterr().err


def test_interrupted_with_files_unfinished_exits_130(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx, out = _ctx(tmp_path)
    partial = tmp_path / "b.tif.0123456789.part"
    outcomes = [_fetch.Outcome(_job(tmp_path, "a.tif"), "downloaded"),
                _fetch.Outcome(_job(tmp_path, "b.tif", 4096), "cancelled", partial=partial, received=2048),
                _fetch.Outcome(_job(tmp_path, "c.tif"), "not-started"),
                _fetch.Outcome(_job(tmp_path, "d.tif"), "failed", OSError("x"), "storage has no such file")]
    assert _report(ctx, outcomes, [], tmp_path, 1.0, interrupted=True) == 130
    err = capsys.readouterr().err
    assert "fusion-stac: error: fusion://Org/uploads/x/d.tif: storage has no such file" in err
    assert "interrupted: 1 of 4 file(s) complete, 2 unfinished, 1 failed" in err
    assert f"fusion://Org/uploads/x/b.tif: 2.0 KiB of 4.0 KiB kept in {partial} (resumes)" in err
    assert "fusion://Org/uploads/x/c.tif: not started" in err
    assert f"Run the same command again to resume: fusion-stac download fusion://Org/uploads/x {tmp_path}" in err
    assert "Downloaded 1 of 4 file(s)" in out.getvalue()


def test_failures_exit_1_naming_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx, _ = _ctx(tmp_path)
    outcomes = [_fetch.Outcome(_job(tmp_path, "a.tif"), "failed", OSError("x"), "one reason"),
                _fetch.Outcome(_job(tmp_path, "b.tif"), "failed", OSError("y"), "another reason")]
    with pytest.raises(CommandFailed, match="2 of 2 file"):
        _report(ctx, outcomes, [], tmp_path, 1.0, interrupted=False)
    err = capsys.readouterr().err.splitlines()
    assert err == ["fusion-stac: error: fusion://Org/uploads/x/a.tif: one reason",
                   "fusion-stac: error: fusion://Org/uploads/x/b.tif: another reason"]


def test_reasons_name_the_destination_not_the_partial(tmp_path: Path) -> None:
    job = _job(tmp_path, "a.tif")
    local = PermissionError(13, "Permission denied", str(tmp_path / "a.tif.0123456789.part"))
    assert _fetch.reason(local, job) == f"cannot write {tmp_path / 'a.tif'}: Permission denied"
    remote = PermissionError(13, "storage refused the download URL 3 times", "fusion://o/data/d/f ('a.tif')")
    assert _fetch.reason(remote, job) == "storage refused the download URL 3 times"
    from fusion_stac.storage import ChecksumError

    checksum = ChecksumError("fusion://o/data/d/f ('a:b.tif'): the downloaded bytes do not match", path="x")
    assert _fetch.reason(checksum, job) == "the downloaded bytes do not match"
