"""WADO-RS bulk data of Deflated and Big Endian objects, and HEAD from the catalog, over HTTP."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian

from tests.dicomfiles import make_dataset, pydicom_testfile, to_bytes
from tests.e2e.test_wado_retrieve import instance_url, parts, store
from tests.servers import ServiceProcess

OCTET = "application/octet-stream"


def _saved(ds: pydicom.Dataset) -> bytes:
    """Written in the data set's own transfer syntax (deflated, big endian)."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _big_endian(rows: int, cols: int, frames: int) -> tuple[pydicom.Dataset, bytes, bytes]:
    """An Explicit VR Big Endian object with 16-bit pixels: (data set, blob, pixels as LE)."""
    ds = make_dataset(rows=rows, cols=cols, frames=frames, pixel_seed=11)
    little = bytes(ds.PixelData)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = np.frombuffer(little, dtype="<u2").astype(">u2").tobytes()
    blob = _saved(ds)
    assert ExplicitVRBigEndian.encode() in blob[:400]
    return ds, blob, little


# ---------------------------------------------------------------- deflated


@pytest.mark.parametrize("bits", [8, 16])
def test_deflated_metadata_has_pixel_data_as_bulkdata_uri_served_inflated(
    embedded: ServiceProcess, bits: int
) -> None:
    ds = make_dataset(rows=10, cols=12, frames=3, bits=bits, pixel_seed=5)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    blob = _saved(ds)
    assert ds.PixelData not in blob  # really deflated
    store(embedded, [blob])
    [meta] = httpx.get(instance_url(embedded, ds) + "/metadata").json()
    element = meta["7FE00010"]
    assert element["vr"] == ("OW" if bits == 16 else "OB")
    uri = element["BulkDataURI"]
    assert uri == instance_url(embedded, ds) + "/bulkdata/7FE00010"
    client = DICOMwebClient(embedded.base + "/dicomweb")
    assert client.retrieve_bulkdata(uri) == [ds.PixelData]
    assert client.retrieve_bulkdata(uri, byte_range=(7, 100)) == [ds.PixelData[7:101]]
    single = httpx.get(uri, headers={"accept": OCTET})
    assert single.status_code == 200 and single.content == ds.PixelData
    frame_size = 10 * 12 * bits // 8
    frames = client.retrieve_instance_frames(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, frame_numbers=[3, 1]
    )
    assert frames == [ds.PixelData[2 * frame_size :], ds.PixelData[:frame_size]]


def test_pydicom_deflated_sample_bulkdata_is_the_inflated_pixel_data(embedded: ServiceProcess) -> None:
    blob = pydicom_testfile("image_dfl.dcm")
    ds = pydicom.dcmread(io.BytesIO(blob))
    store(embedded, [blob])
    [meta] = httpx.get(instance_url(embedded, ds) + "/metadata").json()
    [value] = DICOMwebClient(embedded.base + "/dicomweb").retrieve_bulkdata(meta["7FE00010"]["BulkDataURI"])
    assert value == ds.PixelData


# ---------------------------------------------------------------- big endian


def test_big_endian_pixel_bulkdata_is_little_endian_like_the_frames(embedded: ServiceProcess) -> None:
    ds, blob, little = _big_endian(rows=9, cols=7, frames=3)
    store(embedded, [blob])
    url = instance_url(embedded, ds)
    [meta] = httpx.get(url + "/metadata").json()
    assert meta["7FE00010"]["vr"] == "OW"
    uri = meta["7FE00010"]["BulkDataURI"]
    client = DICOMwebClient(embedded.base + "/dicomweb")
    assert client.retrieve_bulkdata(uri) == [little]
    single = httpx.get(uri, headers={"accept": OCTET})
    assert single.content == little
    assert single.headers["content-length"] == str(len(little))
    # Ranges that split words are cut from the swapped value.
    for first, last in [(0, 0), (1, 4), (3, 3), (5, 120), (len(little) - 3, len(little) - 1)]:
        resp = httpx.get(uri, headers={"accept": OCTET, "range": f"bytes={first}-{last}"})
        assert resp.status_code == 206
        assert resp.content == little[first : last + 1], (first, last)
        assert resp.headers["content-range"] == f"bytes {first}-{last}/{len(little)}"
    suffix = httpx.get(uri, headers={"accept": OCTET, "range": "bytes=-5"})
    assert suffix.content == little[-5:]
    # The frames (octet-stream, Explicit VR Little Endian) agree with the bulk data.
    frame_size = 9 * 7 * 2
    frames = client.retrieve_instance_frames(
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        frame_numbers=[1, 2, 3],
        media_types=((OCTET, "1.2.840.10008.1.2.1"),),
    )
    assert b"".join(frames) == little
    assert frames[1] == little[frame_size : 2 * frame_size]


def test_big_endian_8_bit_pixel_bulkdata_is_not_swapped(embedded: ServiceProcess) -> None:
    ds = make_dataset(rows=6, cols=5, bits=8, pixel_seed=2)
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    store(embedded, [_saved(ds)])
    [value] = DICOMwebClient(embedded.base + "/dicomweb").retrieve_bulkdata(
        instance_url(embedded, ds) + "/bulkdata/7FE00010"
    )
    assert value == ds.PixelData


# ---------------------------------------------------------------- HEAD


def _object_file(data_dir: Path, sop_uid: str) -> Path:
    [path] = [p for p in data_dir.rglob("*") if p.is_file() and sop_uid in p.name]
    return path


def test_head_answers_from_the_catalog_without_reading_the_object(
    fresh_server: ServiceProcess, tmp_path: Path
) -> None:
    ds = make_dataset(rows=8, cols=8, frames=2)
    blob = to_bytes(ds)
    store(fresh_server, [blob])
    url = instance_url(fresh_server, ds)
    study_url = f"{fresh_server.base}/dicomweb/studies/{ds.StudyInstanceUID}"
    got = httpx.get(url, headers={"accept": "application/dicom"})
    assert got.status_code == 200 and got.content == blob
    frame = httpx.get(url + "/frames/2", headers={"accept": OCTET})
    bulk = httpx.get(url + "/bulkdata/7FE00010", headers={"accept": OCTET})
    study = httpx.get(study_url)
    # The object is gone from the store: only the catalog can answer now.
    _object_file(tmp_path / "data", ds.SOPInstanceUID).unlink()
    try:  # a GET reads it: an error status (the object is opened before the answer starts)
        failed = httpx.get(url, headers={"accept": "application/dicom"}).status_code >= 400
    except httpx.RemoteProtocolError:
        failed = True
    assert failed

    head = httpx.head(url, headers={"accept": "application/dicom"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(blob))
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["etag"] == got.headers["etag"]
    head = httpx.head(url + "/frames/2", headers={"accept": OCTET})
    assert head.status_code == 200
    assert head.headers["content-type"] == frame.headers["content-type"]
    assert head.headers["etag"] == frame.headers["etag"]
    head = httpx.head(url + "/bulkdata/7FE00010", headers={"accept": OCTET})
    assert head.status_code == 200
    assert head.headers["content-length"] == bulk.headers["content-length"] == str(len(ds.PixelData))
    head = httpx.head(study_url)
    assert head.status_code == 200
    assert head.headers["content-type"].split(";")[0] == study.headers["content-type"].split(";")[0]
    assert "content-length" not in head.headers  # not known without building the body
    # Conditional and negative answers also come from the catalog.
    conditional = {"accept": "application/dicom", "if-none-match": got.headers["etag"]}
    assert httpx.head(url, headers=conditional).status_code == 304
    assert httpx.head(url + "/frames/3", headers={"accept": OCTET}).status_code == 404
    assert httpx.head(url + "/bulkdata/00101234").status_code == 404
    assert httpx.head(url, headers={"accept": "image/png"}).status_code == 406
    missing = f"{study_url}/series/{ds.SeriesInstanceUID}/instances/1.2.3.4"
    assert httpx.head(missing).status_code == 404


def test_head_of_a_multipart_retrieve_names_the_boundary_and_syntax(embedded: ServiceProcess) -> None:
    ds = make_dataset()
    store(embedded, [to_bytes(ds)])
    url = instance_url(embedded, ds)
    head = httpx.head(url)
    got = httpx.get(url)
    assert head.status_code == got.status_code == 200
    assert head.headers["content-type"].startswith('multipart/related; type="application/dicom"')
    assert head.headers["etag"] == got.headers["etag"]
    assert len(parts(got)) == 1
