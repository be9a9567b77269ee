"""WADO-RS retrieve of instances and metadata over real HTTP: byte-exact round trips,
transfer-syntax negotiation, conditional requests, ZIP, and the negative cases."""

from __future__ import annotations

import io
import os
import zipfile
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.etree import ElementTree

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate

from tests.dicomfiles import make_dataset, make_instance, multipart_related, pydicom_testfile, to_bytes, uid
from tests.servers import ServiceProcess

ANY_TS = 'multipart/related; type="application/dicom"; transfer-syntax=*'
ELE = "1.2.840.10008.1.2.1"


def store(server: ServiceProcess, blobs: list[bytes]) -> None:
    body, ctype = multipart_related(blobs)
    resp = httpx.post(
        server.base + "/dicomweb/studies", content=body, headers={"content-type": ctype}, timeout=60
    )
    assert resp.status_code == 200, resp.text


def instance_url(server: ServiceProcess, ds: pydicom.Dataset, root: str = "/dicomweb") -> str:
    return (
        f"{server.base}{root}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def parts(resp: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/related body (test-side parser, independent of the server's)."""
    ctype = resp.headers["content-type"]
    assert ctype.startswith("multipart/related"), ctype
    params = [p.strip() for p in ctype.split(";")]
    boundary = next(p.split("=", 1)[1].strip('"') for p in params if p.startswith("boundary="))
    out = []
    for chunk in resp.content.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, body = chunk[2:].partition(b"\r\n\r\n")
        headers = dict(
            (k.strip().lower(), v.strip())
            for k, v in (line.split(":", 1) for line in head.decode().split("\r\n"))
        )
        out.append((headers, body[:-2]))
    return out


def dataset_after_meta(blob: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    meta_end = 132 + 12 + int(ds.file_meta.FileMetaInformationGroupLength)
    return blob[meta_end:]


def _roundtrip_files() -> list[str]:
    """Every Part-10 file of the wheel that has a transfer syntax."""
    folder = os.path.dirname(str(get_testdata_file("CT_small.dcm")))
    names = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".dcm"):
            continue
        try:
            ds = pydicom.dcmread(os.path.join(folder, name), stop_before_pixels=True)
        except Exception:
            continue
        # Truncated files are refused by STOW by design (see the STOW tests).
        if "TransferSyntaxUID" in ds.file_meta and "truncated" not in name and name not in REFUSED:
            names.append(name)
    return names


def wheel_file(name: str) -> bytes:
    """The file as shipped, or, when it lacks an identifying UID STOW needs, the same data
    set with generated UIDs added, written by pydicom in the file's own transfer syntax."""
    blob = pydicom_testfile(name)
    ds = pydicom.dcmread(io.BytesIO(blob))
    keys = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
    if all(str(ds.get(k, "") or "") for k in keys):
        return blob
    for k in keys:
        if not str(ds.get(k, "") or ""):
            setattr(ds, k, "1.2.840.10008.5.1.4.1.1.7" if k == "SOPClassUID" else uid())
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


#: Wheel files whose header contradicts their pixel data: STOW refuses them (0xC000, reason).
REFUSED = {"badVR.dcm": "NumberOfFrames '1A' is not an integer"}
ROUNDTRIP = _roundtrip_files()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_wheel_file_whose_header_lies_is_refused_with_the_reason(
    embedded: ServiceProcess, name: str
) -> None:
    body, ctype = multipart_related([wheel_file(name)])
    resp = httpx.post(
        embedded.base + "/dicomweb/studies", content=body, headers={"content-type": ctype}, timeout=60
    )
    assert resp.status_code == 409
    [failed] = resp.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC000]
    assert REFUSED[name] in resp.headers["warning"]


def test_the_round_trip_set_covers_every_transfer_syntax_of_the_wheel() -> None:
    syntaxes = {
        str(pydicom.dcmread(get_testdata_file(n), stop_before_pixels=True).file_meta.TransferSyntaxUID)
        for n in ROUNDTRIP
    }
    assert {
        ELE,
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
    } <= syntaxes


@pytest.mark.parametrize("name", ROUNDTRIP)
def test_instance_round_trip_is_byte_exact_with_any_transfer_syntax(
    embedded: ServiceProcess, name: str
) -> None:
    blob = wheel_file(name)
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    # Several wheel files share UIDs: storing replaces, so store right before retrieving.
    store(embedded, [blob])
    resp = httpx.get(instance_url(embedded, ds), headers={"accept": ANY_TS}, timeout=30)
    assert resp.status_code == 200, resp.text
    [(headers, body)] = parts(resp)
    assert headers["content-type"] == f"application/dicom; transfer-syntax={ds.file_meta.TransferSyntaxUID}"
    assert dataset_after_meta(body) == dataset_after_meta(blob)
    assert body == blob


def test_dicomweb_client_retrieves_study_series_instance_and_iterates(embedded: ServiceProcess) -> None:
    study, series = uid(), uid()
    blobs = [
        make_instance(study_uid=study, series_uid=series, InstanceNumber=i, pixel_seed=i) for i in range(3)
    ]
    store(embedded, blobs)
    sops = sorted(pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID for b in blobs)
    client = DICOMwebClient(embedded.base + "/dicomweb")
    assert sorted(d.SOPInstanceUID for d in client.retrieve_study(study)) == sops
    assert sorted(d.SOPInstanceUID for d in client.retrieve_series(study, series)) == sops
    assert sorted(d.SOPInstanceUID for d in client.iter_series(study, series)) == sops
    assert sorted(d.SOPInstanceUID for d in client.iter_study(study)) == sops
    one = client.retrieve_instance(study, series, sops[0])
    original = next(
        pydicom.dcmread(io.BytesIO(b))
        for b in blobs
        if pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID == sops[0]
    )
    assert one.PixelData == original.PixelData
    same = client.retrieve_instance(study, series, sops[0], media_types=(("application/dicom", "*"),))
    assert same.PixelData == original.PixelData


def test_dicomweb_client_metadata_at_every_level(embedded: ServiceProcess) -> None:
    study, series = uid(), uid()
    blobs = [make_instance(study_uid=study, series_uid=series, InstanceNumber=i) for i in range(2)]
    store(embedded, blobs)
    client = DICOMwebClient(embedded.base + "/wado-rs")
    study_meta = client.retrieve_study_metadata(study)
    assert len(study_meta) == 2
    assert {m["0020000D"]["Value"][0] for m in study_meta} == {study}
    assert len(client.retrieve_series_metadata(study, series)) == 2
    sop = study_meta[0]["00080018"]["Value"][0]
    meta = client.retrieve_instance_metadata(study, series, sop)
    assert meta["00100010"]["Value"][0]["Alphabetic"] == "Doe^Jane"
    uri = meta["7FE00010"]["BulkDataURI"]
    assert uri == f"{embedded.base}/wado-rs/studies/{study}/series/{series}/instances/{sop}/bulkdata/7FE00010"
    [pixels] = client.retrieve_bulkdata(uri)
    original = next(
        pydicom.dcmread(io.BytesIO(b)) for b in blobs if sop in pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID
    )
    assert pixels == original.PixelData


def test_study_metadata_is_the_json_array_of_the_stored_blobs(embedded: ServiceProcess) -> None:
    study = uid()
    store(embedded, [make_instance(study_uid=study, InstanceNumber=i) for i in range(4)])
    resp = httpx.get(f"{embedded.base}/dicomweb/studies/{study}/metadata")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/dicom+json"
    body = resp.json()
    assert len(body) == 4 and all(isinstance(m, dict) for m in body)
    assert "@@BASE@@" not in resp.text
    assert all(
        m["7FE00010"]["BulkDataURI"].startswith(f"{embedded.base}/dicomweb/studies/{study}/") for m in body
    )


def test_bulk_data_uris_honour_forwarded_headers(embedded: ServiceProcess) -> None:
    ds = make_dataset()
    store(embedded, [to_bytes(ds)])
    resp = httpx.get(
        instance_url(embedded, ds) + "/metadata",
        headers={"x-forwarded-proto": "https", "x-forwarded-host": "pacs.example.org:8443"},
    )
    uri = resp.json()[0]["7FE00010"]["BulkDataURI"]
    assert uri.startswith("https://pacs.example.org:8443/dicomweb/studies/")


def test_metadata_as_dicom_xml(embedded: ServiceProcess) -> None:
    ds = make_dataset(PatientName="Müller^Hans")
    store(embedded, [to_bytes(ds)])
    resp = httpx.get(
        instance_url(embedded, ds) + "/metadata",
        headers={"accept": 'multipart/related; type="application/dicom+xml"'},
    )
    assert resp.status_code == 200
    [(headers, body)] = parts(resp)
    assert headers["content-type"] == "application/dicom+xml"
    root = ElementTree.fromstring(body)
    ns = {"d": "http://dicom.nema.org/PS3.19/models/NativeDICOM"}
    name = root.find("d:DicomAttribute[@keyword='PatientName']/d:PersonName/d:Alphabetic", ns)
    assert name is not None
    assert name.findtext("d:FamilyName", namespaces=ns) == "Müller"
    assert name.findtext("d:GivenName", namespaces=ns) == "Hans"
    uid_elem = root.find("d:DicomAttribute[@tag='00080018']/d:Value", ns)
    assert uid_elem is not None and uid_elem.text == ds.SOPInstanceUID
    bulk = root.find("d:DicomAttribute[@tag='7FE00010']/d:BulkData", ns)
    assert bulk is not None and bulk.get("uri", "").endswith("/bulkdata/7FE00010")


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "image_dfl.dcm",
        "JPEG2000.dcm",
        "MR_small_RLE.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
    ],
)
def test_explicit_le_is_produced_on_the_fly(embedded: ServiceProcess, name: str) -> None:
    blob = pydicom_testfile(name)
    original = pydicom.dcmread(io.BytesIO(blob))
    store(embedded, [blob])
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={ELE}'
    resp = httpx.get(instance_url(embedded, original), headers={"accept": accept}, timeout=30)
    assert resp.status_code == 200, resp.text
    [(headers, body)] = parts(resp)
    assert headers["content-type"] == f"application/dicom; transfer-syntax={ELE}"
    got = pydicom.dcmread(io.BytesIO(body))
    assert got.file_meta.TransferSyntaxUID == ELE
    assert got.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(got.pixel_array, original.pixel_array)


def test_default_transfer_syntax_is_explicit_le(embedded: ServiceProcess) -> None:
    blob = pydicom_testfile("MR_small_implicit.dcm")
    ds = pydicom.dcmread(io.BytesIO(blob))
    store(embedded, [blob])
    resp = httpx.get(
        instance_url(embedded, ds), headers={"accept": 'multipart/related; type="application/dicom"'}
    )
    [(headers, _)] = parts(resp)
    assert headers["content-type"] == f"application/dicom; transfer-syntax={ELE}"


def _mpeg_instance() -> bytes:
    ds = make_dataset()  # native, then relabelled: nothing here can encode MPEG-2
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_compressed_without_codec_is_406_with_a_reason_but_served_as_stored(embedded: ServiceProcess) -> None:
    blob = _mpeg_instance()
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    store(embedded, [blob])
    url = instance_url(embedded, ds)
    resp = httpx.get(
        url, headers={"accept": f'multipart/related; type="application/dicom"; transfer-syntax={ELE}'}
    )
    assert resp.status_code == 406
    assert "1.2.840.10008.1.2.4.100" in resp.text and "decoder" in resp.text
    resp = httpx.get(url, headers={"accept": ANY_TS})
    assert resp.status_code == 200 and parts(resp)[0][1] == blob
    # q-values: the preferred form is impossible, the fallback is taken.
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={ELE}, {ANY_TS}; q=0.5'
    resp = httpx.get(url, headers={"accept": accept})
    assert resp.status_code == 200 and parts(resp)[0][1] == blob


@pytest.mark.parametrize(
    "accept",
    [
        "*/*",
        'multipart/related; type="*/*"',
        "multipart/related; type=application/dicom; transfer-syntax=*",
        'multipart/related;type="application/dicom";transfer-syntax="*"',
        'text/html;q=0.9, multipart/related; type="application/dicom"; transfer-syntax=*',
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50; q=1,'
        " */*; q=0.1",
    ],
)
def test_accept_variants_are_tolerated(embedded: ServiceProcess, accept: str) -> None:
    blob = make_instance()
    ds = pydicom.dcmread(io.BytesIO(blob))
    store(embedded, [blob])
    resp = httpx.get(instance_url(embedded, ds), headers={"accept": accept})
    assert resp.status_code == 200, resp.text
    assert parts(resp)[0][1] == blob


def test_single_part_application_dicom_for_one_instance(embedded: ServiceProcess) -> None:
    blob = make_instance()
    ds = pydicom.dcmread(io.BytesIO(blob))
    store(embedded, [blob])
    resp = httpx.get(instance_url(embedded, ds), headers={"accept": "application/dicom; transfer-syntax=*"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/dicom")
    assert resp.content == blob


def test_etag_and_last_modified_give_304(embedded: ServiceProcess) -> None:
    study = uid()
    store(embedded, [make_instance(study_uid=study)])
    for suffix in ("", "/metadata"):
        url = f"{embedded.base}/dicomweb/studies/{study}{suffix}"
        first = httpx.get(url, headers={"accept": ANY_TS} if not suffix else {})
        assert first.status_code == 200
        etag = first.headers["etag"]
        assert etag.startswith('"') and first.headers["last-modified"]
        again = httpx.get(url, headers={"if-none-match": etag, **({"accept": ANY_TS} if not suffix else {})})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        stale = httpx.get(
            url, headers={"if-none-match": '"other"', **({"accept": ANY_TS} if not suffix else {})}
        )
        assert stale.status_code == 200
        later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
        assert httpx.get(url, headers={"if-modified-since": later}).status_code == 304
        earlier = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)
        assert httpx.get(url, headers={"if-modified-since": earlier}).status_code == 200


def test_etag_changes_when_the_study_changes(embedded: ServiceProcess) -> None:
    study = uid()
    store(embedded, [make_instance(study_uid=study)])
    url = f"{embedded.base}/dicomweb/studies/{study}/metadata"
    before = httpx.get(url).headers["etag"]
    store(embedded, [make_instance(study_uid=study)])
    after = httpx.get(url, headers={"if-none-match": before})
    assert after.status_code == 200 and after.headers["etag"] != before and len(after.json()) == 2


def test_study_as_streamed_zip(embedded: ServiceProcess) -> None:
    study = uid()
    blobs = [make_instance(study_uid=study, InstanceNumber=i, pixel_seed=i) for i in range(3)]
    store(embedded, blobs)
    resp = httpx.get(f"{embedded.base}/dicomweb/studies/{study}", headers={"accept": "application/zip"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(resp.content)) as archive:
        assert archive.testzip() is None
        contents = sorted(archive.read(n) for n in archive.namelist())
        assert all(n.startswith(study + "/") and n.endswith(".dcm") for n in archive.namelist())
    assert contents == sorted(blobs)


def test_series_level_retrieve_streams_all_instances_as_stored(embedded: ServiceProcess) -> None:
    study, series = uid(), uid()
    blobs = [
        make_instance(study_uid=study, series_uid=series, InstanceNumber=i, pixel_seed=i) for i in range(3)
    ]
    store(embedded, blobs)
    resp = httpx.get(f"{embedded.base}/wado-rs/studies/{study}/series/{series}", headers={"accept": ANY_TS})
    assert resp.status_code == 200
    assert sorted(b for _, b in parts(resp)) == sorted(blobs)


def test_unknown_uids_are_404(embedded: ServiceProcess) -> None:
    base = f"{embedded.base}/dicomweb/studies/1.2.3.4.5.6.7.8.9"
    for path in (
        "",
        "/metadata",
        "/series/1.2.3",
        "/series/1.2.3/metadata",
        "/series/1.2.3/instances/1.2.3.4",
        "/series/1.2.3/instances/1.2.3.4/metadata",
        "/series/1.2.3/instances/1.2.3.4/frames/1",
        "/rendered",
        "/thumbnail",
    ):
        resp = httpx.get(base + path)
        assert resp.status_code == 404, path
        assert resp.text.strip() and "\n" not in resp.text.strip()


@pytest.mark.parametrize(
    "path",
    [
        "/studies/1.2.abc",
        "/studies/1.2.3/series/01.2/metadata",
        "/studies/1.2.3/series/1.2/instances/1..2",
        "/studies/" + "1" * 65 + "/metadata",
    ],
)
def test_malformed_uids_are_400(embedded: ServiceProcess, path: str) -> None:
    resp = httpx.get(embedded.base + "/dicomweb" + path)
    assert resp.status_code == 400
    assert "UID" in resp.text


@pytest.mark.parametrize(
    "suffix,accept",
    [
        ("", "text/html"),
        ("", "image/png"),
        ("/metadata", "image/jpeg"),
        ("", 'multipart/related; type="application/dicom"; transfer-syntax=1.2.3.4'),
    ],
)
def test_unservable_accept_is_406(embedded: ServiceProcess, suffix: str, accept: str) -> None:
    ds = make_dataset()
    store(embedded, [to_bytes(ds)])
    resp = httpx.get(instance_url(embedded, ds) + suffix, headers={"accept": accept})
    assert resp.status_code == 406
    assert resp.text.strip()
