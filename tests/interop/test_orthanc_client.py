"""Orthanc's DICOMweb plugin as a client of ours: store, query and retrieve through it.

A test Orthanc (its own ports, configuration and storage) lists our server under
``DicomWeb.Servers`` and is driven through its REST routes
``/dicom-web/servers/ours/{stow,qido,get,retrieve}``. Its STOW client builds a 73-character
multipart boundary (two UUIDs), which RFC 2046's 70-character limit used to refuse.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dicomfiles import make_instance, uid
from tests.e2e.test_wado_retrieve import parts
from tests.servers import ServiceProcess, free_port

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


class Orthanc:
    def __init__(self, root: Path, ours: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = {
            "Name": "interop",
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "index"),
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "DicomPort": free_port(),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": {"ours": [ours]}},
        }
        self.config = root / "orthanc.json"
        self.config.write_text(json.dumps(config))
        self.log = root / "orthanc.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([str(ORTHANC), str(self.config)], stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                if httpx.get(self.base + "/system", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc not ready in {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def post(self, path: str, body: Any) -> httpx.Response:
        resp = httpx.post(self.base + path, content=json.dumps(body), timeout=60)
        assert resp.status_code == 200, (path, resp.status_code, resp.text, self.log.read_text()[-2000:])
        return resp


@pytest.fixture(scope="module")
def orthanc(embedded: ServiceProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    assert ORTHANC.exists() and DICOMWEB_PLUGIN.exists(), "scripts/test-prereqs installs Orthanc"
    server = Orthanc(tmp_path_factory.mktemp("orthanc"), embedded.base + "/dicomweb/")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pushed(orthanc: Orthanc, embedded: ServiceProcess) -> dict[str, Any]:
    """A study (CT x2, MR x1) uploaded to Orthanc, then pushed to us by its STOW client."""
    study, ct, mr = uid(), uid(), uid()
    patient = "ORTHANC-" + uid()[-10:]
    common = {"study_uid": study, "PatientID": patient, "PatientName": "Interop^Olga"}
    blobs = [
        make_instance(series_uid=ct, InstanceNumber=1, pixel_seed=1, **common),
        make_instance(series_uid=ct, InstanceNumber=2, pixel_seed=2, **common),
        make_instance(series_uid=mr, Modality="MR", InstanceNumber=1, pixel_seed=3, **common),
    ]
    by_sop: dict[str, bytes] = {}
    orthanc_ids: dict[str, str] = {}
    series_of: dict[str, str] = {}
    study_id = ""
    for blob in blobs:
        resp = httpx.post(orthanc.base + "/instances", content=blob, timeout=30)
        assert resp.status_code == 200, resp.text
        info = resp.json()
        study_id = info["ParentStudy"]
        tags = httpx.get(f"{orthanc.base}/instances/{info['ID']}/simplified-tags").json()
        by_sop[tags["SOPInstanceUID"]] = blob
        orthanc_ids[tags["SOPInstanceUID"]] = info["ID"]
        series_of[tags["SOPInstanceUID"]] = tags["SeriesInstanceUID"]
    orthanc.post("/dicom-web/servers/ours/stow", {"Resources": [study_id], "Synchronous": True})
    return {
        "study": study,
        "ct": ct,
        "mr": mr,
        "patient": patient,
        "blobs": by_sop,
        "orthanc_ids": orthanc_ids,
        "series_of": series_of,
        "orthanc_study": study_id,
    }


def test_orthanc_stow_client_stores_into_ours_byte_for_byte(
    embedded: ServiceProcess, pushed: dict[str, Any]
) -> None:
    study = pushed["study"]
    found = httpx.get(f"{embedded.base}/dicomweb/studies/{study}/instances").json()
    assert len(found) == 3
    for item in found:
        url = item["00081190"]["Value"][0]
        resp = httpx.get(url, headers={"accept": "application/dicom"})
        assert resp.status_code == 200
        assert resp.content == pushed["blobs"][item["00080018"]["Value"][0]]


def _first(item: dict[str, Any], tag: str) -> str:
    """The first value of an attribute in Orthanc's rendering of our answer (its qido route
    re-encodes DICOM JSON with "Value" as a plain string)."""
    value = item[tag]["Value"]
    return str(value[0] if isinstance(value, list) else value)


def test_orthanc_qido_client_queries_ours(orthanc: Orthanc, pushed: dict[str, Any]) -> None:
    studies = orthanc.post(
        "/dicom-web/servers/ours/qido",
        {"Uri": "/studies", "Arguments": {"PatientID": pushed["patient"], "ModalitiesInStudy": "MR"}},
    ).json()
    assert [_first(s, "0020000D") for s in studies] == [pushed["study"]]
    assert _first(studies[0], "00100020") == pushed["patient"]
    # Orthanc's qido route drops IS numbers and all but the first value when it re-encodes;
    # its get route hands over our answer as it is.
    raw = orthanc.post(
        "/dicom-web/servers/ours/get",
        {"Uri": "/studies", "Arguments": {"PatientID": pushed["patient"], "ModalitiesInStudy": "MR"}},
    ).json()
    assert raw[0]["00080061"]["Value"] == ["CT", "MR"]
    assert raw[0]["00201208"]["Value"] == [3]
    series = orthanc.post(
        "/dicom-web/servers/ours/qido", {"Uri": f"/studies/{pushed['study']}/series", "Arguments": {}}
    ).json()
    assert {_first(s, "0020000E") for s in series} == {pushed["ct"], pushed["mr"]}
    instances = orthanc.post(
        "/dicom-web/servers/ours/qido",
        {"Uri": "/instances", "Arguments": {"PatientID": pushed["patient"], "Modality": "CT"}},
    ).json()
    assert len(instances) == 2


def test_orthanc_get_client_retrieves_instances_and_metadata_from_ours(
    orthanc: Orthanc, pushed: dict[str, Any]
) -> None:
    study = pushed["study"]
    for sop, blob in pushed["blobs"].items():
        series = pushed["series_of"][sop]
        resp = orthanc.post(
            "/dicom-web/servers/ours/get", {"Uri": f"/studies/{study}/series/{series}/instances/{sop}"}
        )
        [(headers, body)] = parts(resp)
        assert headers["content-type"].startswith("application/dicom")
        assert body == blob
    metadata = orthanc.post("/dicom-web/servers/ours/get", {"Uri": f"/studies/{study}/metadata"}).json()
    assert {m["00080018"]["Value"][0] for m in metadata} == set(pushed["blobs"])
    assert all("BulkDataURI" in m["7FE00010"] for m in metadata)


def test_orthanc_retrieve_client_pulls_the_study_back_byte_for_byte(
    orthanc: Orthanc, pushed: dict[str, Any]
) -> None:
    # Orthanc forgets the study, then fetches it from us by WADO-RS.
    assert httpx.delete(f"{orthanc.base}/studies/{pushed['orthanc_study']}").status_code == 200
    assert httpx.get(f"{orthanc.base}/instances").json() == []
    orthanc.post("/dicom-web/servers/ours/retrieve", {"Resources": [{"Study": pushed["study"]}]})
    for sop, blob in pushed["blobs"].items():
        resp = httpx.get(f"{orthanc.base}/instances/{pushed['orthanc_ids'][sop]}/file")
        assert resp.status_code == 200, sop
        assert resp.content == blob
