"""DELETE of studies, series and instances: objects, rows and ImageDeletedEvents."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.dicomfiles import make_instance, uid
from tests.e2e.test_wado_retrieve import store
from tests.objectkeys import is_instance_object
from tests.outbox import OutboxRow, sqlite_outbox
from tests.polling import wait_until
from tests.servers import ServiceProcess
from tests.sink import EventSink, ReceivedEvent


@pytest.fixture(scope="module")
def sink() -> Iterator[EventSink]:
    s = EventSink().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sink: EventSink) -> Iterator[ServiceProcess]:
    """One server for the module; each test works on studies of its own."""
    tmp = tmp_path_factory.mktemp("delete")
    env = {"K_SINK": sink.url, "EVENT_SOURCE": "test-delete"}
    s = ServiceProcess("serve", args=["--data-dir", str(tmp / "data")], env=env, log_path=tmp / "log")
    s.start()
    yield s
    s.stop()


def objects(server: ServiceProcess, study: str) -> list[Path]:
    data = Path(server.args[server.args.index("--data-dir") + 1])
    return sorted(p for p in data.rglob("*.dcm") if study in str(p))


def rows(server: ServiceProcess, study: str) -> int:
    data = Path(server.args[server.args.index("--data-dir") + 1])
    with sqlite3.connect(data / "catalog.db") as db:
        return int(db.execute("SELECT count(*) FROM instances WHERE study_uid = ?", (study,)).fetchone()[0])


def deletions(server: ServiceProcess, sink: EventSink, study: str, count: int) -> list[ReceivedEvent]:
    """The study's deletion events, once the outbox has settled (every event in it delivered,
    so no more will arrive); there must be ``count`` of them."""
    data = Path(server.args[server.args.index("--data-dir") + 1])

    def delivered() -> list[OutboxRow] | None:
        rows = sqlite_outbox(data)
        return rows if rows and all(sent for _, _, sent in rows) else None

    rows = wait_until(delivered, what="every outbox event delivered")
    found = [
        e
        for e in list(sink.events)
        if e.headers["ce-type"] == "ImageDeletedEvent" and e.json()["study"] == study
    ]
    assert len(found) == count, [e.json() for e in found]
    assert {e.id for e in found} <= {row[0] for row in rows}
    return found


def _study(server: ServiceProcess) -> tuple[str, list[str], list[str]]:
    study, s1, s2 = uid(), uid(), uid()
    blobs = [
        make_instance(study_uid=study, series_uid=s, InstanceNumber=i) for s in (s1, s1, s2) for i in (1,)
    ]
    store(server, blobs)
    sops = [pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID for b in blobs]
    return study, [s1, s1, s2], sops


def test_delete_instance_series_study(server: ServiceProcess, sink: EventSink) -> None:
    study, series, sops = _study(server)
    assert len(objects(server, study)) == 3
    base = f"{server.base}/dicomweb/studies/{study}"

    resp = httpx.delete(f"{base}/series/{series[0]}/instances/{sops[0]}")
    assert resp.status_code == 204
    assert len(objects(server, study)) == 2 and rows(server, study) == 2
    assert httpx.get(f"{base}/series/{series[0]}/instances/{sops[0]}/metadata").status_code == 404
    assert httpx.get(f"{base}/series/{series[0]}/instances/{sops[1]}/metadata").status_code == 200

    assert httpx.delete(f"{base}/series/{series[2]}").status_code == 204
    assert len(objects(server, study)) == 1
    assert [s["0020000E"]["Value"][0] for s in httpx.get(f"{base}/series").json()] == [series[0]]

    assert httpx.delete(base).status_code == 204
    assert objects(server, study) == [] and rows(server, study) == 0
    assert httpx.get(f"{server.base}/dicomweb/studies?StudyInstanceUID={study}").json() == []

    deleted = deletions(server, sink, study, 3)
    assert len(deleted) == 3
    assert {e.json()["instance"] for e in deleted} == set(sops)
    first = next(e.json() for e in deleted if e.json()["instance"] == sops[0])
    name = first.pop("objectName")
    assert first == {"study": study, "series": series[0], "instance": sops[0]}
    assert name.startswith(f"studies/{study}/series/{series[0]}/instances/")
    assert is_instance_object(name, sops[0])
    assert all(
        e.headers["ce-source"] == "test-delete" and e.headers["ce-specversion"] == "1.0" for e in deleted
    )


def test_delete_is_idempotent(server: ServiceProcess, sink: EventSink) -> None:
    study, _, _ = _study(server)
    url = f"{server.base}/wado-rs/studies/{study}"
    assert httpx.delete(url).status_code == 204
    assert httpx.delete(url).status_code == 204
    assert httpx.delete(f"{server.base}/dicomweb/studies/{uid()}").status_code == 204
    assert objects(server, study) == []
    assert len(deletions(server, sink, study, 3)) == 3


def test_dicomweb_client_delete(server: ServiceProcess) -> None:
    study, series, sops = _study(server)
    client = DICOMwebClient(server.base + "/dicomweb")
    client.delete_instance(study, series[0], sops[0])
    client.delete_series(study, series[2])
    assert len(client.search_for_instances(study)) == 1
    client.delete_study(study)
    assert client.search_for_studies(search_filters={"StudyInstanceUID": study}) == []


def test_delete_with_malformed_uid_is_400(server: ServiceProcess) -> None:
    assert httpx.delete(f"{server.base}/dicomweb/studies/1.2.abc").status_code == 400
    assert httpx.delete(f"{server.base}/dicomweb/studies/1.2.3/series/01.2").status_code == 400
