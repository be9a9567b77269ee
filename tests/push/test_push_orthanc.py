"""``dicomweb push`` against another DICOMweb server: Orthanc + its DICOMweb plugin (started
here on free ports, empty, in a temp dir). The same tree of folders, archives and junk."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.servers import OrthancServer
from tests.dicomfiles import make_dataset, to_bytes
from tests.push.flaky import FlakyFront
from tests.push.helpers import build_tree, run_push, server_sops


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    server = OrthancServer(name="orthanc-push", root=tmp_path_factory.mktemp("orthanc"))
    asyncio.run(server.start())
    yield server
    asyncio.run(server.stop())


def test_push_into_orthanc_sends_folders_and_archives_and_skips_junk(
    orthanc: OrthancServer, tmp_path: Path
) -> None:
    tree = build_tree(tmp_path / "src")
    run = run_push(
        [tree.root],
        orthanc.base_url,
        "--concurrency",
        "2",
        "--batch",
        "5",
        journal=tmp_path / "j.sqlite",
        report=tmp_path / "r.json",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report["stored"] == tree.count, run.report["failed"]
    assert sorted(r["item"] for r in run.report["skipped"]) == sorted(tree.junk)
    assert set(tree.sops) <= server_sops(orthanc.base_url)

    again = run_push(
        [tree.root], orthanc.base_url, "--resume", journal=tmp_path / "j.sqlite", report=tmp_path / "r.json"
    )
    assert again.returncode == 0 and again.report["stored"] == 0


def test_orthanc_503s_are_retried_and_its_refusals_reported_not_retried(
    orthanc: OrthancServer, tmp_path: Path
) -> None:
    tree = build_tree(tmp_path / "src", plain=3, per_archive=1)
    bad = make_dataset()
    del bad.StudyInstanceUID  # Orthanc answers 400 with this instance in FailedSOPSequence
    bad_path = tmp_path / "src" / "bad.dcm"
    bad_path.write_bytes(to_bytes(bad))
    host = orthanc.base_url.rsplit("/", 1)[0]
    front = FlakyFront(host, script=[503, 503], watch={bad.SOPInstanceUID}).start()
    try:
        run = run_push(
            [tree.root],
            front.base + "/dicom-web",
            "--backoff",
            "0.05",
            journal=tmp_path / "j.sqlite",
            report=tmp_path / "r.json",
        )
    finally:
        front.stop()
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.report["stored"] == tree.count, run.report["failed"]
    assert set(tree.sops) <= server_sops(orthanc.base_url)
    (failed,) = run.report["failed"]
    assert failed["item"] == str(bad_path)
    assert failed["reason"].startswith("refused: 0x"), failed
    assert front.requests == 3  # two 503s, then one answer: the refusal is not re-sent
    assert front.sent[bad.SOPInstanceUID] == 3
