"""End to end with a real viewer: OHIF Viewer 3 in headless Chromium against ``dicomweb serve``.

The study is stored with STOW first; the viewer then has to find it with QIDO, read its series
metadata and frames with WADO-RS, and draw it. The assertions are on what the server answered
(every request the browser sent to the DICOMweb root, with status and body size) and on the pixels
of the drawn viewport.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import numpy as np
from PIL import Image

from tests.dicomfiles import make_dataset, multipart_related, to_bytes, uid
from tests.servers import ServiceProcess
from tests.viewer.conftest import HERE

PATIENT = "Viewer^Vera"
SHOWN_AS = "Viewer, Vera"  # how OHIF's study list writes a Person Name
INSTANCES = 3
SIZE = 256


def ramp(offset: int) -> bytes:
    """A 16-bit image dark at the top and bright at the bottom: drawn, it can be told from a blank
    or garbled viewport."""
    rows = np.linspace(0, 60000, SIZE, dtype=np.float64)[:, None] + offset
    return np.broadcast_to(rows, (SIZE, SIZE)).astype(np.uint16).tobytes()


def store_study(server: ServiceProcess, token: str | None = None) -> tuple[str, str]:
    study, series = uid(), uid()
    datasets = [
        make_dataset(
            study_uid=study,
            series_uid=series,
            rows=SIZE,
            cols=SIZE,
            InstanceNumber=n + 1,
            PatientName=PATIENT,
            PatientID="VIEWER-1",
            StudyDescription="Viewer end-to-end",
            FrameOfReferenceUID=uid(),
            ImagePositionPatient=[0.0, 0.0, float(n)],
            ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            PixelSpacing=[1.0, 1.0],
            SliceThickness=1.0,
            RescaleIntercept=0,
            RescaleSlope=1,
            WindowCenter=32768,
            WindowWidth=65535,
        )
        for n in range(INSTANCES)
    ]
    parts = []
    for n, ds in enumerate(datasets):
        ds.PixelData = ramp(n * 100)
        parts.append(to_bytes(ds))
    body, content_type = multipart_related(parts)
    response = httpx.post(
        server.base + "/dicomweb/studies",
        content=body,
        headers={"Content-Type": content_type, **({"Authorization": f"Bearer {token}"} if token else {})},
    )
    assert response.status_code == 200, response.text
    return study, series


def test_ohif_lists_opens_and_draws_a_study(
    ohif_url: str, dicomweb_server: ServiceProcess, viewer_token: str | None, tmp_path: Path
) -> None:
    study, series = store_study(dicomweb_server, viewer_token)
    if viewer_token is not None:
        # Access control is on: without the token the viewer could not read anything.
        assert httpx.get(dicomweb_server.base + "/dicomweb/studies").status_code == 401
    root = dicomweb_server.base + "/dicomweb"

    run = subprocess.run(
        ["node", str(HERE / "drive_ohif.mjs"), ohif_url, root, SHOWN_AS, str(tmp_path)],
        cwd=HERE,
        env={**os.environ, "DICOMWEB_TOKEN": viewer_token or ""},
        capture_output=True,
        text=True,
        timeout=50,
    )
    report_path = tmp_path / "report.json"
    assert report_path.exists(), run.stderr[-3000:]
    report = json.loads(report_path.read_text())
    context = json.dumps({k: v for k, v in report.items() if k != "requests"}, indent=1)[-3000:]
    assert run.returncode == 0 and report["step"] == "done", context + run.stderr[-2000:]
    assert study in unquote(report["viewerUrl"])

    requests: list[dict[str, Any]] = [r for r in report["requests"] if r["method"] != "OPTIONS"]
    errors = [r for r in requests if r.get("status") != 200]
    assert errors == [], errors

    def answered(fragment: str) -> list[dict[str, Any]]:
        return [r for r in requests if fragment in r["url"]]

    # QIDO: the study list, then the study's series.
    study_search = [r for r in requests if r["url"].split("?")[0] == root + "/studies"]
    assert study_search and all("application/dicom+json" in str(r["contentType"]) for r in study_search)
    assert answered(f"/studies/{study}/series")
    # WADO-RS: the series metadata (DICOM JSON) and frames of our instances (multipart).
    metadata = answered(f"/studies/{study}/series/{series}/metadata")
    assert metadata and int(metadata[0]["bodyBytes"]) > 0
    frames = [r for r in answered(f"/studies/{study}/series/{series}/instances/") if "/frames/" in r["url"]]
    assert frames, [r["url"] for r in requests]
    for frame in frames:
        assert str(frame["contentType"]).startswith("multipart/related"), frame
        # One native 256x256 16-bit frame and its multipart envelope.
        assert int(frame["bodyBytes"]) >= 256 * 256 * 2, frame

    # Our image was drawn: down the middle of the viewport (the image fills its height; the width
    # has black bars and the corners have text), brightness rises from top to bottom.
    pixels = np.asarray(Image.open(tmp_path / "viewport.png").convert("L"), dtype=np.float64)
    height, width = pixels.shape
    assert height > 100 and width > 100
    middle = pixels[:, width * 2 // 5 : width * 3 // 5]
    bands = [middle[height * k // 10 : height * (k + 1) // 10].mean() for k in range(1, 9)]
    rising = all(b > a + 5 for a, b in itertools.pairwise(bands))
    assert rising and bands[-1] > bands[0] + 100, f"no ramp drawn {bands}; see {tmp_path}/page.png"
