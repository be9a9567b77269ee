"""``dicomweb reindex`` runs the pixel-data check STOW runs: an object in the store whose
header lies about its pixel data is skipped, reported with its reason, and the exit status
says so (3); the instances that pass are catalogued and served."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import RLELossless

from tests.dicomfiles import make_dataset, to_bytes, with_fragments
from tests.servers import DICOMWEB, ServiceProcess


def hostile() -> dict[str, bytes]:
    """One object per way a header can lie (the checks of ``pixelcheck``)."""
    huge = make_dataset(rows=2, cols=2, bits=8)
    huge.NumberOfFrames = 2147483647
    huge.PixelData = bytes(32)
    short = make_dataset(rows=4, cols=4, bits=16)
    short.Rows = short.Columns = 512
    short.PixelData = bytes(32)
    fragments = with_fragments(make_dataset(rows=4, cols=4, bits=8), RLELossless, [bytes(64)])
    fragments.NumberOfFrames = 3
    unknown = to_bytes(make_dataset()).replace(b"1.2.840.10008.1.2.1\x00", b"1.2.3.4.5.6.7.8.9.1\x00", 1)
    return {
        "NumberOfFrames '2147483647' is not an integer within": to_bytes(huge),
        "pixel data holds 32 bytes but Rows 512": to_bytes(short),
        "NumberOfFrames 3 but the encapsulated pixel data has 1 fragment(s)": to_bytes(fragments),
        "unknown transfer syntax 1.2.3.4.5.6.7.8.9.1": unknown,
    }


def put(data_dir: Path, blob: bytes) -> tuple[str, str]:
    """Write ``blob`` where the file store keeps it; its key and instance URL path."""
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    path = f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    (data_dir / path).parent.mkdir(parents=True, exist_ok=True)
    (data_dir / f"{path}.dcm").write_bytes(blob)
    return f"{path}.dcm", path


def test_reindex_skips_and_reports_objects_failing_the_pixel_check(tmp_path: Path) -> None:
    data = tmp_path / "data"
    good_key, good_path = put(data, to_bytes(make_dataset(frames=2)))
    planted = {reason: put(data, blob) for reason, blob in hostile().items()}

    done = subprocess.run(
        [DICOMWEB, "reindex", "--data-dir", str(data)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout.strip() == "reindexed 1 instances, skipped 4 objects (4 failing the pixel-data check)"
    for reason, (key, _) in planted.items():
        line = next(x for x in done.stderr.splitlines() if x.startswith(f"skipped {key}: "))
        assert "fails the pixel-data check" in line and reason in line, line
    assert good_key not in done.stderr

    server = ServiceProcess("serve", args=["--data-dir", str(data)], log_path=tmp_path / "server.log").start()
    try:
        accept = {"accept": 'multipart/related; type="application/dicom"'}
        assert httpx.get(f"{server.base}/dicomweb/{good_path}", headers=accept).status_code == 200
        for _, path in planted.values():
            assert httpx.get(f"{server.base}/dicomweb/{path}", headers=accept).status_code == 404
            assert httpx.get(f"{server.base}/dicomweb/{path}/frames/1").status_code == 404
    finally:
        server.stop()
