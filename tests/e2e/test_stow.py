"""STOW-RS end to end: real HTTP through uvicorn, real DICOM files, real clients."""

from __future__ import annotations

import io
import socket
import sqlite3
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from tests.dicomfiles import chunks, make_dataset, make_instance, multipart_related, pydicom_testfile, uid
from tests.polling import wait_until
from tests.servers import ServiceProcess

REFERENCED = "00081199"
FAILED = "00081198"
RETRIEVE_URL = "00081190"
REF_SOP_INSTANCE = "00081155"
FAILURE_REASON = "00081197"


def post(
    server: ServiceProcess,
    parts: list[bytes],
    path: str = "/stow-rs/studies",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body, ctype = multipart_related(parts)
    return httpx.post(
        server.base + path, content=body, headers={"content-type": ctype, **(headers or {})}, timeout=60
    )


def referenced(resp: httpx.Response) -> list[str]:
    return [item[REF_SOP_INSTANCE]["Value"][0] for item in resp.json().get(REFERENCED, {}).get("Value", [])]


def failures(resp: httpx.Response) -> list[int]:
    return [item[FAILURE_REASON]["Value"][0] for item in resp.json().get(FAILED, {}).get("Value", [])]


def stored_objects(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.rglob("*") if p.is_file() and not p.name.startswith("catalog.db"))


def catalog_rows(data_dir: Path, sql: str = "SELECT count(*) FROM instances") -> int:
    with sqlite3.connect(data_dir / "catalog.db") as db:
        return int(db.execute(sql).fetchone()[0])


def data_dir(server: ServiceProcess) -> Path:
    return Path(server.args[server.args.index("--data-dir") + 1])


def test_single_instance_is_stored_byte_for_byte(fresh_server: ServiceProcess) -> None:
    blob = make_instance()
    ds = pydicom.dcmread(io.BytesIO(blob))
    resp = post(fresh_server, [blob])
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/dicom+json")
    assert referenced(resp) == [ds.SOPInstanceUID]
    body = resp.json()
    assert body[RETRIEVE_URL]["Value"][0] == f"{fresh_server.base}/wado-rs/studies/{ds.StudyInstanceUID}"
    item = body[REFERENCED]["Value"][0]
    assert item[RETRIEVE_URL]["Value"][0].endswith(
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    )
    objects = stored_objects(data_dir(fresh_server))
    assert len(objects) == 1
    assert objects[0].read_bytes() == blob
    assert catalog_rows(data_dir(fresh_server)) == 1


def test_several_instances_in_one_request(embedded: ServiceProcess) -> None:
    study = uid()
    blobs = [make_instance(study_uid=study, InstanceNumber=i) for i in range(5)]
    resp = post(embedded, blobs, f"/stow-rs/studies/{study}")
    assert resp.status_code == 200, resp.text
    assert len(referenced(resp)) == 5


def test_combined_root_accepts_stow(embedded: ServiceProcess) -> None:
    resp = post(embedded, [make_instance()], "/dicomweb/studies")
    assert resp.status_code == 200, resp.text
    assert resp.json()[RETRIEVE_URL]["Value"][0].startswith(f"{embedded.base}/dicomweb/studies/")


def test_study_mismatch_fails_that_part_only(fresh_server: ServiceProcess) -> None:
    study = uid()
    good, bad = make_instance(study_uid=study), make_instance()
    resp = post(fresh_server, [good, bad], f"/stow-rs/studies/{study}")
    assert resp.status_code == 202, resp.text
    assert len(referenced(resp)) == 1
    assert failures(resp) == [0xA900]
    assert len(stored_objects(data_dir(fresh_server))) == 1


def test_all_parts_failing_is_409_and_leaves_nothing(fresh_server: ServiceProcess) -> None:
    resp = post(fresh_server, [make_instance(), b"not a dicom file at all" * 10], f"/stow-rs/studies/{uid()}")
    assert resp.status_code == 409, resp.text
    assert failures(resp) == [0xA900, 0xC000]
    assert stored_objects(data_dir(fresh_server)) == []
    assert catalog_rows(data_dir(fresh_server)) == 0


def test_non_dicom_part_beside_a_good_one(embedded: ServiceProcess) -> None:
    resp = post(embedded, [make_instance(), b"\x00" * 200 + b"garbage"])
    assert resp.status_code == 202
    assert failures(resp) == [0xC000]
    assert len(referenced(resp)) == 1


def test_truncated_dicom_part_fails(fresh_server: ServiceProcess) -> None:
    blob = make_instance(rows=64, cols=64)
    resp = post(fresh_server, [blob[:-100]])
    assert resp.status_code == 409
    assert failures(resp) == [0xC000]
    assert stored_objects(data_dir(fresh_server)) == []


def test_truncated_body_is_400_and_leaves_no_trace(fresh_server: ServiceProcess) -> None:
    body, ctype = multipart_related([make_instance(), make_instance()])
    resp = httpx.post(
        fresh_server.base + "/stow-rs/studies", content=body[:-40], headers={"content-type": ctype}
    )
    assert resp.status_code == 400
    assert "closing delimiter" in resp.text or "truncated" in resp.text
    assert stored_objects(data_dir(fresh_server)) == []
    assert catalog_rows(data_dir(fresh_server)) == 0


def test_missing_boundary_is_400(embedded: ServiceProcess) -> None:
    resp = httpx.post(
        embedded.base + "/stow-rs/studies",
        content=b"x",
        headers={"content-type": 'multipart/related; type="application/dicom"'},
    )
    assert resp.status_code == 400
    assert "boundary" in resp.text


@pytest.mark.parametrize(
    "ctype",
    ["application/json", "application/dicom", 'multipart/related; type="application/dicom+json"; boundary=x'],
)
def test_wrong_content_type_is_415(embedded: ServiceProcess, ctype: str) -> None:
    resp = httpx.post(embedded.base + "/stow-rs/studies", content=b"{}", headers={"content-type": ctype})
    assert resp.status_code == 415, resp.text
    assert resp.text.strip()


def test_malformed_study_uid_in_url_is_400(embedded: ServiceProcess) -> None:
    resp = post(embedded, [make_instance()], "/stow-rs/studies/1.2.abc")
    assert resp.status_code == 400


def test_duplicate_store_is_idempotent(fresh_server: ServiceProcess) -> None:
    blob = make_instance()
    assert post(fresh_server, [blob]).status_code == 200
    assert post(fresh_server, [blob, blob]).status_code == 200
    assert len(stored_objects(data_dir(fresh_server))) == 1
    assert catalog_rows(data_dir(fresh_server)) == 1


def test_restore_under_another_series_moves_the_object(fresh_server: ServiceProcess) -> None:
    sop, study = uid(), uid()
    assert post(fresh_server, [make_instance(sop_uid=sop, study_uid=study)]).status_code == 200
    assert post(fresh_server, [make_instance(sop_uid=sop, study_uid=study)]).status_code == 200
    objects = stored_objects(data_dir(fresh_server))
    assert len(objects) == 1 and catalog_rows(data_dir(fresh_server)) == 1


def test_chunked_upload(embedded: ServiceProcess) -> None:
    body, ctype = multipart_related([make_instance(rows=256, cols=256) for _ in range(3)])
    resp = httpx.post(
        embedded.base + "/stow-rs/studies",
        content=chunks(body, 7919),
        headers={"content-type": ctype},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    assert len(referenced(resp)) == 3


def test_unquoted_boundary_with_preamble_and_start_parameter(embedded: ServiceProcess) -> None:
    blob = make_instance()
    body = b"preamble text\r\n--abc123\r\n\r\n" + blob + b"\r\n--abc123--\r\nepilogue"
    ctype = "multipart/related; type=application/dicom; start=<x>; boundary=abc123"
    resp = httpx.post(embedded.base + "/stow-rs/studies", content=body, headers={"content-type": ctype})
    assert resp.status_code == 200, resp.text


def test_xml_response_when_asked(embedded: ServiceProcess) -> None:
    blob = make_instance()
    resp = post(embedded, [blob], headers={"accept": "application/dicom+xml"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/dicom+xml")
    assert b"<NativeDicomModel>" in resp.content and b'keyword="ReferencedSOPSequence"' in resp.content


PYDICOM_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "image_dfl.dcm",
    "JPEG2000.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_rle_2frame.dcm",
    "JPEG-lossy.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "rtplan.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "JPGExtended.dcm",
    "MR_small_jp2klossless.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
]


def test_every_transfer_syntax_in_pydicom_test_files(fresh_server: ServiceProcess) -> None:
    # Several of these files share a SOP Instance UID, so each is checked right after its own store.
    syntaxes = set()
    for name in PYDICOM_FILES:
        try:
            blob = pydicom_testfile(name)
        except AssertionError:
            continue  # not shipped in this pydicom wheel
        ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
        syntaxes.add(ds.file_meta.TransferSyntaxUID)
        resp = post(fresh_server, [blob])
        assert resp.status_code == 200, (name, resp.text)
        assert referenced(resp) == [ds.SOPInstanceUID]
        (obj,) = data_dir(fresh_server).rglob(f"{ds.SOPInstanceUID}.*.dcm")
        assert obj.read_bytes() == blob, name
    assert len(syntaxes) >= 8


def test_dicomweb_client_store_instances(embedded: ServiceProcess) -> None:
    client = DICOMwebClient(url=embedded.base + "/dicomweb")
    datasets = [make_dataset(InstanceNumber=i) for i in range(3)]
    result = client.store_instances(datasets=datasets)
    uids = [item.ReferencedSOPInstanceUID for item in result.ReferencedSOPSequence]
    assert uids == [d.SOPInstanceUID for d in datasets]


def test_browser_form_upload(fresh_server: ServiceProcess) -> None:
    blobs = [make_instance(), make_instance()]
    files = [
        ("file", ("a.dcm", blobs[0], "application/dicom")),
        ("file", ("b.dcm", blobs[1], "application/dicom")),
    ]
    resp = httpx.post(fresh_server.base + "/dicomweb/studies", files=files, data={"note": "x"})
    assert resp.status_code == 200, resp.text
    assert len(referenced(resp)) == 2
    assert {p.read_bytes() for p in stored_objects(data_dir(fresh_server))} == set(blobs)


def test_disconnect_mid_upload_leaves_nothing(fresh_server: ServiceProcess) -> None:
    first = make_instance()
    # The second part is large enough (6 MiB) that half the body reaches the disk (the file
    # store buffers 1 MiB before it creates the temp file).
    body, ctype = multipart_related([first, make_instance(rows=1024, cols=1024, frames=3)])
    head = (
        f"POST /stow-rs/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    data = data_dir(fresh_server)
    with socket.create_connection(("127.0.0.1", fresh_server.port)) as sock:
        sock.sendall(head + body[: len(body) // 2])
        # Mid-upload: the server is writing the second part (a temp file) and waits for the rest.
        wait_until(lambda: stored_objects(data), what="the upload reaching the store")
    # The client is gone: the server rolls the request back, the first (complete) part too.
    wait_until(lambda: stored_objects(data) == [], what="the rollback of the disconnected upload")
    assert catalog_rows(data) == 0
    # The server is still healthy.
    assert post(fresh_server, [first]).status_code == 200


def test_object_sent_without_preamble_is_stored_as_part10(fresh_server: ServiceProcess) -> None:
    blob = make_instance()
    resp = post(fresh_server, [blob[132:]])
    assert resp.status_code == 200, resp.text
    (obj,) = stored_objects(data_dir(fresh_server))
    assert obj.read_bytes() == bytes(128) + b"DICM" + blob[132:]
