"""Drop-in mode for an existing Alvearie deployment: no database of ours (``QUERY_ENDPOINT``
set, no ``CATALOG_URL``). STOW acknowledges an instance only once the broker took its event;
the wado service finds instances through the Alvearie query API and reads them from S3."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from tests.alvearie_fake import AlvearieFake
from tests.dicomfiles import make_instance, multipart_related
from tests.servers import ServiceProcess

PROCESSING_FAILURE = 0x0110


@pytest.fixture
def fake() -> Iterator[AlvearieFake]:
    f = AlvearieFake().start()
    yield f
    f.stop()


@pytest.fixture
def services(
    s3_bucket_env: dict[str, str], s3_admin: Any, fake: AlvearieFake, tmp_path: Path
) -> Iterator[tuple[ServiceProcess, ServiceProcess, str]]:
    bucket = f"a-{uuid.uuid4().hex[:16]}"
    s3_admin.create_bucket(Bucket=bucket)
    env = {
        **s3_bucket_env,
        "BUCKET_NAME": bucket,
        "QUERY_ENDPOINT": fake.query_endpoint,
        "K_SINK": fake.sink,
        "PROVIDER_NAME": "site-a",
        "WADO_EXTERNAL_ENDPOINT": "https://img-ingest-wado.example.org/wado-rs",
    }
    stow = ServiceProcess("stow-svc", env=env, log_path=tmp_path / "stow.log")
    stow.env.pop("CATALOG_URL", None)
    stow.start()
    wado = ServiceProcess("wado-svc", env=stow.env, log_path=tmp_path / "wado.log")
    try:
        wado.start()
        yield stow, wado, bucket
    finally:
        stow.stop()
        wado.stop()


def _stow(base: str, blobs: list[bytes]) -> httpx.Response:
    body, ctype = multipart_related(blobs)
    return httpx.post(base + "/stow-rs/studies", content=body, headers={"content-type": ctype}, timeout=60)


def _uids(blob: bytes) -> tuple[str, str, str]:
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


def test_acknowledged_only_after_the_broker_took_the_event(
    services: tuple[ServiceProcess, ServiceProcess, str], fake: AlvearieFake
) -> None:
    stow, _, _ = services
    blob = make_instance()
    resp = _stow(stow.base, [blob])
    assert resp.status_code == 200, resp.text
    # Already there when the answer came: sent before, not after.
    assert len(fake.events) == 1
    assert fake.events[0]["ce-type"] == "ImageStoredEvent"
    assert fake.instances[0].provider == "site-a"


def test_broker_refusing_fails_the_part_and_removes_the_object(
    services: tuple[ServiceProcess, ServiceProcess, str], fake: AlvearieFake, s3_admin: Any
) -> None:
    stow, _, bucket = services
    fake.refusing = True
    resp = _stow(stow.base, [make_instance()])
    assert resp.status_code == 409, resp.text
    failed = resp.json()["00081198"]["Value"]
    assert [f["00081197"]["Value"][0] for f in failed] == [PROCESSING_FAILURE]
    assert s3_admin.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    # The part failed because the broker refused the event, after retries (not before trying).
    assert fake.refused >= 2


def test_wado_resolves_through_the_query_api_and_reads_from_s3(
    services: tuple[ServiceProcess, ServiceProcess, str], fake: AlvearieFake
) -> None:
    stow, wado, _ = services
    study = pydicom.uid.generate_uid()
    series = pydicom.uid.generate_uid()
    blobs = [
        make_instance(study_uid=study, series_uid=series, InstanceNumber=n, PatientID="PID-ALV", frames=2)
        for n in (2, 1)
    ]
    assert _stow(stow.base, blobs).status_code == 200
    _, _, sop = _uids(blobs[1])

    found = httpx.get(wado.base + "/wado-rs/studies", params={"PatientID": "PID-ALV"})
    assert found.status_code == 200, found.text
    (result,) = found.json()
    assert result["0020000D"]["Value"] == [study]
    assert result["00201208"]["Value"] == [2]
    assert result["00100010"]["Value"] == [{"Alphabetic": "Doe^Jane"}]
    assert result["00081190"]["Value"][0].endswith(f"/wado-rs/studies/{study}")
    assert fake.queries[-1]["scope"] == "STUDY"
    assert fake.queries[-1]["queryAttributes"] == {str(0x00100020): "PID-ALV"}

    series_found = httpx.get(wado.base + f"/wado-rs/studies/{study}/series").json()
    assert [s["0020000E"]["Value"] for s in series_found] == [[series]]

    got = httpx.get(
        wado.base + f"/wado-rs/studies/{study}/series/{series}/instances/{sop}",
        headers={"accept": 'multipart/related; type="application/dicom"'},
    )
    assert got.status_code == 200
    assert blobs[1] in got.content
    frame = httpx.get(
        wado.base + f"/wado-rs/studies/{study}/series/{series}/instances/{sop}/frames/2",
        headers={"accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"},
    )
    assert frame.status_code == 200
    assert blobs[1][-(16 * 16 * 2) :] in frame.content
    metadata = httpx.get(wado.base + f"/wado-rs/studies/{study}/metadata").json()
    assert [m["00200013"]["Value"] for m in metadata] == [[1], [2]]
    missing = httpx.get(wado.base + f"/wado-rs/studies/{study}/series/{series}/instances/1.2.3.4/metadata")
    assert missing.status_code == 404


def test_combined_date_time_range_passes_the_date_range_to_the_query_api(
    services: tuple[ServiceProcess, ServiceProcess, str], fake: AlvearieFake
) -> None:
    _, wado, _ = services
    params = {"PatientID": "PID-ALV", "StudyDate": "20240115-20240116", "StudyTime": "1000-0900"}
    resp = httpx.get(wado.base + "/wado-rs/studies", params=params)
    assert resp.status_code == 200, resp.text
    assert fake.queries[-1]["queryAttributes"] == {
        str(0x00100020): "PID-ALV",
        str(0x00080020): "20240115-20240116",
    }


def test_an_object_failing_the_pixel_check_is_not_retrievable(
    services: tuple[ServiceProcess, ServiceProcess, str], fake: AlvearieFake, s3_admin: Any
) -> None:
    """An object that reached the bucket some other way (STOW refuses it) and is listed by the
    query API: scanned with the ingest pixel-data check, it is a 404 with the reason."""
    from tests.alvearie_fake import FakeInstance
    from tests.e2e.test_reindex_pixelcheck import hostile

    stow, wado, bucket = services
    study = pydicom.uid.generate_uid()
    good = make_instance(study_uid=study)
    assert _stow(stow.base, [good]).status_code == 200
    accept = {"accept": 'multipart/related; type="application/dicom"'}
    for reason, blob in hostile().items():
        ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
        key = f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}.dcm"
        s3_admin.put_object(Bucket=bucket, Key=key, Body=blob)
        elements = {
            tag: {"vr": "UI", "value": value}
            for tag, value in (
                ("0020000D", ds.StudyInstanceUID),
                ("0020000E", ds.SeriesInstanceUID),
                ("00080018", ds.SOPInstanceUID),
            )
        }
        fake.instances.append(FakeInstance("site-a", key, "", elements, "2024-01-01T00:00:00+00:00"))
        path = "/wado-rs/" + key.removesuffix(".dcm")
        for suffix, headers in (("", accept), ("/metadata", {}), ("/frames/1", {})):
            resp = httpx.get(wado.base + path + suffix, headers=headers)
            assert resp.status_code == 404, (suffix, resp.status_code, resp.text)
            assert "fails the pixel-data check" in resp.text and reason in resp.text, resp.text
        study_resp = httpx.get(wado.base + f"/wado-rs/studies/{ds.StudyInstanceUID}", headers=accept)
        assert study_resp.status_code == 404 and reason in study_resp.text
    # The good instance is still served.
    _, series, sop = _uids(good)
    got = httpx.get(wado.base + f"/wado-rs/studies/{study}/series/{series}/instances/{sop}", headers=accept)
    assert got.status_code == 200 and good in got.content
