"""The chaos benchmark in its short form: 3 runs of the demo pipeline under faults, all complete and identical."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "chaos.py"


def test_chaos_benchmark_three_runs(tmp_path: Path) -> None:
    """Faults on 40 % of API and storage requests, 5 s URLs, 3 s sessions: 3 of 3 runs complete, every
    downloaded file, item and mosaic equals the fault-free run's, nothing partial is left behind."""
    report = tmp_path / "chaos.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), "--runs", "3", "--seed", "101", "--workdir", str(tmp_path / "out"),
         "--json", str(report)],
        capture_output=True, text=True, timeout=600,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    summary = re.fullmatch(r"SUMMARY runs=(\d+) completed=(\d+) identical=(\d+) leftovers=(\d+)", lines[-1])
    assert summary, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert summary.groups() == ("3", "3", "3", "0"), proc.stdout[-3000:]
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # the faults did happen, and the client did work through them
    import json

    details = json.loads(report.read_text())
    runs = details["runs"]
    assert sum(r["faults"] for r in runs) > 20
    assert all(r["retries"] > 0 for r in runs)
    assert sum(r["relogins"] for r in runs) > 0  # sessions of 3 s ended during the runs
    assert sum(r["url_refreshes"] for r in runs) > 0  # URLs of 5 s expired between reads and were signed again
    server_faults = details["server"]["faults"]
    for kind in ("error_500", "error_503", "throttle", "reset", "truncate"):
        assert server_faults.get(f"api.{kind}", 0) > 0, (kind, server_faults)
    # at least 4 slices were downloaded and compared, and the export kept nothing temporary
    reference = details["reference"]
    assert len([k for k in reference["files"] if k.endswith("/elevation.tif")]) >= 4
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.name.endswith((".part", ".tmp")) or "-partial" in p.name]
    assert leftovers == []
