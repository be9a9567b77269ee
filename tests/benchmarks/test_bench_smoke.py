"""The benchmark harness, run tiny (one round, a few instances) so that it cannot rot.

It starts our server and Orthanc, runs every scenario, and must check every timed
answer as correct and write its table. Nothing here asserts a speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], str]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--small", "--rounds", "1", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


@pytest.mark.timeout(180)
def test_every_timed_answer_was_checked_and_correct(smoke_run: tuple[dict[str, object], str]) -> None:
    result, _table = smoke_run
    assert result["wrong_answers"] == 0
    rounds = result["rounds"]
    assert isinstance(rounds, list)
    assert sorted(r["server"] for r in rounds) == ["orthanc", "ours"]
    for r in rounds:
        empty = [k for k, c in r["checks"].items() if c["ok"] == 0]
        assert not empty, f"{r['server']}: nothing checked for {empty}"
        # The scenarios that time something each recorded checks.
        for group in (
            "stow_c8_x10",
            "big_mf",
            "big_stream",
            "frame",
            "wado_c8",
            "study",
            "study_metadata",
            "series_metadata",
            "qido_combined",
            "qido_walk",
        ):
            assert r["checks"].get(group, {}).get("ok", 0) > 0, f"{r['server']}: {group} not checked"


def test_the_table_has_both_servers_for_every_measurement(smoke_run: tuple[dict[str, object], str]) -> None:
    result, table = smoke_run
    summary = result["summary"]
    assert isinstance(summary, dict)
    rows = summary["rows"]
    assert len(rows) >= 40
    missing = [row["key"] for row in rows if row["ours"] is None or row["orthanc"] is None]
    assert not missing
    assert "| measurement | unit | ours | orthanc | ours/orthanc | target | met |" in table
    assert "STOW c=8, 10/request" in table and "QIDO limit/offset walk" in table
    assert set(result["limits"]) == {  # type: ignore[arg-type]
        "limit_upload_c1_mb_s",
        "limit_upload_c8_mb_s",
        "limit_disk_seq_mb_s",
        "limit_disk_files_s",
    }
