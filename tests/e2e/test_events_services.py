"""Events in the scale-out topology: ``dicomweb stow-svc`` replicas on S3 + PostgreSQL, the
outbox in the catalog, a real HTTP sink. At least once, nothing lost, ids unique."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pydicom
import pytest

from tests.dicomfiles import make_instance, multipart_related
from tests.objectkeys import is_instance_object, sop_of_key
from tests.outbox import OutboxRow, postgres_outbox, settled
from tests.polling import wait_until
from tests.servers import ServiceProcess
from tests.sink import EventSink, ReceivedEvent

SOURCE = "img-ingest-stow.default.svc.cluster.local"


@pytest.fixture
def sink() -> Iterator[EventSink]:
    s = EventSink().start()
    yield s
    s.stop()


@pytest.fixture
def env(s3_bucket_env: dict[str, str], s3_admin: Any, pg_database: str, sink: EventSink) -> dict[str, str]:
    bucket = f"e-{uuid.uuid4().hex[:16]}"
    s3_admin.create_bucket(Bucket=bucket)
    return {
        **s3_bucket_env,
        "BUCKET_NAME": bucket,
        "CATALOG_URL": pg_database,
        "K_SINK": sink.url,
        "EVENT_SOURCE": SOURCE,
        "PROVIDER_NAME": "provider-x",
        "WADO_INTERNAL_ENDPOINT": "http://img-ingest-wado.default.svc.cluster.local/wado-rs",
        "WADO_EXTERNAL_ENDPOINT": "https://img-ingest-wado.default.example.com/wado-rs",
        "EVENT_LEASE_SECONDS": "2",
    }


@pytest.fixture
def replicas(env: dict[str, str], tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for svc in started:
        svc.stop()


def start(
    replicas: list[ServiceProcess], env: dict[str, str], tmp_path: Path, **extra: str
) -> ServiceProcess:
    svc = ServiceProcess("stow-svc", env={**env, **extra}, log_path=tmp_path / f"stow{len(replicas)}.log")
    replicas.append(svc.start())
    return svc


def stow(base: str, blobs: list[bytes]) -> None:
    body, ctype = multipart_related(blobs)
    resp = httpx.post(base + "/stow-rs/studies", content=body, headers={"content-type": ctype}, timeout=60)
    assert resp.status_code == 200, resp.text


def sop_of(blob: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True).SOPInstanceUID)


def image_events(sink: EventSink) -> list[ReceivedEvent]:
    return [e for e in sink.events if e.headers["ce-type"] == "ImageStoredEvent"]


def outbox(dsn: str) -> list[OutboxRow]:
    return postgres_outbox(dsn)


def quiet_announced(dsn: str, study: str) -> bool:
    """The study's latest revision has had its study-level event enqueued (nothing is due)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT quiet_sent = updated FROM studies WHERE study_uid = %s", (study,)
        ).fetchone()
    return bool(row and row[0])


def test_event_shape_and_unique_ids(
    replicas: list[ServiceProcess], env: dict[str, str], sink: EventSink, tmp_path: Path
) -> None:
    svc = start(replicas, env, tmp_path)
    blobs = [make_instance(InstanceNumber=i) for i in range(3)]
    stow(svc.base, blobs)
    rows = settled(lambda: outbox(env["CATALOG_URL"]), 3)
    events = list(sink.events)
    assert sorted(e.id for e in events) == sorted(row[0] for row in rows)
    assert len({e.id for e in events}) == 3
    for ev in events:
        uuid.UUID(ev.id)
        assert ev.headers["ce-specversion"] == "1.0"
        assert ev.headers["ce-type"] == "ImageStoredEvent"
        assert ev.headers["ce-source"] == SOURCE
        assert ev.headers["content-type"] == "application/json"
        body = ev.json()
        assert set(body) == {"image", "store"}
        assert set(body["image"]) == {"transferSyntaxUID", "elements"}
        assert all(set(e) == {"group", "element", "vr", "value"} for e in body["image"]["elements"])
        elements = {(e["group"], e["element"]): e for e in body["image"]["elements"]}
        assert elements[("0010", "0010")] == {
            "group": "0010",
            "element": "0010",
            "vr": "PN",
            "value": "Doe^Jane",
        }
        assert ("7FE0", "0010") not in elements
        sop = elements[("0008", "0018")]["value"]
        assert body["store"] == {
            "provider": "provider-x",
            "bucketName": env["BUCKET_NAME"],
            "objectName": body["store"]["objectName"],
            "wadoInternalEndpoint": env["WADO_INTERNAL_ENDPOINT"],
            "wadoExternalEndpoint": env["WADO_EXTERNAL_ENDPOINT"],
        }
        assert is_instance_object(body["store"]["objectName"], sop)
    assert {sop_of_key(e.json()["store"]["objectName"]) for e in events} == {sop_of(b) for b in blobs}
    assert all(sent for _, _, sent in outbox(env["CATALOG_URL"]))


def test_broker_down_then_up_loses_nothing(
    replicas: list[ServiceProcess], env: dict[str, str], sink: EventSink, tmp_path: Path
) -> None:
    sink.refusing = True
    svc = start(replicas, env, tmp_path)
    stow(svc.base, [make_instance(), make_instance()])
    # Delivery is tried and refused, then retried with backoff; the events stay pending.
    sink.wait_for_refused(2)
    assert [sent for _, _, sent in outbox(env["CATALOG_URL"])] == [False, False]
    sink.refusing = False
    rows = settled(lambda: outbox(env["CATALOG_URL"]), 2, timeout=60)
    assert sorted(e.id for e in sink.events) == sorted(row[0] for row in rows)


def test_kill_after_commit_redelivers_on_restart(
    replicas: list[ServiceProcess], env: dict[str, str], sink: EventSink, tmp_path: Path
) -> None:
    sink.refusing = True
    svc = start(replicas, env, tmp_path)
    blob = make_instance()
    stow(svc.base, [blob])
    svc.kill()
    sink.refusing = False
    start(replicas, env, tmp_path)
    (event,) = sink.wait_for(1, timeout=30)
    assert is_instance_object(event.json()["store"]["objectName"], sop_of(blob))
    assert outbox(env["CATALOG_URL"])[0][0] == event.id


def test_replicas_share_the_outbox_without_sending_twice(
    replicas: list[ServiceProcess], env: dict[str, str], sink: EventSink, tmp_path: Path
) -> None:
    env = {**env, "EVENT_LEASE_SECONDS": "30"}
    sink.refusing = True
    a = start(replicas, env, tmp_path)
    b = start(replicas, env, tmp_path)
    for i in range(10):
        stow((a if i % 2 else b).base, [make_instance(), make_instance()])
    sink.refusing = False
    rows = settled(lambda: outbox(env["CATALOG_URL"]), 20, timeout=90)
    # Every event once: as many deliveries as events, and each event among them.
    assert len(sink.events) == 20
    assert {e.id for e in sink.events} == {row[0] for row in rows}


def test_a_quiet_study_gets_one_study_event_per_revision_across_replicas_and_restarts(
    replicas: list[ServiceProcess], env: dict[str, str], sink: EventSink, tmp_path: Path
) -> None:
    env = {**env, "STUDY_QUIET_SECONDS": "2"}
    a = start(replicas, env, tmp_path)
    start(replicas, env, tmp_path)
    study = pydicom.uid.generate_uid()
    stow(a.base, [make_instance(study_uid=study), make_instance(study_uid=study)])
    a.kill()  # the replica that stored it is gone before the study is quiet
    events = sink.wait_for(3, timeout=30)
    study_events = [e for e in events if e.headers["ce-type"] == "StudyRevisionEvent"]
    assert len(study_events) == 1
    body = study_events[0].json()
    assert body["study"]["studyInstanceUID"] == study
    assert body["study"]["attributes"]["00100020"]["Value"] == ["PID-1"]
    assert body["store"]["provider"] == "provider-x"
    assert study_events[0].headers["ce-source"] == SOURCE
    # That revision is announced (nothing more is due for it) and its event delivered.
    wait_until(lambda: quiet_announced(env["CATALOG_URL"], study), what="the study marked announced")
    rows = settled(lambda: outbox(env["CATALOG_URL"]), 3)
    assert [t for _, t, _ in rows].count("StudyRevisionEvent") == 1
    assert sorted(e.id for e in sink.events) == sorted(row[0] for row in rows)

    # A new revision of the study: one more study event once it is quiet again.
    stow(replicas[1].base, [make_instance(study_uid=study)])
    wait_until(
        lambda: len([e for e in sink.events if e.headers["ce-type"] == "StudyRevisionEvent"]) == 2,
        timeout=30,
        what="the second study event",
    )
    wait_until(lambda: quiet_announced(env["CATALOG_URL"], study), what="the new revision announced")
    rows = settled(lambda: outbox(env["CATALOG_URL"]), 5)
    assert [t for _, t, _ in rows].count("StudyRevisionEvent") == 2
    assert sorted(e.id for e in sink.events) == sorted(row[0] for row in rows)
    assert len(image_events(sink)) == 3
