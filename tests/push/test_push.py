"""``dicomweb push`` end to end into ``dicomweb serve`` (SQLite and PostgreSQL catalogs):
folders, nested archives and junk; the report; resume; byte-exact storage."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import httpx

from tests.push.helpers import build_tree, run_push, server_sops
from tests.servers import ServiceProcess


def test_push_sends_every_instance_of_folders_and_nested_archives_and_skips_junk(
    embedded: ServiceProcess, tmp_path: Path
) -> None:
    tree = build_tree(tmp_path / "src")
    run = run_push(
        [tree.root],
        embedded.base + "/dicomweb",
        "--concurrency",
        "3",
        "--batch",
        "4",
        journal=tmp_path / "journal.sqlite",
        report=tmp_path / "report.json",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report["stored"] == tree.count == 18
    assert run.report["failed"] == []
    skipped = {row["item"]: row["reason"] for row in run.report["skipped"]}
    assert sorted(skipped) == sorted(tree.junk)
    assert all("DICOM" in reason for reason in skipped.values()), skipped
    assert f"stored {tree.count} instances" in run.stdout
    assert f"skipped {len(tree.junk)}" in run.stdout
    # Not a terminal: plain progress lines on stderr, the last one complete.
    assert f"push: {tree.count + len(tree.junk)}/{tree.count + len(tree.junk)} files" in run.stderr
    sops = server_sops(embedded.base + "/dicomweb")
    assert set(tree.sops) <= sops
    # Stored byte for byte: the object retrieved is the file sent.
    some = next(iter(tree.sops))
    meta = httpx.get(
        embedded.base + "/dicomweb/instances",
        params={"SOPInstanceUID": some},
        headers={"Accept": "application/dicom+json"},
    ).json()[0]
    st, se = meta["0020000D"]["Value"][0], meta["0020000E"]["Value"][0]
    got = httpx.get(
        f"{embedded.base}/dicomweb/studies/{st}/series/{se}/instances/{some}",
        headers={"Accept": 'multipart/related; type="application/dicom"'},
    )
    assert got.status_code == 200
    assert tree.sops[some] in got.content


def test_resume_sends_only_what_the_journal_lacks(fresh_server: ServiceProcess, tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "src", plain=4, per_archive=2)
    journal, report = tmp_path / "journal.sqlite", tmp_path / "report.json"
    url = fresh_server.base + "/dicomweb"
    first = run_push([tree.root], url, journal=journal, report=report)
    assert first.returncode == 0, first.stdout + first.stderr
    with sqlite3.connect(journal) as db:
        rows = db.execute("SELECT key, sop_instance_uid FROM acknowledged").fetchall()
    assert {sop for _, sop in rows} == set(tree.sops)

    again = run_push([tree.root], url, "--resume", journal=journal, report=report)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.report["stored"] == 0
    acked = [r for r in again.report["skipped"] if r["reason"].startswith("already acknowledged")]
    assert len(acked) == tree.count

    # A file rewritten since (new mtime) is sent again; the others are not.
    changed = next(p for p in (tree.root / "plain").rglob("IM*"))
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    third = run_push([tree.root], url, "--resume", journal=journal, report=report)
    assert third.returncode == 0
    assert third.report["stored"] == 1


def test_study_option_posts_to_the_study_and_fails_other_studies(
    fresh_server: ServiceProcess, tmp_path: Path
) -> None:
    tree = build_tree(tmp_path / "src", plain=2, per_archive=1)
    other = tmp_path / "other"
    other.mkdir()
    from tests.dicomfiles import make_instance

    (other / "x.dcm").write_bytes(make_instance())
    import pydicom

    study = pydicom.dcmread(next((tree.root / "plain").rglob("IM*"))).StudyInstanceUID
    run = run_push(
        [tree.root / "plain", other],
        fresh_server.base + "/dicomweb",
        "--study",
        study,
        journal=tmp_path / "j.sqlite",
        report=tmp_path / "r.json",
    )
    assert run.returncode == 1
    assert run.report["stored"] == 2
    (failed,) = run.report["failed"]
    assert failed["item"].endswith("x.dcm") and "not --study" in failed["reason"]
    assert len(server_sops(fresh_server.base + "/dicomweb", study)) == 2


def test_a_4xx_gives_up_at_once_with_the_reason(fresh_server: ServiceProcess, tmp_path: Path) -> None:
    tree = build_tree(tmp_path / "src", plain=2, per_archive=1)
    run = run_push(
        [tree.root / "plain"],
        fresh_server.base + "/no-such-root",
        journal=tmp_path / "j.sqlite",
        report=tmp_path / "r.json",
        timeout=60,
    )
    assert run.returncode == 1
    assert run.report["stored"] == 0
    assert {r["reason"].split(":")[0] for r in run.report["failed"]} == {"HTTP 404"}
    assert "retried" not in run.stderr


def test_bad_options_exit_2_with_a_clear_line(tmp_path: Path) -> None:
    run = run_push([tmp_path], "ftp://x", journal=tmp_path / "j", report=tmp_path / "r.json")
    assert run.returncode == 2
    assert "--url" in run.stderr
    run = run_push(
        [tmp_path],
        "http://127.0.0.1:9",
        "--batch",
        "lots",
        journal=tmp_path / "j",
        report=tmp_path / "r.json",
    )
    assert run.returncode == 2 and "--batch" in run.stderr
    (tmp_path / "a-file").write_text("")
    run = run_push(
        [tmp_path], "http://127.0.0.1:9", journal=tmp_path / "a-file" / "j", report=tmp_path / "r.json"
    )
    assert run.returncode == 2 and "--journal" in run.stderr
