"""Rendered and thumbnail resources over real HTTP: real images decoded back with Pillow."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from tests.dicomfiles import make_dataset, pydicom_testfile, to_bytes, uid
from tests.e2e.test_wado_retrieve import instance_url, parts, store
from tests.servers import ServiceProcess


def image(resp: httpx.Response) -> Image.Image:
    assert resp.status_code == 200, resp.text
    return Image.open(io.BytesIO(resp.content))


def gradient_dataset(**attrs: object) -> pydicom.Dataset:
    ds = make_dataset(rows=32, cols=64, **attrs)
    ds.PixelData = (np.arange(32 * 64, dtype=np.uint16).reshape(32, 64) % 64 * 64).astype("<u2").tobytes()
    return ds


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "JPEG2000.dcm",
        "SC_rgb_rle_2frame.dcm",
        "MR_small_bigendian.dcm",
        "examples_palette.dcm",
        "image_dfl.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
    ],
)
def test_instances_render_as_jpeg_and_png(embedded: ServiceProcess, name: str) -> None:
    blob = pydicom_testfile(name)
    ds = pydicom.dcmread(io.BytesIO(blob))
    store(embedded, [blob])
    jpeg = image(httpx.get(instance_url(embedded, ds) + "/rendered", timeout=30))
    assert jpeg.format == "JPEG" and jpeg.size == (ds.Columns, ds.Rows)
    png = image(
        httpx.get(instance_url(embedded, ds) + "/rendered", headers={"accept": "image/png"}, timeout=30)
    )
    assert png.format == "PNG"
    assert png.mode == (
        "L" if ds.SamplesPerPixel == 1 and ds.PhotometricInterpretation != "PALETTE COLOR" else "RGB"
    )


def test_window_maps_grey_levels(embedded: ServiceProcess) -> None:
    ds = gradient_dataset()
    store(embedded, [to_bytes(ds)])
    url = instance_url(embedded, ds) + "/rendered"
    full = np.asarray(image(httpx.get(url, params={"window": "2016,4033"}, headers={"accept": "image/png"})))
    narrow = np.asarray(image(httpx.get(url, params={"window": "100,10"}, headers={"accept": "image/png"})))
    assert full.min() < 10 and full.max() > 245
    # Everything above 105 is white under the narrow window.
    assert (narrow[:, 2:] == 255).all()
    assert narrow[0, 0] == 0


def test_viewport_scales_to_fit_and_crops(embedded: ServiceProcess) -> None:
    ds = gradient_dataset()
    store(embedded, [to_bytes(ds)])
    url = instance_url(embedded, ds) + "/rendered"
    assert image(httpx.get(url, params={"viewport": "32,32"})).size == (32, 16)
    assert image(httpx.get(url, params={"viewport": "100,100,0,0,16,16"})).size == (100, 100)


def test_quality_changes_the_jpeg(embedded: ServiceProcess) -> None:
    ds = make_dataset(rows=64, cols=64, pixel_seed=3)
    store(embedded, [to_bytes(ds)])
    url = instance_url(embedded, ds) + "/rendered"
    low = httpx.get(url, params={"quality": "5"}).content
    high = httpx.get(url, params={"quality": "95"}).content
    assert len(low) < len(high)


def test_frame_rendered_and_multipart_rendered(embedded: ServiceProcess) -> None:
    ds = make_dataset(rows=8, cols=8, frames=3)
    store(embedded, [to_bytes(ds)])
    url = instance_url(embedded, ds) + "/frames/2/rendered"
    assert image(httpx.get(url)).size == (8, 8)
    resp = httpx.get(
        instance_url(embedded, ds) + "/frames/1,3/rendered",
        headers={"accept": 'multipart/related; type="image/png"'},
    )
    got = parts(resp)
    assert len(got) == 2 and all(Image.open(io.BytesIO(b)).format == "PNG" for _, b in got)


def test_thumbnails_at_every_level(embedded: ServiceProcess) -> None:
    study, series = uid(), uid()
    datasets = [
        make_dataset(study_uid=study, series_uid=series, rows=256, cols=512, InstanceNumber=i)
        for i in range(3)
    ]
    store(embedded, [to_bytes(d) for d in datasets])
    base = f"{embedded.base}/dicomweb/studies/{study}"
    for url in (base, f"{base}/series/{series}", instance_url(embedded, datasets[0])):
        thumb = image(httpx.get(url + "/thumbnail"))
        assert max(thumb.size) <= 128 and thumb.size == (128, 64)
    assert image(httpx.get(base + "/thumbnail", params={"viewport": "64,64"})).size == (64, 32)


def test_dicomweb_client_rendered(embedded: ServiceProcess) -> None:
    ds = make_dataset(rows=16, cols=16)
    store(embedded, [to_bytes(ds)])
    client = DICOMwebClient(embedded.base + "/dicomweb")
    uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert client.retrieve_instance_rendered(*uids)[:2] == b"\xff\xd8"
    png = client.retrieve_instance_rendered(*uids, media_types=("image/png",))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.retrieve_series_rendered(ds.StudyInstanceUID, ds.SeriesInstanceUID)[:2] == b"\xff\xd8"
    frame = client.retrieve_instance_frames_rendered(*uids, [1])
    assert frame[:2] == b"\xff\xd8"


@pytest.mark.parametrize(
    "query",
    [
        "window=1",
        "window=a,b",
        "window=10,0",
        "window=10,10,cubic",
        "viewport=0,10",
        "viewport=1,2,3",
        "quality=0",
        "quality=x",
    ],
)
def test_bad_rendering_parameters_are_400(embedded: ServiceProcess, query: str) -> None:
    ds = make_dataset()
    store(embedded, [to_bytes(ds)])
    resp = httpx.get(instance_url(embedded, ds) + "/rendered?" + query)
    assert resp.status_code == 400, query


def test_rendered_negative_cases(embedded: ServiceProcess) -> None:
    ds = make_dataset()
    store(embedded, [to_bytes(ds)])
    url = instance_url(embedded, ds)
    assert httpx.get(url + "/rendered", headers={"accept": "application/dicom"}).status_code == 406
    assert httpx.get(url + "/frames/2/rendered").status_code == 404
    sr = pydicom_testfile("test-SR.dcm")
    sr_ds = pydicom.dcmread(io.BytesIO(sr))
    store(embedded, [sr])
    assert httpx.get(instance_url(embedded, sr_ds) + "/rendered").status_code == 404


def test_head_of_rendered_and_thumbnail_answers_from_the_catalog(
    fresh_server: ServiceProcess, tmp_path: Path
) -> None:
    """HEAD on rendered/thumbnail (instance, series, study, frames) neither reads nor renders
    the object: with the stored file gone it still answers as the GET did."""
    ds = gradient_dataset(frames=1)
    store(fresh_server, [to_bytes(ds)])
    url = instance_url(fresh_server, ds)
    study_url = f"{fresh_server.base}/dicomweb/studies/{ds.StudyInstanceUID}"
    series_url = f"{study_url}/series/{ds.SeriesInstanceUID}"
    png = {"accept": "image/png"}
    resources = [
        (url + "/rendered", {}),
        (url + "/rendered", png),
        (url + "/thumbnail", png),
        (url + "/frames/1/rendered", {}),
        (url + "/frames/1/thumbnail", png),
        (series_url + "/rendered", {}),
        (series_url + "/thumbnail", {}),
        (study_url + "/rendered", png),
        (study_url + "/thumbnail", {}),
    ]
    got = {(u, str(h)): httpx.get(u, headers=h, timeout=30) for u, h in resources}
    assert all(r.status_code == 200 for r in got.values()), [r.text for r in got.values()]
    [path] = [p for p in (tmp_path / "data").rglob("*") if p.is_file() and ds.SOPInstanceUID in p.name]
    path.unlink()
    for u, h in resources:
        try:  # a GET must read the object now: an error
            assert httpx.get(u, headers=h, timeout=30).status_code >= 400
        except httpx.RemoteProtocolError:
            pass
        head = httpx.head(u, headers=h, timeout=30)
        assert head.status_code == 200, (u, head.status_code, head.text)
        assert head.content == b"" and "content-length" not in head.headers, u
        before = got[(u, str(h))]
        assert head.headers["content-type"] == before.headers["content-type"], u
        assert head.headers["etag"] == before.headers["etag"], u
    # Negative answers also come from the catalog.
    assert httpx.head(url + "/frames/2/rendered").status_code == 404
    assert httpx.head(url + "/rendered", headers={"accept": "application/dicom"}).status_code == 406
    assert httpx.head(url + "/rendered", params={"viewport": "0,0"}).status_code == 400
