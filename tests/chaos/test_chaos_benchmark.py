"""The chaos benchmark end to end, short: 2 runs of every road through the fault proxy.

Not asserted yet: zero silent corruptions (the library is being fixed in parallel). Asserted: the
benchmark runs every road in every run, classifies each, prints its table and a well-formed SUMMARY
consistent with its JSON report, and the proxy injected every fault kind at least once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
SUMMARY = re.compile(r"SUMMARY runs=(\d+) completed=(\d+) identical=(\d+) silent_corruptions=(\d+) leftovers=(\d+)")

sys.path.insert(0, str(BENCHMARKS))

from _faultproxy import KINDS  # noqa: E402

# as in benchmarks/chaos.py (not importable by that name here: tests/chaos is a package)
ROADS = ("dl:id", "dl:model", "cli", "export", "fs.get", "fs.cat", "fs.open", "mosaic", "up:create", "up:put")
OUTCOMES = ("identical", "typed", "SILENT", "untyped")


def test_chaos_benchmark_smoke(tmp_path: Path) -> None:
    report = tmp_path / "chaos.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(BENCHMARKS.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "chaos.py"), "--runs", "2", "--fault-rate", "0.5", "--seed", "101",
         "--workdir", str(tmp_path / "out"), "--json", str(report)],
        capture_output=True, text=True, timeout=900, env=env, cwd=BENCHMARKS.parent,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    summary = SUMMARY.fullmatch(lines[-1])
    assert summary, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs, completed, identical, silent, leftovers = (int(g) for g in summary.groups())
    assert runs == 2 and completed <= runs and identical <= runs
    assert proc.returncode == (0 if completed == runs and leftovers == 0 else 1)

    details = json.loads(report.read_text())
    assert len(details["runs"]) == 2
    for run in details["runs"]:
        assert [r["road"] for r in run["roads"]] == list(ROADS)
        assert all(r["outcome"] in OUTCOMES for r in run["roads"])
        assert run["requests"]["api"] > 0 and run["requests"]["storage"] > 0  # storage went through the proxy
        assert any(line.lstrip().startswith(run["name"]) for line in lines)  # a table row per run
    assert completed == sum(r["completed"] for r in details["runs"])
    assert silent == sum(r["silent"] for r in details["runs"])
    assert leftovers == sum(len(road["leftovers"]) for r in details["runs"] for road in r["roads"])
    # every fault kind happened at least once, and faults hit both traffic classes
    faults = details["faults"]
    missing = [kind for kind in KINDS if sum(faults[kind].values()) == 0]
    assert missing == [], (missing, faults)
    assert sum(c["api"] for c in faults.values()) > 0 and sum(c["storage"] for c in faults.values()) > 0
    assert lines[-2].startswith("proxy faults (api/storage):")
