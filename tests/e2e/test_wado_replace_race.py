"""Retrieves racing re-stores of the same instance (``DUPLICATE_POLICY=replace``): the object a
retrieve looked up may be superseded and removed before it is opened; the retrieve then serves
the new revision. An instance that exists throughout is never a 404 or a 5xx, never cut short."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.dicomfiles import make_dataset, multipart_related, to_bytes
from tests.e2e.test_wado_retrieve import instance_url, parts
from tests.servers import ServiceProcess

OCTET = "multipart/related; type=application/octet-stream; transfer-syntax=*"


def test_retrieves_racing_replacing_restores_serve_a_revision(tmp_path: Path) -> None:
    revisions = [make_dataset(rows=256, cols=256, pixel_seed=seed) for seed in range(3)]
    for ds in revisions[1:]:
        ds.StudyInstanceUID, ds.SeriesInstanceUID = (
            revisions[0].StudyInstanceUID,
            revisions[0].SeriesInstanceUID,
        )
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = revisions[0].SOPInstanceUID
    blobs = [to_bytes(ds) for ds in revisions]
    frames = {ds.PixelData for ds in revisions}
    server = ServiceProcess(
        "serve",
        args=["--data-dir", str(tmp_path / "data"), "--workers", "2"],
        env={"DUPLICATE_POLICY": "replace"},
        log_path=tmp_path / "server.log",
    ).start(timeout=60)
    url = instance_url(server, revisions[0])
    bad: list[str] = []
    served = {"single": 0, "multipart": 0, "frame": 0}
    stop = threading.Event()

    def restore() -> None:
        with httpx.Client(timeout=60) as client:
            n = 0
            while not stop.is_set():
                body, ctype = multipart_related([blobs[n % len(blobs)]])
                resp = client.post(
                    server.base + "/dicomweb/studies", content=body, headers={"content-type": ctype}
                )
                if resp.status_code != 200:
                    bad.append(f"store {resp.status_code} {resp.text[:200]}")
                n += 1

    def retrieve(kind: str) -> None:
        accept = {
            "single": "application/dicom; transfer-syntax=*",
            "multipart": 'multipart/related; type="application/dicom"; transfer-syntax=*',
            "frame": OCTET,
        }[kind]
        target = url + "/frames/1" if kind == "frame" else url
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                try:
                    resp = client.get(target, headers={"accept": accept})
                except httpx.HTTPError as exc:  # a 200 cut short
                    bad.append(f"{kind}: {exc!r}")
                    continue
                if resp.status_code != 200:
                    bad.append(f"{kind} {resp.status_code} {resp.text[:200]}")
                    continue
                body = resp.content if kind == "single" else parts(resp)[0][1]
                if (body not in blobs) if kind != "frame" else (body not in frames):
                    bad.append(f"{kind}: a body that is no stored revision ({len(body)} bytes)")
                served[kind] += 1

    try:
        store_first = multipart_related([blobs[0]])
        assert (
            httpx.post(
                server.base + "/dicomweb/studies",
                content=store_first[0],
                headers={"content-type": store_first[1]},
            ).status_code
            == 200
        )
        threads = [threading.Thread(target=restore) for _ in range(2)]
        threads += [threading.Thread(target=retrieve, args=(k,)) for k in served for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(8)
        stop.set()
        for t in threads:
            t.join(60)
    finally:
        stop.set()
        server.stop()
    assert not bad, (len(bad), sorted({b.split(" ")[0] for b in bad}), bad[:3])
    assert all(n > 10 for n in served.values()), served
