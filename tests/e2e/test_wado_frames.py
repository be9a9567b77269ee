"""WADO-RS frames and bulk data over real HTTP: byte ranges of the stored objects."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.encaps import generate_frames

from dicomweb_core.catalog.sqlite import SQLiteCatalog
from dicomweb_core.stores.file import FileObjectStore
from dicomweb_core.wado.frames import PixelSource
from tests.dicomfiles import make_dataset, pydicom_testfile, to_bytes
from tests.e2e.test_wado_retrieve import instance_url, parts, store
from tests.servers import ServiceProcess

OHIF = "multipart/related; type=application/octet-stream; transfer-syntax=*"


def test_native_frames_are_slices_of_the_pixel_data(embedded: ServiceProcess) -> None:
    ds = make_dataset(rows=8, cols=12, frames=5, pixel_seed=7)
    store(embedded, [to_bytes(ds)])
    frame_size = 8 * 12 * 2
    resp = httpx.get(instance_url(embedded, ds) + "/frames/2,5,1", headers={"accept": OHIF})
    assert resp.status_code == 200
    got = parts(resp)
    assert [b for _, b in got] == [ds.PixelData[i * frame_size : (i + 1) * frame_size] for i in (1, 4, 0)]
    assert got[0][0]["content-type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"


@pytest.mark.parametrize(
    "name",
    ["SC_rgb_rle_2frame.dcm", "JPEG2000.dcm", "examples_ybr_color.dcm", "MR_small_jpeg_ls_lossless.dcm"],
)
def test_encapsulated_frames_are_the_original_fragments(embedded: ServiceProcess, name: str) -> None:
    blob = pydicom_testfile(name)
    ds = pydicom.dcmread(io.BytesIO(blob))
    store(embedded, [blob])
    count = int(ds.get("NumberOfFrames", 1))
    expected = list(generate_frames(ds.PixelData, number_of_frames=count))
    numbers = ",".join(str(n) for n in range(1, count + 1))
    resp = httpx.get(instance_url(embedded, ds) + f"/frames/{numbers}", headers={"accept": OHIF})
    assert resp.status_code == 200, resp.text
    got = parts(resp)
    assert [b for _, b in got] == expected
    ts = ds.file_meta.TransferSyntaxUID
    assert got[0][0]["content-type"] == f"application/octet-stream; transfer-syntax={ts}"
    # The encapsulated media type is offered as well.
    resp = httpx.get(instance_url(embedded, ds) + "/frames/1", headers={"accept": "*/*"})
    [(headers, body)] = parts(resp)
    assert body == expected[0]
    assert headers["content-type"].split(";")[0] in (
        "image/jpeg",
        "image/jp2",
        "image/jls",
        "image/dicom-rle",
    )


def test_dicomweb_client_frames_in_every_flavour(embedded: ServiceProcess) -> None:
    blob = pydicom_testfile("SC_rgb_rle_2frame.dcm")
    ds = pydicom.dcmread(io.BytesIO(blob))
    store(embedded, [blob])
    client = DICOMwebClient(embedded.base + "/dicomweb")
    uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    expected = list(generate_frames(ds.PixelData, number_of_frames=2))
    assert client.retrieve_instance_frames(*uids, [1, 2]) == expected
    rle = client.retrieve_instance_frames(
        *uids, [2], media_types=(("image/x-dicom-rle", "1.2.840.10008.1.2.5"),)
    )
    assert rle == expected[1:]
    native = client.retrieve_instance_frames(*uids, [2], media_types=("application/octet-stream",))
    assert native[0] == ds.pixel_array[1].astype("<u1").tobytes()
    assert list(client.iter_instance_frames(*uids, [1])) == expected[:1]


def test_compressed_frame_decoded_to_native_when_asked(embedded: ServiceProcess) -> None:
    blob = pydicom_testfile("JPEG2000.dcm")
    ds = pydicom.dcmread(io.BytesIO(blob))
    store(embedded, [blob])
    accept = "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    resp = httpx.get(instance_url(embedded, ds) + "/frames/1", headers={"accept": accept})
    assert resp.status_code == 200, resp.text
    [(headers, body)] = parts(resp)
    assert headers["content-type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    assert body == ds.pixel_array.astype(ds.pixel_array.dtype.newbyteorder("<")).tobytes()


def test_big_endian_frame_is_swapped_for_explicit_le(embedded: ServiceProcess) -> None:
    blob = pydicom_testfile("MR_small_bigendian.dcm")
    ds = pydicom.dcmread(io.BytesIO(blob))
    store(embedded, [blob])
    resp = httpx.get(
        instance_url(embedded, ds) + "/frames/1",
        headers={"accept": "multipart/related; type=application/octet-stream"},
    )
    [(_, body)] = parts(resp)
    assert np.array_equal(np.frombuffer(body, dtype="<i2").reshape(ds.Rows, ds.Columns), ds.pixel_array)
    raw = parts(httpx.get(instance_url(embedded, ds) + "/frames/1", headers={"accept": OHIF}))[0][1]
    assert raw == ds.PixelData


def test_single_part_frame(embedded: ServiceProcess) -> None:
    ds = make_dataset(frames=3)
    store(embedded, [to_bytes(ds)])
    resp = httpx.get(instance_url(embedded, ds) + "/frames/3", headers={"accept": "application/octet-stream"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/octet-stream")
    assert resp.content == ds.PixelData[2 * 512 :]
    several = httpx.get(
        instance_url(embedded, ds) + "/frames/1,2", headers={"accept": "application/octet-stream"}
    )
    assert several.status_code == 406


def test_frame_out_of_range_is_404_with_a_reason(embedded: ServiceProcess) -> None:
    ds = make_dataset(frames=2)
    store(embedded, [to_bytes(ds)])
    for frames in ("3", "0", "1,9"):
        resp = httpx.get(instance_url(embedded, ds) + f"/frames/{frames}", headers={"accept": OHIF})
        assert resp.status_code == 404
        assert "2 frame" in resp.text


@pytest.mark.parametrize("frames", ["a", "1,,2", "-1", "1;2"])
def test_malformed_frame_list_is_400(embedded: ServiceProcess, frames: str) -> None:
    ds = make_dataset()
    store(embedded, [to_bytes(ds)])
    resp = httpx.get(instance_url(embedded, ds) + f"/frames/{frames}", headers={"accept": OHIF})
    assert resp.status_code == 400


def test_native_frame_asked_as_jpeg_is_406(embedded: ServiceProcess) -> None:
    ds = make_dataset()
    store(embedded, [to_bytes(ds)])
    resp = httpx.get(
        instance_url(embedded, ds) + "/frames/1", headers={"accept": 'multipart/related; type="image/jpeg"'}
    )
    assert resp.status_code == 406


def test_deflated_and_one_bit_frames_take_the_slow_path(embedded: ServiceProcess) -> None:
    for name in ("image_dfl.dcm", "liver_1frame.dcm"):
        blob = pydicom_testfile(name)
        ds = pydicom.dcmread(io.BytesIO(blob))
        store(embedded, [blob])
        resp = httpx.get(instance_url(embedded, ds) + "/frames/1", headers={"accept": OHIF})
        assert resp.status_code == 200, (name, resp.text)
        assert parts(resp)[0][1] == ds.PixelData, name


def test_bulkdata_pixel_data_with_range(embedded: ServiceProcess) -> None:
    ds = make_dataset(rows=32, cols=32)
    store(embedded, [to_bytes(ds)])
    meta = httpx.get(instance_url(embedded, ds) + "/metadata").json()[0]
    uri = meta["7FE00010"]["BulkDataURI"]
    client = DICOMwebClient(embedded.base + "/dicomweb")
    assert client.retrieve_bulkdata(uri) == [ds.PixelData]
    assert client.retrieve_bulkdata(uri, byte_range=(100, 199)) == [ds.PixelData[100:200]]
    resp = httpx.get(uri, headers={"accept": "application/octet-stream", "range": "bytes=-10"})
    assert resp.status_code == 206
    assert resp.content == ds.PixelData[-10:]
    assert (
        resp.headers["content-range"]
        == f"bytes {len(ds.PixelData) - 10}-{len(ds.PixelData) - 1}/{len(ds.PixelData)}"
    )
    assert httpx.get(uri, headers={"range": "bytes=999999-"}).status_code == 416


def test_bulkdata_of_another_large_binary_element(embedded: ServiceProcess) -> None:
    ds = make_dataset()
    ds.add_new(0x00091010, "LO", "ACME")
    ds.add_new(0x00091011, "OB", bytes(range(256)) * 8)
    store(embedded, [to_bytes(ds)])
    meta = httpx.get(instance_url(embedded, ds) + "/metadata").json()[0]
    uri = meta["00091011"]["BulkDataURI"]
    [value] = DICOMwebClient(embedded.base + "/dicomweb").retrieve_bulkdata(uri)
    assert value == bytes(range(256)) * 8
    assert httpx.get(instance_url(embedded, ds) + "/bulkdata/00101234").status_code == 404
    assert httpx.get(instance_url(embedded, ds) + "/bulkdata/xyz").status_code == 400


def test_bulkdata_of_encapsulated_pixel_data_is_one_part_per_frame(embedded: ServiceProcess) -> None:
    blob = pydicom_testfile("SC_rgb_rle_2frame.dcm")
    ds = pydicom.dcmread(io.BytesIO(blob))
    store(embedded, [blob])
    uri = instance_url(embedded, ds) + "/bulkdata/7FE00010"
    got = DICOMwebClient(embedded.base + "/dicomweb").retrieve_bulkdata(uri)
    assert got == list(generate_frames(ds.PixelData, number_of_frames=2))


class CountingStore(FileObjectStore):
    """The real file store, counting the bytes it reads."""

    read_bytes = 0

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        data = await super().read_range(key, start, length)
        self.read_bytes += len(data)
        return data

    async def read(self, key: str, start: int = 0, end: int | None = None):  # type: ignore[no-untyped-def]
        async for chunk in super().read(key, start, end):
            self.read_bytes += len(chunk)
            yield chunk


def test_a_frame_reads_only_its_own_bytes(tmp_path: Path) -> None:
    ds = make_dataset(rows=64, cols=64, frames=20)
    blob = to_bytes(ds)
    server = ServiceProcess("serve", args=["--data-dir", str(tmp_path / "data")]).start()
    try:
        store(server, [blob])
    finally:
        server.stop()

    async def frame_bytes() -> tuple[bytes, int]:
        catalog = SQLiteCatalog(str(tmp_path / "data" / "catalog.db"))
        await catalog.open()
        try:
            record = await catalog.get_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
            assert record is not None
            counting = CountingStore(tmp_path / "data")
            data = await PixelSource(counting, record).frame(7)
            return data, counting.read_bytes
        finally:
            await catalog.close()

    data, read = asyncio.run(frame_bytes())
    size = 64 * 64 * 2
    assert data == ds.PixelData[6 * size : 7 * size]
    assert read == size
