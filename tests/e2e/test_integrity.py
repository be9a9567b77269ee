"""An acknowledged object is never overwritten in place (issue reproductions, real server).

Cut-off re-stores, concurrent stores of one SOP Instance UID (same and different studies),
the duplicate policies, an identical re-send, an instance moving to another study, and the
leftovers of a kill -9 (reported by ``dicomweb fsck``, swept at the next start).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dicomfiles import make_instance, multipart_related
from tests.objectkeys import is_instance_object
from tests.servers import DICOMWEB, ServiceProcess

RETRIEVE = {"accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
DUPLICATE_SOP_INSTANCE = 0x0111


def uid() -> str:
    return f"2.25.{uuid.uuid4().int}"[:64]


def start(tmp_path: Path, **env: str) -> ServiceProcess:
    data = tmp_path / "data"
    server = ServiceProcess(
        "serve",
        args=["--data-dir", str(data)],
        env={"SWEEP_GRACE_SECONDS": "0", **env},
        log_path=tmp_path / "server.log",
    )
    return server.start(timeout=30)


@dataclass
class Backend:
    """Where the server keeps things, and how a test lists the stored revisions of an instance."""

    name: str
    env: dict[str, str]
    tmp_path: Path
    s3_admin: Any = None

    def start(self, **env: str) -> ServiceProcess:
        return start(self.tmp_path, **self.env, **env)

    def objects(self, sop: str) -> list[str]:
        if self.s3_admin is None:
            return [p.name for p in objects(self.tmp_path, sop)]
        listed = self.s3_admin.list_objects_v2(Bucket=self.env["BUCKET_NAME"]).get("Contents", [])
        return sorted(o["Key"] for o in listed if is_instance_object(o["Key"], sop))

    def wait_objects(self, sop: str, count: int, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.objects(sop)
            if len(found) == count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@pytest.fixture(params=["file+sqlite", "file+postgresql", "s3+postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "file+sqlite":
        return Backend(request.param, {}, tmp_path)
    dsn: str = request.getfixturevalue("pg_database")
    if request.param == "file+postgresql":
        return Backend(request.param, {"CATALOG_URL": dsn}, tmp_path)
    s3_admin: Any = request.getfixturevalue("s3_admin")
    s3_env: dict[str, str] = request.getfixturevalue("s3_bucket_env")
    bucket = f"integrity-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=bucket)
    return Backend(request.param, {**s3_env, "BUCKET_NAME": bucket, "CATALOG_URL": dsn}, tmp_path, s3_admin)


@pytest.fixture
def server(backend: Backend) -> Iterator[ServiceProcess]:
    s = backend.start()
    yield s
    s.stop()


def post(base: str, blobs: list[bytes], study: str = "") -> httpx.Response:
    body, ctype = multipart_related(blobs)
    url = f"{base}/dicomweb/studies" + (f"/{study}" if study else "")
    return httpx.post(url, content=body, headers={"content-type": ctype}, timeout=60)


def objects(tmp_path: Path, sop: str) -> list[Path]:
    return [p for p in (tmp_path / "data").rglob("*") if p.is_file() and is_instance_object(p.name, sop)]


def temp_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "data").rglob(".tmp-*")]


def wait_objects(tmp_path: Path, sop: str, count: int, timeout: float = 10.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while True:
        found = objects(tmp_path, sop)
        if len(found) == count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def retrieve(base: str, study: str, series: str, sop: str) -> httpx.Response:
    return httpx.get(f"{base}/dicomweb/studies/{study}/series/{series}/instances/{sop}", headers=RETRIEVE)


def metadata(base: str, study: str) -> list[dict[str, object]]:
    resp = httpx.get(f"{base}/dicomweb/studies/{study}/metadata")
    return resp.json() if resp.status_code == 200 else []


def rows_of(meta: dict[str, object]) -> int:
    return meta["00280010"]["Value"][0]  # type: ignore[index,no-any-return]


def fsck(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DICOMWEB, "fsck", "--data-dir", str(tmp_path / "data"), *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_cut_off_restore_leaves_the_acknowledged_instance_intact(
    server: ServiceProcess, backend: Backend
) -> None:
    study, series, sop = uid(), uid(), uid()
    a = make_instance(study_uid=study, series_uid=series, sop_uid=sop, rows=16, cols=16)
    b = make_instance(study_uid=study, series_uid=series, sop_uid=sop, rows=64, cols=64, pixel_seed=7)
    assert post(server.base, [a]).status_code == 200
    body, ctype = multipart_related([b])
    cut = body[: body.rindex(b"--dicomweb-test-boundary--")]  # no closing delimiter
    resp = httpx.post(f"{server.base}/dicomweb/studies", content=cut, headers={"content-type": ctype})
    assert resp.status_code == 400 and "closing" in resp.text
    got = retrieve(server.base, study, series, sop)
    assert got.status_code == 200 and a in got.content and b not in got.content
    (meta,) = metadata(server.base, study)
    assert rows_of(meta) == 16
    assert len(backend.wait_objects(sop, 1)) == 1
    assert temp_files(backend.tmp_path) == []


def _concurrently(jobs: list[tuple[str, bytes]], base: str) -> list[int]:
    statuses: list[int] = [0] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(i: int, study: str, blob: bytes) -> None:
        barrier.wait()
        statuses[i] = post(base, [blob], study).status_code

    threads = [threading.Thread(target=run, args=(i, s, b)) for i, (s, b) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


def test_concurrent_stores_of_one_uid_end_with_one_consistent_winner(
    server: ServiceProcess, backend: Backend
) -> None:
    for _ in range(4):
        study, series, sop = uid(), uid(), uid()
        a = make_instance(study_uid=study, series_uid=series, sop_uid=sop, rows=16, cols=16, pixel_seed=1)
        b = make_instance(study_uid=study, series_uid=series, sop_uid=sop, rows=512, cols=512, pixel_seed=2)
        statuses = _concurrently([(study, a)] * 4 + [(study, b)] * 4, server.base)
        assert statuses == [200] * 8
        (meta,) = metadata(server.base, study)
        got = retrieve(server.base, study, series, sop)
        assert got.status_code == 200
        winner = a if rows_of(meta) == 16 else b
        assert winner in got.content  # row, metadata and bytes of the same upload
        found = httpx.get(f"{server.base}/dicomweb/studies/{study}/instances").json()
        assert [f["00080018"]["Value"] for f in found] == [[sop]]
        assert len(backend.wait_objects(sop, 1)) == 1  # the superseded copies went


def test_one_uid_stored_concurrently_under_two_studies(server: ServiceProcess, backend: Backend) -> None:
    for _ in range(4):
        sop = uid()
        homes = [(uid(), uid()), (uid(), uid())]
        blobs = [make_instance(study_uid=st, series_uid=se, sop_uid=sop) for st, se in homes]
        statuses = _concurrently([(homes[i % 2][0], blobs[i % 2]) for i in range(8)], server.base)
        assert statuses == [200] * 8
        listed = [i for i, (st, _) in enumerate(homes) if metadata(server.base, st)]
        assert len(listed) == 1, "the instance must live in exactly one study"
        (w,) = listed
        study, series = homes[w]
        got = retrieve(server.base, study, series, sop)
        assert got.status_code == 200 and blobs[w] in got.content
        loser = homes[1 - w][0]
        assert httpx.get(f"{server.base}/dicomweb/studies?StudyInstanceUID={loser}").json() == []
        assert len(backend.wait_objects(sop, 1)) == 1


def test_identical_resend_is_idempotent_and_a_move_leaves_the_old_study_right(
    server: ServiceProcess, backend: Backend
) -> None:
    study, series, sop, other = uid(), uid(), uid(), uid()
    x = make_instance(study_uid=study, series_uid=series, sop_uid=sop)
    y = make_instance(study_uid=study, series_uid=series, sop_uid=other, InstanceNumber=2)
    assert post(server.base, [x, y]).status_code == 200
    (first,) = backend.objects(sop)
    assert post(server.base, [x]).status_code == 200
    assert backend.wait_objects(sop, 1) == [first]  # the new copy went, the old one stays

    new_study, new_series = uid(), uid()
    moved = make_instance(study_uid=new_study, series_uid=new_series, sop_uid=sop)
    assert post(server.base, [moved]).status_code == 200
    old = httpx.get(f"{server.base}/dicomweb/studies?StudyInstanceUID={study}").json()
    assert old[0]["00201208"]["Value"] == [1]  # NumberOfStudyRelatedInstances
    assert [m["00080018"]["Value"][0] for m in metadata(server.base, study)] == [other]  # type: ignore[index]
    assert retrieve(server.base, study, series, sop).status_code == 404
    assert moved in retrieve(server.base, new_study, new_series, sop).content
    assert len(backend.wait_objects(sop, 1)) == 1


@pytest.mark.parametrize("policy", ["reject", "keep-first"])
def test_duplicate_policies(policy: str, backend: Backend) -> None:
    server = backend.start(DUPLICATE_POLICY=policy)
    try:
        study, series, sop = uid(), uid(), uid()
        a = make_instance(study_uid=study, series_uid=series, sop_uid=sop, rows=16, cols=16)
        b = make_instance(study_uid=study, series_uid=series, sop_uid=sop, rows=32, cols=32, pixel_seed=3)
        assert post(server.base, [a]).status_code == 200
        assert post(server.base, [a]).status_code == 200  # identical: always fine
        resp = post(server.base, [b])
        if policy == "reject":
            assert resp.status_code == 409
            failed = resp.json()["00081198"]["Value"][0]
            assert failed["00081197"]["Value"] == [DUPLICATE_SOP_INSTANCE]
        else:
            assert resp.status_code == 200
        assert a in retrieve(server.base, study, series, sop).content
        assert len(backend.wait_objects(sop, 1)) == 1
    finally:
        server.stop()


def test_kill_9_leftovers_are_reported_by_fsck_and_swept_at_start(tmp_path: Path) -> None:
    server = start(tmp_path)
    study, series, sop = uid(), uid(), uid()
    blob = make_instance(study_uid=study, series_uid=series, sop_uid=sop)
    assert post(server.base, [blob]).status_code == 200

    # A large upload in flight when the server dies leaves a temp file behind.
    big = make_instance(study_uid=study, rows=2048, cols=2048, frames=2)
    body, ctype = multipart_related([big])

    def slow() -> Iterator[bytes]:
        for i in range(0, len(body) - 1000, 1 << 20):
            yield body[i : i + (1 << 20)]
            time.sleep(0.05)
        time.sleep(30)

    thread = threading.Thread(
        target=lambda: httpx.post(
            f"{server.base}/dicomweb/studies", content=slow(), headers={"content-type": ctype}, timeout=60
        ),
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not temp_files(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temp_files(tmp_path), "the upload never reached the store"
    server.kill()
    # And an object whose catalog commit never happened (a copy under a new revision).
    (stored,) = objects(tmp_path, sop)
    orphan = stored.with_name(f"{sop}.{'0' * 16}deadbeef.dcm")
    orphan.write_bytes(blob)

    report = fsck(tmp_path, "--grace", "0")
    assert report.returncode == 1, report.stdout
    assert (
        "unreferenced objects: 1" in report.stdout
        and "leftovers (temp files, incomplete uploads): 1" in report.stdout
    )
    assert "rows without objects: 0" in report.stdout

    server = start(tmp_path)
    try:
        deadline = time.monotonic() + 20
        while (temp_files(tmp_path) or orphan.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert temp_files(tmp_path) == [] and not orphan.exists()
        assert fsck(tmp_path, "--grace", "0").returncode == 0
        assert blob in retrieve(server.base, study, series, sop).content
    finally:
        server.stop()


def test_fsck_repair_removes_garbage_only(tmp_path: Path) -> None:
    server = start(tmp_path)
    study, series, sop = uid(), uid(), uid()
    blob = make_instance(study_uid=study, series_uid=series, sop_uid=sop)
    assert post(server.base, [blob]).status_code == 200
    server.stop()
    (stored,) = objects(tmp_path, sop)
    orphan = stored.with_name(f"{sop}.{'0' * 16}0badf00d.dcm")
    orphan.write_bytes(blob)
    temp = stored.with_name(".tmp-0123456789abcdef")
    temp.write_bytes(b"partial")
    young = fsck(tmp_path)  # default grace: both are young, only counted
    assert (
        young.returncode == 0
        and "young (within the grace period, left alone): 1 objects, 1 leftovers" in young.stdout
    )
    repaired = fsck(tmp_path, "--repair", "--grace", "0")
    assert "removed: 0 garbage objects, 1 unreferenced objects, 1 leftovers" in repaired.stdout, (
        repaired.stdout
    )
    assert not orphan.exists() and not temp.exists() and stored.exists()
    stored.unlink()  # a row without its object: reported, never "repaired" away
    missing = fsck(tmp_path, "--repair", "--grace", "0")
    assert missing.returncode == 1 and "rows without objects: 1" in missing.stdout


def test_fsck_on_s3_reports_and_repairs_incomplete_uploads_and_unreferenced_objects(
    tmp_path: Path, s3_admin: Any, s3_bucket_env: dict[str, str], pg_database: str
) -> None:
    bucket = f"fsck-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=bucket)
    env = {**s3_bucket_env, "BUCKET_NAME": bucket, "CATALOG_URL": pg_database}
    backend = Backend("s3+postgresql", env, tmp_path, s3_admin)
    server = backend.start()
    study, series, sop = uid(), uid(), uid()
    blob = make_instance(study_uid=study, series_uid=series, sop_uid=sop)
    try:
        assert post(server.base, [blob]).status_code == 200
    finally:
        server.stop()
    (stored,) = backend.objects(sop)
    orphan = stored.replace(f"{sop}.", f"{sop}.{'0' * 16}")
    s3_admin.put_object(Bucket=bucket, Key=orphan, Body=blob)
    upload = s3_admin.create_multipart_upload(
        Bucket=bucket, Key=f"studies/{study}/series/{series}/instances/x.dcm"
    )
    s3_admin.upload_part(
        Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"], PartNumber=1, Body=b"x"
    )

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [DICOMWEB, "fsck", *extra], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
        )

    report = run("--grace", "0")
    assert report.returncode == 1, report.stdout + report.stderr
    assert f"UNREFERENCED {orphan}" in report.stdout
    assert (
        "LEFTOVER incomplete multipart upload" in report.stdout and "rows without objects: 0" in report.stdout
    )
    repaired = run("--repair", "--grace", "0")
    assert "removed: 0 garbage objects, 1 unreferenced objects, 1 leftovers" in repaired.stdout, (
        repaired.stdout
    )
    assert s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert backend.objects(sop) == [stored]
    assert run().returncode == 0


def test_fsck_and_reindex_refuse_the_read_only_remote_catalog(tmp_path: Path) -> None:
    env = {**os.environ, "QUERY_ENDPOINT": "http://127.0.0.1:9/query"}
    env.pop("CATALOG_URL", None)
    for command in ("fsck", "reindex"):
        done = subprocess.run(
            [DICOMWEB, command, "--data-dir", str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert "QUERY_ENDPOINT is read-only" in done.stderr
