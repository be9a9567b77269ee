"""Rendering and conversion within their limits, over real HTTP: multi-frame instances as
animated GIF (PS3.18 Table 8.7.4-1), malformed VOI and corrupt pixel data answered without a
500, and the configured caps (MAX_RENDER_PIXELS, MAX_RENDER_FRAMES, MAX_TRANSCODE_SIZE)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.dicomfiles import make_dataset, to_bytes, with_fragments
from tests.e2e.test_wado_retrieve import instance_url, store
from tests.servers import ServiceProcess

IMPLICIT = "1.2.840.10008.1.2"


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A server with small caps, to see each one answer."""
    data = tmp_path_factory.mktemp("capped")
    env = {"MAX_RENDER_PIXELS": "5000", "MAX_RENDER_FRAMES": "4", "MAX_TRANSCODE_SIZE": "20000"}
    server = ServiceProcess(
        "serve", args=["--data-dir", str(data)], env=env, log_path=data / "server.log"
    ).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_multi_frame_instance_renders_as_an_animated_gif(embedded: ServiceProcess) -> None:
    ds = make_dataset(rows=8, cols=8, frames=3, FrameTime="40")
    ds.PixelData = np.stack([np.full((8, 8), v * 1000, np.uint16) for v in (1, 20, 40)]).tobytes()
    store(embedded, [to_bytes(ds)])
    url = instance_url(embedded, ds) + "/rendered?window=20000,40000"
    resp = httpx.get(url, headers={"accept": "image/gif"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/gif"
    gif = Image.open(io.BytesIO(resp.content))
    assert gif.n_frames == 3
    levels = []
    for i in range(3):
        gif.seek(i)
        levels.append(gif.convert("L").getpixel((4, 4)))
        assert gif.info["duration"] == 40
    assert levels[0] < levels[1] < levels[2]
    # Single-frame media types carry the first frame (documented), frames/{n} any frame.
    jpeg = Image.open(io.BytesIO(httpx.get(instance_url(embedded, ds) + "/rendered").content))
    assert jpeg.format == "JPEG" and jpeg.size == (8, 8)
    one = httpx.get(instance_url(embedded, ds) + "/frames/2/rendered", headers={"accept": "image/gif"})
    assert Image.open(io.BytesIO(one.content)).n_frames == 1


def test_a_malformed_voi_falls_back_to_the_full_range(embedded: ServiceProcess) -> None:
    ds = make_dataset(rows=8, cols=8, WindowCenter="40", WindowWidth="0")
    store(embedded, [to_bytes(ds)])
    resp = httpx.get(instance_url(embedded, ds) + "/rendered", headers={"accept": "image/png"})
    assert resp.status_code == 200, resp.text
    assert Image.open(io.BytesIO(resp.content)).size == (8, 8)


def test_corrupt_compressed_pixel_data_is_406_with_the_reason(embedded: ServiceProcess) -> None:
    ds = make_dataset(rows=16, cols=16, bits=8)
    with_fragments(ds, "1.2.840.10008.1.2.4.50", [b"\xff\xd8 not a JPEG bitstream \xff\xd9"])
    store(embedded, [to_bytes(ds)])
    resp = httpx.get(instance_url(embedded, ds) + "/rendered")
    assert resp.status_code == 406
    assert "cannot be decoded" in resp.text


def test_an_image_over_max_render_pixels_is_406(capped: ServiceProcess) -> None:
    small, large = make_dataset(rows=64, cols=64), make_dataset(rows=128, cols=128)
    store(capped, [to_bytes(small), to_bytes(large)])
    assert httpx.get(instance_url(capped, small) + "/rendered").status_code == 200
    resp = httpx.get(instance_url(capped, large) + "/rendered")
    assert resp.status_code == 406 and "MAX_RENDER_PIXELS" in resp.text


def test_an_animation_over_max_render_frames_is_406(capped: ServiceProcess) -> None:
    ds = make_dataset(rows=8, cols=8, frames=5)
    store(capped, [to_bytes(ds)])
    resp = httpx.get(instance_url(capped, ds) + "/rendered", headers={"accept": "image/gif"})
    assert resp.status_code == 406 and "MAX_RENDER_FRAMES" in resp.text
    assert httpx.get(instance_url(capped, ds) + "/frames/5/rendered").status_code == 200


def test_an_object_over_max_transcode_size_is_406_or_served_as_stored(capped: ServiceProcess) -> None:
    ds = make_dataset(rows=128, cols=128, transfer_syntax=IMPLICIT)  # 32 KiB of pixels
    store(capped, [to_bytes(ds)])
    url = instance_url(capped, ds)
    resp = httpx.get(url, headers={"accept": 'multipart/related; type="application/dicom"'})
    assert resp.status_code == 406 and "MAX_TRANSCODE_SIZE" in resp.text
    resp = httpx.get(
        url,
        headers={
            "accept": 'multipart/related; type="application/dicom", '
            'multipart/related; type="application/dicom"; transfer-syntax=*; q=0.5'
        },
    )
    assert resp.status_code == 200
    assert f"transfer-syntax={IMPLICIT}" in resp.content[:300].decode("latin-1")
    small = make_dataset(rows=16, cols=16, transfer_syntax=IMPLICIT)
    store(capped, [to_bytes(small)])
    resp = httpx.get(instance_url(capped, small), headers={"accept": "application/dicom"})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    assert int(resp.headers["content-length"]) == len(resp.content)


def test_a_conversion_spooled_to_a_file_is_sent_whole_each_time(embedded: ServiceProcess) -> None:
    import pydicom

    from tests.e2e.test_wado_retrieve import parts

    ds = make_dataset(rows=512, cols=512, transfer_syntax=IMPLICIT)  # 512 KiB: past the in-memory spool
    store(embedded, [to_bytes(ds)])
    for _ in range(3):
        resp = httpx.get(
            instance_url(embedded, ds), headers={"accept": 'multipart/related; type="application/dicom"'}
        )
        [(headers, body)] = parts(resp)
        assert int(headers["content-length"]) == len(body)
        got = pydicom.dcmread(io.BytesIO(body))
        assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert got.PixelData == ds.PixelData


def test_several_frames_to_decode_fail_before_the_first_byte(embedded: ServiceProcess) -> None:
    ds = make_dataset(rows=16, cols=16, bits=8, frames=2)
    with_fragments(ds, "1.2.840.10008.1.2.4.50", [b"\xff\xd8 not a JPEG \xff\xd9"] * 2)
    store(embedded, [to_bytes(ds)])
    octet = 'multipart/related; type="application/octet-stream"'
    resp = httpx.get(instance_url(embedded, ds) + "/frames/1,2", headers={"accept": octet})
    assert resp.status_code == 406 and "decompress" in resp.text
    resp = httpx.get(
        instance_url(embedded, ds) + "/frames/1,2/rendered",
        headers={"accept": 'multipart/related; type="image/png"'},
    )
    assert resp.status_code == 406 and "cannot be decoded" in resp.text
    stored = httpx.get(
        instance_url(embedded, ds) + "/frames/1,2", headers={"accept": octet + "; transfer-syntax=*"}
    )
    assert stored.status_code == 200


@pytest.mark.parametrize("name", ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "CT_small.dcm"])
def test_a_streamed_conversion_keeps_every_element(embedded: ServiceProcess, name: str) -> None:
    """Native Implicit VR and Big Endian objects are converted header first, then their pixel
    data copied (words swapped) chunk by chunk: the result is the same data set."""
    import pydicom

    from tests.dicomfiles import pydicom_testfile
    from tests.e2e.test_wado_retrieve import parts

    blob = pydicom_testfile(name)
    original = pydicom.dcmread(io.BytesIO(blob))
    store(embedded, [blob])
    resp = httpx.get(
        instance_url(embedded, original), headers={"accept": 'multipart/related; type="application/dicom"'}
    )
    [(headers, body)] = parts(resp)
    assert int(headers["content-length"]) == len(body)
    got = pydicom.dcmread(io.BytesIO(body))
    assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    for elem in original:
        if elem.tag != 0x7FE00010:
            assert got[elem.tag].value == elem.value, elem.tag
    assert np.array_equal(got.pixel_array, original.pixel_array)
