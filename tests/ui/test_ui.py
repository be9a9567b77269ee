"""The web UI end to end in headless Chromium against ``dicomweb serve``: the list shows the
stored studies, a search narrows it, a thumbnail is drawn (its pixels read back), a folder upload
stores every DICOM file and reports the one that is not, a delete (confirmed) removes the study,
and "open in viewer" opens the same-origin OHIF Viewer, which draws the study.

Screenshots are kept in the test's temporary directory (list, search, study, upload, deleted,
viewer)."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.dicomfiles import make_dataset, multipart_related, to_bytes, uid
from tests.servers import ServiceProcess

REPO = Path(__file__).resolve().parents[2]
SIZE = 128


def ramp_instance(study: str, series: str, n: int, name: str, **extra: Any) -> bytes:
    ds = make_dataset(
        study_uid=study,
        series_uid=series,
        rows=SIZE,
        cols=SIZE,
        InstanceNumber=n,
        PatientName=name,
        PatientID=f"ID-{name.split('^')[0]}",
        StudyDescription=f"{name.split('^')[0]} study",
        WindowCenter=32768,
        WindowWidth=65535,
        **extra,
    )
    # Dark at the top, bright at the bottom: drawn, it can be told from a blank image.
    rows = np.linspace(0, 60000, SIZE)[:, None] + n * 10
    ds.PixelData = np.broadcast_to(rows, (SIZE, SIZE)).astype(np.uint16).tobytes()
    return to_bytes(ds)


def headers(server: ServiceProcess) -> dict[str, str]:
    return dict(getattr(server, "headers", {}))


def stow(server: ServiceProcess, blobs: list[bytes]) -> None:
    body, ctype = multipart_related(blobs)
    r = httpx.post(
        server.base + "/dicomweb/studies", content=body, headers={"content-type": ctype, **headers(server)}
    )
    assert r.status_code == 200, r.text


def instances(server: ServiceProcess, study: str) -> int:
    r = httpx.get(
        server.base + "/dicomweb/instances", params={"StudyInstanceUID": study}, headers=headers(server)
    )
    return len(r.json()) if r.status_code == 200 else 0


def drive(server: ServiceProcess, scenario: dict[str, Any], out: Path) -> dict[str, Any]:
    (out / "scenario.json").write_text(json.dumps(scenario))
    run = subprocess.run(
        ["node", str(REPO / "tests/ui/drive_ui.mjs"), server.base, str(out / "scenario.json"), str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report_path = out / "report.json"
    assert report_path.exists(), run.stderr[-3000:]
    report: dict[str, Any] = json.loads(report_path.read_text())
    assert run.returncode == 0 and report["step"] == "done", json.dumps(report)[-3000:] + run.stderr[-2000:]
    return report


@pytest.fixture(params=["no-auth", "bearer-token"])
def token(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None: no access control. Otherwise the server runs AUTH_MODE=oidc against a real OpenID
    Provider (tests/auth) and the user pastes a token into the page."""
    if request.param == "no-auth":
        yield None
        return
    from tests.auth.conftest import OidcProvider, SigningKey

    (tmp_path / "oidc").mkdir()
    provider = OidcProvider(tmp_path / "oidc", [SigningKey("ui-key")]).start()
    request.node.oidc_provider = provider
    yield provider.token("dicom.read dicom.write dicom.delete")
    provider.stop()


@pytest.fixture
def server(
    browser: None, token: str | None, request: pytest.FixtureRequest, tmp_path: Path
) -> ServiceProcess:
    env: dict[str, str] = {}
    if token is not None:
        from tests.auth.conftest import auth_env

        env = auth_env(request.node.oidc_provider)
    args = ["--data-dir", str(tmp_path / "data")]
    s = ServiceProcess("serve", args=args, env=env, log_path=tmp_path / "server.log")
    s.start()
    request.addfinalizer(s.stop)
    s.headers = {"Authorization": f"Bearer {token}"} if token else {}  # type: ignore[attr-defined]
    return s


def test_search_thumbnail_upload_delete(server: ServiceProcess, token: str | None, tmp_path: Path) -> None:
    alpha, beta, uploaded = uid(), uid(), uid()
    alpha_series = uid()
    stow(server, [ramp_instance(alpha, alpha_series, n, "Alpha^Ann", Modality="CT") for n in (1, 2)])
    stow(server, [ramp_instance(beta, uid(), 1, "Beta^Bob", Modality="MR")])
    # A folder as a user has one: nested, one series per subfolder, and a file that is not DICOM.
    folder = tmp_path / "upload"
    expected = 0
    for series_no, series in enumerate((uid(), uid()), start=1):
        (folder / f"series{series_no}").mkdir(parents=True)
        for n in range(1, 4):
            blob = ramp_instance(uploaded, series, n, "Gamma^Gil", SeriesNumber=series_no)
            (folder / f"series{series_no}" / f"IM{n:04d}.dcm").write_bytes(blob)
            expected += 1
    (folder / "README.txt").write_text("not a DICOM file\n" * 20)

    out = tmp_path / "shots"
    out.mkdir()
    scenario = {"search": "Alpha", "folder": str(folder), "deleteStudy": uploaded, "viewerStudy": None}
    report = drive(server, {**scenario, "token": token}, out)
    if token is not None:
        assert report["withoutToken"].startswith("401: this server needs a bearer token")
        assert httpx.get(server.base + "/dicomweb/studies").status_code == 401  # the data is not open

    # A browser at / lands on the UI; the list shows the stored studies.
    assert report["landedOn"].endswith("/ui/")
    names = {row[0] for row in report["list"]}
    assert {"Alpha^Ann", "Beta^Bob"} <= names
    # The search narrows it to one, with the computed counts.
    ((name, patient_id, _date, description, modalities, _acc, n_series, n_instances),) = report["searched"]
    assert (name, patient_id, description, modalities) == ("Alpha^Ann", "ID-Alpha", "Alpha study", "CT")
    assert (n_series, n_instances) == ("1", "2")
    # The study page: its series, and a thumbnail that is our ramp (brightness rises downwards).
    assert report["studyUrl"].endswith(f"#/study/{alpha}")
    assert [row[1:5] for row in report["series"]] == [["1", "CT", "Test series", "2"]]
    thumb = report["thumbnail"]
    assert thumb["width"] > 16 and thumb["height"] > 16
    means = thumb["rowMeans"]
    bands = [float(np.mean(means[len(means) * k // 8 : len(means) * (k + 1) // 8])) for k in range(8)]
    assert all(b > a for a, b in itertools.pairwise(bands)) and bands[-1] - bands[0] > 100, bands
    assert report["viewerHref"] is None  # no viewer configured: no button
    # The folder upload: every DICOM file stored, the text file reported with its reason.
    results = {row[0]: row[3] for row in report["uploads"]}
    assert len(results) == expected + 1
    assert results.pop("upload/README.txt").startswith("not DICOM")
    assert set(results.values()) == {"stored"}
    assert report["uploadSummary"] == f"{expected} stored, 1 failed, 0 to go"
    # Delete a series, confirmed: the other one stays.
    assert report["seriesConfirmation"] == "Delete series 1 (3 instances)? This cannot be undone."
    assert [row[1:5] for row in report["seriesAfterDelete"]] == [["2", "CT", "Test series", "3"]]
    # Delete the study, confirmed in a dialog: it is gone from the server and from the list.
    assert "Gamma^Gil" in report["confirmation"] and "(3 instances)" in report["confirmation"]
    assert report["afterDelete"] == "Deleted the study of Gamma^Gil."
    assert instances(server, uploaded) == 0
    assert instances(server, alpha) == 2  # nothing else touched
    assert "Gamma^Gil" not in {row[0] for row in report["listAfterDelete"]}
    # The browser's only complaints: the 409 answer to the text file's upload (and, before the
    # token was given, the 401 that said so).
    assert report["pageErrors"] == []
    expected_errors = ("409 (Conflict)", "401 (Unauthorized)") if token else ("409 (Conflict)",)
    assert [e for e in report["consoleErrors"] if not e.endswith(expected_errors)] == []
    for shot in ("list", "search", "study", "upload", "deleted"):
        assert Image.open(out / f"{shot}.png").size == (1280, 800)


def test_open_in_viewer_renders_the_study_in_the_same_origin_ohif(
    ohif_bundle: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    args = ["--data-dir", str(tmp_path / "data"), "--viewer", ohif_bundle]
    server = ServiceProcess("serve", args=args, log_path=tmp_path / "log")
    server.start()
    request.addfinalizer(server.stop)
    study = uid()
    stow(server, [ramp_instance(study, uid(), n, "Viewer^Vera", Modality="CT") for n in (1, 2)])
    out = tmp_path / "shots"
    out.mkdir()
    report = drive(server, {"viewerStudy": study, "viewerOnly": True}, out)
    assert report["viewerUrl"] == f"{server.base}/viewer/viewer?StudyInstanceUIDs={study}"
    # The ramp was drawn: brightness rises from top to bottom down the middle of the viewport.
    pixels = np.asarray(Image.open(out / "viewport.png").convert("L"), dtype=np.float64)
    height, width = pixels.shape
    middle = pixels[:, width * 2 // 5 : width * 3 // 5]
    bands = [middle[height * k // 10 : height * (k + 1) // 10].mean() for k in range(1, 9)]
    assert all(b > a + 5 for a, b in itertools.pairwise(bands)) and bands[-1] > bands[0] + 100, bands
