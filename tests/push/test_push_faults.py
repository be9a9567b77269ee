"""``dicomweb push`` when things go wrong: connections cut mid-body, 503/500 answers,
permanent per-instance refusals in a 202, and Ctrl-C followed by ``--resume``."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dicomfiles import make_dataset, make_instance, to_bytes, uid
from tests.faultproxy import FaultProxy
from tests.push.flaky import FlakyFront
from tests.push.helpers import push_command, run_push, server_sops
from tests.servers import ServiceProcess


def _files(folder: Path, n: int, *, rows: int = 16) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    study = uid()
    out = {}
    for i in range(n):
        sop = uid()
        path = folder / f"IM{i:04d}.dcm"
        path.write_bytes(make_instance(study_uid=study, sop_uid=sop, rows=rows, cols=rows, pixel_seed=i))
        out[sop] = path
    return out


@pytest.fixture
def front(fresh_server: ServiceProcess) -> Iterator[FlakyFront]:
    f = FlakyFront(fresh_server.base).start()
    yield f
    f.stop()


def test_connections_cut_mid_body_are_retried_until_everything_is_stored(
    fresh_server: ServiceProcess, tmp_path: Path
) -> None:
    files = _files(tmp_path / "src", 16, rows=512)  # 0.5 MB each
    proxy = FaultProxy(target_port=fresh_server.port, mode="cut_large", cut_after=2_500_000).start()
    try:
        run = run_push(
            [tmp_path / "src"],
            f"http://127.0.0.1:{proxy.port}/dicomweb",
            "--batch",
            "2",
            "--concurrency",
            "2",
            "--backoff",
            "0.05",
            "--retries",
            "20",
            journal=tmp_path / "j.sqlite",
            report=tmp_path / "r.json",
        )
    finally:
        proxy.stop()
    assert proxy.cuts >= 1
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report["stored"] == 16
    assert "will be retried" in run.stderr
    assert set(files) <= server_sops(fresh_server.base + "/dicomweb")


def test_503_and_500_answers_are_retried_with_backoff(front: FlakyFront, tmp_path: Path) -> None:
    files = _files(tmp_path / "src", 3)
    front.script = [503, 500, 503]
    run = run_push(
        [tmp_path / "src"],
        front.base + "/dicomweb",
        "--backoff",
        "0.05",
        journal=tmp_path / "j.sqlite",
        report=tmp_path / "r.json",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report["stored"] == 3
    assert front.requests == 4 and front.forwarded == 1
    assert "HTTP 503" in run.stderr and "HTTP 500" in run.stderr
    assert set(files) <= server_sops(front.upstream + "/dicomweb")


def test_503_forever_gives_up_after_the_retries_and_exits_1(front: FlakyFront, tmp_path: Path) -> None:
    _files(tmp_path / "src", 2)
    front.script = [503] * 10
    run = run_push(
        [tmp_path / "src"],
        front.base + "/dicomweb",
        "--backoff",
        "0.01",
        "--retries",
        "2",
        journal=tmp_path / "j.sqlite",
        report=tmp_path / "r.json",
    )
    assert run.returncode == 1
    assert front.requests == 3
    reasons = {r["reason"] for r in run.report["failed"]}
    assert reasons == {"gave up after 3 attempts: HTTP 503: injected by the test front"}


def test_a_permanent_refusal_in_a_202_fails_that_instance_only_and_is_not_resent(
    front: FlakyFront, tmp_path: Path
) -> None:
    good = _files(tmp_path / "src", 3)
    bad = make_dataset()
    del bad.StudyInstanceUID  # the server refuses it: 0xC000
    (tmp_path / "src" / "bad.dcm").write_bytes(to_bytes(bad))
    front.watch = {*good, bad.SOPInstanceUID}
    run = run_push(
        [tmp_path / "src"],
        front.base + "/dicomweb",
        "--backoff",
        "0.01",
        journal=tmp_path / "j.sqlite",
        report=tmp_path / "r.json",
    )
    assert run.returncode == 1
    assert run.report["stored"] == 3
    (failed,) = run.report["failed"]
    assert failed["item"].endswith("bad.dcm")
    assert failed["reason"] == "refused: 0xC000 cannot understand"
    assert front.requests == 1  # nothing retried
    assert front.sent[bad.SOPInstanceUID] == 1
    assert "failed 1" in run.stdout


def test_bearer_token_from_the_option_or_the_environment(front: FlakyFront, tmp_path: Path) -> None:
    _files(tmp_path / "src", 2)
    run = run_push(
        [tmp_path / "src"],
        front.base + "/dicomweb",
        "--token",
        "tok-1",
        journal=tmp_path / "j",
        report=tmp_path / "r",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    env_run = run_push(
        [tmp_path / "src"],
        front.base + "/dicomweb",
        env={"DICOMWEB_TOKEN": "tok-2"},
        journal=tmp_path / "k",
        report=tmp_path / "r",
    )
    assert env_run.returncode == 0
    assert front.authorizations == ["Bearer tok-1", "Bearer tok-2"]


def _journal_rows(journal: Path) -> int:
    if not journal.exists():
        return 0
    try:
        with sqlite3.connect(journal) as db:
            return int(db.execute("SELECT count(*) FROM acknowledged").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_sigint_stops_cleanly_and_resume_sends_only_what_is_missing(
    front: FlakyFront, tmp_path: Path
) -> None:
    files = _files(tmp_path / "src", 60, rows=512)
    front.watch = set(files)
    journal, report = tmp_path / "j.sqlite", tmp_path / "r.json"
    url = front.base + "/dicomweb"
    cmd = push_command(
        [tmp_path / "src"],
        url,
        *("--batch", "1", "--concurrency", "2", "--token", "secret-xyz"),
        journal=journal,
        report=report,
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while _journal_rows(journal) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the push finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "--resume" in err and "interrupted" in err
    assert "secret-xyz" not in err + out  # the resume hint does not print the token
    with sqlite3.connect(journal) as db:
        acked = {row[0] for row in db.execute("SELECT sop_instance_uid FROM acknowledged")}
    assert 5 <= len(acked) < 60

    run = run_push([tmp_path / "src"], url, "--batch", "1", "--resume", journal=journal, report=report)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report["stored"] == 60 - len(acked)
    # Nothing acknowledged was sent twice; nothing is missing.
    assert all(front.sent[sop] == 1 for sop in acked), {s: front.sent[s] for s in acked}
    assert all(front.sent[sop] >= 1 for sop in files)
    assert set(files) <= server_sops(front.upstream + "/dicomweb")
