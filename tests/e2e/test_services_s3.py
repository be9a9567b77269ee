"""``dicomweb stow-svc`` and ``dicomweb wado-svc`` as separate processes on one S3 bucket
(SeaweedFS, SigV4) and one PostgreSQL catalog, as they run in a cluster."""

from __future__ import annotations

import io
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pydicom
import pytest

from tests.dicomfiles import make_instance, multipart_related, pydicom_testfile
from tests.faultproxy import FaultProxy
from tests.objectkeys import is_instance_object
from tests.outbox import postgres_outbox, settled
from tests.servers import DICOMWEB, ServiceProcess, free_port
from tests.sink import EventSink

PROCESSING_FAILURE = 0x0110


@dataclass
class Deployment:
    stow: ServiceProcess
    wado: ServiceProcess
    bucket: str
    dsn: str
    env: dict[str, str]


@pytest.fixture
def bucket(s3_admin: Any) -> str:
    """A bucket of the test's own (listing it sees only this test's objects and uploads)."""
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3_admin.create_bucket(Bucket=name)
    return name


@pytest.fixture
def sink() -> Iterator[EventSink]:
    s = EventSink().start()
    yield s
    s.stop()


def service_env(s3_bucket_env: dict[str, str], bucket: str, dsn: str, **extra: str) -> dict[str, str]:
    return {**s3_bucket_env, "BUCKET_NAME": bucket, "CATALOG_URL": dsn, "S3_PART_SIZE": str(5 << 20), **extra}


@pytest.fixture
def deployment(
    s3_bucket_env: dict[str, str], bucket: str, pg_database: str, sink: EventSink, tmp_path: Path
) -> Iterator[Deployment]:
    env = service_env(s3_bucket_env, bucket, pg_database, K_SINK=sink.url, PROVIDER_NAME="provider-s3")
    stow = ServiceProcess("stow-svc", env=env, log_path=tmp_path / "stow.log").start()
    wado = ServiceProcess("wado-svc", env=env, log_path=tmp_path / "wado.log")
    try:
        wado.start()
        yield Deployment(stow, wado, bucket, pg_database, env)
    finally:
        stow.stop()
        wado.stop()


def stow(base: str, blobs: list[bytes]) -> httpx.Response:
    body, ctype = multipart_related(blobs)
    return httpx.post(base + "/stow-rs/studies", content=body, headers={"content-type": ctype}, timeout=120)


def uids(blob: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def key_of(s3_admin: Any, bucket: str, blob: bytes) -> str:
    """The one object in ``bucket``: a stored revision of ``blob``'s instance."""
    keys = bucket_keys(s3_admin, bucket)
    study, series, sop = uids(blob)
    assert len(keys) == 1 and keys[0].startswith(f"studies/{study}/series/{series}/instances/"), keys
    assert is_instance_object(keys[0], sop), keys
    return keys[0]


def catalog_rows(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        return [(r[0], r[1]) for r in conn.execute("SELECT sop_instance_uid, object_key FROM instances")]


def bucket_keys(s3_admin: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3_admin.list_objects_v2(Bucket=bucket).get("Contents", [])]


def pending_uploads(s3_admin: Any, bucket: str) -> list[dict[str, Any]]:
    return list(s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def failure_reasons(resp: httpx.Response) -> list[int]:
    failed = resp.json().get("00081198", {}).get("Value", [])
    return [f["00081197"]["Value"][0] for f in failed]


def test_stored_on_stow_service_is_retrievable_from_wado_service_at_once(
    deployment: Deployment, s3_admin: Any
) -> None:
    blob = make_instance()
    study, series, sop = uids(blob)
    resp = stow(deployment.stow.base, [blob])
    assert resp.status_code == 200, resp.text

    key = key_of(s3_admin, deployment.bucket, blob)
    obj = s3_admin.get_object(Bucket=deployment.bucket, Key=key)
    assert obj["Body"].read() == blob
    assert catalog_rows(deployment.dsn) == [(sop, key)]

    # The other process, right after the answer: no cache, no delay.
    found = httpx.get(deployment.wado.base + f"/wado-rs/studies?StudyInstanceUID={study}")
    assert found.status_code == 200
    assert found.json()[0]["0020000D"]["Value"] == [study]
    got = httpx.get(
        deployment.wado.base + f"/wado-rs/studies/{study}/series/{series}/instances/{sop}",
        headers={"accept": 'multipart/related; type="application/dicom"'},
    )
    assert got.status_code == 200
    assert blob in got.content
    meta = httpx.get(deployment.wado.base + f"/wado-rs/studies/{study}/metadata")
    assert meta.status_code == 200
    assert meta.json()[0]["00080018"]["Value"] == [sop]


def test_a_large_instance_goes_up_as_a_multipart_upload_and_reads_back(
    deployment: Deployment, s3_admin: Any
) -> None:
    blob = make_instance(rows=1024, cols=1024, frames=6)  # 12 MiB: three 5 MiB parts
    study, series, sop = uids(blob)
    assert stow(deployment.stow.base, [blob]).status_code == 200
    head = s3_admin.head_object(Bucket=deployment.bucket, Key=key_of(s3_admin, deployment.bucket, blob))
    assert head["ContentLength"] == len(blob)
    assert head["ETag"].strip('"').endswith("-3")  # really a multipart upload
    assert pending_uploads(s3_admin, deployment.bucket) == []
    frame = httpx.get(
        deployment.wado.base + f"/wado-rs/studies/{study}/series/{series}/instances/{sop}/frames/6",
        headers={"accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"},
    )
    assert frame.status_code == 200
    assert blob[-(2 << 20) :] in frame.content


@pytest.fixture
def proxied(
    s3_server: Any,
    s3_bucket_env: dict[str, str],
    bucket: str,
    pg_database: str,
    sink: EventSink,
    tmp_path: Path,
) -> Iterator[tuple[Deployment, FaultProxy]]:
    """A stow service that reaches S3 through a proxy the test can break."""
    proxy = FaultProxy(target_port=s3_server.s3_port).start()
    env = service_env(s3_bucket_env, bucket, pg_database, BUCKET_PORT=str(proxy.port), K_SINK=sink.url)
    stow_svc = ServiceProcess("stow-svc", env=env, log_path=tmp_path / "stow.log").start()
    try:
        yield Deployment(stow_svc, stow_svc, bucket, pg_database, env), proxy
    finally:
        stow_svc.stop()
        proxy.stop()


def test_s3_unreachable_at_the_start_of_a_part_fails_only_that_request(
    proxied: tuple[Deployment, FaultProxy], s3_admin: Any, sink: EventSink
) -> None:
    deployment, proxy = proxied
    proxy.mode = "refuse"
    blob = make_instance()
    resp = stow(deployment.stow.base, [blob])
    assert resp.status_code == 409, resp.text
    assert failure_reasons(resp) == [PROCESSING_FAILURE]
    assert bucket_keys(s3_admin, deployment.bucket) == []
    assert pending_uploads(s3_admin, deployment.bucket) == []
    assert catalog_rows(deployment.dsn) == []
    ready = httpx.get(deployment.stow.base + "/readyz")
    assert ready.status_code == 503 and deployment.bucket in ready.text

    proxy.mode = "pass"
    assert stow(deployment.stow.base, [blob]).status_code == 200
    key = key_of(s3_admin, deployment.bucket, blob)
    # One event in the outbox (none for the refused request), delivered.
    ((event_id, _, _),) = settled(lambda: postgres_outbox(deployment.dsn), 1)
    assert [e.id for e in sink.events] == [event_id]
    assert sink.events[0].json()["store"]["objectName"] == key


def test_s3_failing_mid_upload_fails_that_part_and_leaves_no_upload(
    proxied: tuple[Deployment, FaultProxy], s3_admin: Any, sink: EventSink
) -> None:
    deployment, proxy = proxied
    proxy.mode = "cut_large"  # every connection dies after 1 MiB sent: parts never arrive
    big = make_instance(rows=1024, cols=1024, frames=6)
    small = make_instance()
    resp = stow(deployment.stow.base, [big, small])
    assert resp.status_code == 202, resp.text
    assert failure_reasons(resp) == [PROCESSING_FAILURE]
    assert proxy.cuts > 0
    key = key_of(s3_admin, deployment.bucket, small)
    assert pending_uploads(s3_admin, deployment.bucket) == []
    assert [r[0] for r in catalog_rows(deployment.dsn)] == [uids(small)[2]]
    # One event in the outbox (none for the failed part), delivered.
    ((event_id, _, _),) = settled(lambda: postgres_outbox(deployment.dsn), 1)
    assert [e.id for e in sink.events] == [event_id]
    assert [e.json()["store"]["objectName"] for e in sink.events] == [key]


def test_wrong_credentials_make_readiness_fail_with_the_reason(
    s3_bucket_env: dict[str, str], bucket: str, pg_database: str, tmp_path: Path
) -> None:
    env = service_env(s3_bucket_env, bucket, pg_database, AWS_SECRET_ACCESS_KEY="not-the-secret")
    svc = ServiceProcess("stow-svc", env=env, log_path=tmp_path / "stow.log")
    with pytest.raises(RuntimeError, match="not ready"):
        svc.start(timeout=5)
    svc.proc = None
    port = free_port()
    proc = subprocess.Popen(
        [DICOMWEB, "stow-svc", "--host", "127.0.0.1", "--port", str(port)],
        env={**svc.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        assert ready is not None and ready.status_code == 503
        assert "403" in ready.text  # HEAD has no body, so S3 cannot say more than Forbidden
        assert "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in ready.text
        assert "\n" not in ready.text.strip()
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"BUCKET_HOST": ""}, "BUCKET_HOST is not set"),
        ({"BUCKET_NAME": "Not_A_Bucket"}, "BUCKET_NAME='Not_A_Bucket' is not a valid S3 bucket name"),
        ({"BUCKET_PORT": "eighty"}, "BUCKET_PORT='eighty' is not a port number"),
        ({"AWS_SECRET_ACCESS_KEY": ""}, "AWS_SECRET_ACCESS_KEY is not set"),
        ({"BUCKET_NAME": "", "BUCKET_CONFIG_PATH": "/nonexistent/config"}, "is not a directory"),
    ],
)
def test_bad_bucket_configuration_exits_at_start_up_with_one_line(
    s3_bucket_env: dict[str, str], change: dict[str, str], message: str
) -> None:
    # A deployed service binds all interfaces with access control chosen on purpose (the operator
    # sets AUTH_MODE); the bucket error is then the one left to report.
    env = {
        **s3_bucket_env,
        "CATALOG_URL": "postgresql://nobody@127.0.0.1:1/none",
        "AUTH_MODE": "none",
        **change,
    }
    done = subprocess.run(
        [DICOMWEB, "stow-svc", "--port", str(free_port())], env=env, capture_output=True, timeout=30
    )
    assert done.returncode != 0
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0] and lines[0].startswith("dicomweb: configuration error:")


def test_bucket_configuration_from_mounted_configmap_and_secret(
    s3_bucket_env: dict[str, str], bucket: str, pg_database: str, tmp_path: Path, s3_admin: Any
) -> None:
    config, secret = tmp_path / "config", tmp_path / "secret"
    config.mkdir()
    secret.mkdir()
    for key in ("BUCKET_HOST", "BUCKET_PORT", "BUCKET_REGION"):
        (config / key).write_text(s3_bucket_env[key] + "\n")
    (config / "BUCKET_NAME").write_text(bucket)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        (secret / key).write_text(s3_bucket_env[key])
    env = {"BUCKET_CONFIG_PATH": str(config), "BUCKET_SECRET_PATH": str(secret), "CATALOG_URL": pg_database}
    # Only the mounted files: none of the session's BUCKET_*/AWS_* variables leak in.
    svc = ServiceProcess("stow-svc", env=env, log_path=tmp_path / "stow.log")
    for key in s3_bucket_env:
        svc.env.pop(key, None)
    svc.start()
    try:
        blob = make_instance()
        assert stow(svc.base, [blob]).status_code == 200
        key_of(s3_admin, bucket, blob)
    finally:
        svc.stop()


_SNAPSHOT = (
    "SELECT sop_instance_uid, study_uid, series_uid, sop_class_uid, transfer_syntax_uid, object_key, size,"
    " instance_number, metadata, pixel_data FROM instances ORDER BY sop_instance_uid"
)


def snapshot(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(_SNAPSHOT).fetchall()
        studies = conn.execute(
            "SELECT study_uid, num_series, num_instances, modalities FROM studies"
        ).fetchall()
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows] + sorted(studies)


def test_reindex_rebuilds_a_lost_catalog_from_the_bucket(
    deployment: Deployment, s3_admin: Any, pg_admin_dsn: str, tmp_path: Path
) -> None:
    native = make_instance(rows=512, cols=512, frames=3, InstanceNumber=7)  # pixel data past the first read
    encapsulated = pydicom_testfile("SC_rgb_rle_2frame.dcm")
    no_pixels = pydicom_testfile("rtplan.dcm")
    resp = stow(deployment.stow.base, [native, encapsulated, no_pixels])
    assert resp.status_code == 200, resp.text
    before = snapshot(deployment.dsn)
    assert len(before) == 3 + 3
    s3_admin.put_object(Bucket=deployment.bucket, Key="studies/README.txt", Body=b"not DICOM")
    deployment.stow.stop()
    deployment.wado.stop()

    # The database is lost: a new, empty one takes its place.
    from tests.pgfixtures import create_database, drop_database

    fresh = create_database(pg_admin_dsn)
    try:
        env = {**deployment.env, "CATALOG_URL": fresh}
        done = subprocess.run([DICOMWEB, "reindex"], env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout.decode().strip() == "reindexed 3 instances, skipped 1 objects"
        assert snapshot(fresh) == before

        wado = ServiceProcess("wado-svc", env=env, log_path=tmp_path / "wado2.log").start()
        try:
            study, series, sop = uids(native)
            frame = httpx.get(
                wado.base + f"/wado-rs/studies/{study}/series/{series}/instances/{sop}/frames/3",
                headers={"accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"},
            )
            assert frame.status_code == 200
            assert native[-(512 * 512 * 2) :] in frame.content
        finally:
            wado.stop()
    finally:
        drop_database(pg_admin_dsn, fresh)
