"""The bulk-ingestion benchmark, run tiny (the small data set, three scenarios) so that it
cannot rot: every scenario must end with the server listing every instance sent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_bench_push_runs_and_every_server_lists_what_was_sent() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_push",
            "--small",
            "--slices",
            "20",
            "--only",
            "push-ours,dwc-10,orthanc-rest,push-orthanc",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "20/20" in line]
    assert len(rows) == 4, proc.stdout
    assert "loopback HTTP upload" in proc.stdout
