"""ImageStoredEvent CloudEvents from STOW to a real HTTP sink."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest

from tests.dicomfiles import make_instance, multipart_related
from tests.objectkeys import is_instance_object
from tests.outbox import settled, sqlite_outbox
from tests.servers import ServiceProcess
from tests.sink import EventSink


@pytest.fixture
def sink() -> Iterator[EventSink]:
    s = EventSink().start()
    yield s
    s.stop()


def _server(tmp_path: Path, sink: EventSink) -> ServiceProcess:
    env = {
        "K_SINK": sink.url,
        "EVENT_SOURCE": "img-ingest-stow.default.svc.cluster.local",
        "PROVIDER_NAME": "provider-x",
        "WADO_INTERNAL_ENDPOINT": "http://img-ingest-wado.default.svc.cluster.local/wado-rs",
        "WADO_EXTERNAL_ENDPOINT": "https://img-ingest-wado.default.example.com/wado-rs",
    }
    return ServiceProcess(
        "serve", args=["--data-dir", str(tmp_path / "data")], env=env, log_path=tmp_path / "log"
    ).start()


def test_one_event_per_stored_instance_with_alvearie_shape(tmp_path: Path, sink: EventSink) -> None:
    server = _server(tmp_path, sink)
    try:
        blobs = [make_instance(InstanceNumber=i) for i in range(3)]
        body, ctype = multipart_related([*blobs, b"junk"])
        resp = httpx.post(server.base + "/stow-rs/studies", content=body, headers={"content-type": ctype})
        assert resp.status_code == 202
        # Three events in the outbox, all delivered: the failed part produced none.
        rows = settled(lambda: sqlite_outbox(tmp_path / "data"), 3)
        events = list(sink.events)
        assert sorted(e.id for e in events) == sorted(row[0] for row in rows)
    finally:
        server.stop()
    sops = {pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID for b in blobs}
    seen = set()
    for ev in events:
        assert ev.headers["ce-specversion"] == "1.0"
        assert ev.headers["ce-type"] == "ImageStoredEvent"
        assert ev.headers["ce-source"] == "img-ingest-stow.default.svc.cluster.local"
        body = ev.json()
        assert set(body) == {"image", "store"}
        assert body["image"]["transferSyntaxUID"] == "1.2.840.10008.1.2.1"
        elements = {(e["group"], e["element"]): e for e in body["image"]["elements"]}
        for e in body["image"]["elements"]:
            assert set(e) == {"group", "element", "vr", "value"}
        sop = elements[("0008", "0018")]
        assert sop["vr"] == "UI"
        seen.add(sop["value"])
        assert elements[("0010", "0010")]["value"] == "Doe^Jane"
        assert ("7FE0", "0010") not in elements
        store = body["store"]
        assert store["provider"] == "provider-x"
        assert store["bucketName"] == "data"
        assert is_instance_object(store["objectName"], sop["value"])
        assert store["wadoInternalEndpoint"] == "http://img-ingest-wado.default.svc.cluster.local/wado-rs"
        assert store["wadoExternalEndpoint"] == "https://img-ingest-wado.default.example.com/wado-rs"
    assert seen == sops
    assert len({ev.id for ev in events}) == 3


def test_broker_outage_loses_nothing(tmp_path: Path, sink: EventSink) -> None:
    sink.refusing = True
    server = _server(tmp_path, sink)
    try:
        body, ctype = multipart_related([make_instance(), make_instance()])
        resp = httpx.post(server.base + "/stow-rs/studies", content=body, headers={"content-type": ctype})
        assert resp.status_code == 200
        # Delivery is tried and refused (retried with backoff); the events stay in the outbox.
        sink.wait_for_refused(2)
        assert [sent for _, _, sent in sqlite_outbox(tmp_path / "data")] == [False, False]
        sink.refusing = False
        rows = settled(lambda: sqlite_outbox(tmp_path / "data"), 2, timeout=40)
        assert sorted(e.id for e in sink.events) == sorted(row[0] for row in rows)
    finally:
        server.stop()


def test_kill_after_commit_redelivers_on_restart(tmp_path: Path, sink: EventSink) -> None:
    sink.refusing = True
    server = _server(tmp_path, sink)
    body, ctype = multipart_related([make_instance()])
    resp = httpx.post(server.base + "/stow-rs/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 200
    server.kill()
    sink.refusing = False
    restarted = ServiceProcess(
        "serve",
        args=server.args,
        env={k: server.env[k] for k in ("K_SINK", "EVENT_SOURCE")},
        port=server.port,
    ).start()
    try:
        events = sink.wait_for(1, timeout=30)
        assert events[0].headers["ce-type"] == "ImageStoredEvent"
    finally:
        restarted.stop()
